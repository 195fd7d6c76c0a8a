"""index.html checked in a real browser (headless Chromium): what a person opening it from disk would see.

The page of a small hand-made study (statistics computed for real) must load
from file:// with no console error, show its headings, its tables and every
figure decoded with a non-zero rendered size, and sort a table when a header
is clicked.  The same checks must fail when a figure or a table is missing.

Chromium is needed (Debian: ``apt-get install chromium``; ``.ci/run`` installs
it and sets CLAMP_REQUIRE_BROWSER=1 so that a missing browser fails in CI
instead of skipping).
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path

import pytest

from clamp.analysis.browser import Browser, find_chromium
from helpers.results import make_results

if find_chromium() is None:
    if os.environ.get("CLAMP_REQUIRE_BROWSER"):
        raise RuntimeError("CLAMP_REQUIRE_BROWSER is set but no Chromium was found (apt-get install -y chromium)")
    pytest.skip("no Chromium on this machine (apt-get install -y chromium)", allow_module_level=True)

pytestmark = pytest.mark.slow

HEADINGS = ["At a glance", "Statistics", "Arms", "Runs", "Comparisons and phase times", "More figures", "Files"]
TABLES = ["arms-table", "runs-table", "comparisons-table", "phase-table"]

# What the page shows, measured by the browser: headings, tables with their rows, every image's
# decoded size and rendered box, and whether it is hidden by style.
_SEEN = """(function () {
  var vis = function (e) { var s = getComputedStyle(e), r = e.getBoundingClientRect();
    return s.display !== 'none' && s.visibility !== 'hidden' && r.width > 0 && r.height > 0; };
  return {
    title: document.title,
    headings: Array.from(document.querySelectorAll('h2')).filter(vis).map(function (h) { return h.textContent.trim(); }),
    tables: Array.from(document.querySelectorAll('table')).map(function (t) {
      return {id: t.id, rows: t.tBodies[0] ? t.tBodies[0].rows.length : 0, visible: vis(t)}; }),
    images: Array.from(document.images).map(function (i) {
      return {file: i.getAttribute('data-file'), complete: i.complete, natural: i.naturalWidth, visible: vis(i),
              width: i.getBoundingClientRect().width, height: i.getBoundingClientRect().height}; })
  };
})()"""


def expected_figures(study_dir: Path) -> list[str]:
    """Every figure the study folder holds (PNG files), as the page's relative paths."""
    pngs = list((study_dir / "plots").glob("*.png")) + list((study_dir / "analyses" / "plots").glob("*.png"))
    return sorted(p.relative_to(study_dir).as_posix() for p in pngs)


def page_problems(browser: Browser, study_dir: Path) -> list[str]:
    """Open the study's index.html and list what a reader would find wrong (empty when all is well)."""
    browser.events.clear()
    browser.open((study_dir / "index.html").resolve().as_uri())
    seen = browser.evaluate(_SEEN)
    problems = [f"console error: {e}" for e in browser.console_errors()]
    for h in HEADINGS:
        if h not in seen["headings"]:
            problems.append(f"heading {h!r} missing or hidden")
    tables = {t["id"]: t for t in seen["tables"]}
    for t in TABLES:
        if t not in tables:
            problems.append(f"table {t} missing")
        elif not tables[t]["visible"] or tables[t]["rows"] == 0:
            problems.append(f"table {t} hidden or empty")
    images = {}
    for img in seen["images"]:
        images.setdefault(img["file"], img)
        if not (img["complete"] and img["natural"] > 0):
            problems.append(f"figure {img['file']} not decoded")
        elif not (img["visible"] and img["width"] > 50 and img["height"] > 50):
            problems.append(f"figure {img['file']} not visible ({img['width']:.0f}x{img['height']:.0f})")
    for f in expected_figures(study_dir):
        if f not in images:
            problems.append(f"figure {f} missing from the page")
    return problems


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    from clamp.analysis.report import build_report
    from clamp.analysis.stats import compute_statistics

    d = make_results(tmp_path_factory.mktemp("browser"))
    compute_statistics(d, quiet=True, n_boot=200)
    build_report(d)
    return d


@pytest.fixture(scope="module")
def browser():
    with Browser(width=1200, height=900) as b:
        yield b


