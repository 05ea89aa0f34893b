"""The training loop: one function, readable top to bottom.

Every method plugs in through `TrainingMethod.train_step` (see `methods/base.py`); everything
else — data order, learning rate, logging, checkpoints, resume — is the same for all methods.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from robustlab.common.device import peak_memory_mb, resolve_device
from robustlab.common.inference import accuracy
from robustlab.common.seeding import epoch_seed, seed_everything
from robustlab.common.vocabulary import EPOCH_FLAGS, FLAG_NON_FINITE
from robustlab.data import DatasetSplits
from robustlab.data.in_memory import CUSTOM
from robustlab.runs.checkpoint import (
    AVERAGED_DIGEST_KEY,
    DIGEST_KEY,
    RUN_CONFIG_KEY,
    load_state,
    save_state,
    save_weights,
)
from robustlab.runs.config import TrainConfig
from robustlab.runs.folder import (
    AVERAGED_WEIGHTS,
    CHECKPOINT,
    METRICS,
    WEIGHTS,
    RunFolder,
    RunFolderError,
    claim_run_folder,
)
from robustlab.training.averaging import WeightAverage, create_averager
from robustlab.training.callbacks import Callback
from robustlab.training.distributed import (
    DistContext,
    init_distributed,
    rank_device,
    shutdown,
    wrap_model,
)
from robustlab.training.extra_data import TrainBatches, open_extra, training_batches
from robustlab.training.health import OK, epoch_flags, run_health
from robustlab.training.lr_schedules import lr_factor
from robustlab.training.methods.awp import awp_log
from robustlab.training.methods.base import TrainContext
from robustlab.training.methods.perturb import training_pass_kernels
from robustlab.training.setup import Components, build_components


@dataclass
class RunResult:
    """The run folder, its summary.json and metrics.jsonl rows, and (when the run trained in
    this process) the trained model, in eval mode: with the averaged weights when the run
    averages them (`ema`, `swa_start`), the weights evaluate uses by default."""

    run_dir: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    model: torch.nn.Module | None = None


def default_run_dir(cfg: TrainConfig) -> Path:
    eps = "" if cfg.eps is None else f"-eps{cfg.eps:g}"
    return Path("runs") / f"{cfg.dataset}-{cfg.model}-{cfg.method}{eps}-s{cfg.seed}"


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          callbacks: Sequence[Callback] = (), model: torch.nn.Module | None = None,
          data: DatasetSplits | None = None) -> RunResult:
    """Train as `cfg` says, writing the run folder; returns its summary and per-epoch metrics.

    `callbacks` (see `callbacks.py`) are told every step's loss and every epoch's metrics row
    on the main process. `model` / `data`: a model and splits passed from Python instead of
    registered names (`cfg.model` / `cfg.dataset` = "custom"; `robustlab.train` builds both);
    `model` is trained in place. Under torchrun (WORLD_SIZE > 1) every rank calls this; see
    `distributed.py`.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    dist = init_distributed(device)
    try:
        return _train(cfg, rank_device(device, dist), dist, resume=resume, overwrite=overwrite,
                      callbacks=tuple(callbacks) if dist.is_main else (),
                      injected=(model, data))
    finally:
        shutdown(dist)


