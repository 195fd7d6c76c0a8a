"""The torch side of a foreign model: the user's module behind the built-in model's interface.

Why this file exists: the trainer, the interventions (:mod:`clamp.interventions`)
and the metrics talk to a model through a small interface -- ``forward(batch)``
giving logits ``[R, B, T, C]``, ``run_with_cache``, ``hook_names`` in forward
order, ``hook_point``, ``blocks[l].attn.capture``, ``cfg.n_layers``/``n_heads``,
``n_runs``/``seeds``.  :class:`ForeignModel` provides it for any module, with a
run axis of size 1: each canonical activation the adapter finds is passed, with
a leading axis of 1, through a :class:`~clamp.model.transformer.HookPoint` owned
here (``blocks.{l}.attn.hook_pattern`` ...), from PyTorch hooks on the user's
modules or from inside :func:`clamp.model.adapters.attention`.  An intervention
replacing a hook point's output therefore replaces the activation inside the
user's forward.  The user's module is ``.net``, so nnsight paths into it read
``model.net.transformer.h[0].mlp``.
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from clamp.errors import ConfigError
from clamp.model.layers import HookPoint, forward_with_cache
from clamp.tasks.batch import Batch

ATTN_LEAVES = ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z")


BUILTIN_ONLY = ("this is a foreign model: blocks[l] holds only clamp's hook points, not the built-in model's weights "
                "or layers, so interventions that reach into them (IdealLayer1, checkpoint grafts) are not supported; "
                "use the canonical hook names, ModuleEdit or an NnsightIntervention")


class _Hooks(nn.Module):
    """A container of hook points; asking it for a built-in layer's part says why there is none."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            raise AttributeError(f"{name!r}: {BUILTIN_ONLY}") from None


class _AttnHooks(_Hooks):
    def __init__(self) -> None:
        super().__init__()
        for leaf in ATTN_LEAVES:
            setattr(self, leaf, HookPoint())
        self.capture: dict[str, Tensor] | None = None  # as Attention.capture: the pattern lands here when set


class _BlockHooks(_Hooks):
    def __init__(self) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()
        self.attn = _AttnHooks()
        self.hook_attn_out = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()


def _through(hook: nn.Module, x: Tensor) -> Tensor:
    """``x`` ``[B, ...]`` through ``hook`` with a run axis of 1, back to ``[B, ...]``."""
    return hook(x[None])[0]


def _first_output_hook(hook: nn.Module):
    """A forward hook routing a module's output (or the first element of a tuple output) through ``hook``."""
    def fn(_m: nn.Module, _args: Any, out: Any) -> Any:
        if isinstance(out, Tensor):
            return _through(hook, out)
        if isinstance(out, tuple) and out and isinstance(out[0], Tensor):
            return (_through(hook, out[0]), *out[1:])
        raise ConfigError(f"{type(_m).__name__} returned {type(out).__name__}; an adapted module must return a tensor "
                          "or a tuple whose first element is one")
    return fn


def _input_hook(hook: nn.Module):
    """A forward pre-hook routing a module's hidden-state input (first positional, or ``hidden_states=``)."""
    def fn(_m: nn.Module, args: tuple, kwargs: dict) -> Any:
        if args and isinstance(args[0], Tensor):
            return (_through(hook, args[0]), *args[1:]), kwargs
        if isinstance(kwargs.get("hidden_states"), Tensor):
            return args, {**kwargs, "hidden_states": _through(hook, kwargs["hidden_states"])}
        raise ConfigError(f"{type(_m).__name__} got no hidden-state tensor (first argument or hidden_states=)")
    return fn


