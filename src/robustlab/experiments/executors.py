"""Where `reproduce` runs its independent jobs: in this process, in local worker processes, or
on a Ray cluster (`--executor ray`, the optional extra `pip install 'robustlab[ray]'`).

Local workers (`run_on_workers`) are spawned processes, each pinned to one device for its life
(`devices.Worker`: several per GPU, each with its own CUDA context). They share one queue of
jobs: a free worker takes the next job, so a slow job does not leave a device idle. A job that
raises stops the grid (the other workers are stopped; a rerun resumes); so does a worker that
dies (e.g. out of memory), with a message naming the job it was running.

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
import pickle
import traceback
from collections.abc import Callable, Sequence
from multiprocessing import get_context
from multiprocessing.connection import wait
from typing import Any

from robustlab.accel import tune_process
from robustlab.common.checks import check_choice
from robustlab.common.errors import ConfigError
from robustlab.experiments.devices import Worker, pinned

EXECUTORS: tuple[str, ...] = ("local", "ray")

WorkerJobFn = Callable[[Any, Worker], str]  # (job, the worker running it) -> one-line result
# (number done, job, the job's one-line result, the worker that ran it)
WorkerReport = Callable[[int, Any, str, Worker], None]


class ExecutorError(ConfigError):
    """An unknown executor or one that cannot start (raised before any job runs)."""


class WorkerDiedError(RuntimeError):
    """A worker process ended without reporting its job (killed, out of memory, ...)."""


def check_executor(name: str) -> None:
    """Fail fast: unknown name, or Ray requested but not installed."""
    check_choice("--executor", name, EXECUTORS, error=ExecutorError)
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ExecutorError("--executor ray: Ray is not installed; install the optional "
                                "extra: pip install 'robustlab[ray]'") from None


def run_on_workers(executor: str, jobs: Sequence[Any], fn: WorkerJobFn, report: WorkerReport,
                   workers: Sequence[Worker], *, gpu: bool = False) -> None:
    """Run `fn(job, worker)` for every job; `report(i, job, line, worker)` is called in the
    parent as each one finishes. One local worker runs the jobs in this process; several run
    as spawned processes sharing one job queue; Ray runs `len(workers)` tasks at a time."""
    check_executor(executor)
    if executor == "ray":
        _run_ray(jobs, fn, report, workers=workers, gpu=gpu)
    elif len(workers) == 1:
        for i, job in enumerate(jobs, 1):
            with pinned(workers[0]):
                line = fn(job, workers[0])
            report(i, job, line, workers[0])
    elif jobs:
        _run_processes(jobs, fn, report, workers)


def _run_processes(jobs: Sequence[Any], fn: WorkerJobFn, report: WorkerReport,
                   workers: Sequence[Worker]) -> None:
    ctx = get_context("spawn")  # fresh interpreters: no forked torch thread pools / CUDA
    tasks = ctx.Queue()
    for item in enumerate(jobs):
        tasks.put(item)
    for _ in workers:
        tasks.put(None)  # one stop sign per worker, after the jobs
    pipes = [ctx.Pipe(duplex=False) for _ in workers]  # (parent's read end, worker's end)
    # not daemonic: a job may start processes of its own (torch.compile's compile workers)
    procs = [ctx.Process(target=_worker_main, args=(w, fn, tasks, send),
                         name=f"robustlab-{w.label}") for w, (_, send) in zip(workers, pipes,
                                                                              strict=True)]
    try:
        for p in procs:
            p.start()
        for _, send in pipes:
            send.close()  # a worker's end closes when it ends: the parent reads EOF then
        _collect(jobs, report, workers, procs, [recv for recv, _ in pipes])
        for p in procs:
            p.join(timeout=60)  # each has taken its stop sign by now
    finally:
        for p in procs:  # after an error: stop the others (a rerun resumes)
            if p.is_alive():
                p.terminate()
            if p.pid is not None:
                p.join()
        tasks.cancel_join_thread()  # jobs nobody took must not hold this process at exit
        tasks.close()


def _collect(jobs: Sequence[Any], report: WorkerReport, workers: Sequence[Worker], procs,
             readers) -> None:
    """Report results as they come; re-raise a job's error; a worker that ends with its job
    unreported (killed, out of memory) is a WorkerDiedError naming the job."""
    open_ends = {recv: w for w, recv in enumerate(readers)}
    running: dict[int, int] = {}  # worker -> the job it took
    done = 0
    while done < len(jobs):
        if not open_ends:
            raise WorkerDiedError(f"every worker ended with {len(jobs) - done} job(s) left; "
                                  "rerun to resume (finished runs are kept)")
        for recv in wait(list(open_ends)):
            w = open_ends[recv]
            try:
                kind, i, payload = recv.recv()
            except EOFError:  # the worker ended; its messages were all read before this
                del open_ends[recv]
                _check_ended(jobs, workers[w], procs[w], running.get(w))
                continue
            if kind == "start":
                running[w] = i
            elif kind == "error":
                raise payload
            else:
                running.pop(w, None)
                done += 1
                report(done, jobs[i], payload, workers[w])


def _check_ended(jobs: Sequence[Any], worker: Worker, proc, job_index: int | None) -> None:
    proc.join()
    if job_index is None and proc.exitcode == 0:
        return  # took its stop sign
    what = ("before taking a job" if job_index is None else
            f"while running {_job_name(jobs[job_index])}")
    raise WorkerDiedError(f"{worker.label} ended with exit code {proc.exitcode} {what}; "
                          "rerun to resume (finished runs are kept)")


def _worker_main(worker: Worker, fn: WorkerJobFn, tasks, send) -> None:
    """A worker process: pinned to its device for life, takes jobs until the stop sign and
    sends ("start" | "done" | "error", job index, result) for each (sends are synchronous)."""
    import torch

    tune_process()  # a worker is a program of its own (spawned: nothing inherited)
    if worker.threads:
        torch.set_num_threads(worker.threads)
    with pinned(worker), send:
        while (item := tasks.get()) is not None:
            i, job = item
            send.send(("start", i, None))
            try:
                send.send(("done", i, fn(job, worker)))
            except BaseException as err:  # handed to the parent, which re-raises it
                send.send(("error", i, _picklable(err)))
                return


def _picklable(err: BaseException) -> BaseException:
    """`err` if it survives pickling, else a RuntimeError carrying its traceback."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError("".join(traceback.format_exception(err)))


