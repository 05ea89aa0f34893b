"""Pseudo-labelled extra images (the RST recipe: Carmon et al. 2019, "Unlabeled Data Improves
Adversarial Robustness"), for every training method.

A finished run (the teacher, `extra_teacher`) labels a file of unlabeled images
(`extra_images`) once, at the start of the run: its model in eval mode, argmax, in batches on
the run's device. Every training batch then holds `batch_size - extra_per_batch(...)`
labelled images and `extra_per_batch(batch_size, extra_fraction)` pseudo-labelled ones (the
floor of batch_size x extra_fraction, as RST's sampler counts them), shuffled together, then
augmented as one batch; the method sees an ordinary (x, y) batch. An epoch is one pass over
the labelled images; the extra images are taken in a random order drawn each epoch from the
epoch's generator (a fresh order when the file runs out), so a resumed run is bit-identical.

What the run records: the file's SHA-256 and the teacher's weights digest (config.json
`extra_images_sha256` / `extra_teacher_sha256`, and summary.json with `n_extra`); `--resume`
refuses a run whose file or teacher changed since it started.
"""

from __future__ import annotations

import hashlib
import io
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robustlab.common.errors import ConfigError
from robustlab.common.inference import predict_logits
from robustlab.data import DatasetInfo
from robustlab.data.in_memory import CUSTOM
from robustlab.runs.build import RunData, train_on_device
from robustlab.runs.checkpoint import DIGEST_KEY, WeightsError
from robustlab.runs.config import TrainConfig, extra_per_batch
from robustlab.runs.folder import CONFIG, RunFolder, RunFolderError
from robustlab.runs.load import load_model
from robustlab.runs.saved import open_run, recorded_model_kwargs

EXTRA_FORMATS = (".safetensors", ".npy")
SAFETENSORS_KEY = "x"  # the tensor of a .safetensors file of extra images
LABEL_BATCH = 512  # images per teacher forward when labelling


@dataclass
class ExtraSource:
    """The extra images as read (uint8 or float32 `[N, C, H, W]`, on the CPU) and their
    teacher: its model (eval mode, CPU) and its recorded `model_kwargs`."""

    x: torch.Tensor
    teacher: nn.Module
    teacher_kwargs: dict


def open_extra(cfg: TrainConfig, resume_target: Path | None = None
               ) -> tuple[TrainConfig, ExtraSource | None]:
    """(`cfg` with the extra images' digests recorded, the images and teacher), or (`cfg`,
    None) without extra images. Reads and checks the file and the teacher folder (one
    `ConfigError` naming the field and the file each); `resume_target`: the run folder to be
    resumed, whose recorded digests must be these."""
    if cfg.extra_images is None:
        return cfg, None
    x, sha = read_extra_images(cfg.extra_images)
    teacher, kwargs, teacher_sha = _open_teacher(cfg.extra_teacher)
    for fname, recorded, now in (("extra_images_sha256", cfg.extra_images_sha256, sha),
                                 ("extra_teacher_sha256", cfg.extra_teacher_sha256,
                                  teacher_sha)):
        if recorded is not None and recorded != now:
            raise ConfigError(f"{fname}: the config records {recorded[:16]}..., but "
                              f"{_what(fname, cfg)} is now {now[:16]}...; expected the same "
                              "file (or no recorded digest)")
    cfg = cfg.replace(extra_images_sha256=sha, extra_teacher_sha256=teacher_sha)
    if resume_target is not None:
        _check_resume(resume_target, cfg)
    return cfg, ExtraSource(x, teacher, kwargs)


def read_extra_images(path: str) -> tuple[torch.Tensor, str]:
    """(images `[N, C, H, W]` uint8 or float32 in [0, 1], the file's SHA-256) of a .safetensors
    (tensor "x") or .npy file (never a pickle); one `ConfigError` naming the file otherwise."""
    file = Path(path)
    if file.suffix not in EXTRA_FORMATS:
        raise ConfigError(f"extra_images: {file}: expected a .safetensors file (tensor "
                          f"{SAFETENSORS_KEY!r}) or a .npy file, got suffix {file.suffix!r}")
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise ConfigError(f"extra_images: cannot read {file}: {err.strerror or err}") from None
    x = _parse(file, raw)
    return _checked_images(file, x), hashlib.sha256(raw).hexdigest()


