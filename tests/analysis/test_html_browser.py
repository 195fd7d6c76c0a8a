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

import pandas as pd
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

from helpers.page import HEADINGS, TABLES, expected_figures, page_problems  # noqa: E402,F401


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


def test_the_comparisons_ratio_and_p_are_on_screen_and_the_header_states_rule_and_grid(study, browser):
    """The ratio and p columns were off-screen to the right; the header now states the rule and the grid."""
    browser.open((study / "index.html").resolve().as_uri())
    right = browser.evaluate("""(function () {
      var t = document.getElementById('comparisons-table'), out = {};
      Array.from(t.tHead.rows[0].cells).forEach(function (c) { out[c.textContent.trim()] = c.getBoundingClientRect().right; });
      return out; })()""")
    for col in ("arm", "reference", "ratio", "ratio_low", "ratio_high", "p", "p_adjusted"):
        assert 0 < right[col] <= 1200, (col, right[col])
    text = browser.evaluate("document.body.innerText")
    assert "phase change (first rule primary): train/loss < 0.277" in text
    assert "evaluations every" in text


def test_the_first_screen_is_one_table_one_figure_and_the_caveats_once(study, browser):
    """Before: nine near-identical sentences, the same block again under Statistics, a warning per comparison."""
    browser.open((study / "index.html").resolve().as_uri())
    seen = browser.evaluate("""(function () {
      var g = document.getElementById('glance'), out = {rows: [], figures: 0, caveats: [], above: true};
      var n = g.nextElementSibling;
      while (n && n.tagName !== 'H2') {
        n.querySelectorAll('table.glance tbody tr').forEach(function (r) { out.rows.push(r.cells[0].textContent); });
        if (n.tagName === 'FIGURE') { out.figures += 1; }
        n.querySelectorAll('ul.caveats li').forEach(function (li) { out.caveats.push(li.textContent); });
        n = n.nextElementSibling;
      }
      var t = document.querySelector('table.glance');
      out.top = t ? t.getBoundingClientRect().top : -1;
      out.headers = t ? Array.from(t.tHead.rows[0].cells).map(function (c) { return c.textContent; }) : [];
      out.stats = document.querySelector('.stats').innerText;
      return out; })()""")
    stats = pd.read_csv(study / "stats.csv")
    head = stats[stats.headline]
    assert seen["rows"] == [a if r == "control" else f"{a} vs {r}" for a, r in zip(head.arm, head.reference)]
    assert seen["headers"] == ["comparison", "runs crossed", "median phase time (sequences)", "time ratio (CI)",
                               "p (test, family)"]
    assert 0 < seen["top"] < 900  # on the first screen
    assert seen["figures"] == 1
    md = (study / "stats.md").read_text()
    warnings = md.split("Warnings:")[1].split("Methods:")[0].count("\n- ") if "Warnings:" in md else 0
    assert len(seen["caveats"]) == warnings > 0
    assert "Warnings:" not in seen["stats"]  # the caveats are shown once, above
    # every p names its family on the page (a comparison with too few runs has no p)
    cells = browser.evaluate("Array.from(document.querySelectorAll('table.glance tbody tr'))"
                             ".map(function (r) { return r.cells[4].textContent; })")
    assert all("family of" in c for c in cells if c != "—")


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
