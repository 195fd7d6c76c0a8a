"""The study's ``index.html``: one self-contained page a researcher opens from disk.

Why this file exists: researchers review results in a browser.  ``report.md``
is the plain-text twin; this page holds the same content and more, in a single
file that needs no server and no network (opens from ``file://``): figures are
embedded as base64 PNG, the style and the few lines of table-sorting script are
inline, and every CSV is linked by a relative path.

Sections: the study's description and settings; arms (interventions and their
windows in words, how often each fired); run statuses; the statistics as
written by :mod:`clamp.analysis.stats` (``stats.md``'s text and ``stats.csv``'s
table, read generically, whatever their columns); phase times; every figure
(training curves with one colour per arm across figures, held-out curves,
per-head scores, attention heatmaps, Kaplan–Meier and the other statistics
plots, post-hoc analyses); and links to every CSV.  Tables sort by clicking a
column header.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from clamp.analysis.metrics import read_metrics
from clamp.analysis.plots import arm_colours
from clamp.analysis.summary import (STATUS_ORDER, fired_totals, intervention_words, budget_words, code_lines, grid_words, model_words, rule_words,
                                    summary_frame)
from clamp.store import atomic_write_text, read_json

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1180px;padding:0 18px 40px;color:#1d1d1f}
h1{font-size:1.7em;margin:.8em 0 .2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.05em;margin:1.2em 0 .4em}
nav a{margin-right:.9em}.meta{color:#555;font-size:.9em}.meta li{margin:.1em 0}
.scroll{overflow-x:auto;max-width:100%;margin:.4em 0 1em}
table{border-collapse:collapse;font-size:.85em}th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3;position:sticky;top:0}table.sortable th{cursor:pointer;user-select:none;white-space:nowrap}
table.sortable th::after{content:" \\2195";color:#aaa}table.sortable th[aria-sort=ascending]::after{content:" \\2191";color:#333}
table.sortable th[aria-sort=descending]::after{content:" \\2193";color:#333}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable td{white-space:nowrap}table.sortable td.long{white-space:normal;min-width:26em;max-width:48em}
.status-finished{color:#137333}.status-failed,.status-diverged{color:#b3261e;font-weight:600}.status-pending,.status-running{color:#8a6d00}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.35em;vertical-align:-.1em}
.headline{font-size:1.05em;background:#f4f8fd;border-left:3px solid #1f77b4;padding:.1em 1em}
table.compact{font-size:.92em}table.glance{font-size:.95em}table.glance td:nth-child(-n+4){white-space:nowrap}
#glance figure img{max-width:min(100%,860px)}ul.caveats{font-size:.9em;color:#333}ul.caveats li{margin:.25em 0}
figure{margin:.6em 0 1.4em}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}.stats{background:#fafafa;border-left:3px solid #7a9cc6;padding:.2em 1em}
ul.files{columns:2;font-size:.85em}code{background:#f3f3f3;padding:0 .2em;border-radius:3px}
"""

