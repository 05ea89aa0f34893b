"""Training epoch time of each method relative to `standard` (LeNet-5, MNIST, CPU).

Floors: training on D ∪ D_adv with an FGSM copy costs 2 forward+backward passes per batch
(ratio 2.0); PGD-AT with k = 10 costs k input-gradient passes + 1 training pass (ratio 11).
Targets (issue #6): hybrid <= 2.2, pgd-at <= 11.5. `epoch_time_s` includes each method's
end-of-epoch work (the hybrid's validation measurement of its weight alpha counts as training
time) and the loop's plain validation pass, which every method pays alike.

    python bench/method_speed.py [--train-size 10000] [--methods standard,hybrid,pgd-at]
"""

from __future__ import annotations

import argparse
import tempfile

from robustlab.training import TrainConfig, train


def epoch_time(method: str, train_size: int, eps: float, val_size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(dataset="mnist", model="lenet5", method=method, train_size=train_size,
                          epochs=1, val_size=val_size, progress=False, device="cpu",
                          eps=None if method == "standard" else eps, out_dir=f"{tmp}/run")
        return train(cfg).metrics[0]["epoch_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--methods", default="standard,hybrid,pgd-at,fgsm-rs,trades")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--val-size", type=int, default=1000,
                        help="validation images (the hybrid measures its alpha on these)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    methods = args.methods.split(",")
    times = {m: min(epoch_time(m, args.train_size, args.eps, args.val_size)
                    for _ in range(args.repeats)) for m in methods}
    print(f"LeNet-5 / MNIST, {args.train_size} training images, eps {args.eps}, "
          f"best of {args.repeats}")
    targets = {"hybrid": "(target <= 2.2, floor 2.0)", "pgd-at": "(target <= 11.5, floor 11)"}
    for m in methods:
        print(f"{m:20s} epoch {times[m]:7.2f}s  ratio to standard "
              f"{times[m] / times['standard']:5.2f} {targets.get(m, '')}")


if __name__ == "__main__":
    main()
