"""Registry-parametrised property tests: every registered attack, on a tiny model."""

from __future__ import annotations

import pytest
import torch
from attack_configs import build, fast_options, some_eps, supported_norms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from robustlab.attacks import AttackError, create_attack, list_attacks
from robustlab.attacks.norms import lp_norm

ALL = list_attacks()
SETTINGS = settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _snapshot(model):
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    return state, grads, modes, flags


def _accuracy(model, x, y) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    model.train(was)
    return acc


def test_every_registered_attack_builds_with_its_quick_options():
    """Each attack's `quick_options` are valid options of its own (the property tests below
    build every attack with them), and the built-in attacks are all registered."""
    for name in ALL:
        norm = supported_norms(name)[0]
        build(name, eps=some_eps(norm), norm=norm)
    for name in (
        "fgsm",
        "fgsm-rs",
        "pgd",
        "mifgsm",
        "cw-l2",
        "cw-linf",
        "apgd-ce",
        "apgd-dlr",
        "apgd-t",
        "autoattack",
    ):
        assert name in ALL


@pytest.mark.parametrize("name", ALL)
@SETTINGS
@given(
    eps=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**31 - 1),
    use_l2=st.booleans(),
    per_sample=st.booleans(),
)
def test_attack_properties(name, tiny_model, tiny_batch, eps, seed, use_l2, per_sample):
    x, y = tiny_batch
    norms = supported_norms(name)
    norm = "l2" if (use_l2 and "l2" in norms) or "linf" not in norms else "linf"
    norm = norm if norm in norms else norms[0]  # an attack of other norms only (l0)
    if norm == "l2":
        eps *= 4  # L2 balls need larger radii to matter on 64-pixel inputs
    if norm == "l0":
        eps = float(round(eps * 20))  # 0-10 pixels of the 64
    model = tiny_model
    # give every parameter a .grad, which the attack must not touch
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = _snapshot(model)
    eps_arg = torch.linspace(0, eps, x.shape[0]) if per_sample else eps
    if per_sample and norm == "l0":
        eps_arg = eps_arg.round()
    attack = build(name, eps=eps_arg, norm=norm, seed=seed)
    x_in = x.clone()
    x_adv = attack(model, x, y)
    assert torch.equal(x, x_in), "the attack modified its input tensor"

    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype and x_adv.device == x.device
    assert bool(torch.isfinite(x_adv).all())
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    if attack.bounded:
        radius = eps_arg if per_sample else torch.full((x.shape[0],), eps)
        dist = lp_norm(x_adv - x, norm)
        assert bool((dist <= radius + 1e-6).all()), (dist - radius).max()

    after = _snapshot(model)
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), f"state {k} changed"
    for k in before[1]:
        assert torch.equal(before[1][k], after[1][k]), f".grad of {k} changed"
    assert before[2] == after[2], "module train/eval modes were not restored"
    assert before[3] == after[3], "requires_grad flags changed"

    assert _accuracy(model, x_adv, y) <= _accuracy(model, x, y) + 1e-9

    again = build(name, eps=eps_arg, norm=norm, seed=seed)(model, x, y)
    assert torch.equal(x_adv, again), "same seed gave a different output"


@pytest.mark.parametrize("name", [n for n in ALL if n not in ("cw-l2", "patch-universal",
                                                              "fmn", "ddn")])  # unbounded
def test_eps_zero_returns_the_input(name, tiny_model, tiny_batch):
    x, y = tiny_batch
    for norm in supported_norms(name):
        x_adv = build(name, eps=0.0, norm=norm)(tiny_model, x, y)
        assert torch.equal(x_adv, x), (name, norm)


def test_cw_l2_reports_norms(tiny_model, tiny_batch):
    x, y = tiny_batch
    attack = build("cw-l2", eps=None, norm="l2")
    x_adv, norms = attack.attack_with_norms(tiny_model, x, y)
    assert norms.shape == (x.shape[0],)
    found = torch.isfinite(norms)
    assert bool(found.any())
    assert torch.allclose(norms[found], lp_norm(x_adv - x, "l2")[found], atol=1e-5)
    tiny_model.eval()
    with torch.no_grad():
        pred = tiny_model(x_adv).argmax(1)
    assert bool((pred[found] != y[found]).all())


