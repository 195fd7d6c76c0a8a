"""Packs as Ray tasks, on a running Ray cluster or a local instance started on demand.

Why this file exists: Ray is how many labs spread work over machines.  Each pack
becomes one Ray task asking for the CPUs (``threads``) and GPUs it needs; the
task trains in a temporary folder on whichever node runs it and returns its
runs' files, which the driver writes into the results folder
(:mod:`clamp.execution.executors.transfer`), so workers need no shared file system.
The driver's own ``clamp`` package is shipped to the workers (Ray ``py_modules``),
so every node runs the same code as the driver and computes the same numbers.

A worker that dies (killed, out of memory, node lost) is retried by Ray up to
``max_retries`` times from the files the pack started with; after that the
runner marks the pack's runs ``failed`` with the error.  Nothing is lost silently,
but a pack's files come back only when it ends: a retry, or a rerun after the
driver itself was stopped, starts the pack again from where it started (keep packs
to tens of minutes, or use Slurm with a shared file system for very long runs).

``jobs`` sizes a local instance only; on a cluster, the CPUs it offers decide how
many packs train at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from clamp.errors import ConfigError
from clamp.execution.pack import PackJob

MB = 2**20


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ConfigError("--executor ray needs Ray: pip install 'clamp[ray]' (or pip install ray).") from e
    return ray


def _ray_pack(job: PackJob, files: list, queue: Any, threads: int) -> tuple[list, list, str]:
    """The Ray task: train ``job`` in a temporary folder; return outcomes, the runs' files and the node id."""
    import torch

    import ray
    from clamp.execution.executors.transfer import collect, unpack
    from clamp.execution.pack import execute_pack

    torch.set_num_threads(threads)

    def sink(ev: dict) -> None:
        try:
            queue.put_nowait(ev)
        except Exception:  # noqa: BLE001 - progress is best effort; a full or gone queue must not fail training
            pass

    with tempfile.TemporaryDirectory(prefix="clamp-pack-") as tmp:
        local = unpack(job, files, tmp)
        outcomes = execute_pack(local, sink)
        return outcomes, collect(local, files), ray.get_runtime_context().get_node_id()


class RayExecutor:
    """Runs each pack as a Ray task.

    Args:
        address: a running cluster (``"host:6379"``, ``"auto"``, ``"ray://..."``); None starts a local
            instance for this study and stops it afterwards.  If Ray is already initialised in this
            process, that connection is used.
        jobs: CPUs of a local instance, in packs (``jobs * threads``).
        threads: CPUs (torch threads) per pack.
        gpus: GPUs per pack (default: 1 for a study on ``cuda``, else 0).
        object_store_mb: object store of a local instance (packs' files pass through it).
        max_retries: times Ray retries a pack whose worker died.
        ship_code: send this process's ``clamp`` package to the workers (Ray ``py_modules``); turn it off
            when the cluster has clamp installed and its own code must be used.

    Example:
        >>> # run_study(study, executor="ray", executor_options={"address": "head:6379"})
    """

    def __init__(self, *, address: str | None = None, jobs: int = 1, threads: int = 1, gpus: float | None = None,
                 object_store_mb: int | None = None, max_retries: int | None = None, ship_code: bool = True) -> None:
        if threads < 1 or jobs < 1:
            raise ConfigError(f"RayExecutor: jobs={jobs} and threads={threads} must be at least 1.")
        self.address, self.jobs, self.threads, self.gpus = address, jobs, threads, gpus
        self.object_store_mb = 200 if object_store_mb is None else object_store_mb
        self.max_retries = 2 if max_retries is None else max_retries
        if self.max_retries < 0:
            raise ConfigError(f"RayExecutor: max_retries={self.max_retries} must be >= 0.")
        self.ship_code = ship_code
        self.nodes: dict[int, str] = {}  # job id -> Ray node id that trained it (for tests and logs)

    def _runtime_env(self) -> dict:
        if not self.ship_code:
            return {}
        import clamp

        return {"py_modules": [str(Path(clamp.__file__).parent)], "excludes": ["__pycache__", "*.pyc"],
                "env_vars": {"PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}}

    def _connect(self, ray) -> bool:
        """Connect (or start a local instance); True if this executor started Ray and must stop it."""
        if ray.is_initialized():
            return False
        common = dict(runtime_env=self._runtime_env(), include_dashboard=False, log_to_driver=False,
                      logging_level="error", configure_logging=True)
        if self.address:
            ray.init(address=self.address, **common)
        else:
            ray.init(address="local", num_cpus=self.jobs * self.threads, object_store_memory=self.object_store_mb * MB,
                     **common)
        return True

    def run(self, jobs: Sequence[PackJob], on_event) -> Iterator[tuple[PackJob, Any]]:
        ray = _import_ray()
        from ray.util.queue import Queue

        from clamp.execution.executors.transfer import files_to_send, write_back

        started = self._connect(ray)
        queue = None
        try:
            queue = Queue(actor_options={"num_cpus": 0})
            refs = {}
            remote = ray.remote(_ray_pack)
            for job in jobs:
                gpus = self.gpus if self.gpus is not None else (1 if str(job.train.get("device", "cpu")).startswith("cuda") else 0)
                task = remote.options(num_cpus=self.threads, num_gpus=gpus, max_retries=self.max_retries,
                                      retry_exceptions=False, name=f"clamp-pack-{job.arm}-{job.job_id}")
                refs[task.remote(job, files_to_send(job), queue, self.threads)] = job
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=0.25)
                self._drain(queue, on_event)
                for ref in done:
                    job = refs[ref]
                    try:
                        outcomes, files, node = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - a worker that died after its retries: the runner marks the runs failed
                        yield job, e
                        continue
                    self.nodes[job.job_id] = node
                    write_back(job, files)
                    yield job, outcomes
            self._drain(queue, on_event)
        finally:
            for ref in locals().get("pending", ()):  # stopped early (Ctrl-C): do not leave packs training
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001
                    pass
            if queue is not None:
                try:
                    queue.shutdown()
                except Exception:  # noqa: BLE001
                    pass
            if started:
                ray.shutdown()

    @staticmethod
    def _drain(queue, on_event) -> None:
        try:
            n = queue.qsize()
            events = queue.get_nowait_batch(n) if n else []
        except Exception:  # noqa: BLE001 - progress is best effort
            return
        for ev in events:
            on_event(ev)
