"""`robustlab transfer` (issue #18): the transferability matrix on tiny real-MNIST LeNet-5s
(two standard runs, one PGD-AT run), its checks before any compute, the JSON and the heat map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from robustlab.common.errors import ConfigError
from robustlab.evaluation.transfer_matrix import (
    LogitEnsemble,
    TransferSettings,
    build_crafter,
    craft,
    predict,
    transfer_matrix,
)
from robustlab.runs.folder import RunFolderError

pytestmark = [pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
              pytest.mark.integration]  # three real-MNIST training runs

EPS, IMAGES, STEPS = 0.1, 200, 10
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(mnist_root, tmp_path_factory):
    """Three runs on 2,000 MNIST images, 3 epochs (about 17 s on one thread): standard seeds
    0 and 1, PGD-AT (PGD-5) at eps 0.1 (measured: 91 / 93 / 79.5 % clean on the study's images).
    PGD-3 left the PGD-AT model too close to the standard ones under MI-FGSM (30.5 pp lost
    against 40): k 5 loses 24 pp."""
    from robustlab.training import TrainConfig, train

    root = tmp_path_factory.mktemp("transfer")
    specs = {"std0": dict(seed=0), "std1": dict(seed=1),
             "pgd": dict(method="pgd-at", eps=EPS, method_options={"steps": 5})}
    for name, kw in specs.items():
        result = train(TrainConfig(dataset="mnist", model="lenet5", epochs=3, train_size=2000,
                                   val_size=200, optimizer="adam", lr=2e-3,
                                   data_dir=str(mnist_root), out_dir=str(root / name),
                                   progress=False, device="cpu", threads=1, **kw))
        assert result.summary["health"] == "ok"
    return {name: str(root / name) for name in specs}


@pytest.fixture(scope="module")
def study(runs, mnist_root, tmp_path_factory):
    """The study of the three runs, both attacks, with the ensemble and the figure."""
    from robustlab.experiments.transfer_study import run_transfer_study

    out = tmp_path_factory.mktemp("study") / "t.json"
    path = run_transfer_study([runs["std0"], runs["std1"], runs["pgd"]], out=out,
                              steps=STEPS, images=IMAGES, device="cpu",
                              data_dir=str(mnist_root), progress=False)
    return path, json.loads(path.read_text())


# ------------------------------------------------------------------- checks before compute
def _cli(args, capsys):
    from robustlab.cli import main

    code = main(["transfer", *args, "--device", "cpu", "--no-progress"])
    return code, capsys.readouterr().err


def test_cli_errors_before_any_compute(runs, tmp_path, capsys, monkeypatch):
    import robustlab.runs.load as load

    def no_compute(*a, **k):
        raise AssertionError("a run was loaded before the arguments were checked")

    monkeypatch.setattr(load, "load_run", no_compute)
    out = ["--out", str(tmp_path / "t.json")]
    two = [runs["std0"], runs["pgd"]]
    cases = [
        ([runs["std0"]] + out, "RUN: expected at least 2 run folders"),
        ([runs["std0"], runs["std0"]] + out, "is given twice"),
        ([runs["std0"], runs["std1"]] + out, "--eps: the runs' training budgets are not "
                                            "recorded"),
        (two + out + ["--attacks", "pgd,fab"], "--attacks: expected one of pgd, mifgsm, got "
                                              "'fab'"),
        (two + out + ["--norm", "l1"], "--norm: expected one of linf, l2"),
        (two + out + ["--steps", "0"], "--steps: expected an integer >= 1, got 0"),
        (two + out + ["--images", "0"], "--images: expected an integer >= 1"),
        (two + out + ["--eps", "2"], "--eps: expected a finite number"),
        ([runs["std0"], str(tmp_path / "none")] + out, "does not exist"),
    ]
    for args, message in cases:
        code, err = _cli(args, capsys)
        assert code == 2 and message in err, (args, err)
    (tmp_path / "t.json").write_text("{}")
    code, err = _cli(two + out, capsys)
    assert code == 2 and "t.json already exists; pass --overwrite" in err
    (tmp_path / "t.json").unlink()
    (tmp_path / "t.png").write_text("")  # the figure is an output too
    code, err = _cli(two + out, capsys)
    assert code == 2 and "t.png already exists" in err


def test_different_datasets_and_eps_mismatch_are_refused(runs, tmp_path):
    from robustlab.experiments.transfer_study import plan_study

    other = tmp_path / "fashion"
    other.mkdir()
    config = json.loads((Path(runs["pgd"]) / "config.json").read_text())
    config["train"].update(dataset="fashion-mnist", eps=0.2)
    (other / "config.json").write_text(json.dumps(config))
    kw = dict(out=tmp_path / "t.json", attacks="pgd", eps=None, norm="linf", steps=5,
              images=10, batch_size=10, seed=0, overwrite=False, figure=False)
    with pytest.raises(ConfigError, match=r"RUN: expected runs of one dataset, got .*"
                                          r"\(mnist\), .*\(fashion-mnist\)"):
        plan_study([runs["pgd"], str(other)], **kw)
    config["train"]["dataset"] = "mnist"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"--eps: the runs' training budgets differ .*"
                                          r"pass the budget"):
        plan_study([runs["pgd"], str(other)], **kw)
    # standard runs record no budget: the PGD-AT run's is the study's
    _, settings, path = plan_study([runs["std0"], runs["pgd"]], **kw)
    assert settings.eps == EPS and path == tmp_path / "t.json"
    _, settings, _ = plan_study([runs["pgd"], str(other)], **{**kw, "eps": 0.05})
    assert settings.eps == 0.05


def test_existing_output_needs_overwrite_in_python_too(runs, tmp_path):
    from robustlab.experiments.transfer_study import run_transfer_study

    (tmp_path / "t.json").write_text("{}")
    with pytest.raises(RunFolderError, match="already exists; pass --overwrite"):
        run_transfer_study([runs["std0"], runs["pgd"]], out=tmp_path / "t.json")


# --------------------------------------------------------------------------------- the matrix
def test_white_box_diagonal_is_the_strongest_and_the_pgd_at_model_resists(study):
    _, data = study
    names = data["models"]
    assert names == ["standard s0", "standard s1", "pgd-at"]
    clean = [data["clean_acc"][n] for n in names]
    assert all(c > 0.75 for c in clean), clean
    for attack in ("pgd", "mifgsm"):
        m = data["attacks"][attack]["matrix"]
        for t in range(3):
            column = [m[s][t] for s in range(3)]
            assert all(v <= clean[t] + 1e-9 for v in column)  # never above clean
            # white-box is the strongest attack on every target, by a margin
            assert m[t][t] + 0.05 < min(m[s][t] for s in range(3) if s != t), (attack, m)
        # transfer between the standard models does lower accuracy below clean
        assert m[0][1] < clean[1] and m[1][0] < clean[0]
        # the PGD-AT model loses the least accuracy to its own white-box attack (measured on
        # 200 images: PGD-10 25.5 pp against 55 and 46.5, MI-FGSM 24 against 51.5 and 40)
        lost = [clean[t] - m[t][t] for t in range(3)]
        assert lost[2] + 0.1 < min(lost[0], lost[1]), (attack, lost)


def test_ensemble_row_is_leave_one_out(study, runs, mnist_root):
    from robustlab.runs.load import load_run

    _, data = study
    models = [load_run(runs[k], device="cpu", data_dir=str(mnist_root)).model
              for k in ("std0", "std1", "pgd")]
    test = load_run(runs["std0"], device="cpu", data_dir=str(mnist_root)).data.test
    x, y = test.x[:IMAGES], test.y[:IMAGES]
    settings = TransferSettings(attacks=("pgd",), eps=EPS, steps=STEPS)
    attack = build_crafter("pgd", settings)
    target = 0  # standard s0, attacked through the mean logits of standard s1 and PGD-AT
    clean = predict(models[target], x, 500) == y

    def acc_on(source):
        x_adv = craft(attack, source, x, y, 500)
        return float((clean & (predict(models[target], x_adv, 500) == y)).float().mean())

    assert data["attacks"]["pgd"]["ensemble"][target] == pytest.approx(
        acc_on(LogitEnsemble(models[1:]).eval()), abs=1e-9)
    with_target = acc_on(LogitEnsemble(models).eval())  # not leave-one-out: partly white-box
    assert with_target < data["attacks"]["pgd"]["ensemble"][target] - 0.1
    # two models: the ensemble of the other is the other, its examples reused
    pair = transfer_matrix({"a": models[0], "b": models[2]}, x[:100], y[:100], settings)
    block = pair["attacks"]["pgd"]
    assert block["ensemble"] == [block["matrix"][1][0], block["matrix"][0][1]]


def test_json_schema_and_figure(study):
    from PIL import Image

    path, data = study
    assert data["schema"] == "robustlab.transfer/1" and data["kind"] == "transfer"
    s = data["settings"]
    assert s["eps"] == EPS and s["steps"] == STEPS and s["images"] == IMAGES
    assert s["attacks"] == ["pgd", "mifgsm"] and "leave-one-out" in s["ensemble"]
    assert [r["method"] for r in data["runs"]] == ["standard", "standard", "pgd-at"]
    assert {r["dataset"] for r in data["runs"]} == {"mnist"}
    for block in data["attacks"].values():
        assert len(block["matrix"]) == 3 and all(len(r) == 3 for r in block["matrix"])
        assert len(block["ensemble"]) == 3 and len(block["source_seconds"]) == 3
    assert data["timing"]["seconds"] > 0
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, no temp file left
    png = path.with_suffix(".png")
    assert png.read_bytes()[:8] == PNG_MAGIC
    with Image.open(png) as im:
        assert im.size[0] > 600 and im.size[1] > 300


def test_no_ensemble_no_figure_and_mifgsm_keeps_the_highest_loss(runs, mnist_root, tmp_path):
    from robustlab.experiments.transfer_study import run_transfer_study

    path = run_transfer_study([runs["std0"], runs["std1"]], out=tmp_path / "t.json",
                              attacks="mifgsm", eps=EPS, steps=5, images=50, device="cpu",
                              data_dir=str(mnist_root), ensemble=False, figure=False,
                              progress=False)
    data = json.loads(path.read_text())
    assert list(data["attacks"]) == ["mifgsm"] and data["attacks"]["mifgsm"]["ensemble"] is None
    assert not path.with_suffix(".png").exists()
    # MI-FGSM without stopping: every sample takes every step (loss at least the first-success
    # iterate's on the crafting model)
    x = torch.rand(8, 1, 28, 28)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    y = net(x).argmax(1)
    loss = torch.nn.functional.cross_entropy
    early = build_crafter("mifgsm", TransferSettings(eps=0.3, steps=10))
    from robustlab.attacks import create_attack

    first = create_attack("mifgsm", eps=0.3, steps=10)(net, x, y)
    deep = early(net, x, y)
    assert loss(net(deep), y, reduction="none").ge(
        loss(net(first), y, reduction="none") - 1e-5).all()
