"""robustlab's zoo (issue #36 item 4): an entry added from a finished run folder (its averaged
weights and a `robustlab benchmark` JSON of them), loaded by name with its weights file's SHA-256
checked against its card, rebuilt from the card with the run's logits; a tampered file, an
unknown name, a benchmark of other weights or another attack, an existing entry are refused in
one line; `robustlab list` and `evaluate --pretrained` see the entry; the shipped entries load,
each with its card's clean accuracy on the full test set. The zoo folder of the tests' own
entries is the `zoo_dir` argument (or $ROBUSTLAB_ZOO), in tmp_path."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest
import torch

import robustlab
from robustlab.cli import main
from robustlab.common.digest import with_digest
from robustlab.zoo import ZooError, list_pretrained, load_pretrained, read_card
from robustlab.zoo import add as zoo_add
from robustlab.zoo.add import add_entry
from robustlab.zoo.cards import CARD_FIELDS, NOTHING_SHIPPED, ZOO_ENV

ROOT = Path(__file__).resolve().parents[1]
NAME = "syn-lenet5-linf"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished LeNet-5 run on synthetic data (1 epoch, EMA weights), eps 0.3, and its
    benchmark JSON (8 images) at RUN/benchmark.json."""
    from robustlab.training import TrainConfig, train

    out = tmp_path_factory.mktemp("zoo") / "run"
    train(TrainConfig(dataset="synthetic", model="lenet5", epochs=1, recipe="none", eps=0.3,
                      ema=0.9, progress=False, device="cpu", threads=1, out_dir=str(out)))
    assert main(["benchmark", str(out), "--images", "8", "--device", "cpu", "--no-progress",
                 "--threads", "1"]) == 0
    return out


@pytest.fixture
def zoo(run, tmp_path) -> Path:
    folder = tmp_path / "zoo"
    add_entry(run, NAME, benchmark=run / "benchmark.json", zoo_dir=folder,
              command="robustlab train --dataset synthetic --eps 0.3 --ema 0.9")
    return folder


def test_an_added_entry_loads_by_name_with_the_runs_logits(run, zoo):
    model = load_pretrained(NAME, device="cpu", zoo_dir=zoo)
    expected = robustlab.load_model(run, device="cpu")  # the averaged (EMA) weights
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), expected(x))
    assert not model.training and model.card["name"] == NAME
    last = robustlab.load_model(run, device="cpu", weights="last")
    with torch.no_grad():
        assert not torch.equal(model(x), last(x))  # the averaged weights, not the last


def test_the_card_is_complete(run, zoo):
    card = read_card(NAME, zoo)
    for field, subfields in CARD_FIELDS.items():
        assert field in card
        for sub in subfields:
            assert card[field][sub] is not None, f"{field}.{sub}"
    weights = zoo / f"{NAME}.safetensors"
    assert card["weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    summary = json.loads((run / "summary.json").read_text())
    assert card["weights"]["tensors_sha256"] == summary["averaged_weights_sha256"]
    assert card["weights"]["which"] == "averaged" and card["weights"]["averaging"] == "ema"
    assert card["model"] == {"name": "lenet5", "kwargs": card["model"]["kwargs"]}
    assert card["model"]["kwargs"]["num_classes"] == 10
    assert card["threat_model"] == {"norm": "linf", "eps": 0.3}
    assert card["training"]["command"].startswith("robustlab train --dataset synthetic")
    assert card["training"]["config"]["ema"] == 0.9
    assert card["training"]["train_time_s"] == summary["train_time_s"]
    measured = json.loads((run / "benchmark.json").read_text())
    ev = card["evaluation"]
    assert (ev["clean_acc"], ev["autoattack_acc"], ev["n"]) == (
        measured["clean"]["acc"], measured["autoattack"]["acc"], 8)
    assert ev["command"].startswith("robustlab benchmark ") and ev["attack"]["steps"] == 100
    # portable: the run by its folder's name, the benchmarked folder as RUN in the command
    assert card["training"]["run"] == run.name and ev["command"].split()[2] == "RUN"
    assert str(run.parent) not in json.dumps(card)


def test_a_tampered_weights_file_is_refused_in_one_line(zoo, monkeypatch, capsys):
    weights = zoo / f"{NAME}.safetensors"
    good = hashlib.sha256(weights.read_bytes()).hexdigest()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    bad = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ZooError) as err:
        load_pretrained(NAME, zoo_dir=zoo)
    message = str(err.value)
    assert str(weights) in message and good in message and bad in message
    assert "refusing to load it" in message and "\n" not in message
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    assert main(["evaluate", "--pretrained", NAME, "--images", "4", "--attacks", "fgsm"]) == 2
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and bad in err_text


