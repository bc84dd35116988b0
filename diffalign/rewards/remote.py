"""A reward scored by a ``diffalign serve-reward`` server: ``load("remote", url="http://host:port")``.

In recipes: ``reward: {name: remote, options: {url: http://host:8000, timeout: 60, retries: 2}}``.
The client asks the server's ``/health`` once (which reward it serves: modality, whether it needs
prompts / metadata, its direction), then posts each batch to ``/score``. Samples travel as the
float tensor itself (``.npy`` bytes, base64 in JSON), so the scores equal the in-process reward's.

Failures are one-line :class:`RemoteRewardError` s (timeout, connection refused, HTTP error, a
malformed response); a batch is never scored as zeros. Connection errors, timeouts and 5xx replies
are retried ``retries`` times (0.5 s, 1 s, 2 s ... apart).
"""
from __future__ import annotations

import base64
import io
import json
import math
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import torch

from diffalign.rewards.base import Reward


class RemoteRewardError(RuntimeError):
    """The remote reward could not score a batch; the message is one line."""


def encode_array(array: np.ndarray) -> str:
    """An array as base64 ``.npy`` bytes (dtype and shape kept exactly)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_array(text: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(text.encode("ascii"), validate=True)), allow_pickle=False)


class RemoteReward(Reward):
    """The reward served at ``url`` (see the module docstring)."""

    def __init__(self, url: str, timeout: float = 60.0, retries: int = 2):
        super().__init__()
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = int(retries)
        info = self._request("GET", "/health")
        try:
            self.served = str(info["reward"])
            self.modality = str(info["modality"])
            self.requires_prompt = bool(info["requires_prompt"])
            self.requires_metadata = bool(info["requires_metadata"])
            self.higher_is_better = bool(info["higher_is_better"])
        except (KeyError, TypeError) as e:
            raise RemoteRewardError(f"remote reward {self.url}: malformed /health response (missing {e})") from None

    def score(self, samples: torch.Tensor, prompts: list[str], metadata: list | None) -> torch.Tensor:
        body = {"samples": encode_array(samples.detach().float().cpu().numpy()), "prompts": prompts, "metadata": metadata}
        reply = self._request("POST", "/score", body)
        scores = reply.get("scores") if isinstance(reply, dict) else None
        batch = samples.shape[0]
        if (not isinstance(scores, list) or len(scores) != batch
                or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores)):
            raise RemoteRewardError(f"remote reward {self.url}: malformed /score response: expected {batch} numbers "
                                    f"under 'scores', got {json.dumps(reply)[:120]}")
        if not all(math.isfinite(s) for s in scores):
            raise RemoteRewardError(f"remote reward {self.url}: the server returned non-finite scores {scores[:8]}")
        return torch.tensor(scores, dtype=torch.float32)

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, route: str, body: Any = None) -> Any:
        return request_json(self.url + route, method, body, self.timeout, self.retries, "remote reward")

    def extra_repr(self) -> str:
        return f"url={self.url!r}, served={getattr(self, 'served', '?')!r}, " + super().extra_repr()


def request_json(url: str, method: str = "GET", body: Any = None, timeout: float = 60.0, retries: int = 2,
                 who: str = "remote reward", headers: dict[str, str] | None = None,
                 server: str = "`diffalign serve-reward`") -> Any:
    """One JSON request with retries (connection errors, timeouts and 5xx, 0.5 s, 1 s, 2 s ... apart);
    any failure is a one-line :class:`RemoteRewardError` starting with ``who`` and the URL."""
    data = json.dumps(body).encode("utf-8") if body is not None else None
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
            break
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace").strip().replace("\n", " ")[:200]
            if e.code < 500 or attempt == retries:
                raise RemoteRewardError(f"{who} {url}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
            if attempt == retries:
                raise RemoteRewardError(f"{who} {url}: {_reason(e, timeout, server)} (after {retries + 1} tries)") from None
        time.sleep(0.5 * 2 ** attempt)
    try:
        return json.loads(raw)
    except ValueError:
        raise RemoteRewardError(f"{who} {url}: malformed response (not JSON): {raw[:80]!r}") from None


def _reason(error: Exception, timeout: float, server: str) -> str:
    reason = getattr(error, "reason", error)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return f"connection refused (is {server} running there?)"
    return f"{type(reason).__name__}: {reason}"
