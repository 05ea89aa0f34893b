"""The devices `reproduce` runs on and the worker processes pinned to them.

`--device` is one entry or a comma list (`cpu`, `auto`, `cuda`, `cuda:0,cuda:1`); `--workers N`
is the number of worker processes PER DEVICE, so a grid runs in N x len(devices) processes.
Each worker is pinned to one device for its whole life (`pinned`); a free worker takes the next
job (`executors.run_on_workers`).

What a run folder records does not depend on the worker: the config's `device` is the entry's
kind (`cuda:1` -> `cuda`, which means "the current CUDA device" in the worker that `pinned`
sets), so a run started by the worker on cuda:1 can be resumed by any other, and its config.json
is the same whichever card trained it. Which worker and card ran each job is recorded in
OUT/experiment.json (`placements`) and printed in the job's line.

A grid never starts more workers than it has jobs (`--workers 10` for 6 jobs starts 6, with a
note: an idle worker holds a Python interpreter and torch, ~0.2 GB), and more worker processes
than cores get a warning (they take turns on the cores, and each needs one to feed its card).

Threads per worker: on the CPU, cores // total workers (the workers share the cores). On CUDA,
at most `CUDA_THREADS`: a GPU worker's host side is one Python thread launching kernels; more
intra-op threads only help CPU tensor ops it hardly runs, and with 8 workers per card x 16
OpenMP threads each the spinning thread pools would steal the cores the launch threads need.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from robustlab.common.checks import check_int, check_threads
from robustlab.common.device import DeviceError, resolve_device
from robustlab.common.errors import ConfigError

# torch intra-op threads per CUDA worker unless --threads says otherwise (see the module doc)
CUDA_THREADS = 2


class DeviceListError(ConfigError):
    """A bad `--device` list or worker count (raised before any job runs)."""


@dataclass(frozen=True)
class Worker:
    """One worker process: its number (0 .. total-1; None for a Ray task), the device entry it
    is pinned to (None: leave each job's device as planned) and its torch threads."""

    index: int | None
    device: str | None
    threads: int | None

    @property
    def config_device(self) -> str | None:
        """What the job's config records: the entry without its card number."""
        if self.device is None:
            return None
        return "cuda" if self.device.startswith("cuda") else self.device

    @property
    def cuda_index(self) -> int | None:
        """The card this worker is pinned to (None on the CPU or for a bare 'cuda')."""
        if self.device is None or not self.device.startswith("cuda:"):
            return None
        return int(self.device.split(":", 1)[1])

    @property
    def label(self) -> str:
        who = "ray task" if self.index is None else f"worker {self.index}"
        return who if self.device is None else f"{who} ({self.device})"

    def record(self) -> dict[str, Any]:
        return {"worker": self.index, "device": self.device, "threads": self.threads}


def parse_devices(spec: str) -> tuple[str, ...]:
    """`--device` as a tuple of validated entries, each 'auto', 'cpu', 'cuda' or 'cuda:N'.
    'auto' stands alone; CPU and CUDA entries do not mix (the numbers of a grid would then
    depend on which worker took which job); no device twice."""
    if not isinstance(spec, str) or not spec.strip():
        raise DeviceListError(f"--device: expected a device or a comma list of devices "
                              f"(cpu, auto, cuda, cuda:0,cuda:1), got {spec!r}")
    entries = tuple(e.strip() for e in spec.split(","))
    if "" in entries:
        raise DeviceListError(f"--device: empty entry in {spec!r}; expected e.g. "
                              "'cuda:0,cuda:1'")
    kinds = {device_kind(e) for e in entries if e != "auto"}  # the spelling of each entry
    if len(entries) > 1 and "auto" in entries:
        raise DeviceListError(f"--device: 'auto' picks one device and stands alone, got "
                              f"{spec!r}; list the cards instead (cuda:0,cuda:1)")
    if len(kinds) > 1:
        raise DeviceListError(f"--device: {spec!r} mixes cpu and cuda; a grid runs on one "
                              "kind of device so its numbers do not depend on which worker "
                              "took which job")
    cards = [_card(e) for e in entries if e != "auto"]
    if len(set(cards)) < len(cards):
        dup = next(e for e, c in zip(entries, cards, strict=True) if cards.count(c) > 1)
        raise DeviceListError(f"--device: {dup!r} is listed twice in {spec!r} ('cuda' is "
                              "cuda:0); use --workers N for several workers on one device")
    for entry in entries:  # last: whether this machine has them
        try:
            resolve_device(entry)
        except DeviceError as err:
            raise DeviceListError(f"--device: {str(err).removeprefix('device: ')}") from None
    return entries


def _card(entry: str) -> str:
    """The device an entry names, with a card number ('cuda' is cuda:0 in a fresh process)."""
    import torch

    device = torch.device(entry)
    return f"{device.type}:{device.index or 0}"


def check_ray_devices(devices: Sequence[str]) -> None:
    """Ray assigns each task its GPU itself (it sets CUDA_VISIBLE_DEVICES), so under Ray the
    device is one entry without a card number."""
    if len(devices) != 1 or devices[0].startswith("cuda:"):
        raise DeviceListError(f"--device: with --executor ray give one of 'cuda', 'cpu' or "
                              f"'auto', got {','.join(devices)!r}: Ray gives each task its "
                              "own GPU (one per job) on whichever node runs it")


def device_kind(entry: str) -> str:
    """'cpu' or 'cuda' (what 'auto' resolves to here); a malformed entry is a
    DeviceListError naming it."""
    if entry == "auto":
        return resolve_device(entry).type
    import torch

    try:
        kind = torch.device(entry).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise DeviceListError(f"--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N' (or a "
                              f"comma list of them), got {entry!r}")
    return kind


def default_threads(kind: str, total_workers: int, cores: int | None = None) -> int:
    """torch threads per worker: the CPU's cores shared out, at most CUDA_THREADS on CUDA."""
    share = max(1, (cores or os.cpu_count() or 1) // total_workers)
    return min(CUDA_THREADS, share) if kind == "cuda" else share


def plan_workers(devices: Sequence[str], workers_per_device: int, *,
                 threads: int | None = None, cores: int | None = None,
                 limit: int | None = None) -> list[Worker]:
    """`workers_per_device` workers for each device, interleaved (worker i on device
    i % len(devices)) so the first jobs spread over the cards, at most `limit` of them;
    `threads` None: the default for that many workers."""
    check_int("--workers", workers_per_device, 1, error=DeviceListError)
    check_int("--threads", threads, 1, allow_none=True, error=DeviceListError)
    check_threads("--threads", threads, allow_none=True, cores=cores, error=DeviceListError)
    total = workers_per_device * len(devices)
    if limit is not None:
        total = max(1, min(total, limit))
    kind = device_kind(devices[0])
    n_threads = threads or default_threads(kind, total, cores)
    return [Worker(i, devices[i % len(devices)], n_threads) for i in range(total)]


def executor_workers(device: str, workers: int, *, threads: int | None, executor: str,
                     jobs: int | None = None) -> tuple[tuple[str, ...], list[Worker]]:
    """`--device`, `--workers`, `--threads` and `--executor` checked together: the device
    entries and the workers. Under Ray one entry and `threads` defaulting to cores // workers
    (Ray places the tasks itself); locally `plan_workers`. `jobs`: the grid's job count, given
    once it is planned: then the workers are capped at it and `worker_notes` printed (a call
    that only checks the flags passes None)."""
    devices = parse_devices(device)
    check_int("--workers", workers, 1, error=DeviceListError)
    asked = workers * len(devices)
    started = asked if jobs is None else max(1, min(asked, jobs))
    if executor == "ray":
        check_ray_devices(devices)
        threads = threads or max(1, (os.cpu_count() or 1) // started)
    pool = plan_workers(devices, workers, threads=threads, limit=started)
    if jobs is not None:
        for line in worker_notes(asked, jobs, executor):
            print(line, file=sys.stderr)
    return devices, pool


def worker_notes(asked: int, jobs: int, executor: str, cores: int | None = None) -> list[str]:
    """The lines `reproduce` prints about its worker count: capped at the jobs; more worker
    processes than this machine's cores (not for a Ray cluster, whose nodes have their own)."""
    cores = cores or os.cpu_count() or 1
    started = max(1, min(asked, jobs))
    lines = []
    if started < asked:
        lines.append(f"note: --workers asks for {asked} worker(s) but the grid has {jobs} "
                     f"job(s); starting {started} (an idle worker would only hold memory)")
    if started > cores and not (executor == "ray" and os.environ.get("RAY_ADDRESS")):
        lines.append(f"warning: {started} worker processes on {cores} cores: they take turns on "
                     "the cores (a CUDA worker needs one to launch its kernels), so fewer "
                     "workers are as fast and hold less memory (--workers counts processes "
                     "per device of --device)")
    return lines


def placed_train(train: dict[str, Any], worker: Worker | None) -> dict[str, Any]:
    """A job's TrainConfig fields as `worker` runs them: its device and threads (the fields a
    run folder records as the device kind / leaves free on resume)."""
    if worker is None or worker.device is None:
        return train
    return {**train, "device": worker.config_device,
            "threads": worker.threads or train.get("threads")}


@contextlib.contextmanager
def pinned(worker: Worker | None) -> Iterator[None]:
    """The block runs with `worker`'s card as the current CUDA device (so 'cuda' means it);
    nothing to do on the CPU or for a bare 'cuda' entry."""
    index = worker.cuda_index if worker is not None else None
    if index is None:
        yield
        return
    import torch

    with torch.cuda.device(index):
        yield


def record_placement(exp_file, phase: str, job_name: str, worker: Worker) -> None:
    """Note in OUT/experiment.json (`placements[phase][job]`) which worker and device ran a
    job and when it finished (written by the parent as each job is reported)."""
    import time

    from robustlab.common.files import atomic_write_json, read_json

    exp = read_json(exp_file)
    placements = exp.setdefault("placements", {}).setdefault(phase, {})
    placements[job_name] = {**worker.record(), "finished_at": time.time()}
    atomic_write_json(exp_file, exp)
