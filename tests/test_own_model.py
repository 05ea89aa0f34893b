"""Bring your own model (issue #16): docs/own-model.md run as written, `evaluate --model`,
`robustlab.evaluate`, weights without pickled code, and the CPU-kernel switches, on a model
defined here (not a robustlab one) trained for a few steps on real MNIST."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import robustlab
from robustlab.cli import main
from robustlab.data import DataError

DOC = Path(__file__).resolve().parents[1] / "docs" / "own-model.md"
EPS = 0.1


def tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 14 * 14, 10))


@pytest.fixture(scope="module")
def mnist(mnist_splits):
    return mnist_splits  # tests/conftest.py: loaded once per session


@pytest.fixture(scope="module")
def trained(mnist) -> nn.Module:
    torch.manual_seed(0)
    model = tiny_net()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for i in range(0, 6400, 64):
        loss = nn.functional.cross_entropy(model(mnist.train.x[i:i + 64]),
                                           mnist.train.y[i:i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture
def model_files(tmp_path, trained, monkeypatch, mnist_root):
    """net.py (factory) + net.pt / net.safetensors (its weights) in a fresh cwd."""
    from safetensors.torch import save_file

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTLAB_DATA", str(mnist_root))
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\n"
        "def make_net():\n"
        "    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),\n"
        "                         nn.Flatten(), nn.Linear(8 * 14 * 14, 10))\n\n"
        "def not_a_model():\n"
        "    return 3\n")
    torch.save(trained.state_dict(), tmp_path / "net.pt")
    save_file(trained.state_dict(), str(tmp_path / "net.safetensors"))
    return tmp_path


def _cli_eval(*extra: str, out: str = "e.json") -> dict:
    argv = ["evaluate", "--dataset", "mnist", "--eps", str(EPS), "--attacks", "fgsm,pgd",
            "--n", "64", "--no-audit", "--no-curve", "--out", out, *extra]
    assert main(argv) == 0
    return json.loads(Path(out).read_text())


# --------------------------------------------------------------------- the page, as written
def _blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```(python[^\n]*|sh)\n(.*?)```", text, flags=re.S)


@pytest.mark.integration  # the doc's commands in subprocesses
def test_docs_page_runs_as_written(tmp_path, monkeypatch, mnist_root):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROBUSTLAB_DATA", str(mnist_root))
    blocks = _blocks(DOC.read_text())
    assert [b[0] for b in blocks] == ["python file=net.py", "sh", "python", "python train"]
    (tmp_path / "net.py").write_text(blocks[0][1])
    for line in blocks[1][1].strip().splitlines():
        words = shlex.split(line)
        if words[0] == "python":
            subprocess.run([sys.executable, *words[1:]], check=True, cwd=tmp_path, timeout=300)
        else:
            assert words[0] == "robustlab" and main(words[1:]) == 0
    result = json.loads((tmp_path / "net-eval.json").read_text())
    assert result["n"] == 200 and result["clean"]["acc"] > 0.85  # the page's model learned
    assert result["attacks"]["pgd"]["acc"] <= result["attacks"]["fgsm"]["acc"]
    assert result["settings"]["attack_options"] == {"pgd": {"steps": 20}}
    assert result["audit"]["checks"] and result["curve"]["points"] == []
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {}
    exec(compile(blocks[2][1], "own-model.md", "exec"), namespace)  # noqa: S102
    py = namespace["result"]
    # the one Python call measures what the CLI measured on the same 200 images
    assert py.clean_acc == result["clean"]["acc"]
    assert py.robust_acc == {k: v["acc"] for k, v in result["attacks"].items()}
    assert py.worst_case_acc == result["worst_case"]["acc"]
    # your own model trained with an adversarial method, reloaded into your class
    exec(compile(blocks[3][1], "own-model.md", "exec"), namespace)  # noqa: S102
    run = namespace["run"]
    assert run.summary["health"] == "ok" and run.summary["test_acc"] > 0.8
    again = namespace["again"]
    x_test = namespace["test"][0]
    with torch.no_grad():
        assert torch.equal(again(x_test), run.model(x_test))


# ------------------------------------------------------------------------ evaluate --model
def test_cli_model_file_weights_formats_and_torchscript_agree(model_files, trained, mnist):
    a = _cli_eval("--model", "net.py:make_net", "--weights", "net.pt", out="a.json")
    b = _cli_eval("--model", "net.py:make_net", "--weights", "net.safetensors", out="b.json")
    torch.jit.save(torch.jit.trace(trained, mnist.test.x[:2]), "net_ts.pt")
    c = _cli_eval("--model", "net_ts.pt", out="c.json")
    for other in (b, c):
        assert other["per_sample"]["correct"] == a["per_sample"]["correct"]
    with torch.no_grad():
        expected = (trained(mnist.test.x[:64]).argmax(1) == mnist.test.y[:64]).float().mean()
    assert a["clean"]["acc"] == pytest.approx(float(expected))
    assert a["clean"]["acc"] > 0.7 and a["attacks"]["pgd"]["acc"] < a["clean"]["acc"]
    assert a["run"]["model_spec"] == "net.py:make_net" and a["audit"]["skipped"]


def test_cli_normalize_wraps_the_model(model_files, trained, mnist):
    # identity normalisation gives the same numbers; a real one changes the inputs the model sees
    same = _cli_eval("--model", "net.py:make_net", "--weights", "net.pt",
                     "--normalize", "0", "1", out="n1.json")
    plain = _cli_eval("--model", "net.py:make_net", "--weights", "net.pt", out="n0.json")
    assert same["per_sample"]["correct"] == plain["per_sample"]["correct"]
    shifted = _cli_eval("--model", "net.py:make_net", "--weights", "net.pt",
                        "--normalize", "0.5", "0.25", out="n2.json")
    with torch.no_grad():
        pred = trained((mnist.test.x[:64] - 0.5) / 0.25).argmax(1)
    assert shifted["clean"]["acc"] == pytest.approx(
        float((pred == mnist.test.y[:64]).float().mean()))


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "missing.py:make_net"], "file missing.py not found"),
    (["--model", "net.py:nope"], "has no callable 'nope'"),
    (["--model", "net.py:not_a_model"], "returned a int; expected a torch.nn.Module"),
    (["--model", "net.py"], "expected PATH.py:FACTORY"),
    (["--model", "net.py:make_net", "--weights", "absent.pt"],
     "--weights absent.pt: file not found"),
    (["--model", "net.py:make_net", "--weights", "wrong.safetensors"], "keys do not match"),
    (["--model", "net.py:make_net", "--weights", "code.pt"], "weights_only=True"),
    (["--model", "net.py:make_net", "--normalize", "0.5", "x"], "--normalize: expected"),
    (["--model", "net.py:make_net", "--attack-opt", "steps=5"], "expected ATTACK.KEY=VALUE"),
    (["--model", "net.py:make_net", "--attack-opt", "pgd.nope=5"], "nope"),
    (["--model", "net.py:make_net", "--eps", "8"], "exceeds 1"),
])
def test_cli_model_bad_input_is_named_before_compute(model_files, capsys, args, message):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, "wrong.safetensors")
    torch.save({"weights": _Payload()}, "code.pt")  # a pickled object: refused, never run
    argv = ["evaluate", "--dataset", "mnist", "--eps", str(EPS), "--n", "8", "--out", "x.json",
            *args]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not Path("x.json").exists()


class _Payload:
    pass


def test_cli_model_needs_eps_dataset_and_not_a_run_too(model_files, capsys):
    assert main(["evaluate", "--model", "net.py:make_net", "--dataset", "mnist"]) == 2
    assert "--eps: required with --model" in capsys.readouterr().err
    assert main(["evaluate", "--model", "net.py:make_net", "--eps", "0.1"]) == 2
    assert "--dataset: required with --model" in capsys.readouterr().err
    assert main(["evaluate", "some-run", "--model", "net.py:make_net"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["evaluate", "some-run", "--dataset", "mnist"]) == 2
    assert "go with --model" in capsys.readouterr().err


def test_cli_model_never_overwrites(model_files, capsys):
    _cli_eval("--model", "net.py:make_net", "--weights", "net.pt", out="same.json")
    before = Path("same.json").read_text()
    argv = ["evaluate", "--model", "net.py:make_net", "--dataset", "mnist", "--eps", "0.1",
            "--out", "same.json", "--n", "8"]
    assert main(argv) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert Path("same.json").read_text() == before
    assert main([*argv, "--overwrite", "--no-audit", "--no-curve", "--attacks", "fgsm"]) == 0
    assert json.loads(Path("same.json").read_text())["n"] == 8


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"robustlab {robustlab.__version__}"


# ---------------------------------------------------------------------- robustlab.evaluate
def test_python_evaluate_accepts_numpy_float64_and_norm_spellings(trained, mnist):
    x, y = mnist.test.x[:48], mnist.test.y[:48]
    ref = robustlab.evaluate(trained, x, y, eps=EPS, attacks=["fgsm", "pgd"])
    for norm in ("Linf", "inf", float("inf"), "LINF"):
        got = robustlab.evaluate(trained, x.double().numpy(), y.numpy(), eps=EPS, norm=norm,
                                 attacks=["fgsm", "pgd"])
        assert got.robust_acc == ref.robust_acc and got.clean_acc == ref.clean_acc
    l2 = robustlab.evaluate(trained, x, y, eps=1.0, norm=2, attacks=["pgd"])
    assert l2.details["settings"]["norm"] == "l2"
    worst = ref.correct["fgsm"] & ref.correct["pgd"]
    assert torch.equal(ref.correct["worst_case"], worst)
    assert ref.worst_case_acc == pytest.approx(worst.float().mean().item())
    assert ref.robust_acc["pgd"] <= ref.robust_acc["fgsm"] < ref.clean_acc
    assert "worst case" in str(ref)


def test_python_evaluate_by_dataset_name(trained, mnist, monkeypatch, mnist_root):
    monkeypatch.setenv("ROBUSTLAB_DATA", str(mnist_root))
    by_name = robustlab.evaluate(trained, "mnist", eps=EPS, attacks=["fgsm"], n=32)
    direct = robustlab.evaluate(trained, mnist.test.x, mnist.test.y, eps=EPS, attacks=["fgsm"],
                                n=32)
    assert by_name.n == 32 and by_name.robust_acc == direct.robust_acc


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"eps": 8}, "exceeds 1"),
    ({"eps": "0.1"}, "eps: expected a number"),
    ({"eps": 0.1, "norm": "l3"}, "unknown norm 'l3'"),
    ({"eps": 0.1, "attacks": ["nope"]}, "unknown attack 'nope'"),
    ({"eps": 0.1, "attack_options": {"pgd": {"steps": 0}}, "attacks": ["pgd"]}, "steps"),
])
def test_python_evaluate_bad_settings(trained, mnist, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        robustlab.evaluate(trained, mnist.test.x[:4], mnist.test.y[:4], **kwargs)


def test_python_evaluate_bad_data(trained, mnist):
    x, y = mnist.test.x[:4], mnist.test.y[:4]
    cases = [((x * 255).to(torch.uint8), y, "divide 0-255 images by 255"),
             (x, y[:3], "expected shape [4]"),
             (x, y.float(), "expected integer class labels"),
             (x, None, "labels are required"),
             (x.tolist(), y, "expected a torch tensor or numpy array"),
             (np.zeros((4, 1, 28, 28), dtype=np.float32) + 2, y.numpy(), "[0, 1]")]
    for xb, yb, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            robustlab.evaluate(trained, xb, yb, eps=EPS, attacks=["fgsm"])


# ------------------------------------------------------------------------- the CPU kernels
def test_cpu_kernels_switch_keeps_the_numbers(trained, mnist):
    from robustlab.attacks import create_attack

    x, y = mnist.test.x[:128], mnist.test.y[:128]  # large enough for every kernel to apply
    on = create_attack("pgd", eps=EPS, steps=10, seed=1)(trained, x, y)
    off = create_attack("pgd", eps=EPS, steps=10, seed=1, cpu_kernels=False)(trained, x, y)
    assert torch.allclose(on, off, atol=1e-6)
    with pytest.raises(ValueError, match="cpu_kernels: expected true or false"):
        create_attack("pgd", eps=EPS, cpu_kernels="no")


_WITHOUT_NUMBA = """
import sys, torch
sys.modules["numba"] = None  # as if numba were not installed
from robustlab.attacks import create_attack
from robustlab.accel.cpu_kernels import numba_available
assert not numba_available()
state = torch.load(sys.argv[1], weights_only=True)
model = state.pop("model")
net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                          torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(8 * 196, 10))
net.load_state_dict(model)
x_adv = create_attack("pgd", eps=0.1, steps=10, seed=1)(net.eval(), state["x"], state["y"])
torch.save(x_adv, sys.argv[2])
"""


@pytest.mark.integration  # a subprocess without numba
def test_attacks_work_without_numba(tmp_path, trained, mnist):
    from robustlab.attacks import create_attack

    x, y = mnist.test.x[:128], mnist.test.y[:128]
    torch.save({"model": trained.state_dict(), "x": x, "y": y}, tmp_path / "in.pt")
    subprocess.run([sys.executable, "-c", _WITHOUT_NUMBA, str(tmp_path / "in.pt"),
                    str(tmp_path / "out.pt")], check=True, timeout=300)
    without = torch.load(tmp_path / "out.pt", weights_only=True)
    with_numba = create_attack("pgd", eps=EPS, steps=10, seed=1)(trained, x, y)
    assert torch.allclose(without, with_numba, atol=1e-6)


# ------------------------------------------------------------- load_model without the data
def test_load_model_needs_no_dataset_on_disk(tmp_path, monkeypatch, mnist_root, mnist_run):
    from robustlab.runs.load import load_run

    monkeypatch.setenv("ROBUSTLAB_DATA", str(mnist_root))
    out = mnist_run  # tests/conftest.py: trained with ROBUSTLAB_DATA, no data_dir recorded
    recorded = json.loads((out / "config.json").read_text())["model_kwargs"]
    assert recorded["num_classes"] == 10 and recorded["in_channels"] == 1
    x = load_run(out, device="cpu").data.test.x[:16]
    reference = load_run(out, device="cpu").model
    monkeypatch.setenv("ROBUSTLAB_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match="not found|Searched"):
        load_run(out, device="cpu")  # the data is gone ...
    model = robustlab.load_model(out, device="cpu")  # ... the model still loads
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert not model.training


def test_load_model_of_an_older_run_and_bad_records(tmp_path, monkeypatch, mnist_root,
                                                    mnist_run_copy):
    from robustlab.runs.folder import RunFolderError

    monkeypatch.setenv("ROBUSTLAB_DATA", str(mnist_root))
    out = mnist_run_copy  # its config.json is edited below
    config = json.loads((out / "config.json").read_text())
    fresh = robustlab.load_model(out, device="cpu")
    config.pop("model_kwargs")  # as written before config.json recorded it
    (out / "config.json").write_text(json.dumps(config))
    older = robustlab.load_model(out, device="cpu")  # falls back to the dataset
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                 older.state_dict().values(), strict=True))
    (out / "config.json").write_text(json.dumps({**config, "model_kwargs": [1]}))
    with pytest.raises(RunFolderError, match="model_kwargs: expected an object"):
        robustlab.load_model(out, device="cpu")
    with pytest.raises(RunFolderError, match="does not exist"):
        robustlab.load_model(tmp_path / "nothing")


# ----------------------------------------------------------------------------- progress
def test_evaluate_reports_progress_on_stderr_and_can_be_quiet(model_files, capsys):
    _cli_eval("--model", "net.py:make_net", "--weights", "net.pt", out="p.json")
    err = capsys.readouterr().err
    assert re.search(r"fgsm: 64 images \.\.\. done in \d+\.\d s\n", err)
    assert re.search(r"pgd: 64 images \.\.\. done in \d+\.\d s\n", err)
    _cli_eval("--model", "net.py:make_net", "--weights", "net.pt", "--no-progress",
              out="q.json")
    assert "images ..." not in capsys.readouterr().err
    quiet, loud = (json.loads(Path(f).read_text()) for f in ("q.json", "p.json"))
    assert quiet["per_sample"] == loud["per_sample"]  # progress never changes a number


def test_progress_bar_on_a_terminal():
    import io

    from robustlab.evaluation.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with Progress(stream=stream).stage("pgd", 64) as update:
        update(32)
        update(32)
    assert "pgd" in stream.getvalue() and "64/64" in stream.getvalue()
    with Progress(stream=stream).stage("audit", 8, bar=False):
        pass
    assert stream.getvalue().rstrip().endswith("s") and "audit: 8 images ..." in stream.getvalue()
    silent = io.StringIO()
    with Progress(enabled=False, stream=silent).stage("pgd", 8) as update:
        update(8)
    assert silent.getvalue() == ""


# ---------------------------------------------------------------------------- --save-adv
def test_save_adv_writes_the_examples_the_numbers_were_measured_on(model_files, trained,
                                                                   capsys):
    from safetensors import safe_open

    result = _cli_eval("--model", "net.py:make_net", "--weights", "net.pt",
                       "--save-adv", "adv", out="s.json")
    for attack in ("fgsm", "pgd"):
        path = model_files / "adv" / f"{attack}.safetensors"
        with safe_open(str(path), framework="pt") as f:
            x_adv, labels, robust = (f.get_tensor(k) for k in ("x_adv", "labels", "robust"))
            meta = {k: json.loads(v) for k, v in f.metadata().items()}
        assert x_adv.shape == (64, 1, 28, 28) and x_adv.dtype == torch.float32
        assert meta["attack"] == attack and meta["eps"] == EPS and meta["norm"] == "linf"
        with torch.no_grad():
            still_right = trained(x_adv).argmax(1) == labels
        clean = torch.tensor([c == "1" for c in result["per_sample"]["correct"]["clean"]])
        # the saved points reproduce the reported per-sample results exactly
        assert torch.equal(robust.bool(), still_right & clean)
        assert "".join("1" if v else "0" for v in robust.tolist()) == \
            result["per_sample"]["correct"][attack]
    capsys.readouterr()
    argv = ["evaluate", "--model", "net.py:make_net", "--dataset", "mnist", "--eps", "0.1",
            "--attacks", "fgsm", "--n", "8", "--out", "t.json", "--save-adv", "adv"]
    assert main(argv) == 2  # adv/fgsm.safetensors is there: refused before any compute
    assert "already exist" in capsys.readouterr().err and not Path("t.json").exists()
    Path("afile").write_text("x")
    assert main([*argv[:-1], "afile"]) == 2
    assert "is not a folder" in capsys.readouterr().err
