"""Recipes (training/recipes.py), the budget warm-up option and the training verdict
(training/health.py): what `robustlab train` fills in, what it refuses, what it flags."""

from __future__ import annotations

import json

import pytest

from robustlab.cli import main as cli_main
from robustlab.registry import METHODS
from robustlab.training import ConfigError, TrainConfig, train
from robustlab.training.health import collapse_threshold, epoch_flags, run_health
from robustlab.training.recipes import RECIPES, configure, find_recipe


def test_auto_picks_the_recipe_written_for_the_dataset_and_budget():
    cfg = configure({"dataset": "mnist", "method": "pgd-at", "eps": 0.3})
    assert cfg.recipe == "mnist-linf"
    assert (cfg.optimizer, cfg.lr, cfg.lr_schedule, cfg.epochs) == ("sgd", 0.05, "onecycle", 6)
    assert cfg.eps_warmup == pytest.approx(2.0)  # a third of the run
    assert cfg.method_options == {"steps": 7}
    hybrid = configure({"method": "hybrid", "eps": 0.3})
    assert hybrid.method_options == {"steps": 7, "per_step": True}  # same warm-up, PGD-7 copies
    assert configure({"method": "hybrid-fgsm", "eps": 0.3}).method_options == {"per_step": True}
    # lam 1 collapsed LeNet-5 at eps 0.3 (paper-cpu, 11.35 %); the recipe's lam 0.3 learns
    assert configure({"method": "gradient-reg", "eps": 0.3}).method_options == {"lam": 0.3}
    fm = configure({"dataset": "fashion-mnist", "method": "trades", "eps": 0.1, "epochs": 9})
    assert fm.recipe == "fashion-mnist-linf" and fm.eps_warmup == pytest.approx(3.0)
    # no recipe written for CIFAR-10: the TrainConfig defaults (the paper's), nothing recorded
    cifar = configure({"dataset": "cifar10", "model": "resnet18", "method": "pgd-at",
                       "eps": 8 / 255})
    assert cifar.recipe is None and cifar.lr == TrainConfig().lr and cifar.eps_warmup == 0
    # outside the recipe's budgets (MNIST at eps 0.5) nothing is guessed either
    assert configure({"method": "pgd-at", "eps": 0.5}).recipe is None


def test_the_users_values_always_win_over_the_recipe():
    cfg = configure({"method": "trades", "eps": 0.3, "lr": 0.02, "epochs": 3,
                     "eps_warmup": 0.5, "method_options": {"steps": 3, "beta": 1.0}})
    assert cfg.lr == 0.02 and cfg.epochs == 3 and cfg.eps_warmup == 0.5
    assert cfg.method_options == {"steps": 3, "beta": 1.0}
    assert cfg.lr_schedule == "onecycle"  # what the user left unset still comes from it


def test_non_adversarial_methods_get_no_warmup_and_paper_is_one_flag_away():
    std = configure({"method": "standard"})
    assert std.recipe == "mnist-linf" and std.eps_warmup == 0 and std.method_options == {}
    paper = configure({"method": "pgd-at", "eps": 0.03}, "paper")
    assert paper.recipe == "paper"
    assert (paper.lr, paper.batch_size, paper.lr_schedule, paper.eps_warmup) == \
        (0.01, 128, "constant", 0.0)
    assert paper.method_options == {}
    bare = configure({"method": "pgd-at", "eps": 0.3}, "none")
    assert bare.recipe is None and bare.to_dict() == TrainConfig(method="pgd-at", eps=0.3).to_dict()


@pytest.mark.parametrize("fields, recipe, message", [
    ({"method": "pgd-at", "eps": 0.3}, "bogus", "recipe: unknown recipe 'bogus'"),
    ({"method": "pgd-at", "eps": 0.3}, "fashion-mnist-linf",
     "recipe: 'fashion-mnist-linf' is written for dataset fashion-mnist"),
    ({"method": "pgd-at", "eps": 0.3, "epochs": 4, "eps_warmup": 5}, "auto",
     "eps_warmup: 5 epochs is longer than the run"),
    ({"method": "pgd-at", "eps": 0.3, "eps_warmup": -1}, "auto",
     "eps_warmup: expected a number of epochs >= 0"),
    ({"method": "standard", "eps_warmup": 1}, "auto", "eps_warmup: method 'standard'"),
    ({"method": "pgd-at", "eps": 0.3, "eps_warmup_schedule": "step"}, "auto",
     "eps_warmup_schedule: expected one of linear"),
    ({"method": "pgd-at", "eps": 0.3, "eps_warmup_start": 2}, "auto", "eps_warmup_start"),
    ({"method": "pgd-at", "eps": 0.3, "lr_schedule": "wavy"}, "auto", "lr_schedule"),
    ({"method": "pgd-at", "eps": 0.3, "bogus": 1}, "auto", "unknown field"),
])
def test_bad_recipe_and_warmup_values_fail_naming_the_option(fields, recipe, message):
    with pytest.raises(ConfigError, match=message):
        configure(fields, recipe)


