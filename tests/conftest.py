"""Shared fixtures: tiny configs so every unit test runs in well under a second."""

from __future__ import annotations

import pytest
import torch

from clamp.model.config import ModelConfig
from clamp.tasks import FewShotConfig
from clamp.training.config import TrainConfig

torch.set_num_threads(1)


@pytest.fixture
def tiny_model_cfg() -> ModelConfig:
    return ModelConfig(n_layers=2, n_heads=2, d_model=8)


@pytest.fixture
def tiny_task_cfg() -> FewShotConfig:
    return FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)


@pytest.fixture
def tiny_train_cfg() -> TrainConfig:
    return TrainConfig(n_sequences=256, batch_size=16, lr=1e-3, eval_every=64, eval_size=32)
