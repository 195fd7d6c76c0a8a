"""The training loop: Adam on a packed model, with evaluation every K sequences.

Why this file exists: it is the one place where steps are taken, so it owns
the order of operations that makes runs reproducible (separate init, data and
evaluation seeds per run), the evaluation schedule (in sequences seen), and
the hand-off of metrics to whoever records them.  Interventions enter through
an *intervener* object (see :mod:`clamp.interventions`); without one the plain
PyTorch forward is used and nnsight is never imported.

Metrics are per run at each evaluation:

- ``{evaluator}/loss``, ``{evaluator}/acc`` for each of the task's evaluators
  (``train`` is a fixed sample of the training distribution);
- ``train_batch/loss``: mean training-batch loss since the previous evaluation;
- what the task's ``eval_metrics`` returns for each set (the built-in tasks:
  ``prev_token/L{l}H{h}`` for every head; ``induction/L{l}H{h}`` for layers >= 1
  on the few-shot task, ``prefix_match/...`` and per-repeat losses on the
  repeated-token task);
- the study's user metrics (``Study(metrics=[...])``), on the ``train`` set;
- what the intervener reports (how many interventions fired).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

import torch
from torch import Tensor

from clamp.errors import ConfigError
from clamp.names import TRAIN_BATCH_LOSS
from clamp.store import METRICS_HEADER, append_metrics, atomic_write_text
from clamp.tasks.measures import per_run_loss
from clamp.training.evaluation import add_evaluation_metrics, pattern_hook_names
from clamp.model.foreign import build_model
from clamp.model.config import ModelConfig
from clamp.model.transformer import Transformer
from clamp.tasks import Batch, EvalView, TaskConfig

from clamp.training.config import TrainConfig
from clamp.training.optimizer import PackedAdamW
EVAL_CHUNK = 128  # sequences per run in one evaluation forward (fastest per sequence on a CPU)




@dataclass(frozen=True)
class RunSeeds:
    """The three independent seeds of one run.

    ``RunSeeds.from_seed(s)`` uses ``s`` for initialisation and derives the data
    and evaluation seeds from it, so one integer names a run.
    """

    init: int
    data: int
    eval: int

    @classmethod
    def from_seed(cls, seed: int) -> "RunSeeds":
        return cls(init=seed, data=1_000_003 + seed, eval=2_000_006 + seed)

    @classmethod
    def coerce(cls, s: "int | RunSeeds") -> "RunSeeds":
        return s if isinstance(s, RunSeeds) else cls.from_seed(int(s))


_SUBNORMAL, _ONE = 5e-324, 1.0  # module constants, so the product below is computed at run time


def flush_denormal_enabled() -> bool:
    """Whether this thread flushes denormal floats to zero (torch has no getter, so a denormal is probed).

    The probe multiplies the smallest subnormal double in Python: the CPU's flush/denormals-are-zero
    flags, which ``torch.set_flush_denormal`` sets, apply to it as to torch's arithmetic (tested), and
    it costs well under a microsecond.

    Example:
        >>> isinstance(flush_denormal_enabled(), bool)
        True
    """
    x = _SUBNORMAL
    return x * _ONE == 0.0


@contextlib.contextmanager
def torch_settings(flush_denormal: bool) -> Iterator[None]:
    """The process-wide torch settings training wants, for the duration of a ``with`` block only.

    With ``flush_denormal`` denormal floats are flushed to zero inside the block (late in
    training Adam's second moments underflow into subnormals, which are slow on x86 CPUs;
    flushing them changes nothing measurable) and the previous setting is restored after it,
    also on an exception; without it nothing is touched.

    Example:
        >>> before = flush_denormal_enabled()
        >>> with torch_settings(True):
        ...     pass
        >>> flush_denormal_enabled() == before
        True
    """
    if not flush_denormal:
        yield
        return
    before = flush_denormal_enabled()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not before:
            torch.set_flush_denormal(False)


class Intervener(Protocol):
    """How interventions plug into training (implemented in :mod:`clamp.interventions`)."""

    def forward(self, batch: Batch, seen: int, cache_names: Sequence[str], train: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits ``[R, B, T, C]`` with the interventions active at ``seen`` applied, and detached activations."""

    def firing_metrics(self) -> dict[str, Tensor]:
        """Per-run firing counts since the last call (each ``[R]``), then reset."""

    def whole_batch(self, seen: int) -> bool:
        """Optional: True if an active intervention edits a sequence using the rest of its batch.

        Evaluation then runs each set in one forward; an intervener without this
        method is treated as if it returned True.
        """