def test_an_unknown_name_lists_the_available_ones(zoo, tmp_path):
    with pytest.raises(ZooError, match=rf"unknown pretrained model 'mnist-x': available: {NAME}"):
        load_pretrained("mnist-x", zoo_dir=zoo)
    with pytest.raises(ZooError, match=f"{NOTHING_SHIPPED}"):
        load_pretrained("mnist-x", zoo_dir=tmp_path / "empty")


SHIPPED = "mnist-lenet5-linf"  # the README's first example attacks this one
SHIPPED_ENTRIES = {SHIPPED: ("mnist", 0.3), "fashion-mnist-lenet5-linf": ("fashion-mnist", 0.1)}


@pytest.mark.parametrize("name", sorted(SHIPPED_ENTRIES))
def test_a_shipped_card_is_whole_and_names_no_path_of_the_machine_that_made_it(name,
                                                                              monkeypatch):
    """Every shipped card keeps each image's result (`per_image`, n = 10,000) and records its
    run folder by name, its commands without an absolute path (docs/zoo.md)."""
    monkeypatch.delenv(ZOO_ENV, raising=False)
    card = read_card(name)
    ev = card["evaluation"]
    assert ev["n"] == 10_000 and set(ev["per_image"]) == {"clean", "autoattack"}
    assert ev["per_image"]["autoattack"].count("1") / 100 == ev["autoattack_acc"]
    texts = [ev["command"], card["training"]["command"], card["training"]["run"],
             card["training"]["config"]["out_dir"]]
    assert not any(word.startswith("/") for text in texts for word in text.split()), texts
    assert "/" not in card["training"]["run"] + card["training"]["config"]["out_dir"]