def _parse(file: Path, raw: bytes) -> torch.Tensor:
    """The image tensor of the file's bytes (parsed from the bytes that were hashed)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    try:
        if file.suffix == ".npy":  # an object (pickled) array is a ValueError here
            return torch.from_numpy(np.load(io.BytesIO(raw), allow_pickle=False))
        tensors = load_safetensors(raw)
    except (ValueError, TypeError, EOFError, SafetensorError) as err:  # TypeError: str dtype
        detail = " ".join(str(err).split())[:120]
        raise ConfigError(f"extra_images: {file}: not a readable {file.suffix} file "
                          f"({type(err).__name__}: {detail})") from None
    if SAFETENSORS_KEY not in tensors:
        raise ConfigError(f"extra_images: {file}: expected a tensor named "
                          f"{SAFETENSORS_KEY!r}, found {sorted(tensors) or 'none'}")
    return tensors[SAFETENSORS_KEY]


def _checked_images(file: Path, x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ConfigError(f"extra_images: {file}: expected float images in [0, 1] or uint8 "
                          f"(0-255), got dtype {x.dtype}")
    if x.dim() != 4:
        raise ConfigError(f"extra_images: {file}: expected images [N, C, H, W], got shape "
                          f"{list(x.shape)}")
    if len(x) == 0:
        raise ConfigError(f"extra_images: {file}: holds no images (shape {list(x.shape)}); "
                          "expected at least 1")
    if x.dtype == torch.uint8:
        return x.contiguous()
    x = x.float().contiguous()
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ConfigError(f"extra_images: {file}: {bad} non-finite pixel value(s) (NaN or "
                          "inf); expected values in [0, 1]")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0 or hi > 1:
        raise ConfigError(f"extra_images: {file}: expected pixel values in [0, 1] (or uint8), "
                          f"found [{lo:.3g}, {hi:.3g}]")
    return x


def _open_teacher(path: str) -> tuple[nn.Module, dict, str]:
    """(the teacher's model in eval mode on the CPU, its model_kwargs, its weights digest)."""
    try:
        folder, tcfg = open_run(path)
        if not folder.is_complete:
            raise ConfigError(f"extra_teacher: {folder.path} is not a finished run (no "
                              "summary.json); expected the folder of a finished run")
        if tcfg.model == CUSTOM:
            raise ConfigError(f"extra_teacher: {folder.path} trained a model of your own "
                              "(recorded as 'custom'), which cannot be rebuilt from its folder; "
                              "expected a run of a registered model")
        kwargs = recorded_model_kwargs(folder)
        digest = folder.read_summary().get(DIGEST_KEY)
        if kwargs is None or digest is None:
            raise ConfigError(f"extra_teacher: {folder.file(CONFIG)} records no model_kwargs "
                              "or weights digest (written before they were); train the "
                              "teacher again")
        model = load_model(folder.path, device="cpu")  # its weights checked against digest
    except (RunFolderError, WeightsError, OSError) as err:
        raise ConfigError(f"extra_teacher: {err}") from None
    return model, kwargs, digest


def _what(fname: str, cfg: TrainConfig) -> str:
    if fname == "extra_images_sha256":
        return f"extra_images {cfg.extra_images}"
    return f"the weights of extra_teacher {cfg.extra_teacher}"


def _check_resume(target: Path, cfg: TrainConfig) -> None:
    """A run resumed with extra images must find the file and teacher it started with."""
    if not (target / CONFIG).is_file():
        return
    recorded = RunFolder(target).read_config()
    for fname in ("extra_images_sha256", "extra_teacher_sha256"):
        old, now = recorded.get(fname), getattr(cfg, fname)
        if old is not None and old != now:
            raise RunFolderError(
                f"cannot resume {target}: {_what(fname, cfg)} changed since the run started "
                f"(config.json {fname} {old[:16]}..., now {now[:16]}...); restore it, or pass "
                "--overwrite to start again")


def pseudo_labels(teacher: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The teacher's argmax class of every image of `x`, in eval mode, `LABEL_BATCH` images at
    a time on `device`; int64 `[N]` on `device`."""
    teacher = teacher.to(device)
    labels = [predict_logits(teacher, as_float(x[i:i + LABEL_BATCH].to(device))).argmax(1)
              for i in range(0, len(x), LABEL_BATCH)]
    return torch.cat(labels).to(device)


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1] (uint8 divided by 255)."""
    return x.float() / 255 if x.dtype == torch.uint8 else x


def check_against_data(cfg: TrainConfig, source: ExtraSource, info: DatasetInfo) -> None:
    """The extra images and the teacher fit the run's dataset: image shape, class count."""
    shape = [info.channels, *info.image_size]
    if list(source.x.shape[1:]) != shape:
        raise ConfigError(f"extra_images: {cfg.extra_images}: images of shape "
                          f"{list(source.x.shape[1:])} (C, H, W), but dataset {cfg.dataset}'s "
                          f"are {shape}")
    k = source.teacher_kwargs
    got = [k.get("in_channels"), *(k.get("image_size") or ())]
    if got != shape or k.get("num_classes") != info.num_classes:
        raise ConfigError(f"extra_teacher: {cfg.extra_teacher} trained on {k.get('num_classes')}"
                          f" classes of images {got}, but dataset {cfg.dataset} has "
                          f"{info.num_classes} classes of images {shape}; expected a teacher "
                          "trained on the same kind of data")


@dataclass
class TrainBatches:
    """The training batches of a run, one epoch per call: the labelled split's own batches,
    or (with extra images) labelled and pseudo-labelled images mixed in each batch."""

    data: RunData
    batch_size: int
    extra_x: torch.Tensor | None = None  # uint8 / float32 [N, C, H, W]
    extra_y: torch.Tensor | None = None  # the teacher's labels, int64 [N]
    extra_share: int = 0  # extra images per full batch
    record: dict = field(default_factory=dict)  # summary.json's fields of the extra images

    @property
    def labelled_share(self) -> int:
        return self.batch_size - self.extra_share

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.train) / self.labelled_share)

    @property
    def images_per_epoch(self) -> int:
        """Images the steps of one epoch train on, labelled and extra."""
        return len(self.data.train) + self._extra_needed()

    def _extra_counts(self) -> list[int]:
        """Extra images per step: `extra_share`, and the same share of a last smaller batch."""
        n, lab = len(self.data.train), self.labelled_share
        return [min(lab, n - start) * self.extra_share // lab for start in range(0, n, lab)]

    def _extra_needed(self) -> int:
        return sum(self._extra_counts()) if self.extra_x is not None else 0

    def __call__(self, generator: torch.Generator
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.extra_x is None:
            return self.data.batches(generator)
        return self._mixed(generator)

    def _mixed(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data, counts = self.data, self._extra_counts()
        order = _extra_order(len(self.extra_x), sum(counts), generator)
        labelled = RunData(data.train, data.val, data.test, data.info, self.labelled_share,
                           None, data.device)  # augmented below, with the extra images
        taken = 0
        for (x, y), n in zip(labelled.batches(generator), counts, strict=True):
            idx = order[taken:taken + n].to(self.extra_x.device)
            taken += n
            device = x.device
            x = torch.cat([x, as_float(self.extra_x[idx].to(device, non_blocking=True))])
            y = torch.cat([y, self.extra_y[idx].to(device)])
            mix = torch.randperm(len(y), generator=generator).to(device)  # as RST: no batch
            x, y = x[mix], y[mix]  # part (a data-parallel rank's share) is labelled only
            yield (data.augment(x, generator) if data.augment is not None else x), y


def _extra_order(n: int, needed: int, generator: torch.Generator) -> torch.Tensor:
    """`needed` indices into the extra images: random orders of all `n`, one after another."""
    if needed == 0:
        return torch.empty(0, dtype=torch.long)
    orders = [torch.randperm(n, generator=generator) for _ in range(math.ceil(needed / n))]
    return torch.cat(orders)[:needed]


def training_batches(cfg: TrainConfig, data: RunData, source: ExtraSource | None,
                     device: torch.device) -> TrainBatches:
    """The run's `TrainBatches`: with extra images, checked against the dataset, then labelled
    once by the teacher on `device` (the one compute here)."""
    if source is None:
        return TrainBatches(data, cfg.batch_size)
    check_against_data(cfg, source, data.info)
    x = source.x
    x = x.to(device) if train_on_device(x.nbytes, device) else x.pin_memory()
    y = pseudo_labels(source.teacher, x, device)
    share = extra_per_batch(cfg.batch_size, cfg.extra_fraction)
    if cfg.progress:
        counts = torch.bincount(y.cpu(), minlength=data.info.num_classes).tolist()
        print(f"extra images: {len(x)} from {cfg.extra_images}, labelled by "
              f"{cfg.extra_teacher} (images per class {counts}); {share} of every "
              f"{cfg.batch_size} images per batch", file=sys.stderr)
    record = {"n_extra": len(x), "extra_images_sha256": cfg.extra_images_sha256,
              "extra_teacher_sha256": cfg.extra_teacher_sha256}
    return TrainBatches(data, cfg.batch_size, x, y, share, record)
