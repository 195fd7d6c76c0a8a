"""Olsson et al. (2022) on real text: induction heads, the ICL score, smeared keys, knock-outs.

Byte-level language modelling of the Python standard library's own sources
(``TextConfig``: no download; the corpus hash is recorded in ``study.json``).
To make a laptop-length run carry more induction signal than natural text does,
half of the training windows repeat a segment of random length at a random
offset (``repeat_frac=0.5``; not in Olsson et al.; ``--set`` it to 0 for pure
text).  The ICL score (``icl/score``, ``icl/score_band``) is measured on
held-out pure text.

- ``two_layer`` (control): a 2-layer attention-only model; expected to form a
  prefix-matching (induction) head in layer 1, with the ICL score (loss at a
  late token minus loss at an early one) dropping at the same time.
- ``one_layer``: 1-layer attention-only; expected to form no induction head and
  no ICL drop (it has no previous-token head below it).
- ``one_layer_smeared``: 1-layer with smeared keys (each key mixed with the
  previous position's key by a learned per-head weight); expected to form an
  induction head despite having one layer.
- ``two_layer_prev_clamp``: the control with layer-0 head 0 clamped to a perfect
  previous-token pattern during all of training; expected to form its induction
  head earlier (the timing comparison with the control goes through the
  statistics layer).

The user metric ``icl_knockout`` recomputes the ICL score at every evaluation
with the last layer's best prefix-matching head (chosen per run on a repeated-
token probe) knocked out: Olsson et al. report that ablating induction heads
removes most of the ICL score.

    clamp run studies/olsson2022_phase_change.py
"""

import torch

from clamp import Arm, ModelConfig, PhaseRule, Study, TextConfig, prev_token_pattern_clamp

text = TextConfig(n_ctx=64, repeat_frac=0.5)
one = ModelConfig(n_layers=1, n_heads=4, d_model=64)
two = ModelConfig(n_layers=2, n_heads=4, d_model=64)
smeared = ModelConfig(n_layers=1, n_heads=4, d_model=64, smear_keys=True)


def icl_knockout(view) -> dict:
    """ICL score on the evaluation batch with the last layer's best prefix-matching head knocked out, per run.

    ``icl_knockout/score`` (head output zeroed), ``icl_knockout/base`` (the same batch, nothing knocked
    out: compare the two) and ``icl_knockout/head`` (which head).  The knock-out acts on the plain model
    (training-time interventions of the arm are not applied in this extra forward).
    """
    from clamp.tasks.measures import icl_positions, icl_score, induction_targets, per_token_loss, prefix_matching

    model, batch = view.model, view.batch
    T = batch.tokens.shape[2]
    last = model.cfg.n_layers - 1
    # a probe: each sequence's first half repeated (in-distribution tokens)
    half = T // 2
    tokens = torch.cat([batch.tokens[:, :32, :half], batch.tokens[:, :32, :half]], dim=2)
    rows = torch.zeros_like(tokens, dtype=torch.bool)
    rows[..., half : 2 * half - 1] = True
    probe = type(batch)(tokens, torch.zeros_like(tokens))
    _, cache = model.run_with_cache(probe, [f"blocks.{last}.attn.hook_pattern"])
    pm = prefix_matching(cache[f"blocks.{last}.attn.hook_pattern"], induction_targets(tokens), rows)  # [R, H]
    head = pm.argmax(1)  # [R]

    def zero_head(_m, _i, z):  # z: [R, B, T, H, dh]
        mask = torch.ones(z.shape[0], 1, 1, z.shape[3], 1, dtype=z.dtype, device=z.device)
        mask[torch.arange(z.shape[0]), 0, 0, head, 0] = 0
        return z * mask

    handle = model.blocks[last].attn.hook_z.register_forward_hook(zero_head)
    try:
        logits = model(batch)
    finally:
        handle.remove()
    early, late = icl_positions(T)
    return {"icl_knockout/score": icl_score(per_token_loss(logits, batch.targets), early, late),
            "icl_knockout/base": icl_score(per_token_loss(view.logits, batch.targets), early, late),
            "icl_knockout/head": head.float()}


STUDY = Study(
    name="olsson2022_phase_change",
    description=__doc__.split("\n\n")[1],
    arms=[
        Arm(name="two_layer", model=two, task=text, lr=3e-3, description="2-layer attention-only"),
        Arm(name="one_layer", model=one, task=text, lr=3e-3, description="1-layer attention-only"),
        Arm(name="one_layer_smeared", model=smeared, task=text, lr=3e-3, description="1-layer, smeared keys"),
        Arm(name="two_layer_prev_clamp", model=two, task=text, lr=3e-3,
            interventions=[prev_token_pattern_clamp(layer=0, head=0)],
            description="2-layer, layer-0 head 0 clamped to a previous-token pattern"),
    ],
    control="two_layer",
    seeds=[0, 1, 2],
    n_sequences=24_000,
    eval_every=2_000,
    eval_size=256,
    metrics=[icl_knockout],
    phase=[PhaseRule(metric="prefix_match/max", threshold=0.3, direction="above"),
           PhaseRule(metric="icl/score_band", threshold=-0.3, direction="below")],
    heatmap_heads=["L0H0"],
)
