"""The natural-text task: deterministic per seed, corpus hash recorded and checked, file/folder corpora."""

from __future__ import annotations

import pytest
import torch

from clamp.errors import ConfigError
from clamp.tasks import TextConfig, task_from_dict
from clamp.tasks.base import EvalView


@pytest.fixture
def corpus(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("".join(f"line {i}: the quick brown fox {i * 7 % 13}\n" for i in range(2000)))
    return f


def test_deterministic_per_seed_and_independent_per_run(corpus):
    task = TextConfig(path=str(corpus), n_ctx=16, corpus_bytes=50_000).build()
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a, b = task.sample_runs(4, [g(0), g(1)]), task.sample_runs(4, [g(0), g(1)])
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.tokens[1:], task.sample(4, g(1)).tokens)
    assert not torch.equal(a.tokens[0], a.tokens[1])
    # targets are the next byte
    assert torch.equal(a.targets[..., :-1], a.tokens[..., 1:])


def test_corpus_hash_recorded_and_checked(corpus, tmp_path):
    cfg = TextConfig(path=str(corpus), n_ctx=16, corpus_bytes=50_000)
    d = cfg.to_dict()
    assert len(d["corpus_sha256"]) == 64 and "bpe_vocab" not in d
    again = task_from_dict(d)
    again.build().sample(1, torch.Generator().manual_seed(0))  # same corpus: fine
    bad = task_from_dict({**d, "corpus_sha256": "0" * 64})
    with pytest.raises(ConfigError, match="corpus changed"):
        bad.build().sample(1, torch.Generator().manual_seed(0))


def test_folder_corpus_and_default_stdlib():
    folder = TextConfig(n_ctx=16, corpus_bytes=20_000)  # the standard library
    t = folder.build()
    b = t.sample(2, torch.Generator().manual_seed(0))
    assert b.tokens.max() < 256 and b.tokens.shape == (1, 2, 16)
    assert folder.to_dict()["corpus_sha256"] == TextConfig(n_ctx=32, corpus_bytes=20_000).to_dict()["corpus_sha256"]


def test_repeat_probe_and_metrics(corpus):
    task = TextConfig(path=str(corpus), n_ctx=16, corpus_bytes=50_000).build()
    b = task.sample_runs(3, [torch.Generator().manual_seed(0)], "repeat")
    assert torch.equal(b.tokens[..., :8], b.tokens[..., 8:16])
    logits = torch.zeros(1, 3, 16, 256)
    perfect = torch.zeros(1, 3, 1, 16, 16)
    for i in range(16):
        perfect[..., i, i - 7 if i >= 8 else 0] = 1.0
    m = task.eval_metrics(EvalView("repeat", b, logits, {0: perfect}))
    assert m["prefix_match/L0H0"].item() == 1.0 and m["prefix_match/max"].item() == 1.0
    tr = task.sample_runs(3, [torch.Generator().manual_seed(0)])
    m = task.eval_metrics(EvalView("heldout", tr, torch.zeros(1, 3, 16, 256), {}))
    assert abs(m["icl/score"].item()) < 1e-5 and abs(m["icl/score_band"].item()) < 1e-5 and "token_loss/15" in m


def test_repeat_frac_doubles_training_windows_only(corpus):
    kw = dict(path=str(corpus), n_ctx=16, corpus_bytes=50_000)
    task, plain = TextConfig(**kw, repeat_frac=1.0).build(), TextConfig(**kw).build()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    b, o = task.sample(50, g()), plain.sample(50, g())  # the same windows before the copy
    offsets = set()
    for s in range(50):
        t, orig = torch.cat([b.tokens[0, s], b.targets[0, s, -1:]]), torch.cat([o.tokens[0, s], o.targets[0, s, -1:]])
        changed = (t != orig).nonzero()[:, 0]
        if len(changed) == 0:
            continue
        lo, hi = int(changed[0]), int(changed[-1])
        L = [L for L in range(2, 9) if lo >= L and torch.equal(t[lo : hi + 1], orig[lo - L : hi + 1 - L])]
        assert L, s  # the changed block copies the L tokens before it
        L = L[0]
        offsets.add(lo - L)
    assert len(offsets) > 3  # the repeat sits at varying offsets
    assert torch.equal(b.targets[0, :, :-1], b.tokens[0, :, 1:])
    h = task.sample(4, g(), "heldout")
    assert torch.equal(h.tokens, plain.sample(4, g(), "heldout").tokens)  # held-out text is never doubled
    assert "repeat_frac" not in TextConfig(path=str(corpus), corpus_bytes=50_000).to_dict()


def test_bpe_tokenizer_cached(corpus, tmp_path, monkeypatch):
    pytest.importorskip("tokenizers")
    import clamp.tasks.text as text

    monkeypatch.setattr(text, "CACHE", tmp_path / "cache")
    text._tokens.cache_clear()
    cfg = TextConfig(path=str(corpus), n_ctx=16, corpus_bytes=50_000, tokenizer="bpe", bpe_vocab=300)
    a = cfg.build().sample(3, torch.Generator().manual_seed(0))
    assert a.tokens.max() < 300
    assert list((tmp_path / "cache" / "tokenizers").glob("*.json"))
    text._tokens.cache_clear()
    b = cfg.build().sample(3, torch.Generator().manual_seed(0))  # from the cache
    assert torch.equal(a.tokens, b.tokens)
    text._tokens.cache_clear()
