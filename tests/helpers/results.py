"""A hand-written results folder (study.json, run.json, metrics.csv, attention.csv): the report's tests read it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from clamp.store import ATTENTION_HEADER, METRICS_HEADER

MODEL = {"n_layers": 2, "n_heads": 2, "d_model": 8}


def make_results(root: Path) -> Path:
    d = root / "hand"
    arms = [{"name": n, "factors": {}, "model": MODEL, "task": {"kind": "fewshot", "n_classes": 10},
             "train": {"lr": 1e-3, "batch_size": 16}, "interventions": [], "hash": n} for n in ("control", "clamped")]
    study = {"name": "hand", "seeds": [0, 1, 2], "control": "control", "comparisons": [],
             "phase": {"metric": "train/loss", "threshold": 0.4 * math.log(2), "direction": "below"},
             "alpha": 0.05, "n_sequences": 400, "arms": arms, "heatmap_heads": ["L1H0"]}
    d.mkdir()
    (d / "study.json").write_text(json.dumps(study))
    statuses = {("control", 0): "finished", ("control", 1): "finished", ("control", 2): "failed",
                ("clamped", 0): "finished", ("clamped", 1): "diverged"}  # clamped seed 2: never started
    for (arm, seed), status in statuses.items():
        rd = d / "runs" / arm / f"seed{seed}"
        rd.mkdir(parents=True)
        rec = {"arm": arm, "seed": seed, "status": status, "hash": f"{arm}{seed}", "timings": {"wall_seconds": 1.5}}
        if status == "failed":
            rec["error"] = "RuntimeError: boom\nmore"
        (rd / "run.json").write_text(json.dumps(rec))
        drop = 300 if arm == "control" else 100 + 100 * seed  # the loss steps down here
        rows = []
        for seen in range(0, 401, 100):
            loss = 0.7 if seen < drop else 0.1
            rows += [f"{seen},{seed},train/loss,{loss}\n", f"{seen},{seed},train/acc,{1 - loss}\n",
                     f"{seen},{seed},heldout_pairs/loss,{loss + 0.05}\n", f"{seen},{seed},induction/L1H0,{0.7 - loss}\n",
                     f"{seen},{seed},induction/L1H1,0.0\n", f"{seen},{seed},prev_token/L0H0,{seen / 400}\n"]
        (rd / "metrics.csv").write_text(METRICS_HEADER + "".join(rows))
        att = [f"{seen},{seed},{layer},{h},{q},{k},{1 / (q + 1)}\n" for seen in (0, 400) for layer in (0, 1)
               for h in (0, 1) for q in range(5) for k in range(q + 1)]
        (rd / "attention.csv").write_text(ATTENTION_HEADER + "".join(att))
    (d / "stats.md").write_text("### Phase-change statistics: hand\n\n- clamped: sooner, p = 0.01\n")
    (d / "stats.csv").write_text("arm,p\nclamped,0.01\n")
    return d
