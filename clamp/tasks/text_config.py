"""The text task's config, without torch: studies are loaded and checked before torch is imported.

Why this file exists: ``clamp list``, a rejected study file and the static checks of ``clamp run`` build
every arm's config and ask its ``dims()``; the task itself (:mod:`clamp.tasks.text`, which imports torch) is
built only by ``build()``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from clamp.errors import ConfigError
from clamp.importpath import resolve
from clamp.phase import PhaseRule

SUFFIXES = (".py", ".txt", ".md", ".rst")  # files read from a folder


@dataclass(frozen=True, kw_only=True)
class TextConfig:
    """Parameters of the text task.

    Args:
        path: a text file or a folder (its ``.py``, ``.txt``, ``.md``, ``.rst`` files, sorted); None: the
            Python standard library's sources.
        corpus_bytes: read at most this many bytes (whole files, in sorted order, the last one cut).
        n_ctx: tokens per sequence (the model predicts each next token).
        tokenizer: ``"byte"`` (256 tokens) or ``"bpe"`` (``bpe_vocab`` tokens, needs ``tokenizers``).
        heldout_frac: the last fraction of the corpus, used only for the ``heldout`` evaluation set.
        repeat_frac: in this fraction of *training* sequences (and of the ``train`` evaluation set) a
            segment of random length (``n_ctx // 8`` to ``n_ctx // 2``) at a random offset is repeated right
            after itself: a denser induction signal than natural text gives, so that short runs reach the
            phase change.  Not in Olsson et al.; 0 is pure text.
            The ICL score and per-token losses are always measured on the ``heldout`` set (pure text).
        corpus_sha256: filled by ``to_dict()``; when given, the corpus read must have this hash.

    Example:
        >>> TextConfig(n_ctx=32).build().dims()
        {'d_in': 0, 'd_vocab': 256, 'd_out': 256, 'n_ctx': 32}
    """

    kind: Literal["text"] = "text"
    path: str | None = None
    corpus_bytes: int = 2_000_000
    n_ctx: int = 64
    tokenizer: Literal["byte", "bpe"] = "byte"
    bpe_vocab: int = 512
    heldout_frac: float = 0.05
    repeat_frac: float = 0.0
    corpus_sha256: str | None = None

    def __post_init__(self) -> None:
        if self.corpus_bytes < 10_000:
            raise ConfigError(f"TextConfig.corpus_bytes={self.corpus_bytes}: give at least 10000 bytes.")
        if self.n_ctx < 8:
            raise ConfigError(f"TextConfig.n_ctx={self.n_ctx}: need at least 8 tokens per sequence.")
        if self.tokenizer not in ("byte", "bpe"):
            raise ConfigError(f"TextConfig.tokenizer={self.tokenizer!r} is unknown; choose 'byte' or 'bpe'.")
        if self.tokenizer == "bpe" and not 257 <= self.bpe_vocab <= 65_536:
            raise ConfigError(f"TextConfig.bpe_vocab={self.bpe_vocab} must be in [257, 65536].")
        if not 0.0 <= self.repeat_frac <= 1.0:
            raise ConfigError(f"TextConfig.repeat_frac={self.repeat_frac} must be in [0, 1].")
        if not 0.0 < self.heldout_frac < 0.5:
            raise ConfigError(f"TextConfig.heldout_frac={self.heldout_frac} must be in (0, 0.5).")
        if self.path is not None and not Path(self.path).exists():
            raise ConfigError(f"TextConfig.path={self.path!r} does not exist; give a text file or a folder, or None "
                              "for the Python standard library's sources.")

    @property
    def vocab(self) -> int:
        return 256 if self.tokenizer == "byte" else self.bpe_vocab

    def build(self) -> Any:
        """The sampler, :class:`clamp.tasks.text.TextTask` (imports torch)."""
        # Looked up by import path, not imported: the task module imports this config module.
        return resolve("clamp.tasks.text:TextTask", "task")(self)

    def dims(self) -> dict[str, int]:
        """The sizes the model takes from this task (the same as the built task's ``dims()``, without torch)."""
        return {"d_in": 0, "d_vocab": self.vocab, "d_out": self.vocab, "n_ctx": self.n_ctx}

    def sha256(self) -> str:
        """SHA-256 of the corpus this config reads."""
        return _corpus(self.path, self.corpus_bytes)[1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["corpus_sha256"] = self.sha256()
        if self.tokenizer == "byte":
            del d["bpe_vocab"]
        if self.repeat_frac == 0.0:
            del d["repeat_frac"]
        return d

    def default_phase_rule(self):
        """Olsson's signature: the best prefix-matching head on repeated random tokens rises above 0.3."""
        return PhaseRule(metric="prefix_match/max", threshold=0.3, direction="above")


def _files(path: str | None) -> Iterator[Path]:
    """The corpus files in a fixed order: a depth-first walk with sorted names (site-packages, tests and caches pruned)."""
    root = Path(sysconfig.get_paths()["stdlib"]) if path is None else Path(path)
    if root.is_file():
        yield root
        return
    suffixes = (".py",) if path is None else SUFFIXES
    skip = {"site-packages", "__pycache__", ".git"}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for name in sorted(names):
            if name.endswith(suffixes):
                yield Path(folder) / name


@functools.lru_cache(maxsize=8)
def _corpus(path: str | None, n_bytes: int) -> tuple[bytes, str]:
    """The corpus bytes (files joined by a blank line, cut at ``n_bytes``) and their SHA-256."""
    parts, total = [], 0
    for f in _files(path):
        data = f.read_bytes() + b"\n\n"
        parts.append(data[: n_bytes - total])
        total += len(parts[-1])
        if total >= n_bytes:
            break
    blob = b"".join(parts)
    if len(blob) < 10_000:
        raise ConfigError(f"the corpus at {path or 'the standard library'} has only {len(blob)} bytes; give at least 10000.")
    return blob, hashlib.sha256(blob).hexdigest()
