"""Execution: turning a study's runs into files, resumably, in one or many processes.

Why this package exists: planning (skip finished runs, resume interrupted ones,
pack seeds on a run axis), executing packs (inline or in worker processes),
isolating failures and writing every file atomically are one concern, apart
from what is trained (:mod:`clamp.training`) and how it is analysed
(:mod:`clamp.analysis`).

What enters: a :class:`clamp.study.Study`.  What leaves: ``results/<study>/``
with ``study.json`` and per-run ``run.json``, ``metrics.csv``, checkpoints.

Modules: :mod:`.runner` (plan, executors, ``clamp run``), :mod:`.pack` (what a
worker runs), :mod:`.progress_measures` (progress display), :mod:`.store` (results
layout and atomic writes).
"""
