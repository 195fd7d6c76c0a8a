"""Records of a study: the resolved arms written to ``study.json``, and the key of each run.

Why this file exists: what identifies a run (the hash that decides whether a rerun
skips it) must be computed one way, from the resolved configuration, and kept
apart from how studies are declared and loaded (:mod:`clamp.study.design`).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from clamp.study.keys import KEY_VERSION

from clamp.phase import LN2

if TYPE_CHECKING:
    from clamp.study.design import Arm, Study


def arm_record(study: Study, arm: Arm) -> dict:
    """The resolved arm as written to ``study.json`` (without its hash)."""
    from clamp.study.design import _task_dims  # the config's sizes: no task is built (and no torch imported)

    model = arm.model.resolve(_task_dims(arm.task))
    return {
        "name": arm.name,
        "description": arm.description,
        "factors": dict(arm.factors),
        "model": model.to_dict(),
        # shown even at its default (to_dict leaves it out there, to keep run keys); a foreign model has none
        "init": getattr(model, "init", None),
        "task": arm.task.to_dict(),
        "train": study.train_config(arm).to_dict(),
        "interventions": [i.to_dict() for i in arm.interventions],
        "n_sequences": study.budget(arm),
        "schedule": {"checkpoints": study.checkpoint_points(arm), "extra_evals": study.extra_eval_points(arm)},
        # user metric functions by import path; absent when there are none, so earlier run keys stay
        **({"metrics": study.metric_paths()} if study.metrics else {}),
    }


def run_hash(study: Study, arm: Arm, seed: int) -> str:
    """Key of a run: hash of everything that changes its results (resolved arm, schedule, seed).

    The arm's name, description and factors, and the device, are left out: they label a run
    without changing what it computes; so are fields at their default (see :mod:`clamp.study.keys`,
    which also recognises runs recorded under the earlier key).
    """
    from clamp.study.keys import run_key

    return run_key(study, arm, seed)


def study_record(study: Study) -> dict:
    """The resolved study as written to ``study.json`` (provenance is added by the runner)."""
    arms = []
    for arm in study.arms:
        rec = arm_record(study, arm)
        rec["hash"] = hashlib.sha256(json.dumps({k: rec[k] for k in ("model", "task", "train", "interventions")},
                                                sort_keys=True, default=str).encode()).hexdigest()[:16]
        rec["run_hashes"] = {str(s): run_hash(study, arm, s) for s in study.seeds}
        rec["key_version"] = KEY_VERSION
        arms.append(rec)
    phase = [r.to_dict() for r in study.phase]
    return {
        "name": study.name,
        "description": study.description,
        "seeds": [int(s) for s in study.seeds],
        "control": study.control,
        "comparisons": [list(p) for p in study.comparisons],
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
