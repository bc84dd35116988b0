"""Where a shapes-video pipeline's v-loss sits: at the moving objects or on the background (docs/video.md,
"First tries at that base").

    python bench/video_loss_split.py [--pipeline shapes-cogvideox] [--clips 96] [--repeats 4] [--seed 0]

Renders ``--clips`` moving-shapes TRAIN clips (``render_video`` at the pipeline's recorded size and frame
count), encodes them with the pipeline's VAE and runs the project's one training forward
(``CogVideoXAdapter.training_errors``: uniform timesteps, v target) ``--repeats`` times per clip. Each
latent position is an object position when a rendered pixel it covers differs from the grey background
(latent frame 0 <- frame 0, latent frame k <- frames 2k-1 and 2k for the causal 2x temporal VAE; a 2x2
spatial max for the f=2 VAE). Prints one JSON line: the objects' share of the latent grid, the mean squared
error per element at object and background positions, their ratio, the objects' share of the whole loss,
the whole loss, and the same two per-element errors in four timestep bands.
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def split_errors(squared, mask) -> dict[str, float]:
    """``squared`` [B, F, h, w] per-position errors (channel mean), ``mask`` [B, F, h, w] 0/1 object positions
    -> object / background error per element, their ratio, the objects' grid share and loss share, the mean."""
    obj, bg = float((squared * mask).sum()), float((squared * (1 - mask)).sum())
    n_obj, n_bg = float(mask.sum()), float((1 - mask).sum())
    if n_obj == 0 or n_bg == 0:
        raise ValueError("the mask must hold both object and background positions")
    return {"object_share_of_grid": n_obj / (n_obj + n_bg), "object_error": obj / n_obj, "background_error": bg / n_bg,
            "ratio": (obj / n_obj) / (bg / n_bg), "object_share_of_loss": obj / (obj + bg),
            "loss": (obj + bg) / (n_obj + n_bg)}


def latent_object_mask(clips: np.ndarray, temporal: int = 2, spatial: int = 2, threshold: int = 30):
    """uint8 clips [B, T, H, W, 3] -> float tensor [B, F', H/spatial, W/spatial]: 1 where a covered pixel is off
    the background (sum of absolute RGB differences above ``threshold``)."""
    import torch

    from diffalign.shapes.vocab import BACKGROUND

    off = np.abs(clips.astype(np.int16) - np.array(BACKGROUND, dtype=np.int16)).sum(-1) > threshold
    m = torch.from_numpy(off).float()
    frames = [m[:, :1]] + [m[:, temporal * k - temporal + 1: temporal * k + 1].amax(1, keepdim=True)
                           for k in range(1, (m.shape[1] - 1) // temporal + 1)]
    return torch.nn.functional.max_pool2d(torch.cat(frames, 1), spatial)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pipeline", default="shapes-cogvideox")
    p.add_argument("--clips", type=int, default=96)
    p.add_argument("--repeats", type=int, default=4, help="training forwards per clip (fresh noise and timestep)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import diffalign  # noqa: F401  (compat shim before torchvision)
    import torch

    from diffalign.pipelines import load_adapter
    from diffalign.pipelines.generation import resolve_pipeline_path
    from diffalign.shapes import render_video, video_prompts

    torch.manual_seed(args.seed)
    adapter = load_adapter(resolve_pipeline_path(args.pipeline))
    height, _, frames = adapter.default_size()
    rows = video_prompts("train")
    pick = np.random.default_rng(args.seed).choice(len(rows), args.clips, replace=False)
    squared_all, mask_all, bands = [], [], {}
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for start in range(0, args.clips, args.batch_size):
            batch = [rows[i] for i in pick[start:start + args.batch_size]]
            clips = np.stack([render_video(r, num_frames=frames, size=height, seed=start + j) for j, r in enumerate(batch)])
            latents = adapter.encode_pixels(torch.from_numpy(clips).float().div(255).permute(0, 1, 4, 2, 3))
            mask = latent_object_mask(clips, spatial=height // latents.shape[-1])
            cond = adapter.encode_prompt([r["prompt"] for r in batch])
            for _ in range(args.repeats):
                _, parts = adapter.training_errors(latents, cond, generator=generator)
                squared = ((parts["prediction"].float() - parts["target"].float()) ** 2).mean(2)  # [B, F', h, w]
                squared_all.append(squared)
                mask_all.append(mask)
                for i, t in enumerate(parts["timesteps"].tolist()):
                    bands.setdefault(min(int(t) // 250, 3), []).append(split_errors(squared[i:i + 1], mask[i:i + 1]))
    out = {"pipeline": args.pipeline, "clips": args.clips, "repeats": args.repeats,
           **{k: round(v, 4) for k, v in split_errors(torch.cat(squared_all), torch.cat(mask_all)).items()}}
    for band, items in sorted(bands.items()):
        out[f"t{band * 250}-{band * 250 + 250}"] = {
            "n": len(items), "object_error": round(float(np.mean([d["object_error"] for d in items])), 4),
            "background_error": round(float(np.mean([d["background_error"] for d in items])), 4)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