def _readme_example() -> list[str]:
    """The first command of the README's "Using it": attacking a zoo model, nothing trained."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Using it"):]
    line = next(ln for ln in block.splitlines() if ln.startswith("robustlab "))
    return line.split("#")[0].split()[1:]


def test_the_shipped_zoo_lists_its_entries_and_names_them_on_a_wrong_name(monkeypatch,
                                                                          capsys):
    monkeypatch.delenv(ZOO_ENV, raising=False)
    assert list_pretrained() == sorted(SHIPPED_ENTRIES)
    assert main(["list", "pretrained"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SHIPPED_ENTRIES)
    with pytest.raises(ZooError, match=rf"unknown pretrained model 'mnist-x': available: "
                                       rf"{', '.join(sorted(SHIPPED_ENTRIES))}"):
        robustlab.load_pretrained("mnist-x")


@pytest.mark.parametrize("name", sorted(SHIPPED_ENTRIES))
def test_a_shipped_zoo_entry_loads_and_its_clean_accuracy_is_the_cards(name, request,
                                                                       monkeypatch):
    """Each shipped entry: its digest checked on load, its clean accuracy on the full test
    set equal to its card's image for image (the card's AutoAttack figure is the `robustlab
    benchmark` of the same weights; docs/zoo.md)."""
    from robustlab.data import load_dataset

    dataset, eps = SHIPPED_ENTRIES[name]
    monkeypatch.delenv(ZOO_ENV, raising=False)
    model = robustlab.load_pretrained(name, device="cpu")
    card = model.card
    assert (card["dataset"], card["threat_model"]) == (dataset, {"norm": "linf", "eps": eps})
    assert card["evaluation"]["n"] == 10_000 and card["evaluation"]["attack"]["version"] == \
        "standard"
    test = (request.getfixturevalue("mnist_splits") if dataset == "mnist" else
            load_dataset(dataset, root=request.getfixturevalue("fashion_root").parent)).test
    with torch.no_grad():
        bits = "".join("1" if c else "0" for i in range(0, len(test.x), 2000)
                       for c in (model(test.x[i:i + 2000]).argmax(1) == test.y[i:i + 2000]))
    assert len(test.x) == 10_000 and bits.count("1") / 100 == card["evaluation"]["clean_acc"]
    assert bits == card["evaluation"]["per_image"]["clean"]


def test_the_readme_s_first_example_attacks_the_zoo_model(mnist_root, tmp_path, monkeypatch):
    """README, "Using it", first line: `robustlab evaluate --pretrained NAME ...` runs as
    written (here on its first 100 images, without the curve and the audit, to stay fast)."""
    args = _readme_example()
    assert args[:3] == ["evaluate", "--pretrained", SHIPPED], args
    monkeypatch.delenv(ZOO_ENV, raising=False)
    monkeypatch.setenv("ROBUSTLAB_DATA", str(mnist_root))
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--images", "100", "--no-curve", "--no-audit", "--no-progress",
                 "--threads", "1"]) == 0
    data = json.loads((tmp_path / f"{SHIPPED}-eval.json").read_text())
    accs = {k: v["acc"] for k, v in data["attacks"].items()}
    assert data["n"] == 100 and set(accs) == {"pgd", "apgd-ce"}
    assert 0.6 < min(accs.values()) <= max(accs.values()) <= data["clean"]["acc"], accs


def test_list_and_evaluate_see_the_entry(zoo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    assert main(["list"]) == 0
    assert f"pretrained: {NAME}\n" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "--pretrained", NAME, "--images", "4", "--attacks", "fgsm",
                 "--no-audit", "--no-curve", "--device", "cpu", "--no-progress"]) == 0
    result = json.loads(Path(f"{NAME}-eval.json").read_text())
    assert result["settings"]["eps"] == 0.3 and result["run"]["pretrained"]["name"] == NAME
    assert main(["evaluate", "--pretrained", NAME, "--dataset", "mnist"]) == 2
    assert "do not go with it" in capsys.readouterr().err


def _edited(source: Path, target: Path, **changes) -> Path:
    data = json.loads(source.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    target.write_text(json.dumps(with_digest(data)))
    return target


def test_add_refuses_what_it_cannot_vouch_for(run, zoo, tmp_path):
    bench = run / "benchmark.json"
    with pytest.raises(ZooError, match="already exists: the zoo never replaces an entry"):
        add_entry(run, NAME, benchmark=bench, zoo_dir=zoo)
    with pytest.raises(ZooError, match="it measured other weights"):  # averaged vs last
        add_entry(run, "b", benchmark=bench, zoo_dir=zoo, weights="last")
    quick = _edited(bench, tmp_path / "quick.json", attack={"steps": 5})
    with pytest.raises(ZooError, match=r"AutoAttack standard at the original counts.*'steps': 5"):
        add_entry(run, "c", benchmark=quick, zoo_dir=zoo)
    other_eps = _edited(bench, tmp_path / "eps.json", eps_value=0.1)
    with pytest.raises(ZooError, match="differ from the run's"):
        add_entry(run, "d", benchmark=other_eps, zoo_dir=zoo)
    not_bench = _edited(bench, tmp_path / "eval.json", schema="robustlab.eval/1")
    with pytest.raises(ZooError, match="schema: expected 'robustlab.benchmark/1'"):
        add_entry(run, "e", benchmark=not_bench, zoo_dir=zoo)
    edited = tmp_path / "edited.json"
    edited.write_text(bench.read_text().replace('"n": 8', '"n": 9', 1))
    with pytest.raises(ZooError, match="was edited after robustlab wrote it"):
        add_entry(run, "f", benchmark=edited, zoo_dir=zoo)
    with pytest.raises(ZooError, match="name: expected lower-case letters"):
        add_entry(run, "Bad Name", benchmark=bench, zoo_dir=zoo)
    assert list_pretrained(zoo) == [NAME]  # nothing half-written


def test_the_add_tool_is_one_line_on_error(run, zoo, capsys):
    argv = [str(run), "--name", NAME, "--eval", str(run / "benchmark.json"),
            "--zoo-dir", str(zoo)]
    assert zoo_add.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("robustlab.zoo.add: error: ") and err.count("\n") == 1
    assert zoo_add.main([*argv[:2], "other", *argv[3:]]) == 0
    assert list_pretrained(zoo) == ["other", NAME]


def test_an_entry_s_evaluation_is_replaced_only_by_a_benchmark_of_its_very_weights(
        run, zoo, tmp_path, monkeypatch, capsys):
    """`--replace-evaluation`: a `benchmark --pretrained NAME` JSON of at least the card's n
    images takes the place of the card's evaluation (the replaced figures kept under
    `evaluation.replaced`), the weights file stays byte for byte; a benchmark of other weights,
    on fewer images, or an entry whose weights file changed is refused in one line."""
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    monkeypatch.chdir(tmp_path)
    weights = (zoo / f"{NAME}.safetensors").read_bytes()
    before = read_card(NAME, zoo)["evaluation"]
    assert main(["benchmark", "--pretrained", NAME, "--images", "8", "--device", "cpu",
                 "--no-progress", "--threads", "1", "--out", str(tmp_path / "b.json")]) == 0
    argv = ["--name", NAME, "--eval", str(tmp_path / "b.json"), "--zoo-dir", str(zoo)]
    for wrong in ([str(run), *argv, "--replace-evaluation"], argv):  # RUN xor the flag
        with pytest.raises(SystemExit):
            zoo_add.main(wrong)
    capsys.readouterr()
    assert zoo_add.main([*argv, "--replace-evaluation"]) == 0
    assert capsys.readouterr().out.startswith(f"replaced the evaluation of {NAME}: ")
    measured = json.loads((tmp_path / "b.json").read_text())
    ev = read_card(NAME, zoo)["evaluation"]
    assert ev["per_image"] == measured["per_image"] and ev["n"] == 8
    assert ev["replaced"] == {k: before[k] for k in ("clean_acc", "autoattack_acc", "n",
                                                      "commit")}
    assert ev["command"] == f"robustlab benchmark --pretrained {NAME} --images 8 --device " \
                           "cpu --no-progress --threads 1 --out b.json"  # no machine's path
    assert (zoo / f"{NAME}.safetensors").read_bytes() == weights
    assert load_pretrained(NAME, zoo_dir=zoo).card["evaluation"] == ev

    fewer = _edited(tmp_path / "b.json", tmp_path / "fewer.json", n=6)
    with pytest.raises(ZooError, match=r"n 6 is fewer test images than the card's evaluation "
                                       r"\(n = 8\)"):
        zoo_add.replace_evaluation(NAME, benchmark=fewer, zoo_dir=zoo)
    assert main(["benchmark", str(run), "--run-weights", "last", "--images", "8", "--device",
                 "cpu", "--no-progress", "--threads", "1", "--out", str(tmp_path / "l.json")]
                ) == 0
    with pytest.raises(ZooError, match=f"not the digest of entry {NAME}'s weights"):
        zoo_add.replace_evaluation(NAME, benchmark=tmp_path / "l.json", zoo_dir=zoo)
    (zoo / f"{NAME}.safetensors").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    with pytest.raises(ZooError, match="refusing to re-evaluate it"):
        zoo_add.replace_evaluation(NAME, benchmark=tmp_path / "b.json", zoo_dir=zoo)
    assert read_card(NAME, zoo)["evaluation"] == ev  # nothing written by a refusal


def test_the_wheel_ships_the_zoo_files():
    """pyproject.toml's package data holds the zoo's weights and cards (building a wheel in a
    test is too slow); the folder they go in is part of the package."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["robustlab"]
    assert {"zoo/models/*.json", "zoo/models/*.safetensors"} <= set(patterns)
    assert (ROOT / "src" / "robustlab" / "zoo" / "models").is_dir()


