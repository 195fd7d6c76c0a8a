"""The study schema: a named set of arms, each trained on the same seeds and schedule.

Why this file exists: an experiment is *data*.  A study file is plain Python that builds a
:class:`Study` of :class:`Arm` s and exposes it as a module-level ``STUDY``; the classes here
check every field as they are built (types, names, schedules, budgets), so a mistake is an
error naming the field and the fix before anything trains.  Loading a file is
:mod:`clamp.study.load`; the checks that need the model or a probe batch are
:mod:`clamp.study.checks`.

Example study file (``studies/lr_sweep.py``)::

    import clamp

    model = clamp.ModelConfig(n_layers=2, n_heads=2, d_model=16)
    task = clamp.FewShotConfig(n_classes=20, d_in=16)
    STUDY = clamp.Study(
        name="lr_sweep",
        arms=[clamp.Arm(name="slow", model=model, task=task, lr=1e-3),
              clamp.Arm(name="fast", model=model, task=task, lr=3e-3)],
        seeds=[0, 1, 2],
        n_sequences=20_000,
        eval_every=500,
    )
"""

from __future__ import annotations

import math
import re
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from clamp.corrections import CORRECTIONS
from clamp.errors import ConfigError
from clamp.fields import check_fields
from clamp.importpath import import_path
from clamp.interventions.spec import Intervention
from clamp.model.config import ModelConfig
from clamp.model.foreign import ModelSpec
from clamp.names import check_user_metric_name
from clamp.phase import PhaseRule, StopAfterPhase, check_stoppable
from clamp.tasks.protocol import TaskConfig
from clamp.training.config import TrainConfig, grid_words


class StudyError(ConfigError):
    """A study file, or an override of it, is invalid; the message names the file, line and fix."""


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_AUTO = "\x00auto"  # sentinel for Study.control: "control" if an arm has that name, else None


def _call_site() -> str | None:
    """``file:line`` of the first frame outside this module (where an Arm/Study was written)."""
    frame = sys._getframe(2)
    here = __file__
    while frame is not None and (frame.f_code.co_filename in (here, "<string>") or "dataclasses" in frame.f_code.co_filename):
        frame = frame.f_back
    return None if frame is None else f"{frame.f_code.co_filename}:{frame.f_lineno}"


