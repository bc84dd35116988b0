"""Bar charts for reports, rendered by matplotlib (Agg backend) to PNG bytes."""
from __future__ import annotations

import io
from typing import Mapping, Sequence


def bar_chart(
    values: Mapping[str, float],
    *,
    title: str = "",
    ylabel: str = "",
    ylim: tuple[float, float] | None = None,
    errors: Mapping[str, tuple[float, float]] | None = None,
    reference: float | None = None,
    highlight: Sequence[str] = (),
) -> bytes:
    """One bar per key (in order), value printed on top; ``errors`` maps a key to its (low, high)
    interval (drawn as an error bar); ``reference`` draws a dashed horizontal line (e.g. 0.5 for a
    win-rate); bars named in ``highlight`` are drawn in a darker colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(values)
    heights = [float(values[n]) for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) + 1.5), 3.2))
    colors = ["#2b5d8a" if n in highlight else "#6fa8dc" for n in names]
    yerr = None
    if errors:
        lo = [max(h - errors[n][0], 0.0) if n in errors else 0.0 for n, h in zip(names, heights)]
        hi = [max(errors[n][1] - h, 0.0) if n in errors else 0.0 for n, h in zip(names, heights)]
        yerr = [lo, hi]
    bars = ax.bar(range(len(names)), heights, color=colors, yerr=yerr, capsize=4 if yerr else 0)
    for bar, h in zip(bars, heights):
        ax.annotate(f"{h:.3g}", (bar.get_x() + bar.get_width() / 2, h), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 2), textcoords="offset points")
    if reference is not None:
        ax.axhline(reference, color="#888", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(names)), names, rotation=20 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
