"""Win-rate of A over B on paired scores, with Wilson's score interval.

Each pair (same prompt, same seed) is a win for A when A's score beats B's by more than
``tie_tolerance`` (in the reward's direction: higher, or lower for rewards where lower is better), a
loss when B's beats A's by more than that, else a tie. Ties count as half a win:

    win_rate = (wins + ties / 2) / pairs

The interval is Wilson's score interval for a binomial proportion, evaluated at that rate with
n = pairs (with ties, the half-counted successes make it an approximation; ``win_rate_decisive``,
wins / (wins + losses), comes with its own exact-count Wilson interval).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Sequence


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for ``successes`` out of ``n`` at the two-sided ``confidence`` level;
    (0, 1) when n is 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within [0, {n}], got {successes}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class WinRate:
    """Paired comparison of A against B on one reward (see the module docstring)."""

    wins: int
    ties: int
    losses: int
    win_rate: float
    low: float
    high: float
    win_rate_decisive: float | None
    decisive_low: float | None
    decisive_high: float | None
    mean_a: float
    mean_b: float
    confidence: float

    @property
    def pairs(self) -> int:
        return self.wins + self.ties + self.losses

    def as_dict(self) -> dict:
        return {**asdict(self), "pairs": self.pairs}


def win_rate(
    a: Sequence[float],
    b: Sequence[float],
    *,
    higher_is_better: bool = True,
    tie_tolerance: float = 0.0,
    confidence: float = 0.95,
) -> WinRate:
    """Win-rate of A over B on paired scores ``a[i]`` vs ``b[i]``."""
    if len(a) != len(b):
        raise ValueError(f"paired scores differ in length: {len(a)} vs {len(b)}")
    if not len(a):
        raise ValueError("win_rate needs at least one pair")
    sign = 1.0 if higher_is_better else -1.0
    wins = ties = losses = 0
    for x, y in zip(a, b):
        d = sign * (float(x) - float(y))
        if d > tie_tolerance:
            wins += 1
        elif d < -tie_tolerance:
            losses += 1
        else:
            ties += 1
    n = wins + ties + losses
    rate = (wins + ties / 2) / n
    low, high = wilson_interval(wins + ties / 2, n, confidence)
    decisive = wins + losses
    dec_rate = wins / decisive if decisive else None
    dec_low, dec_high = wilson_interval(wins, decisive, confidence) if decisive else (None, None)
    return WinRate(wins, ties, losses, rate, low, high, dec_rate, dec_low, dec_high,
                   sum(map(float, a)) / n, sum(map(float, b)) / n, confidence)