@dataclass(frozen=True, kw_only=True)
class Dense:
    """A window of sequences where evaluation and/or checkpoints are denser.

    Use one around the expected phase change.

    Example:
        >>> Dense(start=20_000, stop=40_000, eval_every=250, checkpoint_every=2_500).stop
        40000
    """

    start: int
    stop: int
    eval_every: int | None = None
    checkpoint_every: int | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 <= self.start < self.stop:
            raise ConfigError(f"Dense(start={self.start}, stop={self.stop}): need 0 <= start < stop (in sequences seen).")
        for name in ("eval_every", "checkpoint_every"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError(f"Dense.{name}={v} must be a positive number of sequences, or None.")


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One condition of a study: a model, a task, interventions and optimiser settings.

    Every arm is trained on each of the study's seeds.  Optimiser fields mirror
    :class:`clamp.training.trainer.TrainConfig`; the study fixes the length and schedule.

    Args:
        name: folder-safe name (letters, digits, ``_``, ``-``), unique in the study.
        model: architecture; task sizes may be left None.
        task: a task config (:class:`~clamp.tasks.FewShotConfig`, :class:`~clamp.tasks.RepeatConfig`, or any
            config following :class:`clamp.tasks.base.TaskConfig`, e.g. one defined in the study file).
        interventions: interventions from :mod:`clamp.interventions`, any number.
        factors: for factorial designs, which factors this arm switches on (``{"copy": True}``).
        description: one line for the report.
        n_sequences: this arm's training length, overriding the study's (slow arms can run longer);
            None (the default) uses ``Study.n_sequences``, and leaves the arm's run keys unchanged.

    Example:
        >>> from clamp.tasks import FewShotConfig
        >>> arm = Arm(name="control", model=ModelConfig(), task=FewShotConfig(), lr=1e-3)
        >>> arm.train_config(n_sequences=64, eval_every=32, eval_size=16).lr
        0.001
    """

    name: str
    model: ModelConfig | ModelSpec | None = None  # required (None is rejected with a message); ModelSpec: a foreign model
    task: TaskConfig | None = None  # required, likewise
    interventions: tuple[Any, ...] = ()
    lr: float = 1e-5
    batch_size: int = 32
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_sequences: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    factors: Mapping[str, bool] = field(default_factory=dict)
    description: str = ""
    n_sequences: int | None = None
    origin: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.origin is None:
            object.__setattr__(self, "origin", _call_site())
        require_model_and_task(self)
        for name in ("interventions", "betas"):
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
        if isinstance(self.interventions, dict) or not isinstance(self.interventions, tuple):
            object.__setattr__(self, "interventions", (self.interventions,))
        if isinstance(self.factors, Mapping):
            object.__setattr__(self, "factors", types.MappingProxyType(dict(self.factors)))
        check_fields(self, skip=("interventions", "factors", "origin"))
        if not _NAME_RE.match(self.name):
            raise ConfigError(f"Arm name {self.name!r} is not folder-safe; use letters, digits, '_' and '-' only.")
        if not isinstance(self.factors, Mapping) or not all(isinstance(k, str) and isinstance(v, bool) for k, v in self.factors.items()):
            raise ConfigError(f"Arm {self.name!r}: factors must map factor names to True/False, got {self.factors!r}.")
        if self.n_sequences is not None and self.n_sequences < 1:
            raise ConfigError(f"Arm {self.name!r}: n_sequences={self.n_sequences} must be a positive number of "
                              "sequences, or None for the study's.")
        for i in self.interventions:
            if not isinstance(i, Intervention):
                raise ConfigError(
                    f"Arm {self.name!r}: {i!r} is not an intervention; build interventions with the "
                    "constructors in clamp.interventions (e.g. match_clamp(layer=1, head=0))."
                )
        self.train_config(n_sequences=max(self.batch_size, self.warmup_sequences, 1), eval_every=1, eval_size=1)

    def train_config(self, *, n_sequences: int, eval_every: int, eval_size: int, device: str = "cpu",
                     heldout_eval_every: int | None = None) -> TrainConfig:
        """The :class:`TrainConfig` this arm trains with, given the study's length and schedule."""
        return TrainConfig(
            n_sequences=n_sequences, batch_size=self.batch_size, lr=self.lr, betas=tuple(self.betas),
            adam_eps=self.adam_eps, weight_decay=self.weight_decay, warmup_sequences=self.warmup_sequences,
            schedule=self.schedule, eval_every=eval_every, eval_size=eval_size, device=device,
            heldout_eval_every=heldout_eval_every,
        )


@dataclass(frozen=True, kw_only=True)
class Study:
    """A named experiment: arms x seeds, one length and one evaluation/checkpoint schedule.

    Args:
        name: folder-safe; results go to ``results/<name>/``.
        arms: the conditions (at least one, unique names).
        seeds: one run per seed per arm (at least one, unique).
        n_sequences: training length in sequences seen.
        eval_every: evaluate every this many sequences (and at 0, at the end, at every checkpoint).
        eval_size: sequences per evaluation set.
        heldout_eval_every: evaluate the held-out sets (held-out pairs, classes, exemplars) only at the
            first evaluation after every multiple of this many sequences (and at 0 and the end); None
            (the default) evaluates them at every evaluation.  The training-distribution set, which
            the phase-change rule reads, is evaluated at every evaluation either way.
        checkpoint_every: save a checkpoint every this many sequences; None means 10 evenly spaced.
        dense: windows (e.g. around the expected phase change) with denser evaluation/checkpoints.
        control: the arm the others are compared with; by default the arm named ``"control"`` if any.
        comparisons: extra ``(arm, reference)`` pairs for the statistics (the ratio is arm / reference); they
            form the secondary family, corrected on their own.
        primary_comparisons: the pre-planned comparisons, the primary family: ``(arm, reference)`` pairs or arm
            names (each against the control).  Default (empty): every arm against the control.  Control
            comparisons left out of it join the secondary family; a scan's components are a family of their own.
        correction: the multiple-comparison correction within each family: ``"holm"`` (default, family-wise
            error), ``"bonferroni"``, ``"bh"`` (Benjamini–Hochberg, false discovery rate) or ``"none"``.
        phase: the rule(s) that define when a run has learned; default (None): each arm's task's
            default rule (:meth:`clamp.tasks.base.Task.default_phase_rule`; Singh et al.'s training loss
            below 0.4 ln 2 for the few-shot task), one per distinct rule.
        metrics: user metric functions, each called at every evaluation with the
            :class:`~clamp.tasks.base.EvalView` of the ``train`` set and returning a ``[R]`` tensor (named
            after the function) or a dict of them; written to ``metrics.csv`` like built-in metrics, so phase
            rules and statistics can use them.  Defined at module level (study file or importable module):
            they are recorded by import path and found again in worker processes.
        alpha: significance level for the statistics.
        heatmap_heads: heads whose attention patterns the report draws, as ``"L1H0"``; default all of the last layer (at most 4).
        heatmap_at: sequences seen at which to draw them (nearest checkpoint); default 4 spread over training.
        device: ``"cpu"`` or ``"cuda"``.
        description: a paragraph for the report.
        stop_after_phase: stop each run a margin after its phase change under the primary phase rule
            (:class:`~clamp.phase.StopAfterPhase`; the margin must be at least the rule's persistence
            span); None (the default) trains every run to its budget.

    Example:
        >>> from clamp.tasks import FewShotConfig
        >>> Study(name="s", arms=[Arm(name="control", model=ModelConfig(), task=FewShotConfig())], seeds=[0, 1],
        ...       n_sequences=1000, eval_every=100).control
        'control'
    """

    name: str
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    n_sequences: int = 1_000_000
    eval_every: int = 1_000
    eval_size: int = 512
    heldout_eval_every: int | None = None
    checkpoint_every: int | None = None
    dense: tuple[Dense, ...] = ()
    control: str | None = _AUTO
    comparisons: tuple[tuple[str, str], ...] = ()
    primary_comparisons: tuple[Any, ...] = ()  # (arm, reference) pairs or arm names; normalised to pairs
    correction: str = "holm"
    phase: tuple[PhaseRule, ...] | None = None
    metrics: tuple[Any, ...] = ()
    alpha: float = 0.05
    heatmap_heads: tuple[str, ...] = ()
    heatmap_at: tuple[int, ...] = ()
    device: str = "cpu"
    description: str = ""
    stop_after_phase: StopAfterPhase | None = None
    origin: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.origin is None:
            object.__setattr__(self, "origin", _call_site())
        norm = {
            "arms": lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,),
            "seeds": lambda v: tuple(v) if isinstance(v, (list, tuple, range)) else (v,),
            "dense": lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,),
            "phase": lambda v: _default_phase(self.arms) if v is None else tuple(v) if isinstance(v, (list, tuple)) else (v,),
            "metrics": lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,),
            "comparisons": lambda v: tuple(tuple(p) if isinstance(p, list) else p for p in v) if isinstance(v, (list, tuple)) else v,
            "primary_comparisons": lambda v: tuple(tuple(p) if isinstance(p, list) else p for p in v)
            if isinstance(v, (list, tuple)) else v,
            "heatmap_heads": lambda v: (v,) if isinstance(v, str) else tuple(v),
            "heatmap_at": lambda v: tuple(v) if isinstance(v, (list, tuple)) else (v,),
        }
        for name, f in norm.items():
            object.__setattr__(self, name, f(getattr(self, name)))
        check_fields(self, skip=("control", "origin", "metrics"))
        seen_names: dict[str, Any] = {}
        for fn in self.metrics:
            if not callable(fn):
                raise ConfigError(f"Study.metrics entry {fn!r} is not a function; give functions f(view) -> tensor [R].")
            name = getattr(fn, "__name__", repr(fn))
            check_user_metric_name(name, f"Study.metrics entry {name!r}")
            if name in seen_names:
                raise ConfigError(f"Study.metrics has two functions named {name!r} ({_qualified(seen_names[name])} and "
                                  f"{_qualified(fn)}); their values would be recorded under one name. Rename one of them.")
            seen_names[name] = fn
        if not _NAME_RE.match(self.name):
            raise ConfigError(f"Study name {self.name!r} is not folder-safe; use letters, digits, '_' and '-' only.")
        if not self.arms:
            raise ConfigError("Study has no arms; give arms=[Arm(name='control', ...), ...].")
        names = [a.name for a in self.arms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"Study {self.name!r} has duplicate arm names {dup}; give every arm its own name.")
        if not self.seeds:
            raise ConfigError(f"Study {self.name!r} has no seeds; give seeds=[0, 1, 2] (one run per seed per arm).")
        if len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise ConfigError(f"Study {self.name!r}: seeds {list(self.seeds)} must be distinct non-negative integers.")
        for name in ("n_sequences", "eval_every", "eval_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"Study.{name}={getattr(self, name)} must be positive.")
        if self.heldout_eval_every is not None and self.heldout_eval_every < self.eval_every:
            raise ConfigError(f"Study.heldout_eval_every={self.heldout_eval_every} is shorter than eval_every="
                              f"{self.eval_every}; give a multiple of eval_every, or None for every evaluation.")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"Study.checkpoint_every={self.checkpoint_every} must be positive, or None for 10 evenly spaced.")
        if self.control == _AUTO:
            object.__setattr__(self, "control", "control" if "control" in names else None)
        if self.control is not None and self.control not in names:
            raise ConfigError(f"Study.control={self.control!r} is not an arm; choose one of {names} or None.")
        for pair in self.comparisons:
            if len(pair) != 2 or any(p not in names for p in pair):
                raise ConfigError(f"Study.comparisons entry {pair!r} must be two arm names from {names}.")
        primary = []
        for item in self.primary_comparisons:
            pair = (item, self.control) if isinstance(item, str) else tuple(item)
            if len(pair) != 2 or any(p not in names for p in pair) or pair[0] == pair[1]:
                raise ConfigError(f"Study.primary_comparisons entry {item!r} must be an arm name (compared with the "
                                  f"control) or an (arm, reference) pair of two different arms from {names}.")
            primary.append(pair)
        object.__setattr__(self, "primary_comparisons", tuple(primary))
        if self.correction not in CORRECTIONS:
            raise ConfigError(f"Study.correction={self.correction!r} is unknown; choose one of {list(CORRECTIONS)} "
                              "(holm: family-wise error; bh: false discovery rate; none: uncorrected).")
        if not self.phase:
            raise ConfigError("Study.phase needs at least one PhaseRule.")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"Study.alpha={self.alpha} must be in (0, 1).")
        for h in self.heatmap_heads:
            if not re.fullmatch(r"L\d+H\d+", h):
                raise ConfigError(f"Study.heatmap_heads entry {h!r} must look like 'L1H0' (layer 1, head 0).")
        if any(x < 0 for x in self.heatmap_at):
            raise ConfigError("Study.heatmap_at must hold non-negative sequence counts.")
        check_schedule(self)
        rules = self.phase_rules
        if self.stop_after_phase is not None:
            check_stoppable(rules[0], self.stop_after_phase)
        own = sorted({self.budget(a) for a in self.arms})
        if len(own) > 1 and any(r.persist == "end" for r in rules):
            raise ConfigError(f"Study {self.name!r}: a phase rule with persist='end' must last to each run's end, "
                              f"and the arms' budgets differ ({', '.join(f'{b:,}' for b in own)}), so a longer arm "
                              "would be held to a stricter rule. Fix: give the rule a span (persist=N sequences), "
                              "or one budget for every arm.")

    @property
    def phase_rules(self) -> tuple[PhaseRule, ...]:
        """The phase rules with their default persistence span made explicit (three ``eval_every`` intervals;
        :meth:`clamp.phase.PhaseRule.resolved`): what the worker stops on and ``study.json`` records."""
        return tuple(r.resolved(eval_every=self.eval_every) for r in self.phase)

    def metric_paths(self) -> list[str]:
        """Import paths (``"module:name"``) of the user metric functions."""
        return [import_path(fn) for fn in self.metrics]

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise ConfigError(f"Study {self.name!r} has no arm {name!r}; its arms are {[a.name for a in self.arms]}.")

    def budget(self, arm: Arm) -> int:
        """Training length of ``arm`` in sequences: its own ``n_sequences`` if set, else the study's."""
        return self.n_sequences if arm.n_sequences is None else arm.n_sequences

    def train_config(self, arm: Arm) -> TrainConfig:
        return arm.train_config(n_sequences=self.budget(arm), eval_every=self.eval_every,
                                eval_size=self.eval_size, device=self.device,
                                heldout_eval_every=self.heldout_eval_every)

    def checkpoint_points(self, arm: Arm) -> list[int]:
        """Sequences seen at which ``arm``'s runs checkpoint (rounded up to whole batches); includes 0 and the end."""
        n = self.budget(arm)
        every = self.checkpoint_every or max(1, math.ceil(n / 10))
        pts = set(range(0, n, every)) | {n}
        for d in self.dense:
            if d.checkpoint_every:
                pts |= set(range(d.start, min(d.stop, n) + 1, d.checkpoint_every))
        return _round_to_batches(pts, arm.batch_size, n)

    def extra_eval_points(self, arm: Arm) -> list[int]:
        """Evaluation points beyond the regular ``eval_every`` grid (dense windows), in whole batches."""
        n = self.budget(arm)
        pts: set[int] = set()
        for d in self.dense:
            if d.eval_every:
                pts |= set(range(d.start, min(d.stop, n) + 1, d.eval_every))
        return _round_to_batches(pts, arm.batch_size, n)


