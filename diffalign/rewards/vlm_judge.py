"""A vision-language model as judge through an OpenAI-compatible chat-completions API (a vLLM or
SGLang server): ``load("vlm_judge", url="http://host:8000/v1", mode="yes_no")``.

In recipes: ``reward: {name: vlm_judge, options: {url: http://host:8000/v1, model: Qwen/Qwen2.5-VL-7B-Instruct}}``.

Every (image, question) pair is one ``POST {url}/chat/completions`` with the image as a base64 PNG
data URL (``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``) followed by
the question text, ``temperature`` 0.

- ``mode="yes_no"``: each question in ``questions`` (templates; ``{prompt}`` is the sample's prompt)
  is asked with ``max_tokens=1, logprobs=true, top_logprobs=20``; the score of a question is
  ``P(yes) / (P(yes) + P(no))`` summed over the first token's top alternatives whose text is "yes" /
  "no" (any case, spaces stripped). A server that returns no logprobs gives the answer itself:
  1 for yes, 0 for no. The reward is the mean over the questions (in [0, 1]).
- ``mode="rating"``: ``template`` asks for a 1-10 rating; the reward is the first number of the
  answer (``max_tokens`` 8), which must lie in [1, 10].

``model`` defaults to the first model ``GET {url}/models`` lists (a vLLM server serves one).
``system`` adds a system message. Requests run ``concurrency`` at a time. Failures are one-line
:class:`~diffalign.rewards.remote.RemoteRewardError` s (timeout, refused connection, HTTP error, a
reply with neither yes nor no, no number in range), never a silent score; connection errors,
timeouts and 5xx replies are retried ``retries`` times.

Tested here only against a fake chat-completions server on localhost (no vision-language model can
be served on this machine); the request and response shapes follow the OpenAI chat-completions API
that vLLM and SGLang implement.
"""
from __future__ import annotations

import base64
import io
import math
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np
import torch

from diffalign.rewards.base import Reward
from diffalign.rewards.remote import RemoteRewardError, request_json

MODES = ("yes_no", "rating")
DEFAULT_QUESTION = 'Does this image show "{prompt}"? Answer yes or no.'
DEFAULT_RATING = ('How well does this image match the description "{prompt}"? Rate it from 1 (not at all) to 10 '
                  "(perfectly). Answer with the number only.")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def image_data_url(image: torch.Tensor) -> str:
    """A [3, H, W] float image in [0, 1] as a ``data:image/png;base64,...`` URL (8-bit, lossless)."""
    from PIL import Image

    pixels = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class VLMJudgeReward(Reward):
    """Yes/no probabilities or 1-10 ratings from a served vision-language model (see the module docstring)."""

    modality = "image"
    differentiable = False
    requires_prompt = True

    def __init__(self, url: str, model: str | None = None, mode: str = "yes_no", questions: Sequence[str] | str | None = None,
                 template: str | None = None, system: str | None = None, timeout: float = 60.0, retries: int = 2,
                 concurrency: int = 8, api_key: str | None = None, top_logprobs: int = 20, max_tokens: int | None = None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"vlm_judge mode={mode!r}; expected one of {', '.join(MODES)}")
        if mode == "rating" and questions is not None:
            raise ValueError("vlm_judge: `questions` are for mode=yes_no; mode=rating takes one `template`")
        self.url, self.mode, self.system = url.rstrip("/"), mode, system
        self.timeout, self.retries, self.concurrency = float(timeout), int(retries), max(1, int(concurrency))
        self.top_logprobs = int(top_logprobs)
        self.max_tokens = int(max_tokens) if max_tokens else (1 if mode == "yes_no" else 8)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if mode == "yes_no":
            self.questions = [questions] if isinstance(questions, str) else list(questions or [template or DEFAULT_QUESTION])
        else:
            self.questions = [template or DEFAULT_RATING]
        if not self.questions:
            raise ValueError("vlm_judge: no question given")
        for q in self.questions:
            try:
                q.format(prompt="")
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"vlm_judge: question template {q!r} has a field other than {{prompt}}: {e}") from None
        self.native_range = (0.0, 1.0) if mode == "yes_no" else (1.0, 10.0)
        self.model = model or self._first_model()

    # ------------------------------------------------------------------ scoring
    def score(self, samples: torch.Tensor, prompts: list[str], metadata: list | None) -> torch.Tensor:
        urls = [image_data_url(x) for x in samples]
        jobs = [(i, q.format(prompt=prompts[i])) for i in range(len(urls)) for q in self.questions]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            values = list(pool.map(lambda job: self._ask(urls[job[0]], job[1]), jobs))
        per_sample = torch.tensor(values, dtype=torch.float32).reshape(len(urls), len(self.questions))
        return per_sample.mean(dim=1)

    def _ask(self, image_url: str, question: str) -> float:
        messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        messages.append({"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}},
                                                      {"type": "text", "text": question}]})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0.0, "max_tokens": self.max_tokens}
        if self.mode == "yes_no":
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        reply = self._request("POST", "/chat/completions", body)
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise RemoteRewardError(f"vlm judge {self.url}: malformed chat-completions response: {str(reply)[:120]}") from None
        if self.mode == "rating":
            return self._rating(text)
        return self._yes_probability(choice, text)

    def _yes_probability(self, choice: dict, text: str) -> float:
        content = (choice.get("logprobs") or {}).get("content") or []
        if content:
            alternatives = content[0].get("top_logprobs") or [content[0]]
            p = {"yes": 0.0, "no": 0.0}
            for alt in alternatives:
                word = str(alt.get("token", "")).strip().lower()
                if word in p:
                    p[word] += math.exp(float(alt["logprob"]))
            if p["yes"] + p["no"] > 0:
                return p["yes"] / (p["yes"] + p["no"])
        word = text.strip().lower()
        if word.startswith("yes"):
            return 1.0
        if word.startswith("no"):
            return 0.0
        raise RemoteRewardError(f"vlm judge {self.url}: the answer {text[:60]!r} is neither yes nor no "
                                "(and no yes/no token among the logprobs)")

    def _rating(self, text: str) -> float:
        found = _NUMBER.search(text)
        value = float(found.group()) if found else None
        if value is None or not 1.0 <= value <= 10.0:
            raise RemoteRewardError(f"vlm judge {self.url}: no rating from 1 to 10 in the answer {text[:60]!r}")
        return value

    # ------------------------------------------------------------------ HTTP
    def _first_model(self) -> str:
        reply = self._request("GET", "/models")
        try:
            return str(reply["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise RemoteRewardError(f"vlm judge {self.url}/models: no model listed (give model=): {str(reply)[:120]}") from None

    def _request(self, method: str, route: str, body: Any = None) -> Any:
        return request_json(self.url + route, method, body, self.timeout, self.retries, "vlm judge", self.headers,
                            server="the chat-completions server")

    def extra_repr(self) -> str:
        return f"url={self.url!r}, model={self.model!r}, mode={self.mode}, questions={len(self.questions)}, " + super().extra_repr()


__all__ = ["VLMJudgeReward", "image_data_url"]