Callback = Callable[[int, dict[str, Tensor]], Any]


class Trainer:
    """Trains R packed runs of one arm; resumable through :meth:`state_dict`.

    Args:
        model_cfg: architecture (task sizes may be left None).
        task_cfg: the task.
        train_cfg: optimiser and schedule.
        seeds: one per run; ints or :class:`RunSeeds`.
        intervener_factory: called with the model to build an intervener, or None.
        metrics: user metric functions, each called with the :class:`~clamp.tasks.base.EvalView` of the
            ``train`` evaluation set at every evaluation (see :func:`clamp.training.evaluation.add_user_metric`).

    Example:
        >>> from clamp.tasks import FewShotConfig
        >>> t = Trainer(ModelConfig(n_layers=1, n_heads=2, d_model=8), FewShotConfig(n_classes=10, d_in=8),
        ...             TrainConfig(n_sequences=64, eval_every=32, eval_size=16), seeds=[0, 1])
        >>> t.run(64, on_eval=lambda seen, m: None)
        >>> t.seen
        64
    """

    def __init__(
        self,
        model_cfg: ModelConfig,
        task_cfg: TaskConfig,
        train_cfg: TrainConfig,
        seeds: Sequence[int | RunSeeds],
        intervener_factory: Callable[[Transformer], Intervener] | None = None,
        metrics: Sequence[Callable[[EvalView], Any]] = (),
    ) -> None:
        if not seeds:
            raise ConfigError("Trainer needs at least one seed.")
        self._settings_depth = 0
        with self.torch_settings(train_cfg.flush_denormal):
            self._build(model_cfg, task_cfg, train_cfg, seeds, intervener_factory, metrics)

    @contextlib.contextmanager
    def torch_settings(self, flush_denormal: bool | None = None) -> Iterator[None]:
        """:func:`torch_settings` around the trainer's work (building, steps, evaluations), re-entrant.

        The global settings hold only while the trainer computes and are restored after,
        so that building or running a trainer leaves the rest of the process as it was.
        """
        if self._settings_depth:
            self._settings_depth += 1
            try:
                yield
            finally:
                self._settings_depth -= 1
            return
        self._settings_depth = 1
        try:
            with torch_settings(self.cfg.flush_denormal if flush_denormal is None else flush_denormal):
                yield
        finally:
            self._settings_depth = 0

    def _build(self, model_cfg: ModelConfig, task_cfg: TaskConfig, train_cfg: TrainConfig,
               seeds: Sequence[int | RunSeeds], intervener_factory: Callable[[Transformer], Intervener] | None,
               metrics: Sequence[Callable[[EvalView], Any]] = ()) -> None:
        self.task = task_cfg.build()
        self.task_cfg = task_cfg
        self.metrics = tuple(metrics)
        self.model_cfg = model_cfg.resolve(self.task.dims())
        self.cfg = train_cfg
        self.seeds = [RunSeeds.coerce(s) for s in seeds]
        self.device = torch.device(train_cfg.device)
        # the packed built-in Transformer, or a one-run foreign model (clamp.model.foreign)
        self.model = build_model(self.model_cfg, [s.init for s in self.seeds]).to(self.device)
        # one fused kernel per step; each run's slice apart, so a run's numbers do not depend on its pack
        self.opt = PackedAdamW(self.model.parameters(), n_runs=len(self.seeds), lr=train_cfg.lr,
                               betas=train_cfg.betas, eps=train_cfg.adam_eps, weight_decay=train_cfg.weight_decay)
        self.data_gens = [torch.Generator().manual_seed(s.data) for s in self.seeds]
        self.eval_sets = self._make_eval_sets()
        self.intervener = intervener_factory(self.model) if intervener_factory else None
        self.step = 0
        self._evaluated_at_zero = False
        self._batch_loss_sum = torch.zeros(self.n_runs)
        self._batch_loss_n = 0
        self._heldout_seen: int | None = None  # sequences seen at the last held-out evaluation
        self.pattern_names = pattern_hook_names(self.model, self.model_cfg.n_layers)

    @property
    def n_runs(self) -> int:
        return len(self.seeds)

    @property
    def seen(self) -> int:
        """Sequences seen per run so far."""
        return self.step * self.cfg.batch_size

    def _make_eval_sets(self) -> dict[str, Batch]:
        gens = [torch.Generator().manual_seed(s.eval) for s in self.seeds]
        sets = {}
        for e in self.task.evaluators:
            n = self.cfg.eval_size if e == "train" else self.cfg.heldout_eval_size
            sets[e] = self.task.sample_runs(n, gens, e).to(self.device)
        return sets

    def next_batch(self) -> Batch:
        return self.task.sample_runs(self.cfg.batch_size, self.data_gens).to(self.device)

    def train_step(self) -> Tensor:
        """One Adam step on every run; returns the per-run batch loss ``[R]`` (detached)."""
        with self.torch_settings():
            return self._train_step()

    def _train_step(self) -> Tensor:
        batch = self.next_batch()
        lr = self.cfg.lr_at(self.seen)
        for group in self.opt.param_groups:
            group["lr"] = lr
        if self.intervener is None:
            logits = self.model(batch)
        else:
            logits, _ = self.intervener.forward(batch, self.seen, (), True)
        losses = per_run_loss(logits, batch)
        self.opt.zero_grad(set_to_none=True)
        torch.autograd.backward(losses.sum())
        self.opt.step()
        self.step += 1
        losses = losses.detach().cpu()
        self._batch_loss_sum += losses
        self._batch_loss_n += 1
        return losses

    def _eval_forward(self, batch: Batch, names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits and cached activations for an evaluation set, in chunks of :data:`EVAL_CHUNK` sequences.

        Every sequence's forward is independent of the others, so chunks give the same
        results as one forward over the set, and keep the activations small enough for
        the CPU caches.  An intervention that edits a sequence using the rest of the
        batch gets the whole set in one forward.
        """
        def forward(b: Batch) -> tuple[Tensor, dict[str, Tensor]]:
            if self.intervener is None:
                return self.model.run_with_cache(b, names)
            return self.intervener.forward(b, self.seen, names, False)

        whole = self.intervener is not None and getattr(self.intervener, "whole_batch", lambda seen: True)(self.seen)
        if whole or batch.size <= EVAL_CHUNK:
            return forward(batch)
        parts = [forward(batch.sequences(i, i + EVAL_CHUNK)) for i in range(0, batch.size, EVAL_CHUNK)]
        logits = torch.cat([p[0] for p in parts], dim=1)
        return logits, {n: torch.cat([p[1][n] for p in parts], dim=1) for n in parts[0][1]}

    def heldout_due(self, seen: int) -> bool:
        """Whether an evaluation at ``seen`` includes the held-out sets (see ``TrainConfig.heldout_eval_every``)."""
        K = self.cfg.heldout_eval_every
        if K is None or self._heldout_seen is None or seen >= self.cfg.n_sequences:
            return True
        return seen // K > self._heldout_seen // K

    def evaluate(self) -> dict[str, Tensor]:
        """All metrics at the current point, each a CPU tensor ``[R]``.

        The held-out sets are evaluated at every call unless ``TrainConfig.heldout_eval_every``
        spaces them out; their metrics are then absent from the other evaluations.
        """
        with self.torch_settings():
            return self._evaluate()

    @torch.no_grad()
    def _evaluate(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        heldout = self.heldout_due(self.seen)
        if heldout:
            self._heldout_seen = self.seen
        pattern_sets = getattr(self.task, "pattern_evaluators", ("train",))
        for name, batch in self.eval_sets.items():
            if name != "train" and not heldout:
                continue
            names = self.pattern_names if name in pattern_sets else ()
            logits, cache = self._eval_forward(batch, names)
            patterns = {l: cache[n] for l, n in enumerate(self.pattern_names)} if names else {}
            view = EvalView(name, batch, logits, patterns, self.seen, self.model)
            add_evaluation_metrics(out, self.task, view, self.metrics)
        if self._batch_loss_n:
            out[TRAIN_BATCH_LOSS] = self._batch_loss_sum / self._batch_loss_n
        self._batch_loss_sum = torch.zeros(self.n_runs)
        self._batch_loss_n = 0
        if self.intervener is not None:
            observe = getattr(self.intervener, "observe", None)  # triggered windows (clamp.interventions.triggers)
            if observe is not None:
                out.update(observe(self.seen, out))
            out.update(self.intervener.firing_metrics())
        return {k: v.detach().float().cpu() for k, v in out.items()}

    def is_eval_point(self, seen: int) -> bool:
        """Evaluate at 0, at every multiple of ``eval_every`` crossed by a step, and at the end (:meth:`TrainConfig.is_eval_point`)."""
        return self.cfg.is_eval_point(seen)

    def run(self, until: int | None = None, on_eval: Callback | None = None,
            on_step: Callable[[int, Tensor], Any] | None = None) -> None:
        """Train until ``until`` sequences (default: the configured length), evaluating on schedule.

        Evaluation at 0 happens once, on the first call with ``on_eval``; ``on_eval(seen, metrics)``
        receives every evaluation and ``on_step(seen, losses)`` every step.
        """
        with self.torch_settings():
            self._run(until, on_eval, on_step)

    def _run(self, until: int | None, on_eval: Callback | None, on_step: Callable[[int, Tensor], Any] | None) -> None:
        until = min(self.cfg.n_sequences if until is None else until, self.cfg.n_sequences)
        if self.step == 0 and not self._evaluated_at_zero and on_eval is not None:
            on_eval(0, self.evaluate())
            self._evaluated_at_zero = True
        while self.seen < until:
            losses = self.train_step()
            if on_step is not None:
                on_step(self.seen, losses)
            if self.is_eval_point(self.seen) and on_eval is not None:
                on_eval(self.seen, self.evaluate())

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-exactly: weights, optimiser, data streams, counters."""
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "data_gens": [g.get_state() for g in self.data_gens],
            "batch_loss_sum": self._batch_loss_sum.clone(),
            "batch_loss_n": self._batch_loss_n,
            "heldout_seen": self._heldout_seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        for g, s in zip(self.data_gens, state["data_gens"]):
            g.set_state(s)
        self._batch_loss_sum = state["batch_loss_sum"].clone()
        self._batch_loss_n = int(state["batch_loss_n"])
        self._heldout_seen = state.get("heldout_seen")


class MetricsWriter:
    """Writes metrics to a long-format ``metrics.csv`` (:func:`clamp.store.append_metrics`) for every run, each evaluation."""

    def __init__(self, path: str | os.PathLike, run_labels: Sequence[int | str], append: bool = False) -> None:
        self.path = path
        self.run_labels = list(run_labels)
        if not append or not os.path.exists(path):
            atomic_write_text(path, METRICS_HEADER)

    def __call__(self, seen: int, metrics: dict[str, Tensor]) -> None:
        values = {name: v.tolist() for name, v in metrics.items()}
        for r, label in enumerate(self.run_labels):
            append_metrics(self.path, seen, label, {name: vs[r] for name, vs in values.items()})

    def close(self) -> None:
        """Nothing to close: every evaluation is appended (and flushed) as it comes."""


def train(
    model_cfg: ModelConfig,
    task_cfg: TaskConfig,
    train_cfg: TrainConfig,
    seeds: Sequence[int | RunSeeds],
    *,
    metrics_path: str | os.PathLike | None = None,
    callback: Callback | None = None,
    intervener_factory: Callable[[Transformer], Intervener] | None = None,
    progress: bool = False,
    metrics: Sequence[Callable[[EvalView], Any]] = (),
) -> Trainer:
    """Train R packed runs from scratch; write metrics to a CSV and/or hand them to ``callback``.

    Returns the finished :class:`Trainer` (its ``model`` holds the trained weights).

    Example:
        >>> from clamp.tasks import FewShotConfig
        >>> t = train(ModelConfig(n_layers=1, n_heads=2, d_model=8), FewShotConfig(n_classes=10, d_in=8),
        ...           TrainConfig(n_sequences=64, eval_every=32, eval_size=16), seeds=[0])
        >>> t.seen
        64
    """
    trainer = Trainer(model_cfg, task_cfg, train_cfg, seeds, intervener_factory, metrics=metrics)
    writer = MetricsWriter(metrics_path, [s.init for s in trainer.seeds]) if metrics_path else None
    start = time.perf_counter()

    def on_eval(seen: int, metrics: dict[str, Tensor]) -> None:
        if writer is not None:
            writer(seen, metrics)
        if callback is not None:
            callback(seen, metrics)
        if progress:
            rate = seen / max(time.perf_counter() - start, 1e-9)
            loss = ", ".join(f"{v:.3f}" for v in metrics["train/loss"].tolist())
            print(f"{seen:>10,d} seqs  {rate:8.0f} seq/s/run  train loss [{loss}]", flush=True)

    try:
        trainer.run(on_eval=on_eval)
    finally:
        if writer is not None:
            writer.close()
    return trainer