# ------------------------------------------------------------------ clear errors before compute
class _Counting(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "pgd", "eps": -0.1}, "eps"),
        ({"name": "pgd", "eps": float("nan")}, "eps"),
        ({"name": "pgd", "eps": 0.1, "steps": 0}, "steps"),
        ({"name": "pgd", "eps": 0.1, "norm": "l3"}, "norm"),
        ({"name": "apgd-ce", "eps": 0.1, "steps": 0}, "steps"),
        ({"name": "mifgsm", "eps": 0.1, "steps": -1}, "steps"),
        ({"name": "cw-l2", "steps": 0}, "steps"),
        ({"name": "pgd", "eps": torch.tensor([0.1, -0.2])}, "eps"),
        ({"name": "pgd"}, "eps"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, match):
    kwargs = dict(kwargs)
    with pytest.raises(ValueError, match=match):
        create_attack(kwargs.pop("name"), **kwargs)


def test_bad_inputs_raise_before_compute(tiny_model, tiny_batch):
    x, y = tiny_batch
    model = _Counting(tiny_model)
    attack = create_attack("pgd", eps=0.1, steps=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        attack(model, x * 2, y)
    with pytest.raises(ValueError, match="non-finite"):
        attack(model, x.clone().index_fill_(0, torch.tensor([0]), float("nan")), y)
    with pytest.raises(ValueError, match="labels"):
        attack(model, x, y[:-1])
    with pytest.raises(ValueError, match="int64"):
        attack(model, x, y.float())
    assert model.calls == 0
    with pytest.raises(ValueError, match="number of classes"):
        attack(model, x, y + 10)
    with pytest.raises(ValueError, match="eps"):
        create_attack("pgd", eps=torch.full((3,), 0.1))(model, x, y)


@pytest.mark.parametrize("name", ["apgd-dlr", "apgd-t", "autoattack"])
def test_dlr_attacks_need_three_classes(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2))
    x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1])
    attack = build(name, eps=0.1, norm="linf")
    with pytest.raises(ValueError, match="at least 3 classes"):
        attack(model, x, y)


def test_targeted_pgd_reaches_targets(tiny_model, tiny_batch):
    x, y = tiny_batch
    target = (y + 1) % 5
    x_adv = create_attack("pgd", eps=0.5, steps=20)(tiny_model, x, y, target=target)
    tiny_model.eval()
    with torch.no_grad():
        hit = (tiny_model(x_adv).argmax(1) == target).float().mean().item()
    assert hit >= 0.5
    with pytest.raises(ValueError, match="target"):
        create_attack("pgd", eps=0.1)(tiny_model, x, y, target=y)


def test_pgd_evaluates_clean_inputs_only_for_samples_it_did_not_break(mnist_lenet):
    """PGD offers the clean input last: one forward pass over the samples no iterate broke
    (not over the whole batch), and a sample misclassified already comes back misclassified."""
    model, x, y = mnist_lenet
    x, y = x[:64], y[:64].clone()
    y[:4] = (y[:4] + 1) % 10  # four samples misclassified before any attack
    rows: list[int] = []

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, t):
            if not torch.is_grad_enabled():
                rows.append(t.shape[0])
            return self.inner(t)

    counting = Counting().eval()
    x_adv = create_attack("pgd", eps=0.15, steps=5)(counting, x, y)
    with torch.no_grad():
        wrong = model(x_adv).argmax(1) != y
        clean_wrong = model(x).argmax(1) != y
    assert wrong[:4].all() and (wrong | ~clean_wrong).all()
    unbroken = int((~wrong).sum())
    # no-grad passes: the class-count probe (1 row), the last iterate of the samples still
    # active, the clean inputs of the unbroken -- never a clean pass over the whole batch
    assert 0 < unbroken < 64 and rows[-1] == unbroken and max(rows) < 64