def _qualified(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _default_phase(arms: Any) -> tuple[PhaseRule, ...]:
    """The arms' tasks' default phase rules, distinct, in arm order (Singh et al.'s rule if none is given)."""
    rules: list[PhaseRule] = []
    for arm in arms if isinstance(arms, (list, tuple)) else (arms,):
        task = getattr(arm, "task", None)
        get = getattr(task, "default_phase_rule", None)
        if get is None:
            built = task.build() if hasattr(task, "build") else None
            get = getattr(built, "default_phase_rule", None)
        rule = get() if get is not None else PhaseRule()
        if rule not in rules:
            rules.append(rule)
    return tuple(rules) or (PhaseRule(),)


def _round_to_batches(pts: set[int], batch: int, n: int) -> list[int]:
    end = math.ceil(n / batch) * batch
    return sorted({min(math.ceil(p / batch) * batch, end) for p in pts})


def require_model_and_task(arm: Any) -> None:
    """An arm must say which model and task it trains: no default is substituted without a word."""
    for what, example in (("model", "clamp.ModelConfig(n_layers=2, n_heads=8, d_model=64)"),
                          ("task", "clamp.FewShotConfig()")):
        if getattr(arm, what) is None:
            raise ConfigError(f"Arm {arm.name!r} has no {what}=; every arm names its {what}, e.g. {what}={example} "
                              "(those are Singh et al.'s defaults).")


def check_schedule(study: Study) -> None:
    """Reject a schedule that cannot be carried out as written (every length in sequences seen).

    A checkpoint cadence, held-out cadence or dense window that reaches past a shortened run
    (``--set n_sequences=2000`` for a smoke test) is allowed: it only has fewer points.

    Example:
        >>> # Study(..., n_sequences=1_000, eval_every=5_000) -> ConfigError naming eval_every
    """
    n = study.n_sequences
    name = f"Study {study.name!r}"
    if study.eval_every > n:
        raise ConfigError(f"{name}: eval_every={study.eval_every:,} is longer than the run (n_sequences={n:,}), so "
                          f"only the start and the end would be evaluated; give eval_every <= {n:,}.")
    for d in study.dense:
        span = f"Dense(start={d.start:,}, stop={d.stop:,})"
        for what in ("eval_every", "checkpoint_every"):
            v = getattr(d, what)
            if v is not None and v > d.stop - d.start:
                raise ConfigError(f"{name}: {span} has {what}={v:,}, longer than the window itself "
                                  f"({d.stop - d.start:,} sequences); give a smaller {what} or a wider window.")
    for arm in study.arms:
        if arm.batch_size > n:
            raise ConfigError(f"{name}: arm {arm.name!r} has batch_size={arm.batch_size} but the run is only "
                              f"{n:,} sequences long; give a longer run or a smaller batch.")
        if arm.warmup_sequences > n:
            raise ConfigError(f"{name}: arm {arm.name!r} has warmup_sequences={arm.warmup_sequences:,}, longer than "
                              f"the run (n_sequences={n:,}); give at most {n:,}.")


def evaluation_grid(study: Study) -> str:
    """When the study's runs evaluate, in words (:func:`clamp.training.config.grid_words`): steps end on
    batch boundaries, so evaluations snap to the first boundary at or past each multiple of
    ``eval_every`` and a run ends on a whole batch."""
    return grid_words([(a.name, study.train_config(a)) for a in study.arms])


def outlasting_windows(study: Study) -> list[str]:
    """Every fixed window stop past its arm's last sequence, in words: the window stays on to the end
    of training (allowed, but the stop given is never reached), for ``--dry-run`` and the run's start.

    Example:
        >>> # Arm(..., interventions=[Knockout(..., windows=[Window(0, 700_000)])]) in a 600,000-sequence study ->
        >>> # ["arm 'ko': ko's window 0–700,000 outlasts the run (600,000 sequences): it stays on to the end of training"]
    """
    lines = []
    for arm in study.arms:
        end = study.train_config(arm).last_sequence
        for iv in arm.interventions:
            for w in iv.windows:
                if not isinstance(w.stop, int) or w.stop <= end:
                    continue
                what = f"window {w.start:,}–{w.stop:,}" if isinstance(w.start, int) else f"window's stop {w.stop:,}"
                lines.append(f"arm {arm.name!r}: {iv.name}'s {what} outlasts the run ({end:,} sequences): "
                             "it stays on to the end of training")
    return lines


__all__ = ["Arm", "Dense", "Study", "StudyError", "check_schedule", "evaluation_grid", "outlasting_windows", "require_model_and_task"]
