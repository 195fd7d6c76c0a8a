"""Run keys: which finished run a rerun may keep, computed one way from a canonical description.

Why this file exists: a run's key decides whether ``clamp run`` keeps its files.  The
first key (:func:`legacy_key`, still what folders written before key version 2 record
as ``hash``) hashed every field of every config, so adding a field to a config
changed every key.  Key version 2 (:func:`run_key`) hashes a *canonical* description
that leaves out every field at its default, so a new field (at its default) keeps
every key; the description carries its version, so a later change of the format can
say which runs it still recognises.

Key version 3: before it, the optimiser updated all runs of a pack in one tensor, and a run's
numbers depended (at float rounding, then everywhere) on which runs it was packed with
(:mod:`clamp.training.optimizer`).  Runs of the built-in packed model written with an earlier key
version are therefore not the runs today's code computes; a foreign model always trained one run
per process, so its older runs still are.

A stored run is the same run as the one the current study asks for (:func:`same_run`) when any of
these holds:

1. its ``run.json`` records ``key_version`` 3 and its ``hash`` equals :func:`run_key`;
2. it records ``key_version`` 3 and its recorded resolved config (``run.json["config"]``), rebuilt with
   today's config classes and canonicalised, gives the current :func:`run_key` (this keeps folders valid
   after a field was added to a config);
3. it is a foreign model's run written before version 3 whose ``hash`` equals the current
   :func:`legacy_key` (no ``key_version``) or whose recorded config gives the current :func:`run_key`.

Known limit of rule 2: ``run.json`` does not record the stop-after setting a key hashes, so the key of
a run of a ``StopAfterPhase`` study cannot be rebuilt from its record; it is recognised by rule 1 only,
and a future key version must also recognise runs by their hash under the earlier version (the
parked branch ``fused-long-attention`` has ``earlier_keys`` for that).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any, Sequence

from clamp.fingerprint import code_fingerprints
from clamp.phase import stop_setting

if TYPE_CHECKING:
    from clamp.study.design import Arm, Study

KEY_VERSION = 3  # 3: every run of a pack updated on its own by the optimiser (clamp.training.optimizer)
PACK_INDEPENDENT_SINCE = 3  # packed runs written with an earlier key version depended on their pack


def canonical(cfg: Any) -> dict:
    """``cfg.to_dict()`` without the dataclass fields that are at their default.

    Keys that are not fields (an intervention's or task's ``kind``) are kept.

    Example:
        >>> from clamp.model.config import ModelConfig
        >>> canonical(ModelConfig(n_layers=1))
        {'n_layers': 1}
    """
    d = dict(cfg.to_dict())
    if not dataclasses.is_dataclass(cfg):
        return d  # a user-defined config that is not a dataclass: no defaults to leave out
    for f in dataclasses.fields(cfg):
        if f.name not in d:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            continue
        try:
            same = getattr(cfg, f.name) == default
        except Exception:  # noqa: BLE001 - e.g. tensors: an ambiguous comparison means "not default"
            same = False
        if same is True:
            del d[f.name]
    return d


def description(*, model: Any, task: Any, train: Any, interventions: Sequence[Any], checkpoints: Sequence[int],
                extra_evals: Sequence[int], seed: int, metrics: Sequence[str] = (),
                stop_after_phase: dict | None = None, code: dict | None = None) -> dict:
    """The canonical, versioned description of a run that its key hashes.

    The device is left out (it labels where a run ran, not what it computes).  ``code`` maps the
    import path of each piece of user code the run executes to its fingerprint
    (:mod:`clamp.fingerprint`); absent when there is none, so the keys of studies without user code
    are unchanged.
    """
    tr = canonical(train)
    tr.pop("device", None)
    return {
        "key_version": KEY_VERSION,
        "model": canonical(model),
        "task": canonical(task),
        "train": tr,
        "interventions": [canonical(i) for i in interventions],
        "checkpoints": [int(x) for x in checkpoints],
        "extra_evals": [int(x) for x in extra_evals],
        "seed": int(seed),
        # user metrics (import paths) add rows to metrics.csv; absent when none, so earlier keys stand
        **({"metrics": [str(m) for m in metrics]} if metrics else {}),
        # stopping after the phase change (with the primary rule it watches); absent when off
        **({"stop_after_phase": stop_after_phase} if stop_after_phase else {}),
        # the fingerprints of the user code it runs: its body, not only its name, decides what it computes
        **({"code": dict(sorted(code.items()))} if code else {}),
    }


def arm_code_paths(study: Study, arm: Arm) -> list[str]:
    """The import paths of every piece of user code a run of ``arm`` executes (before keeping only user code).

    Intervention kinds and functions (:meth:`clamp.interventions.spec.Intervention.code_paths`), the
    study's metric functions, a task config defined outside clamp, a foreign model's factory and adapter.
    """
    paths: list[str] = []
    for iv in arm.interventions:
        paths += iv.code_paths()
    if study.metrics:
        paths += study.metric_paths()
    kind = arm.task.to_dict().get("kind", "")
    if isinstance(kind, str) and ":" in kind:
        paths.append(kind)
    for name in ("factory", "adapter"):
        value = getattr(arm.model, name, None)
        if isinstance(value, str) and ":" in value:
            paths.append(value)
    return sorted(set(paths))


def arm_code(study: Study, arm: Arm) -> dict[str, str]:
    """``{import path: fingerprint}`` of the user code a run of ``arm`` executes (empty: none)."""
    return code_fingerprints(arm_code_paths(study, arm))


def task_dims(task: Any) -> dict[str, int]:
    """The task's sizes from its config when it can say them without torch (``dims()``), else from the built task."""
    dims = getattr(task, "dims", None)
    return dims() if callable(dims) else task.build().dims()


