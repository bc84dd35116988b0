"""Serve a registered reward over HTTP: ``diffalign serve-reward NAME [--host --port --batch-size --max-wait-ms]``.

NAME may carry options as on other command lines (``hpsv2.1:path=/models/hps``). The reward is
loaded once; clients use ``diffalign.rewards.load("remote", url="http://HOST:PORT")``.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="reward name (with options: name:key=value,...)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=16, help="most samples scored in one call (dynamic batching)")
    p.add_argument("--max-wait-ms", type=float, default=10.0, help="how long a batch waits to fill")
    p.add_argument("--device", default=None, help="where to put the reward (default: cpu; auto: CUDA when available)")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    import diffalign.rewards
    from diffalign.serve.app import create_app

    reward = diffalign.rewards.load(args.name, device=args.device)
    app = create_app(reward, batch_size=args.batch_size, max_wait_ms=args.max_wait_ms)
    print(f"serving reward {reward.label!r} on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