class ForeignModel(nn.Module):
    """One run of a user's model, with clamp's embedding for item tasks and canonical hook points.

    Args:
        spec: a resolved :class:`~clamp.model.foreign.ModelSpec`.
        seeds: exactly one initialisation seed (foreign models are not packed).
    """

    def __init__(self, spec: Any, seeds: Sequence[int]) -> None:
        super().__init__()
        if len(seeds) != 1:
            raise ConfigError(f"a foreign model trains one run per process, got {len(seeds)} seeds; "
                              "train each seed alone (the runner does so for foreign models).")
        self.cfg = spec
        self.seeds = [int(seeds[0])]
        sizes = spec.sizes
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seeds[0])
            self.net = spec.build_net()
            self.adapter = spec.make_adapter(self.net)
            self.why_no_pattern = self.adapter.prepare(self.net)
            self.d_model = spec.d_model or self.adapter.d_model(self.net)
            self.item_embed = self.label_embed = None
            if sizes.get("d_in"):
                if not self.d_model:
                    raise ConfigError(f"{spec.factory}: an item task needs the model width for clamp's item embedding; "
                                      "set ModelSpec(d_model=...) or use an adapter that knows it.")
                self.item_embed = nn.Linear(sizes["d_in"], self.d_model)
                self.label_embed = nn.Embedding(max(sizes["d_vocab"], 1), self.d_model)
        self.net.eval()  # no dropout: it would draw from the global RNG and break same-seed reproducibility
        layers = list(self.adapter.layers(self.net))
        self.n_layers = len(layers)
        self.n_heads = int(self.adapter.n_heads(self.net)) if layers else 0
        self.blocks = nn.ModuleList(_BlockHooks() for _ in layers)
        self.hook_logits = HookPoint()
        self._names: list[str] = []
        for l, layer in enumerate(layers):
            hooks = self.blocks[l]
            layer.register_forward_pre_hook(_input_hook(hooks.hook_resid_pre), with_kwargs=True)
            self._names.append(f"blocks.{l}.hook_resid_pre")
            attn = self.adapter.attention(self.net, l)
            if attn is not None:
                if self.why_no_pattern is None:
                    attn.__dict__["_clamp_attn"] = hooks.attn  # read by adapters.attention; not a submodule
                    self._names += [f"blocks.{l}.attn.{leaf}" for leaf in ATTN_LEAVES]
                attn.register_forward_hook(_first_output_hook(hooks.hook_attn_out))
                self._names.append(f"blocks.{l}.hook_attn_out")
            mlp = self.adapter.mlp(self.net, l)
            if mlp is not None:
                mlp.register_forward_hook(_first_output_hook(hooks.hook_mlp_out))
                self._names.append(f"blocks.{l}.hook_mlp_out")
            layer.register_forward_hook(_first_output_hook(hooks.hook_resid_post))
            self._names.append(f"blocks.{l}.hook_resid_post")
        self._names.append("hook_logits")
        self._points = {n: m for n, m in self.named_modules() if isinstance(m, HookPoint) and n in self._names}
        self.sites = nn.ModuleDict()  # hook points on any module's input/output, added by add_site

    # ----------------------------------------------------------------- module sites

    def add_site(self, module: str, io: str = "output") -> str:
        """A hook point on the input or output of any module of the model (by its path); returns its hook name.

        ``module`` is the module's path in the user's model (``"transformer.h.0.mlp"``) or in the
        nnsight-wrapped foreign model (``"net.transformer.h.0.mlp"``).  The output is the module's
        output (the first element of a tuple output), the input its first positional argument
        (or ``hidden_states=``).  Installed once, kept for the model's life (an identity when
        nothing edits it); the hook names are re-ordered by one probe forward.
        """
        path = module[4:] if module.startswith("net.") else module
        modules = dict(self.net.named_modules())
        if path not in modules or not path:
            close = difflib.get_close_matches(path, [n for n in modules if n], n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "print(model) shows the module paths"
            raise ConfigError(f"no module {module!r} in the model built by {self.cfg.factory}; {hint}")
        if io not in ("output", "input"):
            raise ConfigError(f"io={io!r} is unknown; choose 'output' or 'input'")
        key = f"{path.replace('.', '__')}__{io}"
        name = f"sites.{key}"
        if name in self._points:
            return name
        hook = HookPoint()
        self.sites[key] = hook
        if io == "output":
            modules[path].register_forward_hook(_first_output_hook(hook))
        else:
            modules[path].register_forward_pre_hook(_input_hook(hook), with_kwargs=True)
        self._points[name] = hook
        self._reorder(name)
        return name

    @torch.no_grad()
    def _reorder(self, new: str) -> None:
        """Hook names in the order one forward of the model calls them."""
        order: list[str] = []
        handles = [hp.register_forward_pre_hook(lambda _m, _a, n=n: order.append(n)) for n, hp in self._points.items()]
        T = self.cfg.sizes["n_ctx"]
        try:
            if self.item_embed is not None:
                self.net(inputs_embeds=torch.zeros(1, T, self.d_model), **self._extra())
            else:
                self.net(input_ids=torch.zeros(1, T, dtype=torch.long), **self._extra())
        finally:
            for h in handles:
                h.remove()
        if new not in order:
            raise ConfigError(f"module site {new!r} is never reached by the model's forward; pick a module the forward calls")
        self._names = [n for n in dict.fromkeys(order) if n != "hook_logits"] + ["hook_logits"]

    def _extra(self) -> dict:
        return {"use_cache": False} if hasattr(self.net, "config") else {}

    @property
    def n_runs(self) -> int:
        return 1

    def train(self, mode: bool = True) -> "ForeignModel":
        super().train(mode)
        self.net.eval()
        return self

    def missing_site(self, site: str) -> str | None:
        """Why a canonical name is absent from this model (for validation messages), or None."""
        parts = str(site).split(".")
        if len(parts) == 4 and parts[0] == "blocks" and parts[2] == "attn" and parts[3] in ATTN_LEAVES:
            if self.why_no_pattern is not None:
                return f"hook {site!r} does not exist: {self.why_no_pattern}"
            if self.n_layers and parts[1].isdigit() and int(parts[1]) < self.n_layers:
                return (f"hook {site!r} does not exist: the {self.adapter.family} adapter maps no attention module "
                        "whose forward calls clamp.model.adapters.attention for this layer")
        if self.n_layers == 0 and parts[0] == "blocks":
            return (f"hook {site!r} does not exist: model {self.cfg.factory} has no architecture adapter (only "
                    "'hook_logits'); give ModelSpec(adapter='module:Class') naming a clamp.model.adapters.Adapter")
        return None

    # ----------------------------------------------------------------- forward

    def embed(self, batch: Batch) -> Tensor:
        """Not the built-in model's ``embed`` (``[R, B, T, D]`` feeding its blocks): see :meth:`inputs_embeds`."""
        raise AttributeError(f"embed: {BUILTIN_ONLY}")

    def inputs_embeds(self, batch: Batch) -> Tensor:
        """``inputs_embeds`` ``[B, T, D]`` for an item task: items through the item map, labels through the label embedding."""
        tokens = batch.tokens[0]
        x = self.label_embed(tokens)
        items = batch.items[0].to(self.item_embed.weight.dtype)
        return torch.where(batch.item_mask[0][..., None], self.item_embed(items), x)

    def forward(self, batch: Batch) -> Tensor:
        """Logits ``[1, B, T, C]`` at every position."""
        if batch.tokens.shape[0] != 1:
            raise ValueError(f"batch has {batch.tokens.shape[0]} runs; a foreign model has 1")
        extra = self._extra()
        if self.item_embed is not None:
            out = self.net(inputs_embeds=self.inputs_embeds(batch), **extra)
        else:
            out = self.net(input_ids=batch.tokens[0], **extra)
        logits = out if isinstance(out, Tensor) else getattr(out, "logits", None)
        if not isinstance(logits, Tensor):
            raise ConfigError(f"model {self.cfg.factory} returned {type(out).__name__}; return logits [B, T, C] "
                              "or an object with .logits")
        return self.hook_logits(logits[None])

    def hook_names(self) -> list[str]:
        """Canonical names of the hook points the adapter installed, in forward order."""
        return list(self._names)

    def hook_point(self, name: str) -> HookPoint:
        if name not in self._points:
            raise KeyError(name)
        return self._points[name]

    def run_with_cache(self, batch: Batch, names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
        """Forward pass that also returns the named activations ``[1, B, ...]``, detached."""
        return forward_with_cache(self, batch, names)


__all__ = ["ForeignModel"]
