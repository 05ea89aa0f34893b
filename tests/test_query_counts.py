"""Per-image query counts of the query-counting attacks (square, sparse-rs, spsa,
hop-skip-jump) in the eval result: `per_sample.queries.<attack>` and the summary
`attacks.<attack>.queries` (evaluation/attack_runner.py, evaluate.py, schema.py)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustlab.evaluation.evaluate import evaluate_model
from robustlab.evaluation.schema import EvalFileError, check_eval_dict
from robustlab.evaluation.settings import EvalSettings


def _linear(seed: int = 0, n: int = 24, d: int = 36) -> tuple[nn.Module, torch.Tensor,
                                                             torch.Tensor]:
    """A fixed linear classifier on 1x6x6 images and labels it mostly gets right."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(3, d, generator=g))
        model[1].bias.zero_()
    x = torch.rand(n, 1, 6, 6, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 3  # two images misclassified clean
    return model.eval(), x, y


def _evaluated(attack: str, options: dict, *, norm: str = "linf", eps: float = 0.05,
               batch_size: int = 256, resume=None) -> dict:
    model, x, y = _linear()
    plain = {"pgd": {"steps": 5}} if norm != "l0" else {}  # l0: pgd does not attack there
    settings = EvalSettings(eps=eps, norm=norm, attacks=[attack, *plain], curve_attack=None,
                            curve_factors=(), audit=False, batch_size=batch_size,
                            attack_options={attack: options, **plain})
    return json.loads(json.dumps(evaluate_model(model, x, y, settings, resume=resume),
                                 allow_nan=False))


@pytest.mark.parametrize(("attack", "options", "norm", "eps"), [
    ("square", {"n_queries": 40}, "linf", 0.05),
    ("spsa", {"steps": 3, "samples": 4}, "linf", 0.05),
    ("hop-skip-jump", {"max_queries": 60, "steps": 3, "init_evals": 4}, "l2", 0.5),
    ("sparse-rs", {"n_queries": 30}, "l0", 2),
])
def test_the_eval_file_keeps_each_images_queries(attack, options, norm, eps):
    """Every query-counting attack writes one count per image (an integer >= 1 for each
    attacked image, at most its budget plus the clean check), the summary's median is the
    median of those counts over the clean-correct images, and PGD writes none."""
    data = _evaluated(attack, options, norm=norm, eps=eps)
    check_eval_dict(data, "eval.json")
    counts = data["per_sample"]["queries"][attack]
    assert list(data["per_sample"]["queries"]) == [attack]  # pgd counts no queries
    assert len(counts) == data["n"] and all(isinstance(q, int) and q >= 0 for q in counts)
    clean = [c == "1" for c in data["per_sample"]["correct"]["clean"]]
    assert all(q >= 1 for q, ok in zip(counts, clean, strict=True) if ok)
    budget = options.get("n_queries") or options.get("max_queries")
    if budget is not None:
        assert max(counts) <= budget + 1
    attacked = torch.tensor([q for q, ok in zip(counts, clean, strict=True) if ok]).double()
    s = attacked.sort().values
    k = len(s)
    assert data["attacks"][attack]["queries"]["median"] == pytest.approx(
        float((s[(k - 1) // 2] + s[k // 2]) / 2))
    assert data["attacks"][attack]["queries"]["mean"] == pytest.approx(attacked.mean().item())
    assert "queries" not in data["attacks"].get("pgd", {})


def test_counts_are_per_batch_not_stale_and_survive_a_resume(tmp_path, monkeypatch):
    """With several batches every image gets its own batch's count, and a resumed evaluation
    that takes every batch from the partial file writes the same counts."""
    from robustlab.attacks.square import Square
    from robustlab.evaluation.partial import partial_path

    out = tmp_path / "eval.json"
    first = _evaluated("square", {"n_queries": 40}, batch_size=8, resume=out)
    counts = first["per_sample"]["queries"]["square"]
    assert len(counts) == first["n"] and partial_path(out).is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("the rerun attacked instead of reading the partial file")

    monkeypatch.setattr(Square, "perturb", refuse)
    again = _evaluated("square", {"n_queries": 40}, batch_size=8, resume=out)
    assert again["per_sample"]["queries"] == first["per_sample"]["queries"]


def test_a_stale_count_from_an_earlier_call_is_never_written():
    """An attack object that counted queries on an earlier call but sets no count on this one
    writes no `queries` field rather than the earlier call's counts."""
    from robustlab.evaluation.attack_runner import run_attack

    model, x, y = _linear()

    class Counting:
        last_queries = None
        norm = "linf"

        def __call__(self, model, x, y):
            return x.clone()

    attack = Counting()
    attack.last_queries = torch.full((len(x),), 7)  # an earlier call's counts
    out = run_attack(attack, model, x, y, torch.ones(len(x), dtype=torch.bool), eps=0.1,
                     norm="linf", batch_size=64)
    assert out.queries is None


@pytest.mark.parametrize(("edit", "field"), [
    (lambda q: q.__setitem__(3, -1), "per_sample.queries.square[3]"),
    (lambda q: q.__setitem__(3, 2.5), "per_sample.queries.square[3]"),
    (lambda q: q.pop(), "per_sample.queries.square"),
])
def test_a_bad_query_count_in_an_eval_file_is_one_line(edit, field):
    """Bad counts are refused with one line naming the field; a file without the field
    (every file before it) still reads."""
    data = _evaluated("square", {"n_queries": 20})
    old = json.loads(json.dumps(data))
    del old["per_sample"]["queries"]
    check_eval_dict(old, "old.json")
    edit(data["per_sample"]["queries"]["square"])
    with pytest.raises(EvalFileError) as err:
        check_eval_dict(data, "eval.json")
    assert str(err.value).startswith(f"eval.json: {field}") and "\n" not in str(err.value)
