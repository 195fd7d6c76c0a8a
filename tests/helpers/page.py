"""What a person opening a study's index.html would see, measured in a real browser (shared by the page tests)."""

from __future__ import annotations

from pathlib import Path

from clamp.analysis.browser import Browser

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


def page_problems(browser: Browser, study_dir: Path, tables: list[str] = TABLES) -> list[str]:
    """Open the study's index.html and list what a reader would find wrong (empty when all is well);
    ``tables``: the tables the page must show with rows."""
    browser.events.clear()
    browser.open((study_dir / "index.html").resolve().as_uri())
    seen = browser.evaluate(_SEEN)
    problems = [f"console error: {e}" for e in browser.console_errors()]
    for h in HEADINGS:
        if h not in seen["headings"]:
            problems.append(f"heading {h!r} missing or hidden")
    shown = {t["id"]: t for t in seen["tables"]}
    for t in tables:
        if t not in shown:
            problems.append(f"table {t} missing")
        elif not shown[t]["visible"] or shown[t]["rows"] == 0:
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