# Click a header to sort by that column (numbers numerically, the rest as text); click again to reverse.
_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('thead th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var key = function (r) { var c = r.cells[col]; return c ? (c.getAttribute('data-v') ?? c.textContent) : ''; };
      var numeric = rows.every(function (r) { var k = key(r); return k === '' || !isNaN(parseFloat(k)); });
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (numeric) { x = x === '' ? Infinity : parseFloat(x); y = y === '' ? Infinity : parseFloat(y);
                       return asc ? x - y : y - x; }
        return asc ? x.localeCompare(y) : y.localeCompare(x);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _cell(v: object) -> str:
    """A table cell: numbers right-aligned, shown compactly, sorted by their raw value (``data-v``)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return '<td data-v="">—</td>'
    if isinstance(v, bool):
        return f"<td>{v}</td>"
    if isinstance(v, (int, float)):
        f = float(v)
        if math.isinf(f):
            shown = "∞" if f > 0 else "−∞"
            return f'<td class="num" data-v="{"1e308" if f > 0 else "-1e308"}">{shown}</td>'
        shown = f"{f:,.0f}" if abs(f) >= 1000 or (f == int(f) and isinstance(v, int)) else f"{f:.4g}"
        return f'<td class="num" data-v="{f!r}">{shown}</td>'
    text = str(v)
    return f'<td class="long">{_e(text)}</td>' if len(text) > 40 else f"<td>{_e(text)}</td>"


def table_html(df: pd.DataFrame, table_id: str, *, raw: dict[str, Sequence[str]] | None = None) -> str:
    """A sortable HTML table of any frame (every column, in order); ``raw`` gives pre-rendered HTML cells per column.

    Example:
        >>> "<th>p</th>" in table_html(pd.DataFrame({"p": [0.01]}), "t")
        True
    """
    raw = raw or {}
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    rows = []
    for i, rec in enumerate(df.itertuples(index=False, name=None)):
        cells = [raw[c][i] if c in raw else _cell(v.item() if hasattr(v, "item") else v) for c, v in zip(df.columns, rec)]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="sortable" id="{_e(table_id)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def markdown_html(text: str) -> str:
    """The small Markdown subset ``stats.md`` uses: headings, bullet lists, paragraphs, pipe tables, `code`, **bold**.

    Example:
        >>> markdown_html("### T\\n\\n- a `x`\\n- b")
        '<h3>T</h3>\\n<ul><li>a <code>x</code></li><li>b</li></ul>'
        >>> markdown_html("| a | b |\\n|---|---|\\n| 1 | 2 |")
        '<div class="scroll"><table class="compact"><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody></table></div>'
    """
    inline = markdown_inline
    out: list[str] = []
    items: list[str] = []
    para: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            head, body = table[0], [r for r in table[1:] if not all(re.fullmatch(r":?-+:?", c) for c in r)]
            out.append('<div class="scroll"><table class="compact"><thead><tr>'
                       + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table></div>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
            items.clear()
        if para:
            out.append(f"<p>{inline(' '.join(para))}</p>")
            para.clear()

    for line in text.splitlines():
        s = line.rstrip()
        m = re.match(r"(#{1,6})\s+(.*)", s)
        if m:
            flush()
            level = min(max(len(m.group(1)), 3), 4)  # inside the page's own h2 sections
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
        elif s.startswith("|") and s.endswith("|"):
            if items or para:
                flush()
            table.append([c.strip() for c in s[1:-1].split("|")])
        elif s.lstrip().startswith(("- ", "* ")):
            if para or table:
                flush()
            items.append(s.lstrip()[2:])
        elif not s.strip():
            flush()
        elif items:  # a wrapped list item
            items[-1] += " " + s.strip()
        else:
            para.append(s.strip())
    flush()
    return "\n".join(out)


def markdown_inline(s: str) -> str:
    """One line of the Markdown subset, escaped: `code` and **bold**."""
    s = _e(s)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


def split_warnings(md: str) -> tuple[str, list[str]]:
    """``stats.md`` without its "Warnings:" section, and that section's items (the page shows them once, first).

    Example:
        >>> split_warnings("### S\\n\\n- a\\n\\nWarnings:\\n\\n- w1\\n- w2\\n  more\\n\\nMethods:\\n\\n- m\\n")
        ('### S\\n\\n- a\\n\\nMethods:\\n\\n- m\\n', ['w1', 'w2 more'])
    """
    m = re.search(r"(?m)^Warnings:\n\n((?:- .*\n(?: .*\n)*)+)\n?", md)
    if not m:
        return md, []
    items: list[str] = []
    for line in m.group(1).splitlines():
        if line.startswith("- "):
            items.append(line[2:].strip())
        elif items:
            items[-1] += " " + line.strip()
    return md[:m.start()] + md[m.end():], items


def _compact_png(raw: bytes) -> bytes:
    """The PNG reduced to a 256-colour palette for embedding (a third of the bytes for these line plots,
    no visible change); the file on disk keeps full colour.  Falls back to ``raw`` if Pillow cannot."""
    try:
        import io

        from PIL import Image  # a matplotlib dependency

        with Image.open(io.BytesIO(raw)) as im:
            small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            out = io.BytesIO()
            small.save(out, format="PNG", optimize=True)
        return out.getvalue() if out.tell() < len(raw) else raw
    except Exception:  # noqa: BLE001 - any failure: embed the original
        return raw


def _img(path: Path, title: str, study_dir: Path) -> str:
    data = base64.b64encode(_compact_png(path.read_bytes())).decode("ascii")
    rel = path.relative_to(study_dir).as_posix()
    svg = path.with_suffix(".svg")
    links = f'<a href="{_e(rel)}">PNG</a>' + (f', <a href="{_e(svg.relative_to(study_dir).as_posix())}">SVG</a>' if svg.is_file() else "")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(title)}" data-file="{_e(rel)}">'
            f"<figcaption>{_e(title)} ({links})</figcaption></figure>")


# The columns a reader looks for first in stats.csv / factorial.csv: on screen before any scrolling.
_LEAD = ("arm", "reference", "effect", "ratio", "ratio_low", "ratio_high", "ratio_bound", "p", "p_adjusted",
         "significant", "median_arm", "median_reference", "n_arm", "n_reference", "rule", "estimator")
_STATS_TITLES = {"phase_times": "Phase-change times", "km": "Kaplan–Meier curves",
                 "estimators": "Agreement of the phase-change estimators"}


def _stats_title(stem: str) -> str:
    """``stats_km__loss_second_repeat`` -> ``Kaplan–Meier curves (loss second repeat)``."""
    base, _, rule = stem.removeprefix("stats_").partition("__")
    title = _STATS_TITLES.get(base, base.replace("_", " "))
    return f"{title} ({rule.replace('_', ' ')})" if rule else title


def _csv_frame(path: Path) -> pd.DataFrame | None:
    if not path.is_file() or not path.stat().st_size:
        return None
    return pd.read_csv(path)


def _swatch(colour: tuple) -> str:
    r, g, b = (int(round(255 * c)) for c in colour[:3])
    return f'<span class="swatch" style="background:#{r:02x}{g:02x}{b:02x}"></span>'


def build_html(study_dir: str | Path, *, study: dict | None = None, metrics: pd.DataFrame | None = None,
               summary: pd.DataFrame | None = None, figures: Sequence[tuple[str, Sequence[Path]]] | None = None) -> Path:
    """Write ``study_dir/index.html`` from the stored files (and what the report just computed); returns its path.

    Args:
        study_dir: a results folder.
        study, metrics, summary: the ``study.json`` record, tidy metrics and summary frame, when
            the caller has them already (read from disk otherwise).
        figures: ``(title, [png, svg])`` pairs of the report's own plots (default: every
            ``plots/*.png`` not from the statistics).

    Example:
        >>> # build_html("results/quickstart")  # usually via clamp.analysis.report.build_report
    """
    study_dir = Path(study_dir)
    study = study if study is not None else read_json(study_dir / "study.json")
    metrics = metrics if metrics is not None else read_metrics(study_dir)
    summary = summary if summary is not None else summary_frame(study_dir)
    plots = study_dir / "plots"
    if figures is None:
        figures = [(p.stem.replace("_", " "), [p]) for p in sorted(plots.glob("*.png")) if not p.stem.startswith("stats_")]
    arms = [a["name"] for a in study["arms"]]
    colours = arm_colours(arms)
    name = study["name"]
    body: list[str] = []

    # --- header
    body.append(f"<h1>Study <code>{_e(name)}</code></h1>")
    if study.get("description"):
        body.append("".join(f"<p>{_e(p.strip())}</p>" for p in study["description"].strip().split("\n\n")))
    body.append('<ul class="meta">'
                f"<li>{len(arms)} arm(s) × {len(study.get('seeds', []))} seed(s) {_e(study.get('seeds'))}, "
                f"{_e(budget_words(study))}; control: <code>{_e(study.get('control'))}</code></li>"
                f"<li>phase change (first rule primary): {_e(rule_words(study))}</li>"
                f"<li>{_e(grid_words(study))}</li>"
                f"<li>code revision <code>{_e(study.get('code_revision', 'unknown'))}</code>; "
                f"versions {_e(study.get('versions', {}))}</li>"
                + "".join(f"<li>{_e(line)}</li>" for line in code_lines(study_dir, study)) +
                '<li>files: <a href="study.json">study.json</a>, <a href="summary.csv">summary.csv</a>, '
                '<a href="report.md">report.md</a></li></ul>')
    body.append('<nav><a href="#glance">At a glance</a><a href="#statistics">Statistics</a><a href="#arms">Arms</a><a href="#runs">Runs</a>'
                '<a href="#tables">Comparisons</a><a href="#phase-times">Phase times</a><a href="#figures">Figures</a><a href="#files">Files</a></nav>')

    # --- at a glance: the comparisons in one table, one figure, the caveats once
    stats_pngs = sorted(plots.glob("stats_*.png"))
    phase_pngs = [p for p in stats_pngs if p.stem == "stats_phase_times"] or \
        [p for p in stats_pngs if p.stem.startswith("stats_phase_times")]  # the primary rule's, else the first rule's
    glance = [(_stats_title(p.stem), p) for p in phase_pngs[:1]] or \
        [(t, Path(p)) for t, ps in figures if t == "Training loss" for p in ps if Path(p).suffix == ".png"][:1]
    glance = [(t, p) for t, p in glance if p.is_file()]
    stats_md = study_dir / "stats.md"
    main_md, caveats = split_warnings(stats_md.read_text()) if stats_md.is_file() else ("", [])
    stats_html = markdown_html(main_md) if main_md else ""
    first_table = re.search(r'<div class="scroll"><table class="compact">.*?</table></div>', stats_html, flags=re.S)
    if glance or first_table or caveats:
        body.append('<h2 id="glance">At a glance</h2>'
                    + (f'<div class="headline">{first_table.group(0).replace("compact", "compact glance", 1)}</div>'
                       if first_table else "")
                    + "".join(_img(p, t, study_dir) for t, p in glance)
                    + (f'<h3 id="caveats">Caveats ({len(caveats)})</h3><ul class="caveats">'
                       + "".join(f"<li>{markdown_inline(c)}</li>" for c in caveats) + "</ul>" if caveats else ""))
    shown = {p for _, p in glance}

    # --- statistics (the sentences, robustness, factorial effects and methods: the table and caveats are above)
    body.append('<h2 id="statistics">Statistics</h2>')
    if first_table:
        stats_html = stats_html.replace(first_table.group(0), '<p class="meta">(The primary rule\'s table is at the '
                                        'top of the page, <a href="#glance">At a glance</a>.)</p>', 1)
    if stats_html:
        body.append(f'<div class="stats">{stats_html}</div>')
    else:
        body.append(f"<p>No statistics yet: run <code>clamp stats {_e(study_dir.as_posix())}</code>.</p>")
    # --- arms
    body.append('<h2 id="arms">Arms</h2><p class="meta">Fired: how many times each intervention fired in the whole run, '
                "summed over every evaluation interval of its windows (median over seeds; 0 means it never fired). "
                "The colour is the arm's colour in every figure.</p>")
    arm_rows = []
    for a in study["arms"]:
        fired = fired_totals(metrics, a["name"]) if len(metrics) else {}
        items = a.get("interventions") or []
        words = "<ul>" + "".join(
            f"<li>{_e(intervention_words(i))}" + (f"; fired {fired[i.get('name')]:,.0f} times" if i.get("name") in fired else "")
            + "</li>" for i in items) + "</ul>" if items else "none"
        m, t = a.get("model", {}), a.get("task", {})
        task = ", ".join(f"{k}={v}" for k, v in t.items() if k in ("kind", "n_classes", "n_labels", "n_pairs", "vocab", "half"))
        arm_rows.append(f"<tr><td>{_swatch(colours[a['name']])}<code>{_e(a['name'])}</code></td>"
                        f"<td>{_e(a.get('description') or '')}</td><td>{words}</td>"
                        f"<td>{_e(a.get('factors') or '')}</td>"
                        f"<td>{_e(a.get('train', {}).get('lr', ''))}</td><td>{_e(a.get('train', {}).get('batch_size', ''))}</td>"
                        f"<td>{_e(model_words(m))}</td><td>{_e(task)}</td></tr>")
    body.append('<div class="scroll"><table id="arms-table"><thead><tr><th>arm</th><th>description</th>'
                "<th>interventions (windows in sequences seen)</th><th>factors</th><th>lr</th><th>batch</th><th>model</th>"
                f"<th>task</th></tr></thead><tbody>{''.join(arm_rows)}</tbody></table></div>")

    # --- runs
    body.append('<h2 id="runs">Runs</h2>')
    if len(summary):
        counts = summary["status"].value_counts()
        body.append("<p>" + _e(", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if s in counts)) + "</p>")
        cols = [c for c in ("arm", "seed", "status", "sequences_seen", "crossed_at", "final_train_loss", "wall_seconds",
                            "error") if c in summary.columns]
        view = summary[cols].copy()
        status_cells = [f'<td class="status-{_e(s)}">{_e(s)}</td>' for s in view["status"]]
        files = []
        for arm, seed in zip(view["arm"], view["seed"]):
            folder = f"runs/{arm}/seed{seed}"
            links = [f'<a href="{_e(folder)}/{f}">{f}</a>' for f in ("run.json", "metrics.csv", "attention.csv")
                     if (study_dir / folder / f).is_file()]
            files.append(f"<td>{', '.join(links)}</td>")
        view["files"] = ""
        body.append(table_html(view, "runs-table", raw={"status": status_cells, "files": files}))

    body.append('<h2 id="tables">Comparisons and phase times</h2>')
    for title, fname, tid in (("Comparisons (stats.csv)", "stats.csv", "comparisons-table"),
                              ("Factorial effects (factorial.csv)", "factorial.csv", "factorial-table")):
        df = _csv_frame(study_dir / fname)
        if df is not None and len(df):
            df = df[[c for c in _LEAD if c in df.columns] + [c for c in df.columns if c not in _LEAD]]
            body.append(f'<h3>{_e(title)} <a href="{fname}">CSV</a></h3>' + table_html(df, tid))
    body.append('<h3 id="phase-times">Phase times (phase_times.csv)</h3>')
    phase = _csv_frame(study_dir / "phase_times.csv")
    if phase is not None and len(phase):
        body.append('<p class="meta">One row per run × phase rule × estimator '
                    '(<a href="phase_times.csv">phase_times.csv</a>); click a header to sort.</p>')
        body.append(table_html(phase, "phase-table"))
    else:
        body.append("<p>No phase_times.csv yet.</p>")

    # --- figures
    body.append('<h2 id="figures">More figures</h2>')
    body.append('<p class="meta">Arms: ' + " ".join(f"{_swatch(colours[a])}{_e(a)}" for a in arms)
                + ". Times in sequences seen; losses in nats.</p>")
    for title, paths in figures:
        pngs = [Path(p) for p in paths if Path(p).suffix == ".png"]
        if pngs and pngs[0].is_file() and pngs[0] not in shown:
            body.append(f"<h3>{_e(title)}</h3>" + _img(Path(pngs[0]), title, study_dir))
    if [p for p in stats_pngs if p not in shown]:
        body.append("<h3>Statistics figures</h3>")
        for p in (p for p in stats_pngs if p not in shown):
            body.append(_img(p, _stats_title(p.stem), study_dir))
    posthoc = sorted((study_dir / "analyses" / "plots").glob("*.png"))
    if posthoc:
        body.append("<h3>Post-hoc analyses (<code>clamp analyse</code>)</h3>")
        body += [_img(p, p.stem.replace("_", " "), study_dir) for p in posthoc]

    # --- files
    csvs = sorted(p.relative_to(study_dir).as_posix() for p in study_dir.rglob("*.csv") if not p.name.startswith("."))
    body.append('<h2 id="files">Files</h2><ul class="files">'
                + "".join(f'<li><a href="{_e(c)}">{_e(c)}</a></li>' for c in csvs) + "</ul>")
    body.append(f'<p class="meta">Rebuild with <code>clamp report {_e(study_dir.as_posix())}</code> '
                "(reads only the stored files). Plain-text twin: <a href=\"report.md\">report.md</a>.</p>")

    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>clamp · {_e(name)}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + f"\n<script>{_JS}</script>\n</body></html>\n")
    path = study_dir / "index.html"
    atomic_write_text(path, page)
    return path