def test_the_card_keeps_each_images_result_and_a_benchmark_is_compared_image_by_image(
        run, zoo, tmp_path, monkeypatch, capsys):
    """The card carries the benchmark's per-image bits; `robustlab benchmark --pretrained`
    compares its own first-n bits with the card's and prints how many differ (the same
    weights, images and seeded attack: none); a card whose bits are malformed is refused in
    one line naming the field."""
    card = read_card(NAME, zoo)
    measured = json.loads((run / "benchmark.json").read_text())
    assert card["evaluation"]["per_image"] == measured["per_image"]
    bits = measured["per_image"]
    assert len(bits["clean"]) == len(bits["autoattack"]) == 8
    assert bits["clean"].count("1") == measured["clean"]["correct"]
    assert bits["autoattack"].count("1") == measured["autoattack"]["correct"]
    assert all(c == "1" for a, c in zip(bits["autoattack"], bits["clean"], strict=True)
               if a == "1")  # robust implies correct
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["benchmark", "--pretrained", NAME, "--images", "6", "--device", "cpu",
                 "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr()
    data = json.loads(Path(f"benchmark-{NAME}.json").read_text())
    assert data["published"]["per_image_differences"] == {"n": 6, "clean": 0, "autoattack": 0}
    assert "image for image against the model card's first 6: clean 0 differ, AutoAttack 0 " \
           "differ" in out.out
    path = zoo / f"{NAME}.json"
    flipped = json.loads(path.read_text())  # two of the first six robust bits flipped
    aa = flipped["evaluation"]["per_image"]["autoattack"]
    flipped["evaluation"]["per_image"]["autoattack"] = \
        "".join("1" if c == "0" else "0" for c in aa[:2]) + aa[2:]
    path.write_text(json.dumps(flipped))
    assert main(["benchmark", "--pretrained", NAME, "--images", "6", "--device", "cpu",
                 "--no-progress", "--threads", "1", "--out", "flipped.json"]) == 0
    again = json.loads(Path("flipped.json").read_text())["published"]
    assert again["per_image_differences"] == {"n": 6, "clean": 0, "autoattack": 2}
    bad = json.loads(path.read_text())
    bad["evaluation"]["per_image"]["autoattack"] = "01"
    path.write_text(json.dumps(bad))
    with pytest.raises(ZooError) as err:
        read_card(NAME, zoo)
    assert "evaluation.per_image.autoattack: expected a string of n = 8" in str(err.value)
    assert "\n" not in str(err.value)
