"""Global torch settings: training flushes denormals while it computes and restores the setting after."""

from __future__ import annotations

import pytest
import torch

from clamp.model.config import ModelConfig
from clamp.tasks import FewShotConfig
from clamp.training.config import TrainConfig
from clamp.training.trainer import Trainer, flush_denormal_enabled, torch_settings, train

MODEL = ModelConfig(n_layers=1, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8)


@pytest.fixture
def flush_off():
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)


def _torch_flushes() -> bool:
    tiny = torch.tensor([1], dtype=torch.int32).view(torch.float32)  # the smallest float32 subnormal, from its bits
    return (tiny * 1.0).item() == 0.0


def test_the_probe_reads_the_setting_torch_arithmetic_sees(flush_off):
    assert not flush_denormal_enabled() and not _torch_flushes()
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    assert flush_denormal_enabled() and _torch_flushes()


def test_train_flushes_while_it_computes_and_restores_after(flush_off):
    during = []
    train(MODEL, TASK, TrainConfig(n_sequences=64, eval_every=32, eval_size=16), seeds=[0],
          callback=lambda seen, m: during.append(flush_denormal_enabled()))
    assert not flush_denormal_enabled()  # the process is as it was
    if torch.set_flush_denormal(False):  # where the CPU supports flushing, training had it on
        assert during and all(during)


def test_building_a_trainer_and_its_steps_leave_the_setting_alone(flush_off):
    t = Trainer(MODEL, TASK, TrainConfig(n_sequences=64, eval_every=32, eval_size=16), seeds=[0])
    assert not flush_denormal_enabled()
    t.train_step()
    t.evaluate()
    assert not flush_denormal_enabled()


def test_a_setting_made_before_training_is_kept(flush_off):
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    train(MODEL, TASK, TrainConfig(n_sequences=32, eval_every=32, eval_size=16), seeds=[0])
    assert flush_denormal_enabled()


def test_restored_after_an_error_and_untouched_when_not_asked(flush_off):
    with pytest.raises(RuntimeError):
        with torch_settings(True):
            raise RuntimeError("boom")
    assert not flush_denormal_enabled()
    during = []
    train(MODEL, TASK, TrainConfig(n_sequences=32, eval_every=32, eval_size=16, flush_denormal=False), seeds=[0],
          callback=lambda seen, m: during.append(flush_denormal_enabled()))
    assert during and not any(during)
