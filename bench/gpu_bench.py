"""GPU throughput on CIFAR-10-shaped data (3x32x32, 10 classes), ResNet-18.

Prints PGD-10 images/s in fp32 and under bf16 autocast, and one training epoch of `standard`,
`hybrid` and `pgd-at` with the ratio of each to `standard`, plus peak GPU memory. Synthetic data
of CIFAR-10's shape stands in for CIFAR-10 (the timing does not depend on pixel values).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

import robustlab.attacks
from robustlab.models import create_model
from robustlab.training import TrainConfig, train

CIFAR_SHAPE = dict(channels=3, image_size=32, num_classes=10)


def pgd_throughput(amp: bool, batch: int = 512, repeats: int = 5) -> float:
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=10, in_channels=3, mean=(0.49, 0.48, 0.45),
                         std=(0.25, 0.24, 0.26), image_size=32).cuda()
    model = model.to(memory_format=torch.channels_last).eval()
    x = torch.rand(batch, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (batch,), device="cuda")
    attack = robustlab.attacks.create("pgd", eps=8 / 255, norm="linf", steps=10,
                                      step_size=2 / 255, seed=0)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cuda",
                                                                                  enabled=False)
    with ctx:
        attack(model, x, y)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        with ctx:
            attack(model, x, y)
    torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - t0)


def epoch_time(method: str, amp: str, n_train: int) -> tuple[float, float]:
    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(dataset="synthetic", model="resnet18", method=method,
                          dataset_options=dict(n_train=n_train, n_test=500, **CIFAR_SHAPE),
                          eps=8 / 255 if method != "standard" else None, epochs=2, val_size=1000,
                          amp=amp, device="cuda", progress=False, out_dir=f"{tmp}/run",
                          augment="crop-flip")
        result = train(cfg)
    # epoch 1 includes cuDNN autotuning / warm-up; report epoch 2
    return result.metrics[-1]["epoch_time_s"], torch.cuda.max_memory_allocated() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="gpu_bench.json")
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--cudnn-benchmark", choices=("on", "off"), default="on",
                        help="cuDNN autotuning (robustlab never sets it; users often do)")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark == "on"
    res: dict[str, object] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "cudnn_benchmark": args.cudnn_benchmark}
    res["pgd10_img_per_s_fp32"] = pgd_throughput(amp=False)
    res["pgd10_img_per_s_bf16"] = pgd_throughput(amp=True)
    print(f"{res['gpu']}: PGD-10 ResNet-18 32x32: fp32 {res['pgd10_img_per_s_fp32']:,.0f} img/s, "
          f"bf16 {res['pgd10_img_per_s_bf16']:,.0f} img/s "
          f"(x{res['pgd10_img_per_s_bf16'] / res['pgd10_img_per_s_fp32']:.2f})")
    _save(res, args.out)
    for amp in ("bf16", "off"):
        for method in ("standard", "hybrid", "pgd-at"):  # warm-up: kernels, autotuning, caches
            epoch_time(method, amp, args.n_train // 5)
        times = {}
        for method in ("standard", "hybrid", "pgd-at"):
            t, mem = epoch_time(method, amp, args.n_train)
            times[method] = t
            res[f"epoch_s_{method}_{amp}"] = t
            res[f"peak_mem_mb_{method}_{amp}"] = mem
            print(f"amp={amp:4s} {method:9s} epoch {t:6.2f}s  ratio to standard "
                  f"{t / times['standard']:.2f}  peak GPU memory {mem:,.0f} MiB")
            _save(res, args.out)  # partial results survive a timeout


def _save(res: dict[str, object], path: str) -> None:
    with open(path, "w") as fh:
        json.dump(res, fh, indent=2)


if __name__ == "__main__":
    from robustlab.accel import tune_process

    tune_process()  # as the robustlab command does at its start
    main()
