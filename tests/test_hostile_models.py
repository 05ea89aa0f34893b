"""Hostile models (issue #32.7, #37.5): every model robustlab cannot use is refused on ONE small
batch, before any compute, with the same one-line message from `robustlab.evaluate`,
`robustlab.train` and `robustlab evaluate --model PATH.py:FACTORY` -- never a traceback, never
a number. Also bad weights files (a hypothesis fuzz over their bytes), a factory that raises,
needs an argument or whose file does not parse, `--normalize` for the wrong channel count,
a CUDA device without CUDA and empty images."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import robustlab
from robustlab.cli import main
from robustlab.common.device import DeviceError
from robustlab.evaluation import EvalSettingsError
from robustlab.models.probe import PROBE_SIZE, check_model_on_data
from robustlab.models.user import UserModelError, load_weights

# The models, as source: exec'd here for the Python API, written to a file for the CLI.
MODELS_SRC = '''
import torch
from torch import nn


class Net(nn.Module):
    """A linear classifier of 1x28x28 images; `seen` counts the images it was given."""

    def __init__(self, k=10):
        super().__init__()
        self.lin = nn.Linear(784, k)
        self.seen = 0

    def logits(self, x):
        self.seen += len(x)
        return self.lin(x.flatten(1))

    def forward(self, x):
        return self.logits(x)


class TupleOut(Net):
    def forward(self, x):
        return self.logits(x), x.mean()


class DictOut(Net):
    def forward(self, x):
        return {"logits": self.logits(x)}


class OneD(Net):
    def forward(self, x):
        return self.logits(x)[:, 0]


class Constant(Net):
    def forward(self, x):
        self.logits(x)
        return self.lin.bias.expand(len(x), -1)


class NaNOut(Net):
    def forward(self, x):
        return self.logits(x) * float("nan")


class Labels(Net):
    def forward(self, x):
        return self.logits(x).argmax(1, keepdim=True).expand(-1, 10)


class Detached(Net):
    def forward(self, x):
        return self.logits(x.detach())


class OneRow(Net):
    def forward(self, x):
        return self.logits(x)[:1]


class Crashes(Net):
    def forward(self, x):
        self.seen += len(x)
        return self.lin(x)  # [N, 1, 28, 28] @ [784, 10]: a shape error
'''

# name: (constructor, the message's fragment, refused by robustlab.train too)
HOSTILE = {
    "tuple_out": ("TupleOut()", "got a tuple of 2 items; return the logits only", True),
    "dict_out": ("DictOut()", "got a dict with keys ['logits']", True),
    "one_d": ("OneD()", "got a torch.float32 tensor of shape [4]", True),
    "fp16": ("Net().half()", "its parameters are torch.float16; expected float32", True),
    "constant": ("Constant()", "the logits do not depend on the input", False),
    "nan": ("NaNOut()", "contain nan/inf", True),
    "five_classes": ("Net(5)", "5 logits per image, but the data has 10 classes", True),
    "one_class": ("Net(1)", "expected at least 2 logits per image", True),
    "labels_out": ("Labels()", "got a torch.int64 tensor of shape [4, 10]", True),
    "detached": ("Detached()", "not differentiable with respect to the input", False),
    "one_row": ("OneRow()", "shape [4, K] for 4 images, got a torch.float32 tensor of shape "
                "[1, 10]", True),
    "crashes": ("Crashes()", "the forward pass on 4 images of shape [4, 1, 28, 28] "
                "(torch.float32, cpu) failed with RuntimeError: mat1 and mat2", True),
}
NAMESPACE: dict = {}
exec(compile(MODELS_SRC, "hostile_models", "exec"), NAMESPACE)  # noqa: S102


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return eval(HOSTILE[name][0], NAMESPACE)  # noqa: S307


def data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.arange(n) % 10


def one_line(text: str) -> str:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one torch thread."""


# ------------------------------------------------------------------- robustlab.evaluate
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_evaluate_refuses_hostile_model_before_compute(name):
    model = build(name)
    x, y = data()
    with pytest.raises(UserModelError, match=re.escape(HOSTILE[name][1])) as err:
        robustlab.evaluate(model, x, y, eps=0.1, attacks=["fgsm"])
    one_line(str(err.value))
    assert str(err.value).startswith(("model output: ", "model: "))
    # only the probe ran (and for the dependence check, its second pass): no clean pass
    assert getattr(model, "seen", 0) <= 2 * PROBE_SIZE


