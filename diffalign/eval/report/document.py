"""A report written twice: a self-contained HTML page (charts and image thumbnails embedded as data
URIs, no scripts, no external resources) and a Markdown summary (the same headings, text and
tables; charts as PNG files in a ``<name>_files/`` folder beside it; galleries as lists)."""
from __future__ import annotations

import base64
import html
import io
import os
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;max-width:1200px;
padding:0 1rem;color:#222;line-height:1.4}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.subtitle{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.8rem 0;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
figure.chart{margin:1rem 0}figure.chart img{max-width:100%;height:auto}
.grid{display:flex;flex-wrap:wrap;gap:.6rem}
.tile{margin:0;width:var(--w);font-size:.78rem;border:4px solid #bbb;border-radius:4px;background:#fafafa}
.tile.pass{border-color:#28aa46}.tile.fail{border-color:#d23232}
.tile img{display:block;width:100%;height:auto;image-rendering:pixelated}
.tile figcaption{padding:.25rem;word-wrap:break-word}.tile small{color:#555;white-space:pre-line}
.badge{font-weight:bold}.pass .badge{color:#1d7f34}.fail .badge{color:#b02020}
""".strip()


@dataclass
class GalleryItem:
    """One tile: ``image`` (PIL image, uint8 HxWx3 array or file path), ``caption``, ``verdict``
    (True / False frames it green / red; None: neutral) and ``detail`` (reason or score)."""

    image: Any
    caption: str
    verdict: bool | None = None
    detail: str = ""


def _as_pil(image) -> Image.Image:
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")


def image_data_uri(image, max_side: int = 256) -> tuple[str, int, int]:
    """(data URI, width, height) of a thumbnail: images larger than ``max_side`` are shrunk
    (Lanczos) and stored as JPEG; small ones keep their pixels as PNG."""
    pil = _as_pil(image)
    buf = io.BytesIO()
    if max(pil.size) > max_side:
        scale = max_side / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.LANCZOS)
        pil.save(buf, format="JPEG", quality=85)
        mime = "image/jpeg"
    else:
        pil.save(buf, format="PNG")
        mime = "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}", pil.width, pil.height


_FILES = "\x00files\x00"  # placeholder for the Markdown figures folder, filled in by Report.write


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


class Report:
    """Builds the HTML page and the Markdown summary side by side; :meth:`write` saves both."""

    def __init__(self, title: str, subtitle: str = ""):
        self.title = title
        self._html: list[str] = [f"<h1>{html.escape(title)}</h1>"]
        self._md: list[str] = [f"# {title}", ""]
        if subtitle:
            self._html.append(f'<p class="subtitle">{html.escape(subtitle)}</p>')
            self._md += [f"*{subtitle}*", ""]
        self._figures: list[tuple[str, bytes]] = []

    def heading(self, text: str, level: int = 2) -> None:
        level = min(max(level, 2), 4)
        self._html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self._md += ["#" * level + " " + text, ""]

    def paragraph(self, text: str) -> None:
        self._html.append(f"<p>{html.escape(text)}</p>")
        self._md += [text, ""]

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table; cells are shown as given (format numbers before passing them)."""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        self._html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        self._md.append("| " + " | ".join(_md_cell(h) for h in headers) + " |")
        self._md.append("|" + "|".join(["---"] * len(headers)) + "|")
        self._md += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
        self._md.append("")

    def figure(self, png: bytes, name: str, caption: str = "") -> None:
        """A chart (PNG bytes); ``name`` becomes its file name next to the Markdown summary."""
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "figure"
        if any(n == name for n, _ in self._figures):
            name = f"{name}_{len(self._figures)}"
        self._figures.append((name, png))
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self._html.append(f'<figure class="chart"><img src="{uri}" alt="{html.escape(caption or name)}">{cap}</figure>')
        self._md += [f"![{caption or name}]({_FILES}/{name}.png)", ""]

    def gallery(self, items: Sequence[GalleryItem], tile_width: int = 160, max_side: int = 256) -> None:
        """Image tiles with their verdict frame, caption and detail."""
        tiles = []
        for item in items:
            uri, w, h = image_data_uri(item.image, max_side)
            cls = "tile" + ("" if item.verdict is None else " pass" if item.verdict else " fail")
            badge = "" if item.verdict is None else ("&#10003; " if item.verdict else "&#10007; ")
            detail = f"<br><small>{html.escape(item.detail)}</small>" if item.detail else ""
            tiles.append(
                f'<figure class="{cls}" title="{html.escape(item.detail or item.caption)}">'
                f'<img src="{uri}" width="{w}" height="{h}" alt="{html.escape(item.caption)}">'
                f'<figcaption><span class="badge">{badge}</span>{html.escape(item.caption)}{detail}</figcaption></figure>'
            )
            mark = "" if item.verdict is None else ("✓ " if item.verdict else "✗ ")
            detail_md = f" — {_md_cell(item.detail)}" if item.detail else ""
            self._md.append(f"- {mark}{_md_cell(item.caption)}{detail_md}")
        self._html.append(f'<div class="grid" style="--w:{int(tile_width)}px">{"".join(tiles)}</div>')
        self._md.append("")

    def html(self) -> str:
        """The whole page."""
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(self.title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(self._html)
            + "\n</body>\n</html>\n"
        )

    def write(self, html_path: str, md_path: str | None = None) -> tuple[str, str | None]:
        """Save the page (and the Markdown summary with its chart files); returns the paths."""
        os.makedirs(os.path.dirname(os.path.abspath(html_path)), exist_ok=True)
        with open(html_path, "w", encoding="utf-8") as f:
            f.write(self.html())
        if md_path is not None:
            stem = os.path.splitext(os.path.basename(md_path))[0]
            files = f"{stem}_files"
            if self._figures:
                folder = os.path.join(os.path.dirname(os.path.abspath(md_path)), files)
                os.makedirs(folder, exist_ok=True)
                for name, png in self._figures:
                    with open(os.path.join(folder, f"{name}.png"), "wb") as f:
                        f.write(png)
            text = "\n".join(self._md).replace(_FILES, files)
            text += f"\nImages with their verdicts and scores: [{os.path.basename(html_path)}]({os.path.basename(html_path)})\n"
            with open(md_path, "w", encoding="utf-8") as f:
                f.write(text)
        return html_path, md_path
