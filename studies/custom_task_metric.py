"""A task and a metric written in the study file: the task protocol at work (issue 13 item 3).

``NextParity`` is a tiny token task defined right here: sequences of random bits;
at every position the model predicts the parity (XOR) of the current bit and the
previous one, which a 1-layer model can learn only by attending to the previous
position.  ``prev_token_max`` is a user metric: the best previous-token score over
layer-0 heads, computed at every evaluation, written to ``metrics.csv`` like a
built-in metric, and used as the study's second phase rule.

    clamp run studies/custom_task_metric.py
"""

from dataclasses import dataclass

import torch

from clamp import Arm, ModelConfig, PhaseRule, Study
from clamp.tasks import IGNORE, Batch, TaskBase, UserTaskConfig


@dataclass(frozen=True, kw_only=True)
class NextParity(UserTaskConfig):
    """Random bits; the target at position t is bit_t XOR bit_{t-1} (none at t = 0)."""

    length: int = 8

    def build(self) -> "NextParityTask":
        return NextParityTask(self)


class NextParityTask(TaskBase):
    evaluators = ("train",)

    def __init__(self, cfg: NextParity) -> None:
        self.cfg = cfg

    def dims(self) -> dict[str, int]:
        return {"d_in": 0, "d_vocab": 2, "d_out": 2, "n_ctx": self.cfg.length}

    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch:
        bits = torch.randint(2, (n, self.cfg.length), generator=gen)
        targets = torch.full_like(bits, IGNORE)
        targets[:, 1:] = bits[:, 1:] ^ bits[:, :-1]
        return Batch(bits[None], targets[None])

    def default_phase_rule(self) -> PhaseRule:
        return PhaseRule(metric="train/acc", threshold=0.9, direction="above")


def prev_token_max(view) -> torch.Tensor:
    """Best previous-token attention over layer-0 heads, per run ([R])."""
    p = view.patterns[0]  # [R, B, H, T, T]
    return p.diagonal(offset=-1, dim1=-2, dim2=-1).mean((1, 3)).max(1).values


STUDY = Study(
    name="custom_task_metric",
    description="A study-file task (NextParity) and a study-file metric (prev_token_max).",
    arms=[Arm(name="control", model=ModelConfig(n_layers=1, n_heads=2, d_model=16), task=NextParity(), lr=3e-3)],
    seeds=[0, 1],
    n_sequences=8_000,
    eval_every=250,
    eval_size=128,
    metrics=[prev_token_max],
    phase=[PhaseRule(metric="train/acc", threshold=0.9, direction="above"),
           PhaseRule(metric="prev_token_max", threshold=0.8, direction="above")],
)
