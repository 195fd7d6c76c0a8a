"""Applies interventions inside an nnsight trace: the only module that imports nnsight.

Why this file exists: importing nnsight patches torch process-wide, so it is
kept behind one module that is imported lazily, when an arm with
interventions first builds its intervener (see docs/nnsight.md).  The same plans
can also run through plain PyTorch forward hooks (``backend="hooks"``, which
never imports nnsight): the benchmark uses that to measure what the trace
costs, and the tests check that both backends train bit-identically.

How a forward runs (:meth:`Applier.forward`):

1. The active set at ``seen`` is looked up; with none active the plain
   ``model(batch)`` / ``model.run_with_cache`` path runs and the model is left
   unwrapped (no nnsight controller on any module), so a window that never opens
   or has closed leaves training bit-identical to having no intervention.
2. Otherwise the model is wrapped once (``NNsight(model)``, kept until the active
   set becomes empty), a *plan* is built once per active set (the touched hook
   points in forward order, each with its ops in arm order), effects compute
   their values (``prepare``), a clean pass runs if an effect needs one, and one
   trace applies every op in forward order, clone-edit-assign, saving detached
   copies of the requested activations *after* interventions.  nnsight puts a
   controller on every module and each costs a few handoffs per forward, so
   while a plan runs only the hook points it touches keep theirs.

The clean pass (needed by :class:`~clamp.interventions.kinds.ablations.PreservingAblation`)
is "this arm's model without the ablation": it applies every active
intervention except those that need the clean pass themselves, through the
same plan machinery, and records the clean-pass sites after those edits.  So a
pattern-preserving ablation in an arm that also knocks heads out or clamps a
pattern keeps the knocked-out / clamped patterns, not the unintervened ones.
The clean pass is not counted in the firing record.

Firing record (:meth:`Applier.firing_metrics`), per run.  An intervention
*fires* at a forward when one of its edits changed the tensor it edits (an
element differs), measured per run; an edit that reproduces the values already
there does not count, so a no-op is visible in the metrics:

- ``interventions/fired``: how many distinct interventions of the arm changed
  an activation in at least one evaluation forward since the last call;
- ``fired/<name>`` for every intervention of the arm: the number of training
  steps since the last call in which it changed an activation, plus 1 if it did
  so in at least one evaluation forward.  An intervention that changes its site
  over a whole eval interval of ``k`` steps reads ``k + 1``; one whose window is
  closed reads 0.

"Fired" is measured from inside the trace body, after the edit ran, so a body
that nnsight silently skipped shows as not fired.  A user's nnsight function
(``Op.traced``) is called with the wrapped model when the forward reaches its
site; what it assigned is read back, checked (same shape and dtype, no in-place
edit) and, if it is blocking, detached where it changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

from clamp.errors import ConfigError
from clamp.names import FIRED_TOTAL, fired
from clamp.interventions.effects import Compiled, Context, Op
from clamp.interventions.spec import Intervention
from clamp.model.config import is_pattern_hook
from clamp.model.transformer import HEADS_LAST_MAX_T, Transformer
from clamp.tasks.batch import Batch

LOGITS = "hook_logits"
Backend = Literal["nnsight", "hooks"]
BACKENDS = ("nnsight", "hooks")


@dataclass
class _Plan:
    """The ops of one active set, grouped by hook point in forward order."""

    active: tuple[int, ...]
    steps: list[tuple[str, Any, list[tuple[int, Op]]]]  # (hook name, envoy or module, [(owner, op)]); last: hook_logits
    clean: tuple[str, ...]  # hook names needed from a clean pass, in forward order
    modules: frozenset[int]  # ids of the modules whose nnsight controllers this plan's trace needs


class Applier:
    """The :class:`clamp.training.trainer.Intervener` for one arm on one (packed) model.

    Args:
        model: the model being trained (not wrapped; wrapped here when needed).
        interventions: the arm's interventions, validated.
        task: the built task (for reference sets).
        backend: ``"nnsight"`` (a trace per forward) or ``"hooks"`` (PyTorch forward hooks,
            registered for one forward and removed after it).
    """

    def __init__(self, model: Transformer, interventions: Sequence[Intervention], task: Any,
                 backend: Backend = "nnsight") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown intervention backend {backend!r}; choose one of {BACKENDS}")
        self.backend = backend
        self.model = model
        self.interventions = list(interventions)
        self.effects: list[Compiled] = [iv.compile(model, task) for iv in self.interventions]
        if backend == "hooks":
            needs = [iv.name for iv, e in zip(self.interventions, self.effects) if e.needs_nnsight]
            if needs:
                raise ConfigError(f"interventions {needs} are written with nnsight; apply them with backend='nnsight'.")
        self.order = {name: i for i, name in enumerate(model.hook_names())}
        self._wrapped: Any = None  # the NNsight wrapper while interventions are active
        self._plans: dict[tuple[tuple[int, ...], tuple[str, ...]], _Plan] = {}
        self._step_fired: dict[int, Tensor] = {}  # intervention -> [R] training steps in which it changed something
        self._eval_fired: dict[int, Tensor] = {}  # intervention -> [R] bool: changed something in an evaluation

    # ----------------------------------------------------------------- schedule

    def active(self, seen: int) -> tuple[int, ...]:
        """Indices of the interventions active at ``seen`` sequences."""
        return tuple(i for i, iv in enumerate(self.interventions) if iv.active(seen))

    def whole_batch(self, seen: int) -> bool:
        """Whether an active intervention edits a sequence using the rest of its batch (no chunked evaluation)."""
        return any(self.effects[i].batch_dependent for i in self.active(seen))

    # ----------------------------------------------------------------- wrapping

    def _wrap(self) -> Any:
        if self._wrapped is None:
            from nnsight import CONFIG, NNsight
            from nnsight.intervention.source import Controller

            CONFIG.APP.DEBUG = False  # nnsight turns it on when `-v` is on the command line (e.g. `pytest -v`)

            self._wrapped = NNsight(self.model)
            self._plans.clear()  # plans hold envoys of the wrapper
            # nnsight puts a controller on every module, and each costs a few handoffs per
            # forward; a trace only needs those of the hook points it reads or writes, so
            # the others are set aside and put back per plan (see _route).
            self._controllers = {id(m): (m, m.__dict__["forward"]) for m in self.model.modules()
                                 if isinstance(m.__dict__.get("forward"), Controller)}
            self._routed: frozenset[int] | None = None
        return self._wrapped

    def _route(self, plan: _Plan) -> None:
        """Leave nnsight controllers on exactly the modules ``plan`` touches."""
        if self._routed == plan.modules:
            return
        for key, (module, controller) in self._controllers.items():
            if key in plan.modules:
                module.__dict__["forward"] = controller
            else:
                module.__dict__.pop("forward", None)
        self._routed = plan.modules

    def unwrap(self) -> None:
        """Remove nnsight's controllers from every module (nothing of nnsight stays on the model)."""
        if self._wrapped is None:
            return
        from nnsight.intervention.source import STATE, Controller

        self._controllers.clear()
        for m in self.model.modules():
            if isinstance(m.__dict__.get("forward"), Controller):
                del m.__dict__["forward"]
            m.__dict__.pop(STATE, None)
        self._wrapped = None
        self._plans.clear()

    def _plan(self, active: tuple[int, ...], cache_names: Sequence[str]) -> _Plan:
        key = (active, tuple(sorted(set(cache_names))))
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        wrapped = self._wrap() if self.backend == "nnsight" else None
        by_site: dict[str, list[tuple[int, Op]]] = {name: [] for name in cache_names}
        clean: set[str] = set()
        for i in active:
            for op in self.effects[i].ops:
                by_site.setdefault(op.site, []).append((i, op))
            clean.update(self.effects[i].clean_sites)
        by_site.setdefault(LOGITS, [])  # read last, after every edit: the forward's output
        sites = sorted(by_site, key=self.order.__getitem__)
        plan = _Plan(
            active,
            [(s, wrapped.get(s) if wrapped is not None else self.model.hook_point(s), by_site[s]) for s in sites],
            tuple(sorted(clean, key=self.order.__getitem__)),
            frozenset(id(self.model.hook_point(s)) for s in sites),
        )
        self._plans[key] = plan
        return plan

    # ----------------------------------------------------------------- forward

    def forward(self, batch: Batch, seen: int, cache_names: Sequence[str], train: bool) -> tuple[Tensor, dict[str, Tensor]]:
        """Logits ``[R, B, T, C]`` with the interventions active at ``seen``, and detached activations after them."""
        active = self.active(seen)
        if not active:
            self.unwrap()
            if cache_names:
                return self.model.run_with_cache(batch, cache_names)
            return self.model(batch), {}
        # Patterns asked for but edited by nobody are handed over by the layers themselves
        # (Attention.capture), so those layers keep their fused path; the rest are read in the trace.
        edited = {op.site for i in active for op in self.effects[i].ops}
        captured = {n: self.model.blocks[int(n.split(".")[1])].attn for n in cache_names
                    if is_pattern_hook(n, len(self.model.blocks)) and n not in edited and batch.tokens.shape[2] <= HEADS_LAST_MAX_T}
        traced_names = [n for n in cache_names if n not in captured]
        plan = self._plan(active, traced_names)
        ctx = Context(batch=batch, train=train, seen=seen, runs=tuple(self.model.seeds))
        try:
            for attn in captured.values():
                attn.capture = {}
            for i in active:
                self.effects[i].prepare(ctx)  # no prepare reads ctx.clean, so the clean pass can use them too
            if plan.clean:
                ctx.clean = self._clean_pass(batch, active, plan.clean, train)
            logits, cache, fired = self._traced(batch, plan, set(traced_names), ctx)
            cache.update({n: attn.capture["pattern"].detach() for n, attn in captured.items()})
        finally:
            for attn in captured.values():
                attn.capture = None
            for i in active:
                self.effects[i].release()
        for i, changed in fired.items():
            if train:
                prev = self._step_fired.get(i)
                self._step_fired[i] = changed.float() if prev is None else prev + changed
            else:
                prev = self._eval_fired.get(i)
                self._eval_fired[i] = changed if prev is None else prev | changed
        return logits, cache

    def _traced(self, batch: Batch, plan: _Plan, cache_set: set[str], ctx: Context,
                detach: bool = True) -> tuple[Tensor, dict[str, Tensor], dict[int, Tensor]]:
        if self.backend == "hooks":
            return self._hooked(batch, plan, cache_set, ctx, detach)
        cache: dict[str, Tensor] = {}
        fired: dict[int, Tensor] = {}
        wrapped = self._wrapped
        self._route(plan)
        out: list[Tensor] = []
        with wrapped.trace(batch):
            for name, envoy, ops in plan.steps:
                x = envoy.output
                y = self._run_ops(name, x, ops, ctx, fired, envoy, wrapped)
                if name in cache_set:
                    cache[name] = y.detach() if detach else y
            out.append(y)  # the logits, after any edit of hook_logits (the model's output)
        return out[0], cache, fired

    def _run_ops(self, name: str, x: Tensor, ops: list[tuple[int, Op]], ctx: Context, fired: dict[int, Tensor],
                 envoy: Any = None, wrapped: Any = None) -> Tensor:
        """Apply ``ops`` to the activation ``x`` of hook ``name``; record which owners changed it; return the result.

        With an envoy (the nnsight backend) the result is assigned to the envoy's output;
        a traced op (a user's nnsight function) reads and assigns it itself.
        """
        y, assigned = x, x
        for owner, op in ops:
            if op.traced:
                if y is not assigned:
                    envoy.output = y  # the user's function reads the edits made before it
                    assigned = y
                version = y._version
                op.fn(wrapped, ctx)
                new = envoy.output
                if y._version != version:
                    raise ConfigError(f"{self.interventions[owner].name}: the function edited {name}.output in place; "
                                      "clone it, edit the clone and assign it back (in-place edits break backward).")
                assigned = new
            else:
                new = op.fn(y, ctx)
                if not op.edits:
                    continue
            if new is not y:
                if not isinstance(new, Tensor) or new.shape != y.shape or new.dtype != y.dtype:
                    got = f"{tuple(new.shape)} {new.dtype}" if isinstance(new, Tensor) else type(new).__name__
                    raise ConfigError(f"{self.interventions[owner].name}: its edit of {name} gave {got} where the "
                                      f"activation is {tuple(y.shape)} {y.dtype}; keep the shape and dtype.")
                diff = new != y
                if op.blocking:
                    new = torch.where(diff, new.detach(), y)
                changed = diff.reshape(diff.shape[0], -1).any(1)  # [R]
                prev = fired.get(owner)
                fired[owner] = changed if prev is None else prev | changed
            y = new
        if envoy is not None and y is not assigned:
            envoy.output = y
        return y

    def _hooked(self, batch: Batch, plan: _Plan, cache_set: set[str], ctx: Context,
                detach: bool) -> tuple[Tensor, dict[str, Tensor], dict[int, Tensor]]:
        """The same plan as :meth:`_traced`, through forward hooks removed right after the forward."""
        cache: dict[str, Tensor] = {}
        fired: dict[int, Tensor] = {}
        out: list[Tensor] = []

        def hook_for(name: str, ops: list[tuple[int, Op]]):
            def hook(_module: Any, _inputs: Any, x: Tensor) -> Tensor | None:
                y = self._run_ops(name, x, ops, ctx, fired)
                if name in cache_set:
                    cache[name] = y.detach() if detach else y
                if name == LOGITS:
                    out.append(y)
                return None if y is x else y
            return hook

        handles = [module.register_forward_hook(hook_for(name, ops)) for name, module, ops in plan.steps]
        try:
            self.model(batch)
        finally:
            for h in handles:
                h.remove()
        return out[0], cache, fired

    def _clean_pass(self, batch: Batch, active: tuple[int, ...], sites: tuple[str, ...], train: bool) -> dict[str, Tensor]:
        """Activations at ``sites`` with every active intervention applied except those needing this pass.

        In training the values keep their graph (the preserved patterns/values
        are this step's, with gradient); in evaluation they are detached.
        """
        others = tuple(i for i in active if not self.effects[i].clean_sites)
        plan = self._plan(others, sites)
        ctx = Context(batch=batch, train=train, runs=tuple(self.model.seeds))
        _, out, _ = self._traced(batch, plan, set(sites), ctx, detach=not train)
        return out

    # ----------------------------------------------------------------- firing

    def firing_metrics(self) -> dict[str, Tensor]:
        """Per-run firing counts since the last call (see the module docstring), then reset."""
        R = self.model.n_runs
        zeros = torch.zeros(R)
        evals = {i: v.detach().float().cpu() for i, v in self._eval_fired.items()}
        out = {FIRED_TOTAL: sum(evals.values(), zeros.clone())}
        for i, iv in enumerate(self.interventions):
            steps = self._step_fired.get(i)
            n = (zeros if steps is None else steps.detach().float().cpu()) + evals.get(i, zeros)
            out[fired(iv.name)] = n
        self._step_fired.clear()
        self._eval_fired.clear()
        return out