def _train(cfg: TrainConfig, device: torch.device, dist: DistContext, *, resume: bool,
           overwrite: bool, callbacks: tuple[Callback, ...], injected: tuple) -> RunResult:
    target = Path(cfg.out_dir or default_run_dir(cfg))
    # the extra images' file and teacher, checked and their digests recorded (None without)
    cfg, extra = open_extra(cfg, resume_target=target if resume else None)
    # rank 0 holds the folder's lock for the whole run; the other ranks only check it
    with claim_run_folder(target, cfg.to_dict(), resume=resume, overwrite=overwrite,
                          lock=dist.is_main, defaults=TrainConfig().to_dict()
                          ) as (run, resuming), torch_threads(cfg.threads):
        if resuming and run.is_complete:
            if dist.is_main:
                run.finish()  # a kill after the summary may have left the checkpoint
            return RunResult(run.path, run.read_summary(), run.read_metrics())
        if resume and not resuming and dist.is_main:
            print(f"warning: nothing to resume at {target}: starting a new run",
                  file=sys.stderr)
        return _run_epochs(cfg, device, dist, run, resuming, callbacks, (*injected, extra))


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's intra-op thread count set to `n` (None: unchanged) for the block, then restored:
    a run in a long-lived process must not change the thread count, hence the numerics, of
    what the process computes next."""
    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _run_epochs(cfg: TrainConfig, device: torch.device, dist: DistContext, run: RunFolder,
                resuming: bool, callbacks: tuple[Callback, ...], injected: tuple) -> RunResult:
    seed_everything(cfg.seed)
    # data, model, method, optimizer; raises before compute
    parts = build_components(cfg, device, model=injected[0], splits=injected[1])
    batches = training_batches(cfg, parts.data, injected[2], device)  # + pseudo-labelled
    dist.barrier()  # every rank has checked the folder before rank 0 writes to it
    if not resuming and dist.is_main:  # a model of the user's own is rebuilt by the user
        kwargs = None if cfg.model == CUSTOM else parts.data.info.model_kwargs()
        run.write_config(cfg.to_dict(), model_kwargs=kwargs)
    model, method, data = parts.model, parts.method, parts.data
    ctx = TrainContext(cfg=cfg, model=model, device=device, train=data.train, val=data.val,
                       num_classes=data.info.num_classes,
                       steps_per_epoch=batches.steps_per_epoch, dist=dist)
    method.setup(ctx)
    train_model = wrap_model(model, dist)  # DDP when several processes, else `model` itself
    if cfg.compile:  # only the training forward is compiled; checkpoints keep plain names
        train_model = torch.compile(train_model)

    averager = _averager(cfg, parts)  # of the unwrapped model; None: the last iterate only
    metrics, start_epoch, digests = _resume_point(cfg, dist, run, parts, averager, resuming)
    for epoch in range(start_epoch, cfg.epochs):
        if metrics and metrics[-1].get(FLAG_NON_FINITE):
            break  # the loss diverged: more epochs cannot bring it back
        on_step = [cb.on_step for cb in callbacks if hasattr(cb, "on_step")]
        if averager is not None:  # EMA: after every optimizer step
            on_step.append(lambda step, loss: averager.after_step(model))
        metrics.append(_train_epoch(cfg, ctx, parts, train_model, epoch, on_step, batches))
        if averager is not None:  # SWA: the epoch-end weights from swa_start on
            averager.after_epoch(model, epochs_done=epoch + 1)
        if dist.is_main:
            _print_epoch(metrics[-1], cfg)
            digests = _checkpoint(run, parts, averager, metrics, epoch + 1, cfg)
            for cb in callbacks:
                if hasattr(cb, "on_epoch"):
                    cb.on_epoch(dict(metrics[-1]))

    summary = {**_summary(cfg, metrics, _test_accuracy(parts, averager), data, model,
                          dist.world_size), **digests, **batches.record}
    if dist.is_main:
        run.write_summary(summary)
        run.finish()  # drops the checkpoint; an --overwrite run takes the old one's place
    dist.barrier()
    if averager is not None and averager.ready:  # the weights evaluate uses by default
        model.load_state_dict(averager.averaged_model(model).state_dict())
    return RunResult(run.path, summary, metrics, model.eval())


def _averager(cfg: TrainConfig, parts: Components) -> WeightAverage | None:
    """The run's weight average (`cfg.averaging`, training/averaging.py); SWA recomputes the
    batch-norm statistics over the training batches in an order (and with dropout masks)
    fixed by the seed alone."""
    seed = epoch_seed(cfg.seed, cfg.epochs)  # no epoch's seed

    def bn_batches():
        return (x for x, _ in parts.data.batches(torch.Generator().manual_seed(seed)))

    return create_averager(cfg.averaging, parts.model, decay=cfg.ema, start=cfg.swa_start,
                           bn_batches=bn_batches, seed=seed)


def _test_accuracy(parts: Components, averager: WeightAverage | None) -> dict[str, Any]:
    """summary.json's `test_acc`: the accuracy of the weights evaluate uses by default (the
    averaged ones when the run averages; then also `test_acc_last`, the last iterate's)."""
    test = parts.data.test
    averager = averager if averager is not None and averager.ready else None
    if not getattr(parts.method, "reports_accuracy", True) or not len(test):
        return {"test_acc": None} if averager is None else {
            "test_acc": None, "test_acc_last": None, "averaging": averager.kind}
    last = accuracy(parts.model, test.x, test.y)
    if averager is None:  # (an SWA run that diverged before swa_start has no average)
        return {"test_acc": last}
    averaged = accuracy(averager.averaged_model(parts.model), test.x, test.y)
    return {"test_acc": averaged, "test_acc_last": last, "averaging": averager.kind}