def test_page_shows_everything_without_errors(study, browser):
    figures = expected_figures(study)
    # the report's own figures and the statistics' figures
    for stem in ("curves_train_loss", "heldout_loss", "heads_induction", "attention_control", "stats_estimators", "stats_phase_times"):
        assert f"plots/{stem}.png" in figures, stem
    assert page_problems(browser, study) == []
    text = browser.evaluate("document.body.innerText")
    assert "Study hand" in text and "Phase-change statistics" in text
    # every CSV of the folder is linked
    links = set(browser.evaluate("Array.from(document.links).map(function (a) { return a.getAttribute('href'); })"))
    csvs = {p.relative_to(study).as_posix() for p in study.rglob("*.csv")}
    assert csvs and csvs <= links, csvs - links
    # light: figures embedded as palette PNGs
    assert (study / "index.html").stat().st_size < 1_000_000
    # nothing is fetched from the network: no http(s) URL anywhere in the page
    assert not re.search(r"(src|href)=\"https?://", (study / "index.html").read_text())


def _column(browser: Browser, table: str, header: str) -> list[float]:
    return browser.evaluate(f"""(function () {{
      var t = document.getElementById('{table}');
      var col = Array.from(t.tHead.rows[0].cells).findIndex(function (c) {{ return c.textContent.trim() === '{header}'; }});
      return Array.from(t.tBodies[0].rows).map(function (r) {{
        var v = r.cells[col].getAttribute('data-v'); return v === '' ? null : parseFloat(v); }});
    }})()""")


def test_clicking_a_header_sorts_the_table(study, browser):
    browser.open((study / "index.html").resolve().as_uri())
    before = _column(browser, "phase-table", "time")
    assert before != sorted(before, key=lambda v: math.inf if v is None else v)  # not already sorted
    browser.click("#phase-table th:nth-child(" + str(1 + _header_index(browser, "phase-table", "time")) + ")")
    up = _column(browser, "phase-table", "time")
    numbers = [v for v in up if v is not None]
    assert numbers == sorted(numbers) and sorted(numbers) == sorted(v for v in before if v is not None)
    assert up[len(numbers):] == [None] * (len(up) - len(numbers))  # blanks last
    browser.click("#phase-table th:nth-child(" + str(1 + _header_index(browser, "phase-table", "time")) + ")")
    down = [v for v in _column(browser, "phase-table", "time") if v is not None]
    assert down == sorted(numbers, reverse=True)
    assert browser.console_errors() == []


def _header_index(browser: Browser, table: str, header: str) -> int:
    i = browser.evaluate(f"Array.from(document.getElementById('{table}').tHead.rows[0].cells)"
                         f".findIndex(function (c) {{ return c.textContent.trim() === '{header}'; }})")
    assert i >= 0, header
    return i


def _broken_copy(study: Path, tmp_path: Path, edit) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(study, d)
    page = d / "index.html"
    page.write_text(edit(page.read_text()))
    return d


def test_the_check_fails_when_a_figure_is_missing(study, browser, tmp_path):
    d = _broken_copy(study, tmp_path, lambda s: re.sub(
        r'<figure><img [^>]*data-file="plots/heads_induction.png"[^>]*>.*?</figure>', "", s, flags=re.S))
    assert page_problems(browser, d) == ["figure plots/heads_induction.png missing from the page"]


def test_the_check_fails_when_a_figure_does_not_decode_or_is_hidden(study, browser, tmp_path):
    def edit(s: str) -> str:
        s = re.sub(r'src="data:image/png;base64,[^"]*"( alt="[^"]*" data-file="plots/heldout_loss.png")',
                   r'src="data:image/png;base64,AAAA"\1', s)
        return s.replace('data-file="plots/attention_control.png"', 'data-file="plots/attention_control.png" style="display:none"')

    problems = page_problems(browser, _broken_copy(study, tmp_path, edit))
    assert problems == ["figure plots/heldout_loss.png not decoded", "figure plots/attention_control.png not visible (0x0)"]


def test_the_check_fails_when_a_table_is_missing(study, browser, tmp_path):
    d = _broken_copy(study, tmp_path, lambda s: re.sub(r'<div class="scroll"><table class="sortable" id="comparisons-table">.*?</table></div>',
                                                        "", s, flags=re.S))
    assert page_problems(browser, d) == ["table comparisons-table missing"]


def test_the_check_reports_console_errors(study, browser, tmp_path):
    d = _broken_copy(study, tmp_path, lambda s: s.replace("</body>", "<script>undefinedFunction()</script></body>"))
    problems = page_problems(browser, d)
    assert len(problems) == 1 and problems[0].startswith("console error") and "undefinedFunction" in problems[0]
