"""Singh et al.'s composite clamps: an ideal previous-token layer below a layer, and a perfect copy.

Why this file exists: these two kinds replace a whole subcircuit by its ideal,
computed from the model itself (so gradient flows into what computes them);
each needs the few-shot task's label positions and a second layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from clamp.interventions.spec import Intervention


@dataclass(frozen=True, kw_only=True)
class IdealLayer1(Intervention):
    """Singh et al.'s layer-1 clamp: replace the layers below ``layer`` by an ideal previous-token circuit.

    Layer ``layer``'s queries and keys (hence its patterns) are computed from an
    idealised residual: the raw embeddings, with each label token's embedding
    replaced by that of the item before it.  Its values, and the residual
    stream it adds to, are the raw embeddings.  Computed from the model's own
    embeddings, so gradient flows into the embeddings and into layer
    ``layer``'s query/key weights.  Needs a task with label tokens
    (``label_pos`` in the batch meta) and at least ``layer + 1`` layers.

    Example:
        >>> IdealLayer1().name
        'ideal_layer1'
    """

    kind: ClassVar[str] = "ideal_layer1"
    layer: int = 1

    def default_name(self) -> str:
        return "ideal_layer1" if self.layer == 1 else f"ideal_below_L{self.layer}"

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.probe import check_meta

        errs: list[str] = []
        L = probe.cfg.n_layers
        if L < 2 or not 1 <= self.layer < L:
            errs.append(f"the ideal layer-1 clamp computes layer {self.layer}'s patterns from an idealised layer below it; "
                        f"it needs 1 <= layer < n_layers, and the model has {L} layer(s): set n_layers >= 2")
        check_meta(["label_pos"], probe, errs, "the ideal layer-1 clamp")
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        from clamp.interventions.effects import Compiled, Op

        pre, state = f"blocks.{self.layer}", {}
        block = model.blocks[self.layer]

        def prepare(ctx: Any) -> None:
            e = model.embed(ctx.batch)  # [R, B, T, D], raw embeddings (with gradient)
            label_pos = ctx.batch.meta["label_pos"]  # [R, B, N]
            D = e.shape[-1]
            before = e.gather(2, (label_pos - 1)[..., None].expand(*label_pos.shape, D))  # item before each label
            ideal = e.scatter(2, label_pos[..., None].expand(*label_pos.shape, D), before)
            h = block.ln1(ideal)
            state.update(e=e, q=block.attn.split_heads(block.attn.W_Q(h)), k=block.attn.split_heads(block.attn.W_K(h)))
        ops = [Op(f"{pre}.hook_resid_pre", lambda x, ctx: state["e"]),
               Op(f"{pre}.attn.hook_q", lambda x, ctx: state["q"]),
               Op(f"{pre}.attn.hook_k", lambda x, ctx: state["k"])]
        return Compiled(ops, prepare=prepare, state=state)


@dataclass(frozen=True, kw_only=True)
class PerfectCopy(Intervention):
    """Singh et al.'s copy clamp: the query position's logits become one head's pre-softmax scores.

    The logit of each label in context is the score of head ``head`` of layer
    ``layer`` from the query to that label's token; labels not in context get
    ``-inf``.  Computed from the model, so gradient flows into the head's
    queries and keys (and everything below them).  Needs the few-shot task and
    a second layer (``layer >= 1``).

    Example:
        >>> PerfectCopy(layer=1, head=3).name
        'perfect_copy_L1H3'
    """

    kind: ClassVar[str] = "perfect_copy"
    layer: int = 1
    head: int = 0

    def default_name(self) -> str:
        return f"perfect_copy_L{self.layer}H{self.head}"

    def check(self, probe: Any) -> list[str]:
        from clamp.interventions.probe import check_heads, check_meta

        errs: list[str] = []
        L = probe.cfg.n_layers
        if L < 2 or not 1 <= self.layer < L:
            errs.append(f"the perfect copy reads a layer-2 (layer >= 1) head's scores; layer={self.layer} does not fit a model "
                        f"with {L} layer(s): set n_layers >= 2 and 1 <= layer < n_layers")
        check_heads([self.head], probe, errs)
        check_meta(["label_pos", "context_labels"], probe, errs, "the perfect copy")
        return errs

    def compile(self, model: Any, task: Any) -> Any:
        import torch

        from clamp.interventions.effects import Compiled, Op

        state: dict = {}

        def read(x: Any, ctx: Any) -> Any:  # x: [R, B, H, T, T]
            state["scores"] = x[:, :, self.head, -1, :].gather(-1, ctx.batch.meta["label_pos"])  # [R, B, N] query->label
            return x

        def write(x: Any, ctx: Any) -> Any:  # x: [R, B, T, C]
            row = torch.full(x.shape[:2] + x.shape[3:], float("-inf"), dtype=x.dtype, device=x.device)
            row = row.scatter(-1, ctx.batch.meta["context_labels"], state["scores"].to(x.dtype))
            y = x.clone()
            y[:, :, -1] = row
            return y
        return Compiled([Op(f"blocks.{self.layer}.attn.hook_attn_scores", read, edits=False), Op("hook_logits", write)],
                        state=state)
