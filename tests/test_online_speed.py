"""Where an online iteration's time goes, on the tiny pipelines (nothing here is timed):
classifier-free guidance is one batched denoiser forward per step (sampling and training, SD and SD3),
a batch's rewards are scored on the worker thread while the next batch samples and equal the serial
path's, and every iteration logs its split into sampling, reward and training seconds."""
from __future__ import annotations

import threading

import pytest
import torch

from diffalign.pipelines import adapter_for
from diffalign.pipelines.tiny import build_tiny_pipeline
from diffalign.train import get_trainer_class
from diffalign.train.metrics import read_metrics
from test_train_online import make_config


def _count_forwards(module: torch.nn.Module) -> tuple[list[int], object]:
    """Batch sizes of every forward of ``module`` (its first tensor argument's first dimension)."""
    sizes: list[int] = []

    def hook(_mod, args, kwargs):
        first = args[0] if args else next(v for v in kwargs.values() if torch.is_tensor(v))
        sizes.append(first.shape[0])

    return sizes, module.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.slow  # a tiny rollout batch and one training unit (~1-2 s)
@pytest.mark.parametrize("trainer_name,family", [("ddpo", "sd"), ("flow_grpo", "sd3")])
def test_cfg_is_one_batched_denoiser_forward_per_step(tmp_path, trainer_name, family):
    cfg = make_config(tmp_path, trainer_name, family, max_steps=1, **{"sampling.num_batches": 1})
    cfg.reward.workers = 0
    trainer = get_trainer_class(trainer_name)(cfg, adapter=adapter_for(build_tiny_pipeline(family)))
    b, steps = cfg.sampling.batch_size, cfg.sampling.num_inference_steps
    sizes, handle = _count_forwards(trainer.adapter.denoiser)
    traj = trainer.collect(0)
    # one forward per sampling step, unconditional and conditional halves in the same batch
    assert sizes == [2 * b] * steps
    sizes.clear()
    traj, _ = trainer.compute_advantages(traj, 0)
    mb = trainer.micro_batches(traj, 0, 0)[0]
    loss, _ = trainer.unit_loss(mb, 0)
    # the training forward: one call with both branches (Flow-GRPO with a KL term: a second one, the
    # reference's, adapters off, no graph)
    reference = trainer_name == "flow_grpo" and trainer.kl_beta() > 0
    assert cfg.train_cfg and sizes == [2 * len(mb)] * (2 if reference else 1)
    loss.backward()
    handle.remove()


class _Overlap:
    """A reward whose first call waits until the sampler has started the next batch (a forward after
    the first batch's ``steps`` ones): it records whether that happened while it was scoring."""

    def __init__(self, denoiser: torch.nn.Module, steps: int):
        self.calls, self.steps, self.started_next = 0, steps, threading.Event()
        self.overlapped: list[bool] = []
        denoiser.register_forward_pre_hook(self._count)

    def _count(self, *_):
        self.calls += 1
        if self.calls > self.steps:
            self.started_next.set()

    def __call__(self, images, prompts):
        if not self.overlapped:
            self.overlapped.append(self.started_next.wait(timeout=60))  # a deadline, not a timing
        else:
            self.overlapped.append(self.started_next.is_set())
        return images.float().mean(dim=(1, 2, 3))


@pytest.mark.slow  # two tiny iterations' rollouts (~2 s)
def test_rewards_are_scored_while_the_next_batch_samples_and_equal_the_serial_path(tmp_path):
    results = {}
    for workers in (0, 1):
        cfg = make_config(tmp_path / str(workers), "ddpo", "sd", max_steps=1)
        cfg.sampling.num_batches, cfg.reward.workers = 2, workers
        adapter = adapter_for(build_tiny_pipeline("sd"))
        reward = None
        if workers:
            reward = _Overlap(adapter.denoiser, cfg.sampling.num_inference_steps)
            trainer = get_trainer_class("ddpo")(cfg, adapter=adapter, reward=reward)
        else:
            trainer = get_trainer_class("ddpo")(cfg, adapter=adapter,
                                                reward=lambda images, prompts: images.float().mean(dim=(1, 2, 3)))
        results[workers] = trainer.collect(0)
        timings = dict(trainer._timings)
        trainer.close()
        assert set(timings) == {"sampling_s", "reward_s", "reward_exposed_s"} and timings["sampling_s"] > 0
        if workers:
            assert reward.overlapped == [True, True]  # batch 0 scored while batch 1 sampled
    serial, threaded = results[0], results[1]
    assert len(serial) == 8 and serial.prompts == threaded.prompts
    assert torch.equal(serial.rewards, threaded.rewards)
    assert torch.equal(serial.latents, threaded.latents) and torch.equal(serial.log_probs, threaded.log_probs)


@pytest.mark.slow  # one tiny training iteration (~1 s)
def test_every_iteration_logs_its_time_split(tmp_path):
    cfg = make_config(tmp_path, "ddpo", "sd", max_steps=1)
    trainer = get_trainer_class("ddpo")(cfg, adapter=adapter_for(build_tiny_pipeline("sd")))
    rows = [r for r in read_metrics(trainer.train().metrics_path) if "train_s" in r]
    assert len(rows) == 1
    row = rows[0]
    for key in ("sampling_s", "reward_s", "reward_exposed_s", "train_s"):
        assert row[key] >= 0, key
    assert row["sampling_s"] > 0 and row["train_s"] > 0 and row["reward_s"] > 0
    assert row["sampling_s"] + row["reward_exposed_s"] + row["train_s"] <= row["step_time"]
