"""AdamW for packed models: each run's update computed exactly as if it were trained alone.

Why this file exists: a packed model stores R runs' parameters in one tensor per weight (``[R, ...]``),
and torch's fused CPU AdamW processes a tensor in vector chunks with a scalar loop for the remainder;
the two paths round differently (the vector path fuses multiply-adds).  Which of a run's elements fall in
the remainder depends on R -- a run's five ``unembed.bias`` values are all remainder when it trains alone
and all vector body in a pack of five -- so the same seed gave slightly different numbers in different
packs (first at step 45 on the quickstart's shape, then everywhere), and a study's results depended on how
its runs happened to be packed.  :class:`PackedAdamW` hands the fused kernel each run's slice as its own
tensor (one kernel call for all of them): every run's update is then computed over exactly the elements,
in exactly the order, it has when trained alone, whatever the pack.  The optimiser's state (``step``,
``exp_avg``, ``exp_avg_sq`` per parameter) is torch's, so checkpoints load either way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class PackedAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW(fused=True)`` whose kernel sees every run of every ``[R, ...]`` parameter apart.

    Args:
        params: the packed model's parameters; each has the run axis first.
        n_runs: R (a parameter whose first axis is not R is updated whole, like plain AdamW).
        **kw: ``lr``, ``betas``, ``eps``, ``weight_decay`` as for AdamW (``fused`` is always on).

    Example:
        >>> w = torch.nn.Parameter(torch.ones(3, 5)); w.grad = torch.arange(15.0).reshape(3, 5)
        >>> opt = PackedAdamW([w], n_runs=3, lr=0.1); opt.step()
        >>> alone = torch.nn.Parameter(torch.ones(1, 5)); alone.grad = torch.arange(5.0, 10.0).reshape(1, 5)
        >>> one = PackedAdamW([alone], n_runs=1, lr=0.1); one.step()
        >>> torch.equal(w[1], alone[0])
        True
    """

    def __init__(self, params: Any, *, n_runs: int, **kw: Any) -> None:
        kw["fused"] = True
        super().__init__(params, **kw)
        self.n_runs = n_runs

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            exp_avgs: list[Tensor] = []
            exp_avg_sqs: list[Tensor] = []
            max_exp_avg_sqs: list[Tensor] = []
            steps: list[Tensor] = []
            self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)
            if not params:
                continue
            torch._foreach_add_(steps, 1)  # once per parameter, before its runs are split
            by_run, (p_views, m_views, v_views, s_views) = self._views(params, exp_avgs, exp_avg_sqs, steps)
            split_grads = [v for g, split in zip(grads, by_run) for v in (g.unbind(0) if split else (g,))]
            beta1, beta2 = group["betas"]
            torch._fused_adamw_(p_views, split_grads, m_views, v_views, [], s_views, amsgrad=False, lr=group["lr"],
                                beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                maximize=group["maximize"], grad_scale=None, found_inf=None)
        return loss

    def _views(self, params: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
               steps: list[Tensor]) -> tuple[list[bool], tuple[list[Tensor], ...]]:
        """Per parameter, whether it is split by run, and the per-run views of the parameters and their state
        (params, exp_avg, exp_avg_sq, step), built once and kept: the optimiser updates these tensors in place,
        so the views stay valid (they are rebuilt if the tensors change, e.g. after loading a state)."""
        key = tuple(id(t) for t in (*params, *exp_avgs, *exp_avg_sqs, *steps))
        cached = getattr(self, "_split", None)
        if cached is None or cached[0] != key:
            by_run = [p.dim() >= 1 and p.shape[0] == self.n_runs and self.n_runs > 1 for p in params]
            lists: tuple[list[Tensor], ...] = ([], [], [], [])
            for split, p, m, v, s in zip(by_run, params, exp_avgs, exp_avg_sqs, steps):
                for out, t in zip(lists[:3], (p, m, v)):
                    out.extend(t.unbind(0) if split else (t,))
                lists[3].extend([s] * (self.n_runs if split else 1))
            self._split = (key, (by_run, lists))
        return self._split[1]


__all__ = ["PackedAdamW"]
