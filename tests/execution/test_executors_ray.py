"""Ray executor with the real engine: a local instance and a two-node cluster on one machine give the local numbers."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from clamp.execution.executors.ray_executor import RayExecutor  # noqa: E402
from clamp.execution.runner import run_study  # noqa: E402
from clamp.model.config import ModelConfig  # noqa: E402
from clamp.study.design import Arm, Study  # noqa: E402
from clamp.tasks import FewShotConfig  # noqa: E402
from clamp.training.trainer import Trainer  # noqa: E402

pytestmark = pytest.mark.slow
MODEL = ModelConfig(n_layers=2, n_heads=2, d_model=8)
TASK = FewShotConfig(n_classes=10, d_in=8, n_heldout_classes=4, n_heldout_exemplars=2)
MB = 2**20


def study(n: int = 128) -> Study:
    return Study(name="tiny", arms=[Arm(name="control", model=MODEL, task=TASK, lr=1e-3, batch_size=16),
                                    Arm(name="other", model=MODEL, task=TASK, lr=3e-3, batch_size=16)],
                 seeds=[0, 1], n_sequences=n, eval_every=32, eval_size=16, checkpoint_every=max(64, n // 4))


def tables(folder: Path) -> dict[str, bytes]:
    """Every run's metrics and attention tables and its checkpoints' names, by path."""
    out = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob("runs/*/*/*.csv"))}
    out.update({str(p.relative_to(folder)): b"" for p in sorted(folder.glob("runs/*/*/checkpoints/*.pt"))})
    return out


def statuses(folder: Path) -> dict[str, str]:
    return {f"{p.parent.parent.name}/{p.parent.name}": json.loads(p.read_text())["status"]
            for p in sorted(folder.glob("runs/*/*/run.json"))}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[int, Path]:
    out = {}
    for n in (128, 4096):
        root = tmp_path_factory.mktemp(f"ref{n}")
        assert run_study(study(n), out=root, jobs=1, quiet=True, analyse=False) == 0
        out[n] = root / "tiny"
    return out


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance (2 CPUs, a small object store) shared by the tests of this module."""
    if ray.is_initialized():
        ray.shutdown()
    ex = RayExecutor(jobs=2, threads=1, object_store_mb=100)
    ex._connect(ray)
    yield
    ray.shutdown()


def test_local_ray_instance_gives_the_local_numbers_and_resumes(reference, local_ray, tmp_path, monkeypatch):
    assert run_study(study(), out=tmp_path / "ray", quiet=True, analyse=True, executor="ray") == 0
    assert tables(tmp_path / "ray/tiny") == tables(reference[128])
    assert set(statuses(tmp_path / "ray/tiny").values()) == {"finished"}
    assert (tmp_path / "ray/tiny/report.md").is_file()
    rec = json.loads((tmp_path / "ray/tiny/study.json").read_text())
    assert rec["machine"]["executor"] == "ray"

    # Interrupted locally after the first checkpoint, finished on Ray: the checkpoint travels to the
    # worker, the worker's files come back, and the numbers are those of an uninterrupted run.
    original = Trainer.train_step

    def crash_after_80(self):
        if self.seen >= 80:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", crash_after_80)
    with pytest.raises(KeyboardInterrupt):
        run_study(study(), out=tmp_path / "cut", jobs=1, quiet=True, analyse=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert run_study(study(), out=tmp_path / "cut", quiet=True, analyse=False, executor="ray") == 0
    rec = json.loads((tmp_path / "cut/tiny/runs/control/seed0/run.json").read_text())
    assert rec["resumed_from"] == 64 and rec["timings"]["attempts"] == 2
    assert tables(tmp_path / "cut/tiny") == tables(reference[128])


class KillFirstWorker(RayExecutor):
    """Kills (SIGKILL) the worker process of the first pack that reports progress."""

    killed: list[int] = []

    def run(self, jobs, on_event):
        def kill_then_forward(ev):
            if not self.killed and ev.get("pid") and ev["pid"] != os.getpid():
                os.kill(ev["pid"], signal.SIGKILL)
                self.killed.append(ev["pid"])
            on_event(ev)

        yield from super().run(jobs, kill_then_forward)


def test_killed_worker_is_retried_or_reported(reference, local_ray, tmp_path):
    retried = KillFirstWorker(max_retries=1)
    retried.killed = []
    assert run_study(study(4096), out=tmp_path / "retried", quiet=True, analyse=False, executor=retried) == 0
    assert retried.killed, "the test must kill a worker mid-pack"
    assert tables(tmp_path / "retried/tiny") == tables(reference[4096])

    reported = KillFirstWorker(max_retries=0)
    reported.killed = []
    assert run_study(study(4096), out=tmp_path / "reported", quiet=True, analyse=False, executor=reported) == 1
    assert reported.killed
    st = statuses(tmp_path / "reported/tiny")
    failed = [k for k, v in st.items() if v == "failed"]
    assert len(failed) == 2 and sorted(st.values()).count("finished") == 2  # one pack lost, reported; the other done
    rec = json.loads((tmp_path / "reported/tiny/runs" / failed[0] / "run.json").read_text())
    assert "Worker" in rec["error"] or "died" in rec["error"] or "crash" in rec["error"].lower(), rec["error"]
    # and a rerun on Ray trains the lost runs again, to the same numbers
    assert run_study(study(4096), out=tmp_path / "reported", quiet=True, analyse=False, executor="ray") == 0
    assert tables(tmp_path / "reported/tiny") == tables(reference[4096])


def test_two_node_cluster_on_one_machine(reference, tmp_path):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 * MB,
                                                            "resources": {"head": 1}})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=80 * MB, resources={"second": 1})
        cluster.wait_for_nodes()
        ex = RayExecutor(address=cluster.address, threads=1)
        assert run_study(study(), out=tmp_path, quiet=True, analyse=False, executor=ex) == 0
        assert len(set(ex.nodes.values())) == 2, "each node (one CPU each) should train one of the two packs"
        assert tables(tmp_path / "tiny") == tables(reference[128])
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
