"""Burstiness drives in-context learning (Chan et al. 2022; Reddy 2023's task).

Each of 256 classes has a fixed label (one of 32), so the label of a query can
be learned in the weights; in a *bursty* sequence the query's class also sits
in the context (4 copies of 2 classes), so its label can be copied from there.

- ``bursty``: 90% of training sequences bursty; expected to learn in context:
  high accuracy on ``in_context`` (novel classes, labels drawn per sequence) and
  ``swapped`` (known classes, re-drawn labels).
- ``not_bursty``: no bursty sequences; the context rarely holds the query's
  class, so there is nothing to copy: expected to learn in the weights only
  (``in_weights`` accuracy rises, ``in_context`` stays at chance, 1/32; a model
  that only picks one of the context's labels scores 0.5).

The phase rule (the task's default) is ``in_context/acc`` above 0.75, halfway
from picking one of the two context labels at random (0.5) to 1.

    clamp run studies/chan2022_bursty.py
"""

from clamp import Arm, BurstyConfig, ModelConfig, Study

model = ModelConfig(n_layers=2, n_heads=4, d_model=64)


def task(burstiness: float) -> BurstyConfig:
    return BurstyConfig(n_classes=256, n_labels=32, n_pairs=8, burst=4, burstiness=burstiness, zipf=0.0,
                        noise=0.1, d_in=64, n_novel_classes=64)


STUDY = Study(
    name="chan2022_bursty",
    description=__doc__.split("\n\n")[1],
    arms=[
        Arm(name="bursty", model=model, task=task(0.9), lr=1e-3, description="90% bursty sequences"),
        Arm(name="not_bursty", model=model, task=task(0.0), lr=1e-3, description="no bursty sequences"),
    ],
    control="not_bursty",
    seeds=[0, 1, 2],
    n_sequences=30_000,
    eval_every=1_000,
    eval_size=256,
)
