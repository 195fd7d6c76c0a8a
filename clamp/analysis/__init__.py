"""Analysis: stored metrics in; phase times, statistics, post-hoc probes, plots and the report out.

Why this package exists: everything after training reads only the results
folder, so it can be rebuilt at any time without training.

What enters: ``results/<study>/`` (``study.json``, each run's ``run.json``,
``metrics.csv``, checkpoints).  What leaves: ``phase_times.csv``,
``stats.csv``, ``stats.md``, plots and the report.

Packages: :mod:`.stats` (phase-change times and comparisons),
:mod:`.posthoc` (analyses of checkpoints: redundancy, additivity,
composition, progress measures), :mod:`.report` (summary, plots, report.md).
"""
