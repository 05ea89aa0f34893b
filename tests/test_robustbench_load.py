"""Loading RobustBench checkpoints (issue #36): RobustBench's file layouts, logits equal to the
reference definition's, the SHA-256 check (the table's digest or the one recorded at first
use), weights_only, the safetensors copy in the cache, downloads only when asked, one-line
errors, and `robustlab evaluate --robustbench` end to end on CIFAR-10 files the test writes.

Checkpoints are written from RobustBench's own classes when the `robustbench` package is
installed (make installs it with --no-deps), else from robustlab's (key for key the same:
tests/test_wide_resnet.py). The format tests use the real WRN-28-10; the others an entry
monkeypatched to LeNet-5, so they stay fast."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from robustbench_reference import architecture_module, randomise
from torch import nn

import robustlab
from robustlab.cli import main
from robustlab.models import robustbench as rbload
from robustlab.models.robustbench import RobustBenchError, find_entry, load_robustbench
from robustlab.models.robustbench_entries import ENTRIES, RobustBenchEntry
from robustlab.registry import MODELS

C10_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
C10_STD = torch.tensor([0.2471, 0.2435, 0.2616]).view(1, 3, 1, 1)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """The default cache ($XDG_CACHE_HOME/robustlab/robustbench) inside the test's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "robustlab" / "robustbench"


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def reference_wrn(**kwargs) -> nn.Module:
    """RobustBench's WideResNet (robustlab's when robustbench is not installed), random."""
    module = architecture_module("wide_resnet")
    torch.manual_seed(0)
    if module is not None:
        return randomise(module.WideResNet(depth=28, widen_factor=10, **kwargs))
    from robustlab.models.wide_resnet import WideResNet

    return randomise(WideResNet(28, 10, 10, 3, **kwargs))


def reference_dm_wrn() -> nn.Module:
    module = architecture_module("dm_wide_resnet")
    torch.manual_seed(0)
    if module is not None:
        return randomise(module.DMWideResNet(depth=28, width=10, activation_fn=module.Swish))
    from robustlab.models.dm_wide_resnet import DMWideResNet

    return randomise(_Normalised(DMWideResNet(28, 10, 10, 3)))


class _Normalised(nn.Module):  # DeepMind's model normalises inside (non-persistent buffers)
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body((x - C10_MEAN) / C10_STD)

    def state_dict(self, *args, **kwargs):
        return self.body.state_dict(*args, **kwargs)


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


# ---- RobustBench's exact formats, logits equal to the reference's --------------------------

def _carmon(ref):  # WideResNet(28, 10, sub_block1=True), saved from DataParallel
    return {"state_dict": _prefixed(ref.state_dict(), "module."), "epoch": 100}


def _standard_wrapped(ref):
    """RobustBench's normalisation wrapper: `normalize_model(model, mean, std)`, keys
    `normalize.mean`, `normalize.std`, `model.*` (written by hand without robustbench)."""
    module = architecture_module("utils_architectures")
    if module is not None:
        return module.normalize_model(ref, tuple(C10_MEAN.flatten().tolist()),
                                      tuple(C10_STD.flatten().tolist())).state_dict()
    state = _prefixed(ref.state_dict(), "model.")
    state.update({"normalize.mean": C10_MEAN.clone(), "normalize.std": C10_STD.clone()})
    return state


@pytest.mark.parametrize(("name", "make_ref", "layout", "normalised_by_file"), [
    # each a WRN-28-10 (36 M parameters, a 146 MB file) saved and loaded: the wrapper's format
    # in `make test`, the other two layouts (`module.` prefix + sub_block1, DeepMind's SiLU WRN)
    # in `make test-slow`; the `module.` prefix is also covered by the ResNet-50 test below
    pytest.param("Carmon2019Unlabeled", lambda: reference_wrn(sub_block1=True), _carmon, False,
                 marks=pytest.mark.slow),
    ("Standard", reference_wrn, _standard_wrapped, True),
    pytest.param("Wang2023Better_WRN-28-10", reference_dm_wrn, lambda ref: ref.state_dict(),
                 False, marks=pytest.mark.slow),
])
def test_robustbench_checkpoint_gives_the_reference_logits(tmp_path, images, name, make_ref,
                                                           layout, normalised_by_file):
    ref = make_ref()
    file = tmp_path / f"{name}.pt"
    torch.save(layout(ref), file)
    model = load_robustbench(name, path=file)
    with torch.no_grad():
        expected = ref((images - C10_MEAN) / C10_STD) if normalised_by_file else ref(images)
        torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-5)
    assert not model.training and model.robustbench is find_entry(name)