def _ray_result(ray: Any, ref: Any, job: Any) -> str:
    """The task's line; its job's error re-raised as itself (Ray's RayTaskError is an instance
    of the job's error class); a task whose worker died (killed, out of memory, node lost) a
    one-line WorkerDiedError naming the job."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        if isinstance(err, ray.exceptions.RayTaskError):
            raise
        cause = (str(err).strip().splitlines() or [""])[0]
        raise WorkerDiedError(f"the Ray task running {_job_name(job)} ended without a result "
                              f"({type(err).__name__}: {cause:.120}); rerun to resume "
                              "(finished runs are kept)") from None


def _job_name(job: Any) -> str:
    return f"{getattr(job, 'name', job)!s:.80}"


def _ray_task(fn: WorkerJobFn, job: Any, worker: Worker) -> str:
    """A Ray task (a plain function: Ray does not take a functools.partial)."""
    tune_process()
    return fn(job, worker)


def _run_ray(jobs: Sequence[Any], fn: WorkerJobFn, report: WorkerReport, *,
             workers: Sequence[Worker], gpu: bool) -> None:
    import ray

    threads = workers[0].threads or 1
    task = Worker(None, workers[0].device, threads)  # Ray gives each task its own GPU
    started_here = not ray.is_initialized()
    if started_here:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(num_cpus=len(workers) * threads, include_dashboard=False,
                     log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=threads, num_gpus=1 if gpu else 0,
                            max_retries=0)(_ray_task)
        pending = {remote.remote(fn, job, task): job for job in jobs}
        done_count = 0
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ref)
            done_count += 1
            report(done_count, job, _ray_result(ray, ref, job), task)
    finally:
        if started_here:
            ray.shutdown()