def test_evaluate_wrong_width_on_a_named_dataset_and_gradient_free_attacks():
    model = build("five_classes")  # 5 outputs, 10 labels
    with pytest.raises(UserModelError, match="5 logits per image, but the data has 10 classes "
                                             r"\(labels 0 to 9\); expected \[N, 10\]"):
        robustlab.evaluate(model, "synthetic", eps=0.1, attacks=["fgsm"], n=8)
    wide = NAMESPACE["Net"](12)  # K > 10 is fine for tensors (labels <= 9) ...
    x, y = data(8)
    assert robustlab.evaluate(wide, x, y, eps=0.1, attacks=["fgsm"]).n == 8
    with pytest.raises(UserModelError, match=r"12 logits .* expected \[N, 10\]"):
        robustlab.evaluate(wide, "synthetic", eps=0.1, attacks=["fgsm"], n=8)  # ... not here
    # an attack that never differentiates the model accepts a detached one
    result = robustlab.evaluate(build("detached"), x, y, eps=0.1, attacks=["square"],
                                attack_options={"square": {"n_queries": 5}})
    assert 0.0 <= result.robust_acc["square"] <= result.clean_acc


def test_evaluate_bad_device_empty_images_and_not_a_module():
    x, y = data(4)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="'cuda' requested but CUDA is not available"):
            robustlab.evaluate(NAMESPACE["Net"](), x, y, eps=0.1, device="cuda")
    with pytest.raises(EvalSettingsError, match=r"x: expected a batch .* N >= 1, got shape "
                                                r"\[0, 1, 28, 28\]"):
        robustlab.evaluate(NAMESPACE["Net"](), x[:0], y[:0], eps=0.1)
    with pytest.raises(EvalSettingsError, match="labels >= 0"):
        robustlab.evaluate(NAMESPACE["Net"](), x, y - 1, eps=0.1)
    with pytest.raises(UserModelError, match="model: expected a torch.nn.Module, got a "
                                             "function"):
        robustlab.evaluate(lambda t: t, x, y, eps=0.1)


def test_float64_model_is_evaluated_in_float64():
    model = NAMESPACE["Net"]().double()
    x, y = data(8)
    result = robustlab.evaluate(model, x, y, eps=0.1, attacks=["fgsm"])
    with torch.no_grad():
        clean = (model(x.double()).argmax(1) == y).float().mean().item()
    assert result.clean_acc == pytest.approx(clean)


def test_probe_leaves_modes_and_random_numbers_alone():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(784, 10)).train()
    x, _ = data(8)
    state = torch.get_rng_state()
    assert check_model_on_data(model, x, num_classes=10, exact=True, depends_on_x=True,
                               needs_gradient=True) == 10
    assert torch.equal(torch.get_rng_state(), state)
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------- robustlab.train
@pytest.mark.parametrize("name", sorted(n for n, case in HOSTILE.items() if case[2]))
def test_train_refuses_hostile_model_before_training(name, tmp_path):
    model = build(name)
    x, y = data(64)
    out = tmp_path / "run"
    with pytest.raises(UserModelError, match=re.escape(HOSTILE[name][1])) as err:
        robustlab.train(model, (x, y), epochs=1, out_dir=str(out), progress=False)
    one_line(str(err.value))
    assert not out.exists()  # refused before the run folder was claimed
    assert getattr(model, "seen", 0) <= PROBE_SIZE


# ------------------------------------------------------------------- evaluate --model
@pytest.fixture
def model_file(tmp_path, monkeypatch):
    """hostile.py: one factory per hostile model, plus make_net (a usable model)."""
    monkeypatch.chdir(tmp_path)
    factories = "".join(f"\n\ndef make_{name}():\n    return {expr}\n"
                        for name, (expr, _, _) in HOSTILE.items())
    (tmp_path / "hostile.py").write_text(
        MODELS_SRC + factories + "\n\ndef make_net():\n    return Net()\n\n\n"
        "def make_sized(num_classes):\n    return Net(num_classes)\n\n\n"
        "def make_failing():\n    return Net(int('ten'))\n")
    return tmp_path


def cli_error(capsys, *args: str, out: str = "e.json") -> str:
    """Run `robustlab evaluate --dataset synthetic ...`: it must exit 2 with one error line
    and neither print a table nor write a file."""
    argv = ["evaluate", "--dataset", "synthetic", "--eps", "0.1", "--attacks", "fgsm",
            "--n", "8", "--no-audit", "--no-curve", "--no-progress", "--out", out, *args]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not Path(out).exists()
    err = one_line(captured.err)
    assert err.startswith("robustlab evaluate: error: "), err
    return err


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_cli_refuses_hostile_model_with_the_python_message(model_file, capsys, name):
    err = cli_error(capsys, "--model", f"hostile.py:make_{name}")
    assert HOSTILE[name][1] in err


