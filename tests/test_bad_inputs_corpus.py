"""A fast, deterministic sample of bench/bad_inputs.py's corpus (issue #32's first target).

The whole corpus (~780 bad inputs, a few minutes) runs as `python bench/bad_inputs.py`; here a
fixed sample of about 40 cases across every category must each be refused with one clear line
(or accepted with the warning its case expects): never a traceback, a hang or a silent accept.
Cases known to be open (the bench's KNOWN_OPEN, empty now) are left out of the sample.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bad_inputs.py"

PER_CATEGORY = 3


def _load_corpus():
    spec = importlib.util.spec_from_file_location("bad_inputs", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bad_inputs"] = module
    spec.loader.exec_module(module)
    return module


def test_sample_covers_every_category_and_about_40_cases():
    bad = _load_corpus()
    cases = bad.build_corpus()
    assert len(cases) >= 400
    chosen = bad.sample(cases, PER_CATEGORY)
    assert {c.category for c in chosen} == {c.category for c in cases}
    assert 35 <= len(chosen) <= 45


@pytest.mark.integration  # a one-thread subprocess
def test_sampled_bad_inputs_are_refused_in_one_line(tmp_path):
    """The sample runs in a fresh process with one OpenMP thread, as the bench does: the
    corpus forks a child per case, and a child forked from a process whose OpenMP pool has
    run (this test process, after other tests) can hang in its first parallel region."""
    out = tmp_path / "outcomes.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(BENCH), "--sample", str(PER_CATEGORY),
                           "--timeout", "60", "--json", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    results = json.loads(out.read_text())
    assert len(results) >= 35, done.stderr[-2000:]
    failures = [f"[{r['outcome']}] {r['category']}: {r['desc']}\n{r['tail'][-600:]}"
                for r in results if r["outcome"] not in ("refused", "warned")]
    assert not failures, "\n".join(failures)
    for r in results:
        if r["outcome"] == "refused":
            assert "\n" not in r["tail"].strip(), (r["desc"], r["tail"])  # one line
    assert done.returncode == 0, done.stdout[-2000:]


def _raise_config_error(ctx, tmp):
    from robustlab.common.errors import ConfigError

    raise ConfigError("x: expected 1, got 2")


@pytest.mark.integration  # forked children
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
