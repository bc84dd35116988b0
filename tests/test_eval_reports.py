"""Reports: the HTML page is well formed, self-contained (every image a decodable data URI, nothing
fetched, no scripts) and matches the Markdown summary; a real headless Chromium loads it with no
console errors and every image displayed (skipped, with the reason, where chromium is not installed)."""
import base64
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import types

import numpy as np
import pytest
from PIL import Image

import diffalign  # noqa: F401  (compat shim first)
from diffalign import shapes
from diffalign.eval.geneval import job
from diffalign.geneval.evaluator import GenEvalEvaluator
from diffalign.eval.report import GalleryItem, Report, bar_chart

VOID = {"meta", "img", "br", "hr", "link", "input", "source", "wbr"}


class _Checker(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.images, self.scripts, self.external = [], [], [], 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if key in attrs and not attrs[key].startswith("data:"):
                self.external.append(attrs[key])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def check_page(text: str) -> _Checker:
    assert text.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.errors == [] and checker.stack == [], (checker.errors, checker.stack)
    assert checker.scripts == 0 and checker.external == []
    for img in checker.images:
        header, data = img["src"].split(",", 1)
        assert header in ("data:image/png;base64", "data:image/jpeg;base64")
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            im.load()
            if "width" in img:
                assert (im.width, im.height) == (int(img["width"]), int(img["height"]))
    return checker


def test_report_builder_html_and_markdown(tmp_path):
    report = Report("Title <with> & marks", "sub")
    report.heading("Scores")
    report.table(["name", "value"], [["a|b", "1.000"], ["c", 2]])
    report.figure(bar_chart({"x": 0.5, "y": 0.25}, title="t", errors={"x": (0.4, 0.6)}, reference=0.5), "my chart!", "caption")
    big = Image.fromarray(np.full((600, 300, 3), 200, np.uint8))
    report.gallery([GalleryItem(np.zeros((8, 8, 3), np.uint8), "small <b>", True, "ok"),
                    GalleryItem(big, "big", False, "line 1\nline 2"), GalleryItem(big, "plain")])
    html_path, md_path = report.write(str(tmp_path / "r.html"), str(tmp_path / "r.md"))
    page = open(html_path).read()
    checker = check_page(page)
    assert len(checker.images) == 4  # chart + three tiles
    assert "Title &lt;with&gt; &amp; marks" in page and "small &lt;b&gt;" in page
    assert page.count('class="tile pass"') == 1 and page.count('class="tile fail"') == 1
    sizes = [(int(i["width"]), int(i["height"])) for i in checker.images[1:]]
    assert sizes == [(8, 8), (128, 256), (128, 256)]  # small kept, large shrunk to 256
    md = open(md_path).read()
    assert "| a\\|b | 1.000 |" in md and "- ✓ small <b> — ok" in md and "- ✗ big — line 1 line 2" in md
    assert "![caption](r_files/my_chart.png)" in md
    with Image.open(tmp_path / "r_files" / "my_chart.png") as im:
        assert im.format == "PNG" and im.width > 100


class _Render:
    def __init__(self, rows):
        self.rows = {r["prompt"]: r for r in rows}

    def __call__(self, prompt, generator, output_type="pil", **kw):
        return types.SimpleNamespace(images=[
            Image.fromarray(shapes.render_row(self.rows[p], np.random.default_rng(g.initial_seed()))) for p, g in zip(prompt, generator)])


@pytest.fixture(scope="module")
def geneval_report(tmp_path_factory):
    rows = [shapes.all_rows(tag)[2] for tag in shapes.CATEGORIES]
    out = str(tmp_path_factory.mktemp("geneval_report"))
    job.run(out, GenEvalEvaluator("shapes"), rows=rows, pipe=_Render(rows), images_per_prompt=2, seed=0, log=lambda m: None)
    return out


def test_geneval_report_content(geneval_report):
    page = open(os.path.join(geneval_report, "report.html")).read()
    checker = check_page(page)
    summary = json.load(open(os.path.join(geneval_report, "summary.json")))
    assert summary["label"] in page and "Best prompts" in page and "Worst prompts" in page
    # chart + best (6 prompts x 2) + worst (6 x 2) + per tag (2 images each)
    assert len(checker.images) == 1 + 12 + 12 + 12
    assert page.count('class="tile pass"') == 36
    md = open(os.path.join(geneval_report, "report.md")).read()
    for tag in shapes.CATEGORIES:
        assert f"| {tag} | 1.000 | 2 / 2 |" in md


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e.type)); }, true);
var _error = console.error;
console.error = function () { window.__errors.push(Array.prototype.join.call(arguments, ' ')); _error.apply(console, arguments); };
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; });
  document.body.setAttribute('data-check', JSON.stringify({images: imgs.length, broken: broken, errors: window.__errors}));
});
</script>"""


def _load_in_chromium(path: str, profile: str) -> tuple[dict, str]:
    """Load ``path`` (with a probe script injected into a copy) in headless Chromium; return the
    probe's findings and Chromium's log."""
    probed = path + ".probe.html"
    with open(path) as f:
        text = f.read()
    with open(probed, "w") as f:
        f.write(text.replace("<head>\n", "<head>\n" + PROBE + "\n", 1))
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
           "--dump-dom", "file://" + os.path.abspath(probed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'data-check="([^"]*)"', proc.stdout)
    assert found, f"the page did not finish loading: {proc.stdout[-500:]}"
    return json.loads(html.unescape(found.group(1))), proc.stderr


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
@pytest.mark.slow
def test_reports_load_in_headless_chromium(geneval_report, tmp_path):
    check, log = _load_in_chromium(os.path.join(geneval_report, "report.html"), str(tmp_path / "profile"))
    assert check == {"images": 37, "broken": [], "errors": []}
    assert ":CONSOLE" not in log
    # the probe does catch problems: a broken image and a script error
    bad = tmp_path / "bad.html"
    page = open(os.path.join(geneval_report, "report.html")).read()
    bad.write_text(page.replace("</body>", '<img src="missing.png" alt="gone"><script>notDefined()</script></body>'))
    check, log = _load_in_chromium(str(bad), str(tmp_path / "profile2"))
    assert check["broken"] == ["gone"] and any("notDefined" in e for e in check["errors"])
    assert ":CONSOLE" in log
