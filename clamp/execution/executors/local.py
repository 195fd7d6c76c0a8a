"""The local executors: packs in this process, or in a pool of spawned worker processes.

Why this file exists: where packs train is the executor's business; the runner plans,
resumes, isolates failures and reports the same way whatever runs the packs.  An executor
is anything with ``run(jobs, on_event)`` (:class:`Executor`); the Ray and Slurm executors
live beside this module.  Workers receive plain configs, never a model (nnsight wrappers
cannot be pickled, and threads must not trace).
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import multiprocessing as mp
import os
import signal
import threading
import time
from typing import Callable, Iterator, Protocol, Sequence

import torch

from clamp.execution.pack import PackJob, execute_pack

EventSink = Callable[[dict], None]
Outcome = list[dict]


class Executor(Protocol):
    """Runs packs somewhere and reports back.

    ``run`` yields ``(job, outcomes)`` as each pack ends (``outcomes`` from
    :func:`clamp.execution.pack.execute_pack`, or the exception that killed the pack's
    worker), and passes progress events to ``on_event`` meanwhile.
    """

    def run(self, jobs: Sequence[PackJob], on_event: EventSink) -> Iterator[tuple[PackJob, Outcome | BaseException]]:
        ...


class InlineExecutor:
    """Runs packs one after another in this process (``--jobs 1``)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, jobs: Sequence[PackJob], on_event: EventSink) -> Iterator[tuple[PackJob, Outcome | BaseException]]:
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            for job in jobs:
                try:
                    yield job, execute_pack(job, on_event)
                except Exception as e:  # noqa: BLE001 - execute_pack reports its own failures; this is a last resort
                    yield job, e
        finally:
            torch.set_num_threads(old)


_worker_queue = None
_worker_claims = None  # shared array: slot i holds the pid of the worker training pack i (0 when none)


def _die_with_parent(parent: int) -> None:
    """End this worker when the runner dies (even by SIGKILL), so no orphan keeps writing files."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def _worker_init(queue, threads: int, parent: int, lock_path: str, claims=None) -> None:
    global _worker_queue, _worker_claims
    _die_with_parent(parent)
    _worker_queue = queue
    _worker_claims = claims
    torch.set_num_threads(threads)
    # A shared lock on the study folder: a new `clamp run` waits until this worker has gone.
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)


def _worker_run(job: PackJob, slot: int = -1) -> Outcome:
    if _worker_claims is not None and slot >= 0:
        _worker_claims[slot] = os.getpid()  # shared memory: visible to the runner at once, even if we are killed next
    try:
        return execute_pack(job, _worker_queue.put if _worker_queue is not None else None)
    finally:
        if _worker_claims is not None and slot >= 0:
            _worker_claims[slot] = 0


class WorkerDied(RuntimeError):
    """The worker process training a pack ended without reporting (killed by a signal, out of memory, a crash)."""


def _how_it_died(code: int | None) -> str:
    if code is None or code >= 0:
        return f"exit status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (often the out-of-memory killer: try fewer --jobs or a smaller pack)" if -code == signal.SIGKILL else ""
    return f"killed by {name}{hint}"


class ProcessExecutor:
    """A local pool of ``jobs`` spawned worker processes, ``threads`` torch threads each.

    A worker that dies (SIGKILL, out of memory, segfault) breaks a
    :class:`concurrent.futures.ProcessPoolExecutor` and every pack still in it; here only
    the pack(s) the dead worker was training fail (:class:`WorkerDied`): the others are
    resubmitted to a fresh pool and go on (a pack that was interrupted restarts from where
    it started, which gives the same numbers).
    """

    def __init__(self, jobs: int, threads: int = 1, lock_path: str | None = None) -> None:
        self.jobs, self.threads, self.lock_path = jobs, threads, lock_path

    def run(self, jobs: Sequence[PackJob], on_event: EventSink) -> Iterator[tuple[PackJob, Outcome | BaseException]]:
        todo = list(jobs)
        while todo:
            todo = yield from self._one_pool(todo, on_event)

    def _one_pool(self, jobs: list[PackJob], on_event: EventSink):
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        claims = ctx.Array("q", len(jobs), lock=False)
        lock_path = self.lock_path or os.devnull
        pool = cf.ProcessPoolExecutor(max_workers=min(self.jobs, len(jobs)) or 1, mp_context=ctx, initializer=_worker_init,
                                      initargs=(queue, self.threads, os.getpid(), lock_path, claims))
        futures = {pool.submit(_worker_run, job, i): i for i, job in enumerate(jobs)}
        pending = set(futures)
        done_slots: set[int] = set()
        procs: dict[int, object] = {}
        broken = False
        try:
            while pending and not broken:
                done, pending = cf.wait(pending, timeout=0.25, return_when=cf.FIRST_COMPLETED)
                procs.update(getattr(pool, "_processes", None) or {})
                self._drain(queue, on_event)
                for fut in done:
                    exc = fut.exception()
                    if isinstance(exc, cf.BrokenExecutor):
                        broken = True
                        continue
                    done_slots.add(futures[fut])
                    yield jobs[futures[fut]], (exc if exc is not None else fut.result())
            self._drain(queue, on_event)
        finally:
            in_flight = {i: int(claims[i]) for i in range(len(jobs)) if claims[i] and i not in done_slots}
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        if not broken:
            return []
        self._drain(queue, on_event)
        codes = {pid: getattr(p, "exitcode", None) for pid, p in procs.items()}
        dead = {pid for pid, c in codes.items() if c not in (None, 0, -signal.SIGTERM)}
        culprits = {i for i, pid in in_flight.items() if pid in dead} or set(in_flight)
        if not culprits:  # nothing tells which pack killed its worker: fail what was left rather than loop
            culprits = {i for i in range(len(jobs)) if i not in done_slots}
        for i in sorted(culprits):
            how = _how_it_died(codes.get(in_flight.get(i, -1)))
            yield jobs[i], WorkerDied(f"the worker process training this pack died ({how}); "
                                      "rerun `clamp run` to resume it from its last checkpoint")
        return [jobs[i] for i in range(len(jobs)) if i not in done_slots and i not in culprits]

    @staticmethod
    def _drain(queue, on_event: EventSink) -> None:
        while True:
            try:
                on_event(queue.get_nowait())
            except Exception:  # noqa: BLE001 - queue.Empty, or a half-torn queue during shutdown
                return


__all__ = ["EventSink", "Executor", "InlineExecutor", "Outcome", "ProcessExecutor", "WorkerDied"]