def _resume_point(cfg: TrainConfig, dist: DistContext, run: RunFolder, parts: Components,
                  averager: WeightAverage | None, resuming: bool
                  ) -> tuple[list[dict[str, Any]], int, dict[str, str | None]]:
    """(metrics so far, epochs done, weights digests): the checkpoint's when resuming from one,
    else a fresh start -- said on stderr when the folder records finished epochs."""
    digests: dict[str, str | None] = {DIGEST_KEY: None}
    if resuming and run.file(CHECKPOINT).is_file():
        metrics, start_epoch = _restore(run, parts, averager)
        if dist.is_main:  # a kill may have come between the checkpoint and these files
            digests = _publish(run, parts.model, averager, metrics, start_epoch, cfg)
        return metrics, start_epoch, digests
    if resuming and dist.is_main and run.file(METRICS).is_file() and _recorded_epochs(run):
        print(f"warning: resuming {run.path}: its {CHECKPOINT} is missing, so training restarts "
              f"from epoch 0 and its {METRICS} ({_recorded_epochs(run)} finished epoch(s)) "
              "will be overwritten", file=sys.stderr)
    return [], 0, digests


def _recorded_epochs(run: RunFolder) -> str:
    """How many epochs metrics.jsonl records, as text ("" for none; "some" if damaged)."""
    try:
        return str(len(run.read_metrics()) or "")
    except RunFolderError:
        return "some"


def _restore(run: RunFolder, parts: Components,
             averager: WeightAverage | None) -> tuple[list[dict[str, Any]], int]:
    """Model, optimizer, method state and weight average from the run's checkpoint, which must
    have been written by this run (its config digest); returns (metrics, epochs done)."""
    state = load_state(run.file(CHECKPOINT), run_config_sha256=run.config_digest())
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.method.load_state_dict(state["method"])
    if averager is not None:
        averager.load_state_dict(state[_AVERAGE_KEY])
    return state["metrics"], state["epoch"]


def _train_epoch(cfg: TrainConfig, ctx: TrainContext, parts: Components,
                 train_model: torch.nn.Module, epoch: int,
                 on_step: list[Callable[[int, torch.Tensor], None]],
                 batches: TrainBatches) -> dict[str, Any]:
    """One epoch over the training split (`batches`: with the extra images, if any); returns
    its metrics.jsonl row."""
    model, method, optimizer, data, dist = (parts.model, parts.method, parts.optimizer,
                                            parts.data, ctx.dist)
    reports_accuracy = getattr(method, "reports_accuracy", True)
    # the CPU kernels for the whole step (values equal, faster; methods opt in)
    step_kernels = (training_pass_kernels if getattr(method, "cpu_kernels", False)
                    else lambda model, x: contextlib.nullcontext())
    autocast = (torch.autocast(ctx.device.type, dtype=torch.bfloat16) if cfg.amp == "bf16"
                else contextlib.nullcontext())
    total_steps = cfg.epochs * ctx.steps_per_epoch
    generator = seed_everything(epoch_seed(cfg.seed, epoch))  # resume needs no RNG replay
    ctx.epoch = epoch
    logs = method.start_epoch(ctx)
    model.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=ctx.device)
    correct = torch.zeros((), device=ctx.device, dtype=torch.long)
    bar = tqdm(batches(generator), total=ctx.steps_per_epoch,
               desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress, leave=False,
               dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        ctx.step = epoch * ctx.steps_per_epoch + i
        ctx.progress = epoch + i / ctx.steps_per_epoch
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg.lr_schedule, ctx.step / total_steps)
        x, y = dist.shard(x, y)
        if cfg.noise_sigma:  # randomized-smoothing noise, for any method (drawn from the
            x = x + cfg.noise_sigma * torch.randn_like(x)  # global RNG the epoch reseeds)
        with autocast, step_kernels(train_model, x):
            out = method.train_step(train_model, optimizer, x, y, ctx)
        loss_sum += out.loss.detach().float() * len(y)
        for hook in on_step:
            hook(ctx.step, out.loss.detach())
        if reports_accuracy:
            correct += (out.logits.argmax(1) == y).sum()
        if i % 25 == 0 and cfg.progress:
            bar.set_postfix(loss=f"{out.loss.item():.3f}", **_short(logs))
    logs.update(method.end_epoch(ctx), **awp_log(cfg, ctx.progress))
    dist.sum(loss_sum), dist.sum(correct)
    val_acc = (accuracy(model, data.val.x, data.val.y)
               if reports_accuracy and len(data.val) else None)
    seen = batches.images_per_epoch  # the training split's, plus the extra images drawn
    row = {"epoch": epoch + 1, "train_loss": loss_sum.item() / seen,
           "train_acc": correct.item() / seen if reports_accuracy else None,
           "val_acc": val_acc, "lr": optimizer.param_groups[0]["lr"],
           "epoch_time_s": time.perf_counter() - t0, "peak_mem_mb": peak_memory_mb(ctx.device),
           **logs}
    row.update(epoch_flags(row["train_loss"], val_acc, num_classes=ctx.num_classes,
                           past_warmup=epoch + 1 >= cfg.eps_warmup))
    return row


