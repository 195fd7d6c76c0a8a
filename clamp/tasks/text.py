"""Natural-text language modelling (Olsson et al. 2022 on real data), with no download.

Why this file exists: Olsson et al.'s evidence for induction heads comes from
text: the in-context-learning score (loss late in the context minus loss early
in it) drops abruptly while prefix-matching heads appear.  The default corpus is
the Python standard library's own source files, present on every machine; any
text file or folder can be given instead.  The corpus is read in sorted file
order up to ``corpus_bytes`` and its SHA-256 is recorded in ``to_dict()`` (so in
``study.json``, ``run.json`` and the run key): a run is never resumed on other
data.  Tokens are bytes (vocabulary 256) by default, or a small BPE trained once
with the ``tokenizers`` library and cached under ``~/.cache/clamp/tokenizers/``.

Evaluation sets: ``train`` (fixed windows of the training split), ``heldout``
(the last ``heldout_frac`` of the corpus), and ``repeat`` (tokens drawn
i.i.d. from the corpus's token frequencies, then repeated: Olsson's probe for
prefix-matching heads).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from clamp.errors import ConfigError
from clamp.tasks.batch import IGNORE, Batch
from clamp.tasks.base import EvalView, TaskBase, standard_metrics
from clamp.tasks.measures import (add_head_scores, copying_scores, icl_positions, icl_score, icl_score_band,
                                  induction_targets, per_token_loss, prefix_matching)
from clamp.tasks.text_config import TextConfig, _corpus  # the sampler reads its config

CACHE = Path(os.environ.get("CLAMP_CACHE", Path.home() / ".cache" / "clamp"))






def _bpe(blob: bytes, sha: str, vocab: int):
    """A byte-level BPE tokenizer trained on the corpus once, cached by corpus hash and size."""
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError as e:
        raise ConfigError("TextConfig(tokenizer='bpe') needs the `tokenizers` package: pip install 'clamp[text]', "
                          "or use tokenizer='byte'.") from e
    file = CACHE / "tokenizers" / f"{sha[:16]}-bpe{vocab}.json"
    if file.exists():
        return Tokenizer.from_file(str(file))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    text = blob.decode("utf-8", errors="replace")
    tok.train_from_iterator([text[i : i + 100_000] for i in range(0, len(text), 100_000)], trainer=trainer)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".{os.getpid()}.tmp")
    tok.save(str(tmp))
    os.replace(tmp, file)
    return tok


@functools.lru_cache(maxsize=8)
def _tokens(path: str | None, n_bytes: int, tokenizer: str, vocab: int) -> tuple[Tensor, str]:
    blob, sha = _corpus(path, n_bytes)
    if tokenizer == "byte":
        return torch.frombuffer(bytearray(blob), dtype=torch.uint8).long(), sha
    file = CACHE / "text" / f"{sha[:16]}-bpe{vocab}.pt"
    if file.exists():
        return torch.load(file), sha
    ids = _bpe(blob, sha, vocab).encode(blob.decode("utf-8", errors="replace")).ids
    out = torch.tensor(ids, dtype=torch.long)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".{os.getpid()}.tmp")
    torch.save(out, tmp)
    os.replace(tmp, file)
    return out, sha


class TextTask(TaskBase):
    """Sampler and metrics for :class:`TextConfig` (the corpus is read on first use).

    Example:
        >>> b = TextConfig(n_ctx=16).build().sample(2, torch.Generator().manual_seed(0))
        >>> b.tokens.shape
        torch.Size([1, 2, 16])
    """

    evaluators = ("train", "heldout", "repeat")
    pattern_evaluators = ("train", "repeat")
    #: positions (0-based predictions) whose loss is recorded as ``token_loss/{p}``, when inside the context
    LOSS_POSITIONS = (0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 1023)

    def __init__(self, cfg: TextConfig) -> None:
        self.cfg = cfg
        self._data: tuple[Tensor, Tensor] | None = None

    def dims(self) -> dict[str, int]:
        return {"d_in": 0, "d_vocab": self.cfg.vocab, "d_out": self.cfg.vocab, "n_ctx": self.cfg.n_ctx}

    def default_phase_rule(self):
        return self.cfg.default_phase_rule()

    @property
    def splits(self) -> tuple[Tensor, Tensor]:
        """(training tokens, held-out tokens), read and checked against ``corpus_sha256`` once."""
        if self._data is None:
            c = self.cfg
            toks, sha = _tokens(c.path, c.corpus_bytes, c.tokenizer, c.vocab)
            if c.corpus_sha256 is not None and c.corpus_sha256 != sha:
                raise ConfigError(f"the text corpus changed: its SHA-256 is {sha[:16]}..., the run was made with "
                                  f"{c.corpus_sha256[:16]}...; restore the corpus or start a new study.")
            cut = int(len(toks) * (1 - c.heldout_frac))
            if min(cut, len(toks) - cut) <= c.n_ctx + 1:
                raise ConfigError(f"the corpus ({len(toks)} tokens) is too short for n_ctx={c.n_ctx}; raise corpus_bytes.")
            self._data = (toks[:cut], toks[cut:])
        return self._data

    def sample(self, n: int, gen: torch.Generator, evaluator: str = "train") -> Batch:
        T = self.cfg.n_ctx
        if evaluator == "repeat":
            half = T // 2
            # random tokens drawn i.i.d. from the corpus's own token frequencies (tokens that never
            # occur in it would have untrained embeddings), then repeated
            data = self.splits[0]
            first = data[torch.randint(len(data), (n, half), generator=gen)]
            tokens = torch.cat([first, first, first[:, : T - 2 * half]], dim=1)
            targets = torch.full_like(tokens, IGNORE)
            targets[:, :-1] = tokens[:, 1:]
            rows = torch.zeros(n, T, dtype=torch.bool)
            rows[:, half : 2 * half - 1] = True  # predictions of copied tokens
            return Batch(tokens[None], targets[None], meta={"second_rows": rows[None]})
        if evaluator not in ("train", "heldout"):
            raise ValueError(f"unknown evaluator {evaluator!r}; this task has {self.evaluators}")
        data = self.splits[0 if evaluator == "train" else 1]
        start = torch.randint(len(data) - T - 1, (n,), generator=gen)
        window = data[start[:, None] + torch.arange(T + 1)]  # (n, T+1)
        if evaluator == "train" and self.cfg.repeat_frac > 0:
            # a segment of random length at a random offset is repeated right after itself, so that
            # no fixed-offset (positional) head can exploit the repeats
            rep = torch.rand(n, generator=gen) < self.cfg.repeat_frac
            seg = torch.randint(max(2, T // 8), T // 2 + 1, (n,), generator=gen)
            start = (torch.rand(n, generator=gen) * (T + 2 - 2 * seg)).long()  # uniform in [0, T + 1 - 2 seg]
            pos = torch.arange(T + 1)
            rel = pos[None, :] - (start + seg)[:, None]
            copy = rep[:, None] & (rel >= 0) & (rel < seg[:, None])
            window = torch.where(copy, window.gather(1, (pos[None, :] - seg[:, None]).clamp_min(0)), window)
        return Batch(window[None, :, :T].contiguous(), window[None, :, 1:].contiguous())

    def eval_metrics(self, view: EvalView) -> dict[str, Tensor]:
        """Loss/acc per set; on ``heldout`` (pure text): ``token_loss/{p}``, ``icl/score`` (Olsson's late-minus-early loss,
        positions from :func:`clamp.tasks.measures.icl_positions`), ``icl/score_band`` (the same over bands of
        ``n_ctx // 16`` positions: less noisy); on ``repeat``: ``prefix_match/L{l}H{h}``,
        ``prefix_match/max``, ``copying/L{l}H{h}`` and ``repeat/second_loss``."""
        out = standard_metrics(view)
        if view.evaluator == "heldout":
            tl = per_token_loss(view.logits, view.batch.targets)
            for p in self.LOSS_POSITIONS:
                if p < tl.shape[1]:
                    out[f"token_loss/{p}"] = tl[:, p]
            early, late = icl_positions(self.cfg.n_ctx)
            out["icl/score"] = icl_score(tl, early, late)
            out["icl/score_band"] = icl_score_band(tl, early, late, max(1, self.cfg.n_ctx // 16))
        elif view.evaluator == "repeat":
            rows = view.batch.meta["second_rows"]
            R = view.logits.shape[0]
            ce = F.cross_entropy(view.logits.flatten(0, 2).float(), view.batch.targets.flatten().clamp_min(0),
                                 reduction="none").view(R, view.batch.size, -1)
            w = rows.float()
            out["repeat/second_loss"] = (ce * w).sum((1, 2)) / w.sum((1, 2)).clamp_min(1)
            targets = induction_targets(view.batch.tokens)
            best = None
            for layer, pattern in view.patterns.items():
                s = prefix_matching(pattern, targets, rows)
                add_head_scores(out, "prefix_match", layer, s)
                best = s.max(1).values if best is None else torch.maximum(best, s.max(1).values)
                if view.model is not None:
                    add_head_scores(out, "copying", layer, copying_scores(view.model, layer))
            if best is not None:
                out["prefix_match/max"] = best
        return out
