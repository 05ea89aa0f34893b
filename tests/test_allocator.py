"""`tune_malloc` (accel/allocator.py): the CPU paths' buffers come from the heap instead of
fresh pages at every step -- far fewer page faults, the same numbers, and a switch to turn it
off. Each case runs in its own interpreter (the setting is process-wide and set once)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from robustlab.accel import allocator

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's mallopt: Linux only")

PROBE = textwrap.dedent("""
    import json, resource, torch
    from robustlab.attacks import create_attack
    from robustlab.models import create_model
    from robustlab.training.methods import perturb
    from robustlab.accel import tune_process
    from robustlab.accel.allocator import tune_malloc
    untouched = tune_malloc.cache_info().currsize == 0  # importing robustlab set nothing
    tune_process()  # what the robustlab command does at its start
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model("lenet5", num_classes=10, in_channels=1, mean=(0.13,), std=(0.31,),
                         image_size=(28, 28))
    x, y = torch.rand(128, 1, 28, 28), torch.randint(0, 10, (128,))
    x_adv = create_attack("pgd", eps=0.3, steps=3, seed=0)(model, x, y)
    for _ in range(3):
        perturb.input_grad(model, x, y)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        grad = perturb.input_grad(model, x, y)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(json.dumps({"tuned": tune_malloc(), "faults": faults, "untouched": untouched,
                      "grad": float(grad.double().abs().sum()),
                      "x_adv": float(x_adv.double().sum())}))
""")


def _probe(tuning: str) -> dict:
    env = {"ROBUSTLAB_MALLOC_TUNING": tuning, "OMP_NUM_THREADS": "1", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.integration  # fresh interpreters
def test_tuning_removes_the_page_faults_of_every_input_gradient_pass_and_keeps_numbers():
    tuned, plain = _probe("1"), _probe("0")
    assert tuned["tuned"] is True and plain["tuned"] is False
    assert tuned["untouched"] and plain["untouched"]
    # measured (bench/malloc_faults.py): 22 faults for 20 LeNet-5 passes tuned, 62,751 untuned
    assert plain["faults"] > 20 * tuned["faults"] + 1000, (tuned, plain)
    assert tuned["grad"] == plain["grad"] and tuned["x_adv"] == plain["x_adv"]


def test_the_switch_and_the_cache(monkeypatch):
    allocator.tune_malloc.cache_clear()
    monkeypatch.setenv(allocator.ENV_SWITCH, "0")
    try:
        assert allocator.tune_malloc() is False
        monkeypatch.setenv(allocator.ENV_SWITCH, "1")
        assert allocator.tune_malloc() is False  # once per process: the first answer stays
    finally:
        allocator.tune_malloc.cache_clear()
    assert allocator.tune_malloc() is True  # glibc (CI and this machine)


LIBRARY_CALLS = textwrap.dedent("""
    import json, torch
    import robustlab
    from robustlab.accel.allocator import tune_malloc
    from robustlab.attacks import create_attack
    from robustlab.models import create_model
    model = create_model("lenet5", num_classes=10, in_channels=1, mean=(0.13,), std=(0.31,),
                         image_size=(28, 28))
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    create_attack("pgd", eps=0.3, steps=2, seed=0)(model, x, y)
    robustlab.evaluate(model, x, y, eps=0.3, attacks=["fgsm"], progress=False)
    print(json.dumps({"calls": tune_malloc.cache_info().currsize}))
""")


@pytest.mark.integration  # a fresh interpreter
def test_a_library_call_changes_no_process_wide_setting():
    """An attack or `robustlab.evaluate` leaves the host process's malloc alone; only the
    robustlab command (and `robustlab.accel.tune_process()`) sets it."""
    env = {"OMP_NUM_THREADS": "1", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", LIBRARY_CALLS], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"calls": 0}
