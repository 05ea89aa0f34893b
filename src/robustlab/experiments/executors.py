"""Where `reproduce` runs its independent jobs: in this process, in local worker processes, or
on a Ray cluster (`--executor ray`, the optional extra `pip install 'robustlab[ray]'`).

Every executor calls the same job function on the same job and each job writes only its own run
folder, so the files -- and the report built from them -- do not depend on the executor; only
wall times differ. Ray: `ray.init()` joins the cluster named by `RAY_ADDRESS` (e.g. after
`ray start --head` / `ray start --address=...` on each node), else starts a local one sized to
`workers x threads` CPUs. Each job reserves `threads` CPUs (and one GPU when the device is
CUDA), so Ray never packs more jobs on a node than its cores allow. On a cluster, every node
needs robustlab installed and the data and output folders at the same paths (a shared file
system).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from robustlab.common.checks import check_choice
from robustlab.common.errors import ConfigError

EXECUTORS: tuple[str, ...] = ("local", "ray")

JobFn = Callable[[Any], str]
Report = Callable[[int, Any, str], None]  # (number done, job, the job's one-line result)


class ExecutorError(ConfigError):
    """An unknown executor or one that cannot start (raised before any job runs)."""


def check_executor(name: str) -> None:
    """Fail fast: unknown name, or Ray requested but not installed."""
    check_choice("--executor", name, EXECUTORS, error=ExecutorError)
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ExecutorError("--executor ray: Ray is not installed; install the optional "
                                "extra: pip install 'robustlab[ray]'") from None


def run_jobs(executor: str, jobs: Sequence[Any], fn: JobFn, report: Report, *, workers: int,
             threads: int, gpu: bool = False) -> None:
    """Run `fn(job)` for every job; `report` is called in the parent as each one finishes."""
    check_executor(executor)
    if executor == "ray":
        _run_ray(jobs, fn, report, workers=workers, threads=threads, gpu=gpu)
    elif workers == 1:
        for i, job in enumerate(jobs, 1):
            report(i, job, fn(job))
    else:
        ctx = get_context("spawn")  # fresh interpreters: no forked torch thread pools
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(fn, job): job for job in jobs}
            for i, fut in enumerate(as_completed(futures), 1):
                report(i, futures[fut], fut.result())


def _run_ray(jobs: Sequence[Any], fn: JobFn, report: Report, *, workers: int, threads: int,
             gpu: bool) -> None:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(num_cpus=workers * threads, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=threads, num_gpus=1 if gpu else 0, max_retries=0)(fn)
        pending = {remote.remote(job): job for job in jobs}
        done_count = 0
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            done_count += 1
            report(done_count, job, ray.get(ref))  # re-raises a job's error here
    finally:
        if started_here:
            ray.shutdown()
