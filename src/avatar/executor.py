"""Running candidate jobs: one interface, two backends (a local process pool, Ray), resumable by key.

A job is a JSON-able dict with a ``key``; its result is written atomically to ``results_dir/<key>.json`` as
soon as it finishes, so an interrupted stage resumes without redoing finished jobs, on either backend.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Protocol

from avatar._io import write_json_atomic
from avatar.errors import AvatarError

log = logging.getLogger(__name__)

Job = dict  # must hold "key"; passed to the job function as it is
BACKENDS = ("local", "ray")


class Executor(Protocol):
    def run(self, fn: Callable[[Job], dict], jobs: list[Job]) -> Iterator[tuple[Job, dict]]:
        """Run ``fn`` on every job, yielding (job, result) as they finish, in any order."""
        ...


def _worker_start(parent: int, gpus=None) -> None:
    """In each worker: die with the parent, however it dies (SIGKILL included), and leave Ctrl-C to it; with a
    queue of GPU numbers, see only the one taken from it (as device cuda)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpus is not None:  # before torch first touches CUDA in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpus.get())


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Children started inside ignore SIGINT from their first instruction: a Ctrl-C while they import is the
    parent's alone (Python keeps an ignored SIGINT ignored at start-up), so no worker prints a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class LocalExecutor:
    """A pool of fresh processes (spawned: safe with torch threads), one per core by default; with ``gpus``, one
    per GPU, each seeing only its own.

    Workers die with the parent (SIGKILL included) and ignore Ctrl-C; on Ctrl-C, SIGTERM or a failed job the
    parent kills the jobs in flight at once: finished jobs are saved by ``run_jobs``, unfinished ones are redone
    on the next run.
    """

    def __init__(self, workers: int | None = None, gpus: int = 0):
        self.workers = gpus or workers or os.cpu_count() or 1
        self.gpus = gpus

    def run(self, fn, jobs):
        if self.workers == 1:  # no pool to start for a single worker
            for job in jobs:
                yield job, fn(job)
            return
        ctx = multiprocessing.get_context("spawn")
        gpus = None
        if self.gpus:
            gpus = ctx.Queue()
            for i in range(self.gpus):
                gpus.put(i)
        pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_worker_start, initargs=(os.getpid(), gpus))
        try:
            with _sigint_ignored():  # the pool starts its workers as jobs are submitted
                futures = {pool.submit(fn, job): job for job in jobs}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        except BaseException:
            # stop now instead of training on: drop the queue and the jobs in flight (they are redone next time)
            pool.shutdown(wait=False, cancel_futures=True)
            for child in multiprocessing.active_children():
                child.kill()
            raise
        finally:
            pool.shutdown(wait=True)


class RayExecutor:
    """Ray tasks on a cluster (``address``) or on a local Ray instance started here; ``gpus_per_job`` is what Ray
    reserves for each (it then shows the task only its own GPUs)."""

    def __init__(self, address: str | None = None, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0):
        try:
            import ray
        except ImportError:
            raise AvatarError("the Ray backend needs Ray: pip install 'avatar-distill[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise AvatarError(f"cannot start or join Ray{f' at {address}' if address else ''}: {str(e).splitlines()[0]}") from None
        self.cpus_per_job, self.gpus_per_job = cpus_per_job, gpus_per_job

    def run(self, fn, jobs):
        remote = self.ray.remote(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job)(fn)
        pending = {remote.remote(job): job for job in jobs}
        while pending:
            done, _ = self.ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), self.ray.get(ref)


def make_executor(backend: str = "local", workers: int | None = None, ray_address: str | None = None, gpus: int = 0) -> Executor:
    """``gpus``: candidates run on GPUs, one at a time on each (local: that many workers; Ray: one GPU per task)."""
    if backend == "local":
        return LocalExecutor(workers, gpus)
    if backend == "ray":
        return RayExecutor(ray_address, gpus_per_job=1.0 if gpus else 0.0)
    raise AvatarError(f"unknown executor {backend!r}; choose from {', '.join(BACKENDS)}")


def run_jobs(fn: Callable[[Job], dict], jobs: list[Job], results_dir: Path, executor: Executor) -> dict[str, dict]:
    """Results of every job by key: finished ones read back from ``results_dir``, the rest run and saved."""
    results: dict[str, dict] = {}
    todo = []
    for job in jobs:
        path = Path(results_dir) / f"{job['key']}.json"
        try:
            results[job["key"]] = json.loads(path.read_text())["result"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            todo.append(job)
    log.info("%d of %d jobs already done; running %d", len(jobs) - len(todo), len(jobs), len(todo))
    for job, result in executor.run(fn, todo):
        write_json_atomic(Path(results_dir) / f"{job['key']}.json", {"job": job, "result": result})
        results[job["key"]] = result
    return results