def test_imagenet_resnet50_entry_loads_torchvision_keys(tmp_path, images):
    """RobustBench's ImageNet ResNet-50 files hold torchvision's keys (its loader adds the
    wrapper's `model.` prefix itself); the entry supplies ImageNet's normalisation."""
    from robustlab.models.resnet50 import ResNet50

    torch.manual_seed(0)
    body = randomise(ResNet50(1000, 3))
    file = tmp_path / "Salman2020Do_R50.pt"
    torch.save(_prefixed(body.state_dict(), "module."), file)
    model = load_robustbench("Salman2020Do_R50", dataset="imagenet", path=file)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(images), body((images - mean) / std), rtol=0,
                                   atol=1e-5)
    assert model.robustbench.eps_text == "4/255"


# ---- the other tests: an entry of a small architecture ---------------------------------------

TINY = RobustBenchEntry(name="Tiny2024Test", dataset="cifar10", threat_model="Linf",
                        eps=8 / 255, eps_text="8/255", architecture="lenet5",
                        label="LeNet-5", clean_acc=50.0, autoattack_acc=20.0,
                        gdrive_id="tiny-id", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(rbload, "ENTRIES", (*ENTRIES, TINY))
    return TINY


def tiny_body() -> nn.Module:
    torch.manual_seed(1)
    model = MODELS.create("lenet5", num_classes=10, in_channels=3, mean=[0.5] * 3,
                          std=[0.25] * 3, image_size=32)
    return model.body.eval()


@pytest.fixture
def tiny_file(tmp_path, tiny) -> Path:
    file = tmp_path / "tiny.pt"
    torch.save({"state_dict": _prefixed(tiny_body().state_dict(), "module.")}, file)
    return file


@pytest.mark.parametrize("layout", [
    lambda s: s, lambda s: {"model_state_dict": s}, lambda s: _prefixed(s, "module.module."),
    lambda s: {**s, "mu": torch.full((1, 3, 1, 1), 0.5), "sigma": torch.full((1, 3, 1, 1), 0.25)},
])
def test_every_layout_unwraps(tmp_path, tiny, images, layout):
    body = tiny_body()
    file = tmp_path / "t.pt"
    torch.save(layout(body.state_dict()), file)
    model = load_robustbench("Tiny2024Test", path=file)
    with torch.no_grad():
        torch.testing.assert_close(model(images), body((images - 0.5) / 0.25), rtol=0,
                                   atol=1e-6)


def test_metadata_comes_with_the_model(tiny_file):
    model = robustlab.load_robustbench("Tiny2024Test", path=tiny_file)
    assert (model.robustbench.eps, model.robustbench.norm) == (8 / 255, "linf")
    assert (model.robustbench.clean_acc, model.robustbench.autoattack_acc) == (50.0, 20.0)
    entry = find_entry("Carmon2019Unlabeled")
    assert (entry.clean_acc, entry.autoattack_acc, entry.eps_text) == (89.69, 59.53, "8/255")


def test_safetensors_copy_is_used_on_the_second_load(tiny_file, cache, monkeypatch, images):
    first = load_robustbench("Tiny2024Test", path=tiny_file)
    folder = cache / "cifar10" / "Linf"
    meta = json.loads((folder / "Tiny2024Test.json").read_text())
    assert meta["source_sha256"] == rbload.file_sha256(tiny_file)
    assert (folder / "Tiny2024Test.safetensors").is_file()
    record = json.loads((folder / "Tiny2024Test.pt.sha256").read_text())
    assert record["sha256"] == meta["source_sha256"]

    def no_unpickling(file):
        raise AssertionError(f"read {file} again instead of the safetensors copy")

    monkeypatch.setattr(rbload, "read_checkpoint", no_unpickling)
    again = load_robustbench("Tiny2024Test", path=tiny_file)  # offline, same file
    cached = load_robustbench("Tiny2024Test")  # from the cache alone
    with torch.no_grad():
        for model in (again, cached):
            torch.testing.assert_close(model(images), first(images), rtol=0, atol=0)


def test_tampered_checkpoint_is_refused_naming_the_file(tiny_file):
    load_robustbench("Tiny2024Test", path=tiny_file)  # its digest is recorded now
    before = rbload.file_sha256(tiny_file)
    state = torch.load(tiny_file, weights_only=True)
    state["state_dict"]["module.classifier.1.bias"][0] += 1.0  # one changed weight
    torch.save(state, tiny_file)
    with pytest.raises(RobustBenchError) as exc:
        load_robustbench("Tiny2024Test", path=tiny_file)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{tiny_file}: SHA-256 ")
    assert before in message and rbload.file_sha256(tiny_file) in message


def test_a_digest_in_the_table_is_checked_on_the_first_load(tmp_path, monkeypatch, tiny_file):
    pinned = dataclasses.replace(TINY, sha256="0" * 64)
    monkeypatch.setattr(rbload, "ENTRIES", (pinned,))
    with pytest.raises(RobustBenchError, match=f"{tiny_file}: SHA-256 .* does not match "
                                               f"the expected 0{{64}} \\(robustlab's table"):
        load_robustbench("Tiny2024Test", path=tiny_file)


class _Payload:
    """Unpickling this creates the file `path` (what a hostile checkpoint could do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_weights_only_refuses_a_pickled_object_without_running_it(tmp_path, tiny):
    marker = tmp_path / "executed"
    file = tmp_path / "hostile.pt"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1), "x": _Payload(marker)}}, file)
    with pytest.raises(RobustBenchError) as exc:
        load_robustbench("Tiny2024Test", path=file)
    assert "\n" not in str(exc.value) and str(exc.value).startswith(f"{file}: not a checkpoint "
                                                                     "loadable with torch.load"
                                                                     "(weights_only=True)")
    assert not marker.exists()
    torch.load(file, weights_only=False)  # the payload is real: a full unpickle runs it
    assert marker.exists()


def test_keys_that_do_not_match_are_one_line(tmp_path, tiny):
    state = tiny_body().state_dict()
    state["extra.weight"] = state.pop("features.0.weight")
    file = tmp_path / "other.pt"
    torch.save(state, file)
    with pytest.raises(RobustBenchError) as exc:
        load_robustbench("Tiny2024Test", path=file)
    assert str(exc.value) == (f"{file}: checkpoint keys do not match lenet5 (Tiny2024Test): "
                              "missing features.0.weight, unexpected extra.weight")


def test_unknown_entry_lists_close_names():
    with pytest.raises(RobustBenchError) as exc:
        load_robustbench("Carmon2019Unlabelled")
    assert "close names: Carmon2019Unlabeled" in str(exc.value)
    with pytest.raises(RobustBenchError, match="it is listed for cifar10/Linf"):
        load_robustbench("Carmon2019Unlabeled", threat_model="L2")
    with pytest.raises(RobustBenchError, match="threat model: expected one of Linf, L2"):
        find_entry("Standard", threat_model="L1")


def test_download_only_when_asked_and_checked_before_it_is_kept(tiny, tiny_file, cache,
                                                                monkeypatch):
    with pytest.raises(RobustBenchError, match="not in the cache; pass --download"):
        load_robustbench("Tiny2024Test")
    urls = []

    def fake_fetch(url, dest, content=None):
        urls.append(url)
        dest.write_bytes(content if content is not None else tiny_file.read_bytes())

    monkeypatch.setattr(rbload, "fetch", lambda url, dest: fake_fetch(url, dest, b"<html>"))
    with pytest.raises(RobustBenchError, match="returned a web page"):
        load_robustbench("Tiny2024Test", download=True)
    folder = cache / "cifar10" / "Linf"
    assert not (folder / "Tiny2024Test.pt").exists()
    assert not (folder / "Tiny2024Test.pt.sha256").exists()  # nothing trusted
    monkeypatch.setattr(rbload, "fetch", fake_fetch)
    load_robustbench("Tiny2024Test", download=True)
    assert urls[-1] == TINY.download_url and (folder / "Tiny2024Test.pt").is_file()
    assert json.loads((folder / "Tiny2024Test.pt.sha256").read_text())["sha256"] == \
        rbload.file_sha256(tiny_file)


def test_the_table_builds_and_is_consistent():
    keys = [(e.name, e.dataset, e.threat_model) for e in ENTRIES]
    assert len(keys) == len(set(keys)) >= 12
    for entry in ENTRIES:
        assert entry.architecture in MODELS, entry.name
        assert len(entry.mean) == len(entry.std) == 3
        assert 0 <= entry.autoattack_acc <= entry.clean_acc <= 100
        assert entry.eps == pytest.approx({"Linf": 8 / 255, "L2": 0.5}.get(
            entry.threat_model, entry.eps), abs=1e-3) or entry.dataset == "imagenet"
    assert find_entry("Rice2020Overfitting", threat_model="l2").key_map == "preact"


# ---- robustlab evaluate --robustbench, end to end --------------------------------------------

def write_cifar10(folder: Path, records: int = 10) -> Path:
    """The official binary layout (as tests/dataset_files.py writes it), `records` per file."""
    target = folder / "cifar-10-batches-bin"
    target.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = (np.arange(records) % 10).astype(np.uint8)
        pixels = rng.integers(0, 256, (records, 3 * 32 * 32)).astype(np.uint8)
        (target / name).write_bytes(np.concatenate([labels[:, None], pixels], 1).tobytes())
    return folder


@pytest.fixture
def cifar_data(tmp_path, monkeypatch) -> Path:
    from robustlab.data import cifar

    monkeypatch.setattr(cifar, "OFFICIAL_RECORDS", 10)  # a reduced copy that passes verify
    return write_cifar10(tmp_path / "data")


def test_cli_evaluate_robustbench_end_to_end(tmp_path, tiny_file, cifar_data, monkeypatch,
                                             capsys):
    data = cifar_data
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", "--robustbench", "Tiny2024Test", "--robustbench-file", str(tiny_file),
            "--dataset", "cifar10", "--threat-model", "Linf", "--images", "4",
            "--attacks", "fgsm", "--data-dir", str(data), "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    result = json.loads(Path("Tiny2024Test-eval.json").read_text())
    assert result["run"]["robustbench"]["reported_autoattack_acc"] == 20.0
    assert result["run"]["model_spec"] == "robustbench:Tiny2024Test"
    settings = result["settings"]
    assert settings["eps"] == pytest.approx(8 / 255)  # the entry's eps: no --eps given
    assert (settings["norm"], settings["attacks"], result["n"]) == ("linf", ["fgsm"], 4)
    out = capsys.readouterr().out
    assert "RobustBench Tiny2024Test on cifar10" in out


@pytest.mark.parametrize(("extra", "message"), [
    (["--robustbench", "Carmon2019Unlabelled"], "close names: Carmon2019Unlabeled"),
    (["--robustbench", "Standard", "--weights", "w.pt"], "do not go with --robustbench"),
    (["--model", "net.py:make", "--robustbench", "Standard"],
     "not both (--model and --robustbench)"),
    (["--threat-model", "L2", "some-run"], "go with --robustbench NAME"),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err



def test_cli_checks_the_data_before_the_checkpoint_and_names_a_missing_file(
        tmp_path, tiny, cifar_data, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", "--robustbench", "Tiny2024Test", "--images", "2", "--attacks", "fgsm"]
    assert main([*args, "--data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err  # the data is checked first: not "not in the cache"
    assert "dataset 'cifar10' not found" in err and "not in the cache" not in err
    assert main([*args, "--robustbench-file", "missing.pt", "--data-dir", str(cifar_data)]) == 2
    err = capsys.readouterr().err
    assert "missing.pt: checkpoint file not found" in err and err.count("\n") == 1