def _digest(obj: dict) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_key(study: Study, arm: Arm, seed: int, *, with_code: bool = True) -> str:
    """Key (version 3) of the run of ``arm`` with ``seed``: what changes its results, defaults left out.

    Example:
        >>> # run_key(study, study.arm("control"), 0) -> '3f0c...' (16 hex digits)
    """
    model = arm.model.resolve(task_dims(arm.task))
    return _digest(description(model=model, task=arm.task, train=study.train_config(arm),
                               interventions=arm.interventions, checkpoints=study.checkpoint_points(arm),
                               extra_evals=study.extra_eval_points(arm), seed=seed,
                               metrics=study.metric_paths() if study.metrics else (),
                               stop_after_phase=stop_after(study), code=arm_code(study, arm) if with_code else None))


def stop_after(study: Study) -> dict | None:
    """The study's stop-after-transition setting with the primary rule it watches
    (:func:`clamp.phase.stop_setting`; None when off): what run keys hash and what workers receive."""
    if getattr(study, "stop_after_phase", None) is None:
        return None
    return stop_setting(study.stop_after_phase, study.phase_rules[0])


def arm_record(study: Study, arm: Arm) -> dict:
    """The resolved arm as written to ``study.json`` (without its hash)."""
    model = arm.model.resolve(task_dims(arm.task))  # the config's sizes: no task is built (and no torch imported)
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
        # fingerprints of the user code the arm's runs execute (clamp.fingerprint); absent when none
        **({"code": arm_code(study, arm)} if arm_code(study, arm) else {}),
    }


def legacy_key(study: Study, arm: Arm, seed: int) -> str:
    """The key written before key version 2 (every field of every config); kept to recognise old runs."""
    rec = arm_record(study, arm)
    rec["train"] = {k: v for k, v in rec["train"].items() if k != "device"}
    key = {k: rec[k] for k in ("model", "task", "train", "interventions")}
    key["extra_evals"] = rec["schedule"]["extra_evals"]
    key["checkpoints"] = rec["schedule"]["checkpoints"]
    if "metrics" in rec:
        key["metrics"] = rec["metrics"]
    key["seed"] = int(seed)
    if stop_after(study) is not None:
        key["stop_after_phase"] = stop_after(study)
    return _digest(key)