def test_standard_autoattack_uses_the_paper_counts():
    aa = create_attack("autoattack", eps=0.3)
    d = aa.describe()["components"]
    names = [n for n, _ in aa.components]
    assert names == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert d[0]["steps"] == 100 and d[0]["restarts"] == 1
    assert d[1]["steps"] == 100 and d[1]["n_target_classes"] == 9
    assert d[1]["momentum"] == 0.75
    assert d[3]["n_queries"] == 5000


@pytest.mark.parametrize("name", ["pgd", "apgd-ce", "fab-t"])
def test_batch_buckets_change_no_result(name, mnist_lenet, monkeypatch):
    """CUDA pads shrinking attack batches to powers of two (cuDNN autotunes once per shape);
    forced on here on the CPU, the padded passes give the same adversarial examples."""
    from robustlab.attacks.base import Attack, AttackModel

    model, x, y = mnist_lenet
    x, y = x[:100], y[:100]  # 100 -> padded to 128, then smaller buckets as samples freeze
    kwargs = {"eps": 0.1, "seed": 0, **fast_options(name)}
    plain = create_attack(name, **kwargs)(model, x, y)
    sizes = []
    real_gradient = AttackModel.gradient

    def recording_gradient(self, xb, *args, **kw):
        sizes.append(self._bucket(xb.shape[0]))
        return real_gradient(self, xb, *args, **kw)

    real_attack_model = Attack.attack_model

    def bucketed(self, m, xb):
        amodel = real_attack_model(self, m, xb)
        amodel.bucket_batches = True
        return amodel

    monkeypatch.setattr(Attack, "attack_model", bucketed)
    monkeypatch.setattr(AttackModel, "gradient", recording_gradient)
    padded = create_attack(name, **kwargs)(model, x, y)
    assert sizes and all(s & (s - 1) == 0 for s in sizes)  # every pass ran at a power of two
    with torch.no_grad():
        assert (model(padded).argmax(1) == model(plain).argmax(1)).float().mean() >= 0.99
    assert (padded - plain).abs().max() <= 1e-4 or name == "fab-t"


def test_channels_last_weights_are_restored_exactly(mnist_lenet):
    """memory_format="channels_last" stores conv weights channels-last during the attack only:
    afterwards every parameter has its original storage; results match the contiguous run."""
    model, x, y = mnist_lenet
    before = {n: (p.data_ptr(), p.stride(), p.clone()) for n, p in model.named_parameters()}
    x, y = x[:64], y[:64]
    cl = create_attack("pgd", eps=0.1, steps=5, seed=0, memory_format="channels_last")(model, x, y)
    plain = create_attack("pgd", eps=0.1, steps=5, seed=0, memory_format="contiguous")(model, x, y)
    for n, p in model.named_parameters():
        ptr, stride, value = before[n]
        assert p.data_ptr() == ptr and p.stride() == stride and torch.equal(p, value), n
    assert cl.is_contiguous()
    with torch.no_grad():
        assert (model(cl).argmax(1) == model(plain).argmax(1)).float().mean() >= 0.98


def test_attacks_pickle_and_probe_each_model_once(tiny_model, tiny_batch):
    """The logits-width probe runs once per model (cached weakly), the cache never leaks a
    wrong width to another model, and attacks stay picklable (for worker processes)."""
    import pickle

    x, y = tiny_batch
    attack = create_attack("fgsm", eps=0.1)
    calls = []
    hook = tiny_model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    attack(tiny_model, x, y)
    attack(tiny_model, x, y)
    hook.remove()
    assert calls.count(1) == 1  # one 1-sample probe over two calls
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(AttackError, match="labels must be < the number of classes 3"):
        attack(other, x, y.clamp(max=4) * 0 + 4)
    clone = pickle.loads(pickle.dumps(attack))
    assert torch.equal(clone(tiny_model.eval(), x, y), attack(tiny_model, x, y))
