"""A fast, deterministic sample of bench/bad_inputs.py's corpus (issue #32's first target).

The whole corpus (~780 bad inputs, a few minutes) runs as `python bench/bad_inputs.py`; here a
fixed sample of about 40 cases across every category must each be refused with one clear line
(or accepted with the warning its case expects): never a traceback, a hang or a silent accept.
Cases still open when the sample was chosen are in KNOWN_OPEN and left out of the sample.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bad_inputs.py"

# (category, description) of the cases not refused at the time of writing; see the report of
# `python bench/bad_inputs.py` for why each is open and which file owns it.
KNOWN_OPEN: set[tuple[str, str]] = {
    ('train flags', "--epochs '1180591620717411303424'"),
    ('train flags', "--batch-size '1099511627776'"),
    ('train flags', '--eps 0.5 for standard training (unused budget)'),
    ('config files', 'YAML empty'),
    ('evaluate flags', "--norm ''"),
    ('evaluate flags', "--attacks ','"),
    ('evaluate flags', "--attack-opt 'pgd.eps=0.5'"),
    ('evaluate --model', 'fp16 output'),
    ('evaluate --model', '--attack-opt fgsm.eps=0.5 (a second budget)'),
    ('report', 'n 0 (digest recomputed)'),
    ('report', 'robust acc above clean (digest recomputed)'),
    ('checkpoints', "train --resume: checkpoint another run's checkpoint"),
    ('checkpoints', 'train --resume: checkpoint missing, metrics say epoch 1'),
    ('checkpoints', 'train --resume: missing folder is new, fine but say so'),
    ('data files', 'load_dataset mnist: test images empty (0 images)'),
    ('data files', 'load_dataset imagefolder: an empty class folder'),
    ('data files', 'load_dataset imagefolder: val classes differ from train'),
    ('data files', 'load_dataset imagefolder: only one class'),
    ('data files', "load_dataset synthetic {'split_seed': -1}"),
    ('data files', "load_dataset synthetic {'download': 'yes'}"),
    ('attack API', 'fgsm: NHWC x'),
    ('attack API', "apgd-ce: create(**{'momentum': 1.5})"),
    ('attack API', "apgd-ce: create(**{'rho': 2})"),
    ('own-model API', 'robustlab.evaluate: L2 eps 1000'),
    ('own-model API', 'robustlab.evaluate: n 100 (> 4 samples)'),
    ('own-model API', 'robustlab.evaluate: attack_options not a dict'),
    ('own-model API', "load_user_model: device 'tpu'"),
    ('robustlab.train', 'loader yielding triples'),
    ('robustlab.train', 'loader batches of different sizes per image'),
}

PER_CATEGORY = 3


def _load_corpus():
    spec = importlib.util.spec_from_file_location("bad_inputs", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bad_inputs"] = module
    spec.loader.exec_module(module)
    return module


def _needs_extras(case) -> bool:
    """Cases that need setup's second run of each kind (setup(extras=False) skips them)."""
    return "another run" in case.desc


def sample(cases) -> list:
    """Every case's index spread evenly over each category: PER_CATEGORY per category."""
    by_cat: dict[str, list] = {}
    for case in cases:
        if (case.category, case.desc) not in KNOWN_OPEN and not _needs_extras(case):
            by_cat.setdefault(case.category, []).append(case)
    chosen = []
    for group in by_cat.values():
        step = max(1, len(group) // PER_CATEGORY)
        chosen += group[step // 2::step][:PER_CATEGORY]
    return chosen


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    bad = _load_corpus()
    ctx = bad.setup(tmp_path_factory.mktemp("bad-inputs"), extras=False)
    return bad, ctx


def test_sample_covers_every_category_and_about_40_cases():
    bad = _load_corpus()
    cases = bad.build_corpus()
    assert len(cases) >= 400
    chosen = sample(cases)
    assert {c.category for c in chosen} == {c.category for c in cases}
    assert 35 <= len(chosen) <= 45


def test_sampled_bad_inputs_are_refused_in_one_line(corpus):
    bad, ctx = corpus
    failures = []
    for case in sample(bad.build_corpus()):
        outcome, tail = bad.run_case(case, ctx, timeout=30)
        if outcome not in ("refused", "warned"):
            failures.append(f"[{outcome}] {case.category}: {case.desc}\n{tail[-600:]}")
        elif outcome == "refused":
            assert "\n" not in tail.strip(), (case.desc, tail)  # one line
    assert not failures, "\n".join(failures)


def _raise_config_error(ctx, tmp):
    from robustlab.common.errors import ConfigError

    raise ConfigError("x: expected 1, got 2")


def test_the_harness_tells_refused_traceback_hang_and_silent_accept_apart(tmp_path):
    """What the corpus counts must mean what it says: a robustlab error is 'refused', any other
    exception a 'traceback', a call that returns 'accepted' (or 'warned' where a warning is
    expected and printed), a call past its timeout a 'hang', a dead child a 'traceback'."""
    import os
    import signal
    import time

    bad = _load_corpus()
    ctx = bad.Ctx(tmp_path)

    def warn(ctx, tmp):
        print("warning: odd but valid", file=sys.stderr)

    cases = {
        "refused": bad.api("t", "robustlab error", _raise_config_error),
        "traceback": bad.api("t", "other error", lambda c, t: 1 / 0),
        "accepted": bad.api("t", "returns", lambda c, t: None),
        "warned": bad.api("t", "warns", warn, expected="warn"),
        "hang": bad.api("t", "sleeps", lambda c, t: time.sleep(30)),
    }
    for expected, case in cases.items():
        assert bad.run_case(case, ctx, timeout=3)[0] == expected, expected
    died = bad.api("t", "dies", lambda c, t: os.kill(os.getpid(), signal.SIGKILL))
    assert bad.run_case(died, ctx, timeout=5)[0] == "traceback"
    assert bad.run_case(bad.cli("t", "abbrev", ["train", "--epoch", "1"]), ctx)[0] == "refused"
    assert bad.run_case(bad.cli("t", "list", ["list", "datasets"], cut=False), ctx)[0] == \
        "accepted"


@pytest.mark.parametrize("name", ["fgsm", "pgd", "apgd-ce"])
def test_a_gradient_attack_refuses_a_detached_model_in_one_line(name):
    """Found by the corpus ("model output no-grad"): the attack API raised torch's 'element 0
    of tensors does not require grad' from deep inside autograd; now an AttackError says what
    is wrong with the model (evaluate --model's probe already did)."""
    import torch
    from torch import nn

    from robustlab.attacks import AttackError, create

    class Detached(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

        def forward(self, x):
            return self.net(x).detach()

    torch.manual_seed(0)
    model, x = Detached(), torch.rand(4, 1, 8, 8)
    y = model(x).argmax(1)  # every image correctly classified: there is something to attack
    with pytest.raises(AttackError, match="not differentiable with respect to x"):
        create(name, eps=0.1, **({} if name == "fgsm" else {"steps": 2}))(model, x, y)
