"""The ``vlm_judge`` reward against a real HTTP server on localhost that speaks the OpenAI
chat-completions protocol with a deterministic fake answerer (no vision-language model can be
served here): the image travels as a PNG data URL, yes/no probabilities come from the logprobs (or
the answer), ratings from the answer, and failures are one-line errors."""
from __future__ import annotations

import base64
import io
import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

import diffalign.rewards
from diffalign.rewards.remote import RemoteRewardError


class FakeChatServer:
    """``/v1/models`` and ``/v1/chat/completions``; the answerer reads the red level ``p`` of the image
    (mean of its red channel) and answers ``P(yes) = p`` (as logprobs over " Yes", "yes", "No"), or the
    rating ``round(1 + 9 p)``. ``behaviour`` makes it misbehave."""

    def __init__(self, behaviour: str = "ok"):
        outer = self
        self.requests: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, payload, code: int = 200):
                body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._reply({"object": "list", "data": [{"id": "fake-vlm", "object": "model"}]})
                else:
                    self._reply({"error": "not found"}, 404)

            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(request)
                if behaviour == "refuse":
                    return self._reply({"error": {"message": "model 'x' does not exist"}}, 400)
                if behaviour == "garbage":
                    return self._reply(b"<html>bad gateway</html>")
                content = request["messages"][-1]["content"]
                image_url = next(c["image_url"]["url"] for c in content if c["type"] == "image_url")
                question = next(c["text"] for c in content if c["type"] == "text")
                p = outer.red_level(image_url)
                if "Rate" in question:
                    answer, logprobs = f"{round(1 + 9 * p)}", None
                elif behaviour == "no_logprobs" or not request.get("logprobs"):
                    answer, logprobs = ("Yes" if p > 0.5 else "No"), None
                elif behaviour == "maybe":
                    answer, logprobs = "Maybe", {"content": [{"token": "Maybe", "logprob": 0.0,
                                                              "top_logprobs": [{"token": "Maybe", "logprob": 0.0}]}]}
                else:  # P(yes) = p split over two spellings; the rest of the mass on an unrelated token
                    top = [{"token": " Yes", "logprob": math.log(0.6 * p)}, {"token": "yes", "logprob": math.log(0.2 * p)},
                           {"token": "No", "logprob": math.log(0.8 * (1 - p))}, {"token": "Hmm", "logprob": math.log(0.2)}]
                    answer = "Yes" if p > 0.5 else "No"
                    logprobs = {"content": [{"token": answer, "logprob": -0.1, "top_logprobs": top}]}
                self._reply({"id": "x", "object": "chat.completion", "model": request["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                          "logprobs": logprobs, "finish_reason": "stop"}]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    @staticmethod
    def red_level(data_url: str) -> float:
        from PIL import Image

        assert data_url.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))
        return float(np.asarray(image.convert("RGB"))[..., 0].mean() / 255)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server(request):
    s = FakeChatServer(getattr(request, "param", "ok"))
    yield s
    s.close()


def images(levels):
    x = torch.zeros(len(levels), 3, 8, 8)
    for i, p in enumerate(levels):
        x[i, 0] = p
    return x


LEVELS = [0.2, 0.6, 0.8]  # 8-bit exact: 51/255, 153/255, 204/255


def test_yes_probability_from_logprobs(server):
    reward = diffalign.rewards.load("vlm_judge", url=server.url, questions=["Is it red? {prompt}", "Red at all?"])
    assert reward.model == "fake-vlm"  # the first model /models lists
    scores = reward(images(LEVELS), ["a", "b", "c"])
    # P(yes)/(P(yes)+P(no)) = 0.8 p / (0.8 p + 0.8 (1 - p)) = p, the same for both questions
    assert scores.tolist() == pytest.approx(LEVELS, abs=1e-6)
    assert len(server.requests) == 6
    sent = server.requests[0]
    assert sent["model"] == "fake-vlm" and sent["logprobs"] is True and sent["max_tokens"] == 1 and sent["temperature"] == 0
    texts = sorted(c["text"] for r in server.requests for c in r["messages"][-1]["content"] if c["type"] == "text")
    assert texts[:3] == ["Is it red? a", "Is it red? b", "Is it red? c"]


@pytest.mark.parametrize("server", ["no_logprobs"], indirect=True)
def test_yes_no_from_the_answer_when_no_logprobs(server):
    reward = diffalign.rewards.load("vlm_judge", url=server.url, model="m", system="You are a strict judge.")
    assert reward(images(LEVELS), ["x"] * 3).tolist() == [0.0, 1.0, 1.0]
    assert server.requests[0]["messages"][0] == {"role": "system", "content": "You are a strict judge."}


def test_rating(server):
    reward = diffalign.rewards.load("vlm_judge", url=server.url, mode="rating", template="Rate the red of {prompt}")
    # round(1 + 9 p): 2.8 -> 3, 6.4 -> 6, 8.2 -> 8
    assert reward(images(LEVELS), ["x"] * 3).tolist() == [3.0, 6.0, 8.0]
    assert server.requests[0]["max_tokens"] == 8 and "logprobs" not in server.requests[0]


@pytest.mark.parametrize("server, message", [
    ("maybe", "the answer 'Maybe' is neither yes nor no"),
    ("refuse", "HTTP 400: {\"error\": {\"message\": \"model 'x' does not exist\"}}"),
    ("garbage", "malformed response (not JSON)"),
], indirect=["server"])
def test_errors_are_one_line(server, message):
    reward = diffalign.rewards.load("vlm_judge", url=server.url, model="x", retries=0)
    with pytest.raises(RemoteRewardError) as info:
        reward(images([0.5]), ["x"])
    assert message in str(info.value) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"vlm judge {server.url}")


def test_refused_connection_and_bad_options():
    with pytest.raises(RemoteRewardError, match="connection refused \\(is the chat-completions server running there\\?\\)"):
        diffalign.rewards.load("vlm_judge", url="http://127.0.0.1:9/v1", retries=0, timeout=1)
    with pytest.raises(ValueError, match="mode='score'"):
        diffalign.rewards.load("vlm_judge", url="http://x", model="m", mode="score")
    with pytest.raises(ValueError, match="has a field other than"):
        diffalign.rewards.load("vlm_judge", url="http://x", model="m", questions=["{image} ok?"])
