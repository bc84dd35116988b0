"""The reward server (``diffalign serve-reward``) and the ``remote`` reward client."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

import diffalign.rewards
from diffalign.rewards.base import Reward
from diffalign.rewards.remote import RemoteRewardError
from diffalign.serve.app import DynamicBatcher

HEALTH = {"status": "ok", "reward": "fake", "modality": "image", "requires_prompt": False,
          "requires_metadata": False, "higher_is_better": True}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeServer:
    """A stdlib HTTP server whose /score misbehaves as told (``mode``)."""

    def __init__(self, mode: str):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, body: bytes, code: int = 200):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._reply(json.dumps(HEALTH).encode())

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts += 1
                if mode == "slow":
                    time.sleep(0.6)
                    self._reply(b'{"scores": [1.0, 2.0]}')
                elif mode == "short":
                    self._reply(b'{"scores": [1.0]}')
                elif mode == "html":
                    self._reply(b"<html>oops</html>")
                else:
                    self._reply(b'{"detail": "boom"}', code=500)

        self.posts = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("mode, message, posts", [
    ("slow", "timed out after 0.2 s (after 1 tries)", 1),
    ("short", "malformed /score response: expected 2 numbers", 1),
    ("html", "malformed response (not JSON)", 1),
    ("error", "HTTP 500", 2),  # 5xx is retried, then reported
])
def test_errors_are_one_line_never_zeros(mode, message, posts, monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None) if mode == "error" else None
    server = FakeServer(mode)
    try:
        reward = diffalign.rewards.load("remote", url=server.url, timeout=0.2, retries=0 if mode != "error" else 1)
        with pytest.raises(RemoteRewardError) as e:
            reward(torch.rand(2, 3, 8, 8))
        assert message in str(e.value) and "\n" not in str(e.value)
        assert server.posts == posts
    finally:
        server.close()


def test_connection_refused_is_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RemoteRewardError, match=r"connection refused \(is `diffalign serve-reward` running there\?\) \(after 1 tries\)"):
        diffalign.rewards.load("remote", url=url, retries=0)


class CountingReward(Reward):
    requires_prompt = False

    def __init__(self):
        super().__init__()
        self.calls = []

    def score(self, samples, prompts, metadata):
        self.calls.append(samples.shape[0])
        return samples.mean(dim=(1, 2, 3))


def test_dynamic_batcher_merges_requests_and_slices_scores():
    reward = CountingReward()
    xs = [torch.full((n, 3, 4, 4), v) for n, v in ((1, 0.1), (2, 0.2), (1, 0.3))]
    odd = torch.full((1, 3, 8, 8), 0.9)  # another shape: its own batch

    async def go():
        batcher = DynamicBatcher(reward, batch_size=4, max_wait_ms=50)
        task = asyncio.create_task(batcher.run())
        out = await asyncio.gather(*(batcher.score(x, None, None) for x in (*xs, odd)))
        task.cancel()
        return out, batcher

    out, batcher = asyncio.run(go())
    assert [len(o) for o in out] == [1, 2, 1, 1]
    assert sum(out, []) == pytest.approx([0.1, 0.2, 0.2, 0.3, 0.9])
    assert reward.calls == [4, 1] and batcher.batches == 2 and batcher.samples == 5


@pytest.mark.slow
def test_real_server_gives_the_in_process_scores(tmp_path):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "diffalign", "serve-reward", "jpeg_compressibility:scale=0.5", "--port", str(port),
         "--batch-size", "8", "--max-wait-ms", "200"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"server did not start: {proc.stdout.read().decode()[-2000:]}")
                time.sleep(0.1)
        remote = diffalign.rewards.load("remote", url=url, timeout=10)
        local = diffalign.rewards.load("jpeg_compressibility", scale=0.5)
        assert remote.served == "jpeg_compressibility" and remote.requires_prompt is False
        images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(remote(images), local(images), rtol=0, atol=0)
        # four clients at once: the server merges them into fewer reward calls
        singles = [images[i:i + 1] for i in (0, 1, 2, 0)]
        with ThreadPoolExecutor(4) as pool:
            scores = list(pool.map(remote, singles))
        assert [float(s) for s in scores] == [float(local(x)) for x in singles]
        health = json.loads(urllib.request.urlopen(url + "/health").read())
        assert health["samples"] == 7 and health["batches"] < 5
    finally:
        proc.terminate()
        proc.wait(10)
