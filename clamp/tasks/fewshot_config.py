"""The fewshot task's config, without torch: studies are loaded and checked before torch is imported.

Why this file exists: ``clamp list``, a rejected study file and the static checks of ``clamp run`` build
every arm's config and ask its ``dims()``; the task itself (:mod:`clamp.tasks.fewshot`, which imports torch) is
built only by ``build()``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from clamp.errors import ConfigError
from clamp.importpath import resolve
from clamp.phase import PhaseRule

STREAMS = ("shared", "independent")


@dataclass(frozen=True, kw_only=True)
class FewShotConfig:
    """Parameters of the few-shot task.  Defaults are Singh et al.'s setup.

    Example:
        >>> FewShotConfig(n_classes=10).build().dims()["n_ctx"]
        5
    """

    kind: Literal["fewshot"] = "fewshot"
    n_classes: int = 50
    n_labels: int = 5
    n_pairs: int = 2
    n_exemplars: int = 1
    exemplar_noise: float = 0.1
    shared: float = 0.0
    d_in: int = 512
    n_heldout_classes: int = 10
    n_heldout_exemplars: int = 5
    heldout_frac: float = 0.2
    vectors_seed: int = 0
    item_scale: float = 1.0
    streams: Literal["shared", "independent"] = "shared"
    # Item statistics closer to ResNet features (clamp.tasks.items); each off by default.
    clusters: int = 0
    cluster_spread: float = 0.5
    rank: int | None = None
    nonneg: bool = False

    def __post_init__(self) -> None:
        if self.n_labels < 2:
            raise ConfigError(f"FewShotConfig.n_labels={self.n_labels}: need at least 2 labels for in-context classification.")
        if self.n_pairs < 1:
            raise ConfigError(f"FewShotConfig.n_pairs={self.n_pairs}: need at least 1 context pair.")
        if self.n_pairs > self.n_labels:
            raise ConfigError(f"FewShotConfig.n_pairs={self.n_pairs} exceeds n_labels={self.n_labels}: each pair needs its own label.")
        if self.n_pairs > self.n_classes:
            raise ConfigError(f"FewShotConfig.n_pairs={self.n_pairs} exceeds n_classes={self.n_classes}: each pair needs its own class.")
        if 0 < self.n_heldout_classes < self.n_pairs:
            raise ConfigError(f"FewShotConfig.n_heldout_classes={self.n_heldout_classes} is fewer than n_pairs={self.n_pairs}; use 0 or at least n_pairs.")
        if self.n_exemplars < 1:
            raise ConfigError(f"FewShotConfig.n_exemplars={self.n_exemplars}: need at least 1 exemplar per class.")
        if not 0.0 <= self.shared < 1.0:
            raise ConfigError(f"FewShotConfig.shared={self.shared} must be in [0, 1).")
        if not 0.0 <= self.heldout_frac < 1.0:
            raise ConfigError(f"FewShotConfig.heldout_frac={self.heldout_frac} must be in [0, 1).")
        if not self.item_scale > 0:
            raise ConfigError(f"FewShotConfig.item_scale={self.item_scale} must be positive.")
        if self.streams not in STREAMS:
            raise ConfigError(f"FewShotConfig.streams={self.streams!r} is unknown; choose one of {STREAMS} "
                              "('independent': classes, labels and orders from separate random streams).")
        if not (isinstance(self.clusters, int) and 0 <= self.clusters <= self.n_classes):
            raise ConfigError(f"FewShotConfig.clusters={self.clusters!r} must be 0 (none) or at most n_classes={self.n_classes}.")
        if not 0.0 < self.cluster_spread <= 1.0:
            raise ConfigError(f"FewShotConfig.cluster_spread={self.cluster_spread} must be in (0, 1] "
                              "(the share of a class mean's variance that is its own).")
        if self.rank is not None and not (isinstance(self.rank, int) and 1 <= self.rank <= self.d_in):
            raise ConfigError(f"FewShotConfig.rank={self.rank!r} must be None (full rank) or between 1 and d_in={self.d_in}.")
        if self.d_in < 1 or self.exemplar_noise < 0 or self.n_heldout_exemplars < 0:
            raise ConfigError("FewShotConfig.d_in must be positive, exemplar_noise and n_heldout_exemplars non-negative.")

    def build(self) -> Any:
        """The sampler, :class:`clamp.tasks.fewshot.FewShotTask` (imports torch)."""
        # Looked up by import path, not imported: the task module imports this config module.
        return resolve("clamp.tasks.fewshot:FewShotTask", "task")(self)

    def dims(self) -> dict[str, int]:
        """The sizes the model takes from this task (the same as the built task's ``dims()``, without torch)."""
        return {"d_in": self.d_in, "d_vocab": self.n_labels, "d_out": self.n_labels, "n_ctx": 2 * self.n_pairs + 1}

    def default_phase_rule(self) -> PhaseRule:  # the rule that fits this task's metrics
        return PhaseRule()

    def to_dict(self) -> dict:
        d = asdict(self)
        # Fields added after the first release are left out at their default, so the
        # run keys (hashes) of studies written before them do not change.
        if d["item_scale"] == 1.0:
            del d["item_scale"]
        if d["streams"] == "shared":
            del d["streams"]
        for name, default in (("clusters", 0), ("cluster_spread", 0.5), ("rank", None), ("nonneg", False)):
            if d[name] == default:
                del d[name]
        return d