def key_from_record(record: dict) -> str | None:
    """The current key of a stored run, from the resolved config its ``run.json`` records (built-in or foreign model).

    Returns None when the record holds no config, or one that today's config classes reject
    (a field was removed or renamed): such a run cannot be shown to match.
    """
    cfg = record.get("config")
    if not isinstance(cfg, dict) or "seed" not in record:
        return None
    try:
        from clamp.interventions.registry import intervention_from_dict
        from clamp.model.foreign import model_from_dict
        from clamp.tasks import task_from_dict
        from clamp.training.config import TrainConfig

        sched = cfg.get("schedule", {})
        return _digest(description(
            model=model_from_dict(cfg["model"]), task=task_from_dict(cfg["task"]),
            train=TrainConfig.from_dict(cfg["train"]),
            interventions=[intervention_from_dict(d) for d in cfg.get("interventions", [])],
            checkpoints=sched["checkpoints"], extra_evals=sched["extra_evals"], seed=int(record["seed"]),
            metrics=cfg.get("metrics", ()), stop_after_phase=record.get("stop_after_phase"),
            code=cfg.get("code") or (record.get("code_accepted") or {}).get("code")))
    except Exception:  # noqa: BLE001 - any record that cannot be rebuilt does not match
        return None


def same_run(record: dict, *, key: str, legacy: str, code: dict | None = None) -> bool:
    """Whether a stored ``run.json`` is the run whose current keys are ``key`` and ``legacy``.

    ``code``: the fingerprints of the user code the run executes now.  A stored run that recorded other
    fingerprints, or none (written before clamp recorded them), is not the same run -- unless its
    unknown code was accepted explicitly (``clamp run --accept-unknown-code`` records that in its
    ``run.json``).
    """
    if record.get("key_version") == KEY_VERSION and record.get("hash") == key:
        return True
    if code and not code_matches(record, code):
        return False
    if not pack_independent(record):
        return False
    if record.get("key_version") is None and record.get("hash") == legacy:
        return True
    return key_from_record(record) == key


def pack_independent(record: dict) -> bool:
    """Whether a stored run's numbers are those of the run alone: written with key version 3 or later, or a
    foreign model's (trained one run per process).

    Example:
        >>> pack_independent({"key_version": 3}), pack_independent({"key_version": 2, "config": {"model": {}}})
        (True, False)
        >>> pack_independent({"config": {"model": {"kind": "foreign", "factory": "x:y"}}})
        True
    """
    version = record.get("key_version")
    if isinstance(version, int) and version >= PACK_INDEPENDENT_SINCE:
        return True
    cfg = record.get("config") if isinstance(record.get("config"), dict) else {}
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    return model.get("kind") == "foreign" or "factory" in model


def code_matches(record: dict, code: dict) -> bool:
    """Whether a stored run recorded exactly ``code``, or had its unknown code accepted for exactly ``code``."""
    cfg = record.get("config") if isinstance(record.get("config"), dict) else {}
    if cfg.get("code") == code:
        return True
    accepted = record.get("code_accepted")
    return isinstance(accepted, dict) and accepted.get("code") == code


def recorded_code(record: dict) -> dict | None:
    """The fingerprints a stored run recorded (None when it recorded none)."""
    cfg = record.get("config") if isinstance(record.get("config"), dict) else {}
    return cfg.get("code") if isinstance(cfg.get("code"), dict) else None


__all__ = ["KEY_VERSION", "PACK_INDEPENDENT_SINCE", "pack_independent", "arm_code", "arm_code_paths", "arm_record", "canonical", "code_matches", "recorded_code", "description", "key_from_record", "legacy_key", "run_key", "same_run",
           "stop_after", "task_dims"]
