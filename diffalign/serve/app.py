"""The reward server: one loaded reward, dynamic batching, ``/health`` and ``/score``.

``POST /score`` takes ``{"samples": <base64 .npy of a float [B,3,H,W] (images) or [B,T,3,H,W]
(videos) batch in [0, 1]>, "prompts": [...], "metadata": [...] | null}`` and answers
``{"scores": [...]}``. Requests are queued; a worker takes up to ``batch_size`` samples of the same
shape that arrive within ``max_wait_ms`` of the first, scores them in one call of the reward and
answers each request with its own slice. ``GET /health`` says which reward is served and how many
batches / samples it has scored.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel

from diffalign.rewards.base import Reward
from diffalign.rewards.remote import decode_array


@dataclass
class _Job:
    samples: torch.Tensor
    prompts: list[str] | None
    metadata: list | None
    future: asyncio.Future = field(repr=False)


class DynamicBatcher:
    """Collect jobs into batches of at most ``batch_size`` samples (same sample shape, same
    presence of prompts / metadata), waiting at most ``max_wait_ms`` for a batch to fill."""

    def __init__(self, reward: Reward, batch_size: int = 16, max_wait_ms: float = 10.0):
        self.reward, self.batch_size, self.max_wait = reward, int(batch_size), max_wait_ms / 1000.0
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()
        self.batches = self.samples = 0
        self._held: _Job | None = None

    async def score(self, samples: torch.Tensor, prompts, metadata) -> list[float]:
        job = _Job(samples, prompts, metadata, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._held or await self.queue.get()
            self._held = None
            jobs, count = [first], first.samples.shape[0]
            deadline = loop.time() + self.max_wait
            while count < self.batch_size:
                try:
                    job = await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                if not self._fits(first, job) or count + job.samples.shape[0] > self.batch_size:
                    self._held = job  # starts the next batch
                    break
                jobs.append(job)
                count += job.samples.shape[0]
            await self._score(loop, jobs)

    @staticmethod
    def _fits(a: _Job, b: _Job) -> bool:
        return (a.samples.shape[1:] == b.samples.shape[1:] and (a.prompts is None) == (b.prompts is None)
                and (a.metadata is None) == (b.metadata is None))

    async def _score(self, loop, jobs: list[_Job]) -> None:
        samples = torch.cat([j.samples for j in jobs])
        prompts = None if jobs[0].prompts is None else [p for j in jobs for p in j.prompts]
        metadata = None if jobs[0].metadata is None else [m for j in jobs for m in j.metadata]
        try:
            scores = await loop.run_in_executor(None, lambda: self.reward(samples, prompts, metadata).float().cpu().tolist())
        except Exception as e:  # every waiting request gets the error, none a made-up score
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        self.batches += 1
        self.samples += len(scores)
        start = 0
        for job in jobs:
            n = job.samples.shape[0]
            if not job.future.done():
                job.future.set_result(scores[start:start + n])
            start += n


class ScoreRequest(BaseModel):
    """The body of ``POST /score``."""

    samples: str
    prompts: list[str] | None = None
    metadata: list[Any] | None = None


def create_app(reward: Reward, batch_size: int = 16, max_wait_ms: float = 10.0):
    """The FastAPI app serving ``reward``."""
    from fastapi import FastAPI, HTTPException

    batcher = DynamicBatcher(reward, batch_size=batch_size, max_wait_ms=max_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title=f"diffalign reward: {reward.label}", lifespan=lifespan)
    app.state.batcher = batcher

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "reward": reward.label, "modality": reward.modality,
                "requires_prompt": reward.requires_prompt, "requires_metadata": reward.requires_metadata,
                "higher_is_better": reward.higher_is_better, "batch_size": batcher.batch_size,
                "batches": batcher.batches, "samples": batcher.samples}

    @app.post("/score")
    async def score(request: ScoreRequest) -> dict:
        try:
            samples = torch.from_numpy(decode_array(request.samples).copy()).float()
        except Exception as e:
            raise HTTPException(400, f"samples are not a base64 .npy array: {e}") from None
        expected = 5 if reward.modality != "image" else 4
        if samples.ndim != expected:
            raise HTTPException(400, f"reward {reward.label!r} ({reward.modality}) takes a {expected}-d batch, got shape {list(samples.shape)}")
        try:
            scores = await batcher.score(samples, request.prompts, request.metadata)
        except (ValueError, TypeError) as e:
            raise HTTPException(400, f"{type(e).__name__}: {e}") from None
        return {"scores": scores}

    return app
