"""Per-seed donors for grafts: each run of a packed arm is grafted from the same seed's run of a donor arm.

Why this file exists: a graft's ``checkpoint`` is one file, so one donor serves
every run of a packed arm; a same-seed graft across seeds then needed one arm
per donor.  A :class:`Donor` names a results folder, an arm and a point
(sequences seen) instead; run ``r`` of the pack (initialisation seed ``s``) is
grafted from ``<results>/runs/<arm>/seed<s>/checkpoints/<at>.pt``.  The
checkpoint must exist at exactly ``at`` (no nearest-checkpoint substitution: a
graft from another point than the one asked for would be a silent wrong
number).  Missing donors are refused before training (:func:`check_donors`,
called by :func:`clamp.study.design.validate_study`), and the donors used are
recorded in each run's ``run.json`` (:func:`grafts_record`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from clamp.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Donor:
    """The same seed's run of another arm, at ``at`` sequences seen (exactly), as a graft's donor.

    Attributes:
        results: the donor study's results folder (``results/<study>``); relative paths are
            resolved against the working directory when the graft is compiled.
        arm: the donor arm's name.
        at: sequences seen of the donor checkpoint; it must be one of the donor study's
            checkpoint points (``checkpoint_every``, ``Dense(checkpoint_every=...)``).

    Example:
        >>> d = Donor(results="results/q", arm="control", at=512)
        >>> d.path(3).as_posix()
        'results/q/runs/control/seed3/checkpoints/000000000512.pt'
        >>> Donor.coerce(d.to_dict()) == d
        True
    """

    results: str
    arm: str
    at: int

    def __post_init__(self) -> None:
        if not isinstance(self.results, str) or not self.results:
            raise ConfigError(f"Donor.results must be a results folder path (a string), got {self.results!r}.")
        if not isinstance(self.arm, str) or not self.arm:
            raise ConfigError(f"Donor.arm must be an arm name, got {self.arm!r}.")
        if isinstance(self.at, bool) or not isinstance(self.at, int) or self.at < 0:
            raise ConfigError(f"Donor.at must be sequences seen (an int >= 0), got {self.at!r}.")

    def run_folder(self, seed: int) -> Path:
        from clamp.store import run_dir

        return run_dir(self.results, self.arm, int(seed))

    def arm_folder(self) -> Path:
        return self.run_folder(0).parent

    def path(self, seed: int) -> Path:
        """The donor checkpoint of the run with ``seed``."""
        from clamp.store import checkpoint_path

        return checkpoint_path(self.run_folder(seed), self.at)

    def problem(self, seed: int) -> str | None:
        """Why the donor checkpoint of ``seed`` cannot be used (naming the path and the fix), or None."""
        from clamp.store import checkpoints

        folder = self.run_folder(seed)
        if not folder.is_dir():
            return (f"donor run {folder} does not exist (arm {self.arm!r}, seed {seed}); run the donor study with this "
                    f"seed first (clamp run <donor study> --out {Path(self.results).parent}), or fix Donor(results=, arm=)")
        if not self.path(seed).is_file():
            have = sorted(checkpoints(folder))
            return (f"donor checkpoint {self.path(seed)} does not exist (seed {seed}, at={self.at}); the run has "
                    f"checkpoints at {have or 'no point'}: pick one of them for Donor(at=), or add {self.at} to the donor "
                    "study's checkpoints (checkpoint_every or Dense(checkpoint_every=)) and rerun it")
        return None

    def to_dict(self) -> dict:
        return {"results": self.results, "arm": self.arm, "at": self.at}

    @classmethod
    def coerce(cls, v: "Donor | dict | None") -> "Donor | None":
        if v is None or isinstance(v, Donor):
            return v
        if isinstance(v, dict):
            unknown = set(v) - {"results", "arm", "at"}
            if unknown:
                raise ConfigError(f"donor got unknown keys {sorted(unknown)}; valid keys are ['arm', 'at', 'results'].")
            return cls(**v)
        raise ConfigError(f"donor must be a clamp.Donor(results=, arm=, at=), got {type(v).__name__}.")


def donor_state(donor: Donor, seeds: Iterable[int]) -> dict:
    """One packed ``Transformer.state_dict()``: run ``r`` holds the donor checkpoint of ``seeds[r]``."""
    import torch

    from clamp.interventions.effects import checkpoint_runs, load_packed_weights

    parts = []
    for s in seeds:
        why = donor.problem(s)
        if why:
            raise ConfigError(why)
        st = load_packed_weights(str(donor.path(s)))
        if checkpoint_runs(st) != 1:
            raise ConfigError(f"donor checkpoint {donor.path(s)} holds {checkpoint_runs(st)} runs, not one; "
                              "a per-seed donor is a run folder's own checkpoint")
        parts.append(st)
    return {k: torch.cat([p[k] for p in parts], dim=0) for k in parts[0]}


def per_seed_donor_model(model: Any, donor: Donor) -> Any:
    """A frozen copy of ``model``'s architecture whose run ``r`` holds the donor checkpoint of ``model.seeds[r]``.

    A run's seed is its initialisation seed (``RunSeeds.from_seed(seed).init == seed``, as the runner builds runs).
    """
    from clamp.model.transformer import Transformer

    if not isinstance(model, Transformer):
        raise ConfigError("a per-seed donor needs the built-in model (ModelConfig); a foreign model has no run axis")
    state = donor_state(donor, model.seeds)
    own = model.state_dict()
    if set(own) != set(state) or any(own[k].shape[1:] != state[k].shape[1:] for k in own):
        raise ConfigError(f"donor checkpoints of arm {donor.arm!r} in {donor.results} do not fit this model's architecture; "
                          "graft from an arm with the same ModelConfig")
    out = Transformer(model.cfg, model.seeds)
    out.load_state_dict(state)
    out.requires_grad_(False)
    return out.to(next(model.parameters()).device)


def graft_donors(interventions: Iterable[Any]) -> list[Any]:
    """The interventions (objects or dicts) that graft from a per-seed :class:`Donor`."""
    from clamp.interventions.registry import intervention_from_dict

    out = []
    for iv in interventions:
        iv = intervention_from_dict(iv) if isinstance(iv, dict) else iv
        if getattr(iv, "donor", None) is not None:
            out.append(iv)
    return out


def check_donors(interventions: Iterable[Any], seeds: Iterable[int]) -> list[str]:
    """Problems with the per-seed donors of an arm's interventions for the study's ``seeds`` (before training)."""
    errs = []
    for iv in graft_donors(interventions):
        for s in seeds:
            why = iv.donor.problem(int(s))
            if why:
                errs.append(f"{iv.name!r} ({iv.kind}): {why}")
    return errs


def grafts_record(interventions: Iterable[Any], seed: int) -> list[dict]:
    """What ``run.json["grafts"]`` records for the run with ``seed``: each per-seed donor used."""
    import hashlib

    out = []
    for iv in graft_donors(interventions):
        p = iv.donor.path(seed)
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else None
        out.append({"intervention": iv.name, "donor_path": str(p.resolve()), "donor_arm": iv.donor.arm,
                    "donor_seed": int(seed), "at": iv.donor.at, "donor_sha256": digest})
    return out


__all__ = ["Donor", "donor_state", "per_seed_donor_model", "check_donors", "grafts_record", "graft_donors"]
