"""RobustBench entries robustlab can load (data only; the loader is `robustbench.py`).

Facts from RobustBench 1.1.1 (`robustbench/model_zoo/{cifar10,cifar100,imagenet}.py`: the
architecture and its arguments, the Google Drive file id) and from the RobustBench repository's
`model_info/<dataset>/<threat model>/<name>.json` (commit 78fcc9e, 2025-03-31: eps, the
reported clean and AutoAttack accuracy in %, the architecture's label). RobustBench publishes
no checksum of its files, so `sha256` is None for every entry: the loader records the digest
of the file it first loads (trust on first use, docs/robustbench.md) and checks every later
load against it. A digest written here would take precedence over that record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # DeepMind's and Wong/Rice's CIFAR-10 statistics
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_MEAN = (0.0, 0.0, 0.0)  # the TRADES-style WideResNets take [0, 1] pixels unnormalised
NO_STD = (1.0, 1.0, 1.0)

# dataset -> (classes, channels, image size) of the model RobustBench evaluates
DATASETS = {"cifar10": (10, 3, 32), "cifar100": (100, 3, 32), "imagenet": (1000, 3, 224)}
THREAT_MODELS = ("Linf", "L2")
GDRIVE_PAGE = "https://drive.google.com/uc?id={id}"
GDRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"


@dataclass(frozen=True)
class RobustBenchEntry:
    """One RobustBench model: where its file is, how to build it, what RobustBench reports.

    `architecture` is a robustlab model name (`options` its options); `mean`/`std` the input
    normalisation RobustBench's model applies (a checkpoint that carries its own replaces
    them); `key_map` names a renaming of the checkpoint's keys ("preact": RobustBench's
    PreActResNet-18 onto `preact_resnet18`); `clean_acc`/`autoattack_acc` are in %."""

    name: str
    dataset: str
    threat_model: str
    eps: float
    eps_text: str
    architecture: str
    label: str
    clean_acc: float
    autoattack_acc: float
    gdrive_id: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    options: dict[str, Any] = field(default_factory=dict)
    key_map: str | None = None
    sha256: str | None = None
    venue: str = ""

    @property
    def norm(self) -> str:
        """The attack norm robustlab spells: "linf" or "l2"."""
        return self.threat_model.lower()

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset][0]

    @property
    def url(self) -> str:
        """The file's Google Drive page, as RobustBench's model zoo lists it."""
        return GDRIVE_PAGE.format(id=self.gdrive_id)

    @property
    def download_url(self) -> str:
        return GDRIVE_DOWNLOAD.format(id=self.gdrive_id)

    def metadata(self) -> dict[str, Any]:
        """The facts an eval file records (JSON-ready)."""
        return {"name": self.name, "dataset": self.dataset, "threat_model": self.threat_model,
                "eps": self.eps, "eps_text": self.eps_text, "architecture": self.architecture,
                "label": self.label, "reported_clean_acc": self.clean_acc,
                "reported_autoattack_acc": self.autoattack_acc, "url": self.url,
                "venue": self.venue}


def _e(name: str, dataset: str, tm: str, eps_text: str, arch: str, label: str, clean: float,
       aa: float, gid: str, mean: tuple[float, ...], std: tuple[float, ...], venue: str,
       **extra: Any) -> RobustBenchEntry:
    num, _, den = eps_text.partition("/")
    eps = float(num) / float(den) if den else float(num)
    return RobustBenchEntry(name, dataset, tm, eps, eps_text, arch, label, clean, aa, gid,
                            mean, std, venue=venue, **extra)


C10, C100 = (CIFAR10_MEAN, CIFAR10_STD), (CIFAR100_MEAN, CIFAR100_STD)
RAW, IMNET = (NO_MEAN, NO_STD), (IMAGENET_MEAN, IMAGENET_STD)
SUB1 = {"options": {"sub_block1": True}}

ENTRIES: tuple[RobustBenchEntry, ...] = (
    # CIFAR-10, Linf
    _e("Standard", "cifar10", "Linf", "8/255", "wrn-28-10", "WideResNet-28-10", 94.78, 0.0,
       "1t98aEuzeTL8P7Kpd5DIrCoCL21BNZUhC", *RAW, "N/A"),
    _e("Carmon2019Unlabeled", "cifar10", "Linf", "8/255", "wrn-28-10", "WideResNet-28-10",
       89.69, 59.53, "15tUx-gkZMYx7BfEOw1GY5OKC-jECIsPQ", *RAW, "NeurIPS 2019", **SUB1),
    _e("Zhang2019Theoretically", "cifar10", "Linf", "0.031", "wrn-34-10", "WideResNet-34-10",
       84.92, 53.08, "1hPz9QQwyM7QSuWu-ANG_uXR-29xtL8t_", *RAW, "ICML 2019", **SUB1),
    _e("Rice2020Overfitting", "cifar10", "Linf", "8/255", "wrn-34-20", "WideResNet-34-20",
       85.34, 53.42, "1vC_Twazji7lBjeMQvAD9uEQxi9Nx2oG-", *C10, "ICML 2020"),
    _e("Sehwag2021Proxy", "cifar10", "Linf", "8/255", "wrn-34-10", "WideResNet-34-10", 86.68,
       60.27, "1QFA5fPMj2Qw4aYNG33PkFqiv_RTDWvzm", *RAW, "ICLR 2022"),
    _e("Gowal2020Uncovering_28_10_extra", "cifar10", "Linf", "8/255", "wrn-28-10-silu",
       "WideResNet-28-10", 89.48, 62.80, "1MBAWGxiZxKt-GfqEqtLcXcd3tAxPhvV2", *C10,
       "arXiv, Oct 2020"),
    _e("Gowal2020Uncovering_34_20", "cifar10", "Linf", "8/255", "wrn-34-20-silu",
       "WideResNet-34-20", 85.64, 56.86, "1YWvZO1u9_yNLFNC3JYd_TVkvrRSMER1O", *C10,
       "arXiv, Oct 2020"),
    _e("Gowal2020Uncovering_70_16_extra", "cifar10", "Linf", "8/255", "wrn-70-16-silu",
       "WideResNet-70-16", 91.10, 65.88, "1GxryYj_Or-VCDca0wgiFLz4ssXSZXQoJ", *C10,
       "arXiv, Oct 2020"),
    _e("Rebuffi2021Fixing_70_16_cutmix_extra", "cifar10", "Linf", "8/255", "wrn-70-16-silu",
       "WideResNet-70-16", 92.23, 66.58, "1qKDTp6IJ1BUXZaRtbYuo_t0tuDl_4mLg", *C10,
       "arXiv, Mar 2021"),
    _e("Wang2023Better_WRN-28-10", "cifar10", "Linf", "8/255", "wrn-28-10-silu",
       "WideResNet-28-10", 92.44, 67.31, "1-6MYKJdECDVGaWjj6GgqvaT95BGKhUvI", *C10, "ICML 2023"),
    _e("Wang2023Better_WRN-70-16", "cifar10", "Linf", "8/255", "wrn-70-16-silu",
       "WideResNet-70-16", 93.25, 70.69, "1-RF7ZSS-PAh6bfQcuqx4lh9bc9BUGnap", *C10, "ICML 2023"),
    # CIFAR-10, L2
    _e("Standard", "cifar10", "L2", "0.5", "wrn-28-10", "WideResNet-28-10", 94.78, 0.0,
       "1t98aEuzeTL8P7Kpd5DIrCoCL21BNZUhC", *RAW, "N/A"),
    _e("Rice2020Overfitting", "cifar10", "L2", "0.5", "preact_resnet18", "PreActResNet-18",
       88.67, 67.68, "1jo-31utiYNBVzLM0NxUEWz0teo3Z0xa7", *C10, "ICML 2020", key_map="preact"),
    _e("Gowal2020Uncovering_extra", "cifar10", "L2", "0.5", "wrn-70-16-silu",
       "WideResNet-70-16", 94.74, 80.53, "1pkZDCpCBShpAnx92n8PUeNOY1fSiTi0s", *C10,
       "arXiv, Oct 2020"),
    _e("Rebuffi2021Fixing_70_16_cutmix_extra", "cifar10", "L2", "0.5", "wrn-70-16-silu",
       "WideResNet-70-16", 95.74, 82.32, "1JX82BDVBNO-Ffa2J37EuB8C-aFCbz708", *C10,
       "arXiv, Mar 2021"),
    _e("Wang2023Better_WRN-70-16", "cifar10", "L2", "0.5", "wrn-70-16-silu",
       "WideResNet-70-16", 95.54, 84.97, "101UyURyte05tJLA9VFRBN6UDLyn-0sJw", *C10, "ICML 2023"),
    # CIFAR-100, Linf
    _e("Gowal2020Uncovering_extra", "cifar100", "Linf", "8/255", "wrn-70-16-silu",
       "WideResNet-70-16", 69.15, 36.88, "1LQBdwO2b391mg7VKcP6I0HIOpC6O83gn", *C100,
       "arXiv, Oct 2020"),
    _e("Rebuffi2021Fixing_70_16_cutmix_ddpm", "cifar100", "Linf", "8/255", "wrn-70-16-silu",
       "WideResNet-70-16", 63.56, 34.64, "1-GkVLo9QaRjCJl-by67xda1ySVhYxsLV", *C100,
       "arXiv, Mar 2021"),
    _e("Wang2023Better_WRN-28-10", "cifar100", "Linf", "8/255", "wrn-28-10-silu",
       "WideResNet-28-10", 72.58, 38.83, "1-jOu3wKWyw0XnBCXDGR32xn8Bw9GTJgh", *C100,
       "ICML 2023"),
    _e("Wang2023Better_WRN-70-16", "cifar100", "Linf", "8/255", "wrn-70-16-silu",
       "WideResNet-70-16", 75.22, 42.67, "1-yYcT73GP13c0y9HrgtpyB3NAfkGKgjY", *C100,
       "ICML 2023"),
    # ImageNet, Linf (torchvision's ResNet-50 behind RobustBench's normalisation wrapper)
    _e("Engstrom2019Robustness", "imagenet", "Linf", "4/255", "resnet50", "ResNet-50", 62.56,
       29.22, "1T2Fvi1eCJTeAOEzrH_4TAIwO8HTOYVyn", *IMNET, "GitHub, Oct 2019"),
    _e("Salman2020Do_R50", "imagenet", "Linf", "4/255", "resnet50", "ResNet-50", 64.02, 34.96,
       "1TmT5oGa1UvVjM3d-XeSj_XmKqBNRUg8r", *IMNET, "NeurIPS 2020"),
)