def test_every_recipe_is_valid_for_every_method_it_names():
    from robustlab.training import list_methods

    for recipe in RECIPES.values():
        assert set(recipe.method_options) <= set(list_methods())
        assert recipe.source
        if recipe.dataset is None:
            continue
        eps = recipe.eps_range[1]
        for method in list_methods():
            if method == "autoencoder":
                continue
            if recipe.norm is not None and recipe.norm not in METHODS.get(method).norms:
                continue  # it does not train at the recipe's norm (tests/test_train_l1.py)
            fields = {"dataset": recipe.dataset, "method": method, "eps": eps,
                      "norm": recipe.norm or "linf"}
            assert configure(fields, recipe.name).recipe == recipe.name
    assert find_recipe("none", "mnist", "linf", 0.3) is None


def test_collapse_rule_and_run_verdict():
    assert collapse_threshold(10) == pytest.approx(0.19)
    assert epoch_flags(0.5, 0.1135, num_classes=10, past_warmup=True)["collapsed"]
    assert not epoch_flags(0.5, 0.1135, num_classes=10, past_warmup=False)["collapsed"]
    assert not epoch_flags(0.5, 0.25, num_classes=10, past_warmup=True)["collapsed"]
    assert epoch_flags(float("nan"), 0.9, num_classes=10, past_warmup=True)["non_finite_loss"]
    assert run_health([{"collapsed": True}, {"collapsed": False}]) == "ok"  # it recovered
    assert run_health([{"collapsed": False}, {"collapsed": True}]) == "collapsed"
    assert run_health([{"non_finite_loss": True}, {}]) == "non-finite loss"
    assert run_health([{"catastrophic_overfitting": True}]) == "catastrophic overfitting"


@pytest.mark.integration  # two training runs
def test_a_collapsed_and_a_diverged_run_are_flagged(tmp_path, mnist_root):
    """The paper's protocol at eps 0.3 on a tiny subset leaves PGD-AT at the constant
    classifier; a learning rate of 1e4 makes the loss non-finite. Both are flagged per epoch
    and in summary.json."""
    base = dict(dataset="mnist", train_size=256, batch_size=64, val_size=500, epochs=1,
                data_dir=str(mnist_root), progress=False)
    collapsed = train(TrainConfig(method="pgd-at", eps=0.3, method_options={"steps": 2},
                                  out_dir=str(tmp_path / "c"), **base))
    assert collapsed.metrics[-1]["val_acc"] < 0.19
    assert collapsed.metrics[-1]["collapsed"] is True
    assert collapsed.summary["health"] == "collapsed"
    diverged = train(TrainConfig(method="standard", lr=1e4, out_dir=str(tmp_path / "d"),
                                 **base))
    assert diverged.metrics[-1]["non_finite_loss"] is True
    assert diverged.summary["health"] == "non-finite loss"
    ok = train(TrainConfig(method="standard", lr=0.05, out_dir=str(tmp_path / "ok"),
                           **{**base, "train_size": 2048, "epochs": 2}))
    assert ok.summary["health"] == "ok" and ok.metrics[-1]["val_acc"] > 0.5
    assert json.loads((tmp_path / "ok" / "summary.json").read_text())["health"] == "ok"


@pytest.mark.integration  # a CLI training run
def test_train_cli_prints_the_recipe_and_warms_up_per_step(tmp_path, mnist_root, capsys):
    out = tmp_path / "run"
    rc = cli_main(["train", "--method", "pgd-at", "--eps", "0.3", "--epochs", "2",
                   "--train-size", "256", "--val-size", "500", "--opt", "steps=2",
                   "--data-dir", str(mnist_root), "--out", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "recipe: mnist-linf: optimizer=sgd, lr=0.05" in printed
    assert "eps_warmup=0.666667" in printed and "steps=2" in printed
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # eps_t of each epoch's last step: warm-up over 2/3 epoch from 0.03 (2 steps an epoch)
    assert rows[0]["eps"] == pytest.approx(0.03 + 0.27 * 0.5 / (2 / 3))
    assert rows[1]["eps"] == pytest.approx(0.3)
    cfg = json.loads((out / "config.json").read_text())["train"]
    assert cfg["recipe"] == "mnist-linf" and cfg["lr_schedule"] == "onecycle"
