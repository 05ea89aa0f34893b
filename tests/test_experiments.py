"""Presets and the job plan (no compute): every preset's configs validate before any run."""

from __future__ import annotations

from pathlib import Path

import pytest

from robustlab.experiments.plan import plan_jobs
from robustlab.experiments.presets import PAPER_EPS, PRESETS, get_preset
from robustlab.training import ConfigError, TrainConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates(name, tmp_path):
    preset = PRESETS[name]
    jobs = plan_jobs(preset, tmp_path)
    assert jobs and len({j.run_dir for j in jobs}) == len(jobs)
    for job in jobs:
        TrainConfig.from_dict(job.train, source=job.name).validate()
        for e in job.evals:
            e.settings.validate()
    for ds in preset.datasets:  # the standard budget everywhere, the paper's beside it
        labels = dict(ds.budgets)
        assert labels["standard"] > 0 and labels.get("paper", PAPER_EPS) == PAPER_EPS
    assert all(j.train["recipe"] == ("paper" if "-recipe-" not in j.name else
                                     j.train["recipe"]) for j in jobs)


def test_plan_shares_standard_runs_across_budgets(tmp_path):
    one_protocol = get_preset("smoke").replace(protocols=("paper",), protocol_budgets={})
    jobs = plan_jobs(one_protocol, tmp_path)
    names = [j.name for j in jobs]
    assert names[0] == "mnist-lenet5-standard-s0"
    std = jobs[0]
    assert [e.label for e in std.evals] == ["paper", "standard"]
    assert [e.settings.eps for e in std.evals] == [0.03, 0.3]
    hybrid = [j for j in jobs if j.train["method"] == "hybrid"]
    assert sorted(j.train["eps"] for j in hybrid) == [0.03, 0.3]
    assert all(len(j.evals) == 1 and j.evals[0].settings.eps == j.train["eps"] for j in hybrid)
    assert all(j.surrogate == std.run_dir for j in hybrid)
    assert len(jobs) == 5  # standard + 2 adversarial methods x 2 budgets
    paths = [e.path for j in jobs for e in j.evals]
    assert len(set(paths)) == len(paths)
    assert all(Path(p).parent.name == "eval" for p in paths)


def test_quick_trains_every_method_with_its_recipe_at_the_standard_budget(tmp_path):
    """The README's main job: best-recipe protocol, eps 0.3, the same epochs and warm-up for
    every adversarial method, the hybrid's ramp as long as the baselines' warm-up."""
    jobs = plan_jobs(get_preset("quick"), tmp_path)
    assert [j.train["method"] for j in jobs] == ["standard", "pgd-at", "trades", "hybrid",
                                                 "hybrid-fgsm"]
    assert all(j.name.endswith("-recipe-s0") and j.train["recipe"] == "mnist-linf"
               for j in jobs)
    adversarial = jobs[1:]
    assert {j.train["eps"] for j in adversarial} == {0.3}
    assert {j.train["epochs"] for j in jobs} == {5}
    assert [j.train["eps_warmup"] for j in adversarial] == pytest.approx([5 / 3] * 4)
    assert jobs[0].train["eps_warmup"] == 0
    assert {j.train["lr_schedule"] for j in jobs} == {"onecycle"}
    assert jobs[1].train["method_options"] == {"steps": 5}  # the preset's own options win
    assert jobs[3].train["method_options"]["per_step"] is True
    assert [e.settings.eps for e in jobs[0].evals] == [0.3]


def test_paper_cpu_trains_each_protocol_at_its_budget(tmp_path):
    jobs = plan_jobs(get_preset("paper-cpu"), tmp_path)
    paper = [j for j in jobs if j.train["recipe"] == "paper"]
    recipe = [j for j in jobs if j.train["recipe"] != "paper"]
    assert {j.train["eps"] for j in paper} == {None, PAPER_EPS}
    assert {j.train["eps"] for j in recipe} == {None, 0.3, 0.1}
    assert {(j.train["lr"], j.train["lr_schedule"]) for j in paper} == {(0.01, "constant")}
    assert {j.train["recipe"] for j in recipe} == {"mnist-linf", "fashion-mnist-linf"}
    assert all(j.train["train_size"] is None for j in jobs)  # full training sets
    assert len({j.run_dir for j in jobs}) == len(jobs)


def test_paper_cpu_covers_every_method(tmp_path):
    preset = get_preset("paper-cpu")
    assert preset.seeds == (0,)
    assert {d.dataset for d in preset.datasets} == {"mnist", "fashion-mnist"}
    from robustlab.training import list_methods

    methods = {m.method for m in preset.methods}
    assert methods >= {"standard", "pgd-at", "trades", "hybrid", "hybrid-fixed-eps",
                       "hybrid-fixed-alpha", "mix"}
    assert methods <= set(list_methods())
    jobs = plan_jobs(preset, tmp_path, model="smallcnn")
    assert all(j.train["model"] == "smallcnn" for j in jobs)


def test_unknown_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        get_preset("nope")


def test_cli_parses_reproduce_and_report():
    from robustlab.cli import build_parser

    args = build_parser().parse_args(["reproduce", "--preset", "smoke", "--workers", "2"])
    assert args.preset == "smoke" and args.workers == 2 and callable(args.func)
    args = build_parser().parse_args(["report", "somewhere"])
    assert args.dir == "somewhere" and callable(args.func)


def test_report_on_empty_folder_is_a_clear_error(tmp_path, capsys):
    from robustlab.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "no evaluation results" in capsys.readouterr().err


def test_reproduce_validates_everything_before_compute(tmp_path):
    import dataclasses
    import json

    from robustlab.experiments.runner import reproduce
    from robustlab.training import RunFolderError

    smoke = get_preset("smoke")
    bad = smoke.replace(eval=dataclasses.replace(smoke.eval,
                                                 attack_options={"pgd": {"steps": 0}}))
    with pytest.raises(ConfigError, match="steps: expected an integer >= 1, got 0"):
        reproduce(bad, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "experiment.json").write_text(json.dumps({"preset": {"name": "quick"}}))
    with pytest.raises(RunFolderError, match="holds experiment 'quick', not 'smoke'"):
        reproduce(smoke, tmp_path / "b")
    with pytest.raises(RunFolderError, match="--workers"):
        reproduce(smoke, tmp_path / "c", workers=0)