_AVERAGE_KEY = "weight_average"  # the checkpoint's (runs that average their weights only)


def _checkpoint(run: RunFolder, parts: Components, averager: WeightAverage | None, metrics,
                epoch: int, cfg: TrainConfig) -> dict[str, str | None]:
    state = {"model": parts.model.state_dict(), "optimizer": parts.optimizer.state_dict(),
             "method": parts.method.state_dict(), "metrics": metrics, "epoch": epoch,
             RUN_CONFIG_KEY: run.config_digest()}  # binds the checkpoint to this run
    if averager is not None:
        state[_AVERAGE_KEY] = averager.state_dict()
    save_state(run.file(CHECKPOINT), state)  # one file, one rename: weights+state agree
    return _publish(run, parts.model, averager, metrics, epoch, cfg)


def _publish(run: RunFolder, model, averager: WeightAverage | None, metrics, epoch: int,
             cfg: TrainConfig) -> dict[str, str | None]:
    """metrics.jsonl, model.safetensors and (once there is an average) model-averaged.
    safetensors as of the checkpoint; returns summary.json's digests of the weights files."""
    run.write_metrics(metrics)
    meta = {"config": cfg.to_dict(), "epoch": epoch}
    digests = {DIGEST_KEY: save_weights(run.file(WEIGHTS), model, meta)}
    if averager is not None and averager.ready:
        digests[AVERAGED_DIGEST_KEY] = save_weights(
            run.file(AVERAGED_WEIGHTS), averager.averaged_model(model),
            {**meta, "averaging": averager.kind})
    return digests


def _summary(cfg: TrainConfig, metrics, test: dict[str, Any], data, model,
             world_size: int) -> dict[str, Any]:
    times = [m["epoch_time_s"] for m in metrics]
    health = run_health(metrics)
    if health != OK and cfg.progress:
        tqdm.write(f"WARNING: this run did not learn as it should: {health} (metrics.jsonl "
                   "has the per-epoch flags); the report shows it apart from the comparison")
    return {
        "health": health,
        **test,  # test_acc (and, when the run averages, test_acc_last and averaging)
        "val_acc": metrics[-1]["val_acc"],
        "train_time_s": sum(times),
        "epoch_time_s_mean": sum(times) / len(times),
        "peak_mem_mb": max(m["peak_mem_mb"] for m in metrics),
        "epochs": cfg.epochs, "epochs_done": len(metrics),
        "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
        "n_params": sum(p.numel() for p in model.parameters()),
        "dataset": cfg.dataset, "model": cfg.model, "method": cfg.method, "seed": cfg.seed,
        "eps": cfg.eps, "eps_warmup": cfg.eps_warmup, "recipe": cfg.recipe,
        "world_size": world_size,
    }


def _short(logs: dict[str, Any]) -> dict[str, str]:
    return {k: f"{v:.3g}" for k, v in logs.items() if k in ("eps", "alpha") and v is not None}


def _print_epoch(row: dict[str, Any], cfg: TrainConfig) -> None:
    if not cfg.progress:
        return
    extra = "".join(f" {k}={row[k]:.4g}" for k in ("eps", "alpha", "val_adv_acc")
                    if row.get(k) is not None)
    extra += "".join(f"  [{flag.replace('_', ' ')}]" for flag in EPOCH_FLAGS if row.get(flag))
    val = "n/a" if row["val_acc"] is None else f"{row['val_acc']:.4f}"
    tr = "n/a" if row["train_acc"] is None else f"{row['train_acc']:.4f}"
    tqdm.write(f"epoch {row['epoch']}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
               f"train_acc {tr}  val_acc {val}{extra}  "
               f"({row['epoch_time_s']:.1f}s)")