def test_cli_accepts_a_usable_model_from_the_same_file(model_file, capsys):
    argv = ["evaluate", "--model", "hostile.py:make_net", "--dataset", "synthetic", "--eps",
            "0.1", "--attacks", "fgsm", "--n", "8", "--no-audit", "--no-curve",
            "--no-progress", "--out", "ok.json"]
    assert main(argv) == 0
    assert Path("ok.json").is_file()


def _weights(kind: str) -> str:
    """A weights file of the given kind for hostile.py's Net(), in the cwd."""
    from safetensors.torch import save_file

    net = NAMESPACE["Net"]()
    files = {"wrong-keys": "keys.safetensors", "wrong-shapes": "shapes.pt",
             "garbage-safetensors": "junk.safetensors", "garbage-pt": "junk.pt",
             "empty-pt": "empty.pt", "tensor-pt": "tensor.pt"}
    path = files[kind]
    if kind == "wrong-keys":
        save_file({"w": torch.zeros(2)}, path)
    elif kind == "wrong-shapes":
        torch.save({k: torch.zeros(3, *v.shape[1:]) for k, v in net.state_dict().items()}, path)
    elif kind == "tensor-pt":
        torch.save(torch.zeros(3), path)
    else:
        Path(path).write_bytes(b"" if kind == "empty-pt" else b"\x93NUMPY not weights" * 9)
    return path


@pytest.mark.parametrize(("kind", "message"), [
    ("missing", "--weights absent.pt: file not found"),
    ("wrong-keys", "keys do not match the model: missing ['lin.bias', 'lin.weight'], "
                   "unexpected ['w']"),
    ("wrong-shapes", "shapes do not match the model: lin.weight [3, 784] (model [10, 784]), "
                     "lin.bias [3] (model [10])"),
    ("garbage-safetensors", "not a readable safetensors file"),
    ("garbage-pt", "not a state dict loadable with weights_only=True"),
    ("empty-pt", "not a state dict loadable with weights_only=True"),
    ("tensor-pt", "expected a state dict (parameter name -> tensor), got a Tensor"),
])
def test_cli_bad_weights_are_one_line(model_file, capsys, kind, message):
    path = "absent.pt" if kind == "missing" else _weights(kind)
    assert message in cli_error(capsys, "--model", "hostile.py:make_net", "--weights", path)


@pytest.mark.parametrize(("source", "factory", "message"), [
    (None, "make_failing", r"make_failing\(\) failed: ValueError: invalid literal for int\(\) "
                           r"with base 10: 'ten' \(.*hostile.py:\d+\)"),
    (None, "make_sized", r"make_sized\(\) needs the argument\(s\) num_classes; expected a "
                         "function callable with no arguments"),
    ("import torch\ndef make(:\n    pass\n", "make",
     r"cannot import broken.py: SyntaxError: .* \(.*broken.py:2\)"),
    ("import no_such_module_xyz\n", "make",
     r"cannot import broken.py: ModuleNotFoundError: No module named 'no_such_module_xyz' "
     r"\(.*broken.py:1\)"),
    ("x = 1 / 0\n", "make", r"cannot import broken.py: ZeroDivisionError: division by zero "
                            r"\(.*broken.py:1\)"),
])
def test_cli_factory_failures_are_one_line(model_file, capsys, source, factory, message):
    file = "hostile.py"
    if source is not None:
        file = "broken.py"
        Path(file).write_text(source)
    err = cli_error(capsys, "--model", f"{file}:{factory}")
    assert re.search(message, err), err


def test_cli_normalize_channels_and_cuda(model_file, capsys):
    err = cli_error(capsys, "--model", "hostile.py:make_net", "--normalize", "0.5,0.5,0.5",
                    "0.2,0.2,0.2")
    assert "--normalize: 3 MEAN and STD value(s) given, but synthetic images have 1 " \
           "channel(s)" in err
    if not torch.cuda.is_available():
        err = cli_error(capsys, "--model", "hostile.py:make_net", "--device", "cuda")
        assert "'cuda' requested but CUDA is not available here" in err


# -------------------------------------------------------------- weights files: any bytes
_PREFIXES = st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x08\x00\x00\x00\x00\x00\x00\x00{",
                             b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":{\"dtype\":\"F32\""])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(prefix=_PREFIXES, body=st.binary(max_size=200),
       suffix=st.sampled_from([".pt", ".pth", ".bin", ".safetensors"]))
def test_any_bytes_as_weights_are_a_user_model_error(tmp_path, prefix, body, suffix):
    path = tmp_path / f"w{suffix}"
    path.write_bytes(prefix + body)
    with pytest.raises(UserModelError, match=re.escape(f"--weights {path}: ")) as err:
        load_weights(NAMESPACE["Net"](), str(path))
    one_line(str(err.value))
