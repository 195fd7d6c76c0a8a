"""A task defined here (the parity of adjacent bits) and a metric returning a dict of two values per run."""

from dataclasses import dataclass

import torch

import clamp
from clamp.tasks import IGNORE, Batch, TaskBase, UserTaskConfig


@dataclass(frozen=True, kw_only=True)
class AdjacentParity(UserTaskConfig):
    """Random bits; the target at position t is bit_t XOR bit_(t-1) (none at t = 0)."""

    length: int = 6

    def build(self) -> "AdjacentParityTask":
        return AdjacentParityTask(self)


class AdjacentParityTask(TaskBase):
    evaluators = ("train",)

    def __init__(self, cfg: AdjacentParity) -> None:
        self.cfg = cfg

    def dims(self) -> dict[str, int]:
        return {"d_in": 0, "d_vocab": 2, "d_out": 2, "n_ctx": self.cfg.length}

    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch:
        bits = torch.randint(2, (n, self.cfg.length), generator=gen)
        targets = torch.full_like(bits, IGNORE)
        targets[:, 1:] = bits[:, 1:] ^ bits[:, :-1]
        return Batch(bits[None], targets[None])

    def default_phase_rule(self) -> clamp.PhaseRule:
        return clamp.PhaseRule(metric="train/acc", threshold=0.9, direction="above")


def prev_token(view) -> dict[str, torch.Tensor]:
    """Layer 0's previous-token attention per run: its best head and its mean over heads."""
    score = view.patterns[0].diagonal(offset=-1, dim1=-2, dim2=-1).mean((1, 3))  # [R, H]
    return {"best": score.max(1).values, "mean": score.mean(1)}


STUDY = clamp.Study(
    name="custom_task_dict_metric",
    arms=[clamp.Arm(name="control", model=clamp.ModelConfig(n_layers=1, n_heads=2, d_model=16), task=AdjacentParity(),
                    lr=3e-3)],
    seeds=[0, 1], n_sequences=512, eval_every=64, eval_size=64, metrics=[prev_token],
    phase=[clamp.PhaseRule(metric="train/acc", threshold=0.9, direction="above"),
           clamp.PhaseRule(metric="prev_token/best", threshold=0.8, direction="above")],
)
