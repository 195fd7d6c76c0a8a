"""Per-run checkpoints of a packed trainer: split by run to save, merged to resume.

Why this file exists: runs are packed on a run axis while they train, but each run owns its
checkpoints, so a run can resume in a different pack (other companions, another size, after
its pack-mates stopped).  Every model and Adam tensor has a leading ``R`` axis, so a packed
:meth:`~clamp.training.trainer.Trainer.state_dict` splits into one state per run
(:func:`split_state`) and merges back (:func:`merge_states`) exactly.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

CHECKPOINT_FORMAT = 1


def split_state(state: dict[str, Any], n_runs: int) -> list[dict[str, Any]]:
    """Split a packed :meth:`Trainer.state_dict` into one state per run (leading axis kept, size 1)."""

    def part(t: Tensor, r: int) -> Tensor:
        if t.dim() == 0 or n_runs == 1:  # one run: nothing to split (a foreign model's tensors have no run axis)
            return t.detach().cpu().clone()
        if t.shape[0] != n_runs:
            raise ValueError(f"cannot split a tensor of shape {tuple(t.shape)} over {n_runs} runs")
        return t[r : r + 1].detach().cpu().clone()

    out = []
    for r in range(n_runs):
        opt = state["opt"]
        out.append({
            "format": CHECKPOINT_FORMAT,
            "step": int(state["step"]),
            "model": {k: part(v, r) for k, v in state["model"].items()},
            "opt": {"state": {i: {k: part(v, r) if torch.is_tensor(v) else v for k, v in s.items()}
                              for i, s in opt["state"].items()},
                    "param_groups": copy.deepcopy(opt["param_groups"])},
            "data_gen": state["data_gens"][r].clone(),
            "batch_loss_sum": state["batch_loss_sum"][r : r + 1].clone(),
            "batch_loss_n": int(state["batch_loss_n"]),
            "heldout_seen": state.get("heldout_seen"),
        })
    return out


def merge_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Inverse of :func:`split_state`: per-run states -> one packed trainer state."""
    steps = {s["step"] for s in states}
    if len(steps) != 1:
        raise ValueError(f"cannot pack runs at different steps {sorted(steps)}")

    def cat(ts: list[Tensor]) -> Tensor:
        return ts[0].clone() if ts[0].dim() == 0 else torch.cat(ts, dim=0)

    first = states[0]
    opt_state = {i: {k: cat([s["opt"]["state"][i][k] for s in states]) if torch.is_tensor(v) else v
                     for k, v in st.items()} for i, st in first["opt"]["state"].items()}
    return {
        "step": first["step"],
        "model": {k: cat([s["model"][k] for s in states]) for k in first["model"]},
        "opt": {"state": opt_state, "param_groups": copy.deepcopy(first["opt"]["param_groups"])},
        "data_gens": [s["data_gen"] for s in states],
        "batch_loss_sum": torch.cat([s["batch_loss_sum"] for s in states]),
        "batch_loss_n": first["batch_loss_n"],
        "heldout_seen": first.get("heldout_seen"),
    }


def load_run_state(path: str | Path) -> dict[str, Any]:
    """A per-run checkpoint (one run's trainer state), loaded without unpickling arbitrary objects."""
    return torch.load(path, map_location="cpu", weights_only=True)


__all__ = ["CHECKPOINT_FORMAT", "load_run_state", "merge_states", "split_state"]
