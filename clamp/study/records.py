"""Records of a study: the resolved study and arms written to ``study.json``.

Why this file exists: ``study.json`` is what the statistics, the report and a rerun read back;
it is computed one way, from the resolved configuration (each run's key comes from
:mod:`clamp.study.keys`), apart from how studies are declared and loaded.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from clamp.phase import LN2
from clamp.study.keys import KEY_VERSION, arm_record, run_key

if TYPE_CHECKING:
    from clamp.study.design import Study


def arm_digest(rec: dict) -> str:
    """The arm-level ``hash`` of ``study.json`` (a label of the resolved arm; run keys are :func:`run_key`)."""
    return hashlib.sha256(json.dumps({k: rec[k] for k in ("model", "task", "train", "interventions")},
                                     sort_keys=True, default=str).encode()).hexdigest()[:16]


def study_record(study: Study) -> dict:
    """The resolved study as written to ``study.json`` (provenance is added by the runner)."""
    arms = []
    for arm in study.arms:
        rec = arm_record(study, arm)
        rec["hash"] = arm_digest(rec)
        rec["run_hashes"] = {str(s): run_key(study, arm, s) for s in study.seeds}
        rec["key_version"] = KEY_VERSION
        arms.append(rec)
    phase = [r.to_dict() for r in study.phase_rules]
    return {
        "name": study.name,
        "description": study.description,
        "seeds": [int(s) for s in study.seeds],
        "control": study.control,
        "comparisons": [list(p) for p in study.comparisons],
        "primary_comparisons": [list(p) for p in study.primary_comparisons],
        "correction": study.correction,
        "phase": phase[0] if len(phase) == 1 else phase,
        "alpha": study.alpha,
        "n_sequences": study.n_sequences,
        "stop_after_phase": None if study.stop_after_phase is None else study.stop_after_phase.to_dict(),
        "eval_every": study.eval_every,
        "eval_size": study.eval_size,
        "heldout_eval_every": study.heldout_eval_every,
        "checkpoint_every": study.checkpoint_every,
        "dense": [{"start": d.start, "stop": d.stop, "eval_every": d.eval_every, "checkpoint_every": d.checkpoint_every}
                  for d in study.dense],
        "heatmap_heads": list(study.heatmap_heads),
        "heatmap_at": list(study.heatmap_at),
        "device": study.device,
        "ln2": LN2,
        "arms": arms,
    }
