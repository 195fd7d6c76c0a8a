"""Training with interventions: the step loop, evaluation and the head metrics it records.

Why this package exists: one place owns how a (packed) model is trained and
evaluated, so every executor and every analysis trains and measures the same way.

What enters: a model config, a task config, a :class:`TrainConfig` and optional
interventions.  What leaves: metric rows per evaluation (train and held-out
loss/accuracy, head scores, firing counts) and resumable trainer state.

Modules: :mod:`.trainer` (Trainer, TrainConfig, RunSeeds), :mod:`.metrics`
(induction strength, previous-token and prefix-matching scores).
"""
