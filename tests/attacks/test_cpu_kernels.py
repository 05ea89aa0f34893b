"""CPUKernels: the faster conv / max-pool kernels attacks use on the CPU equal PyTorch's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from robustlab.accel import cpu_kernels
from robustlab.accel.cpu_kernels import CPUKernels
from robustlab.attacks import create_attack, input_gradient
from robustlab.attacks.losses import ce_loss

DEFAULTS = {"POOL_MIN_NUMEL": cpu_kernels.POOL_MIN_NUMEL,
            "CONV_MIN_NUMEL": cpu_kernels.CONV_MIN_NUMEL}


@pytest.fixture(autouse=True)
def _small_shapes_allowed():
    """The size thresholds off, so small test tensors take the fast paths; restored after."""
    for name in DEFAULTS:
        setattr(cpu_kernels, name, 0)
    yield
    for name, value in DEFAULTS.items():
        setattr(cpu_kernels, name, value)


def _grad(fn, x: torch.Tensor, upstream_seed: int, fast: bool) -> tuple[torch.Tensor, ...]:
    xr = x.detach().requires_grad_(True)
    with CPUKernels.when(fast):
        out = fn(xr)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(upstream_seed),
                           dtype=out.dtype)
    (g,) = torch.autograd.grad(out, xr, upstream)
    return out.detach(), g, out.grad_fn


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 12), h=st.integers(3, 11), w=st.integers(3, 11),
       kh=st.integers(1, 5), kw=st.integers(1, 5), data=st.data(), bias=st.booleans())
def test_one_channel_conv_gradient_equals_pytorch(n, c, h, w, kh, kw, data, bias):
    ph = data.draw(st.integers(0, kh - 1))
    pw = data.draw(st.integers(0, kw - 1))
    if h + 2 * ph < kh or w + 2 * pw < kw:
        return
    torch.manual_seed(n * 1000 + c)
    weight = torch.randn(c, 1, kh, kw, dtype=torch.float64)
    b = torch.randn(c, dtype=torch.float64) if bias else None
    x = torch.rand(n, 1, h, w, dtype=torch.float64)

    def conv(t):
        return F.conv2d(t, weight, b, padding=(ph, pw))

    out, g, _ = _grad(conv, x, 0, fast=False)
    out_f, g_f, fn = _grad(conv, x, 0, fast=True)
    assert "OneChannelConv" in type(fn).__name__  # matrix-product form if c >= taps / 2
    assert torch.equal(out, out_f)
    torch.testing.assert_close(g_f, g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("channels", "kernel", "padding"), [(6, 5, 2), (32, 5, 2), (64, 3, 1),
                                                          (16, 3, 0), (49, 7, 3)])
def test_both_forms_of_the_one_channel_conv_gradient_equal_pytorch(channels, kernel, padding,
                                                                   monkeypatch):
    """LeNet-5's 6 channels at 5x5 take the depthwise form, the others the matrix-product form
    (channels >= taps / 2); both give PyTorch's gradient."""
    taps_calls = []
    taps_gradient = cpu_kernels._taps_gradient
    monkeypatch.setattr(cpu_kernels, "_taps_gradient",
                        lambda *a: taps_calls.append(1) or taps_gradient(*a))
    torch.manual_seed(channels)
    weight = torch.randn(channels, 1, kernel, kernel, dtype=torch.float64)
    x = torch.rand(4, 1, 13, 11, dtype=torch.float64)

    def conv(t):
        return F.conv2d(t, weight, padding=padding)

    out, g, _ = _grad(conv, x, 1, fast=False)
    out_f, g_f, fn = _grad(conv, x, 1, fast=True)
    assert "OneChannelConv" in type(fn).__name__
    assert bool(taps_calls) == (channels >= kernel * kernel / 2)
    assert torch.equal(out, out_f)
    torch.testing.assert_close(g_f, g, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 4), h=st.integers(2, 9), w=st.integers(2, 9),
       ties=st.booleans(), seed=st.integers(0, 2**16))
def test_max_pool_2x2_equals_pytorch_bit_for_bit_including_ties(n, c, h, w, ties, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=gen)
    if ties:  # small integers (and ReLU zeros): many windows with a tied maximum
        x = torch.relu(torch.randint(-2, 3, (n, c, h, w), generator=gen).float())
    pool = nn.MaxPool2d(2)
    out, g, _ = _grad(pool, x, seed, fast=False)
    out_f, g_f, fn = _grad(pool, x, seed, fast=True)
    assert "MaxPool2x2" in type(fn).__name__
    assert torch.equal(out, out_f)
    assert torch.equal(g, g_f)
    with torch.no_grad(), CPUKernels():
        assert torch.equal(pool(x), out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_pool_2x2_with_nan_inputs_falls_back_to_aten(dtype):
    """The compiled loop leaves NaN handling to ATen (its rule needs a branch per cell)."""
    x = torch.randn(2, 3, 6, 7, dtype=dtype)
    x[0, 1, 2, 3] = x[1, 2, 0, 0] = x[1, 2, 0, 1] = float("nan")
    pool = nn.MaxPool2d(2)
    out, g, _ = _grad(pool, x, 3, fast=False)
    out_f, g_f, fn = _grad(pool, x, 3, fast=True)
    assert "MaxPool2x2" in type(fn).__name__
    assert torch.equal(out.isnan(), out_f.isnan()) and out.isnan().sum() == 2
    torch.testing.assert_close(out_f, out, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(g, g_f)
    with torch.no_grad(), CPUKernels():
        torch.testing.assert_close(pool(x), out, rtol=0, atol=0, equal_nan=True)


def _ops_in_backward(out: torch.Tensor, x: torch.Tensor, upstream: torch.Tensor):
    from torch.profiler import profile

    with profile() as prof:
        (g,) = torch.autograd.grad(out, x, upstream)
    return g, {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize("case", ["pool", "pool+other use", "changed after relu", "relu twice"])
def test_relu_before_pool_skips_its_mask_only_when_the_pool_applied_it(inplace, case):
    """conv -> ReLU -> 2x2 pool: the pool applies the ReLU's mask and the ReLU's backward
    passes the gradient on, bit-identical to PyTorch. A second use of the ReLU's output, or a
    change to it before the pool, keeps the ReLU's own backward (and the same gradient)."""
    torch.manual_seed(1)
    weight = torch.randn(5, 2, 3, 3)  # 2 input channels: PyTorch's conv, exact comparison
    x = torch.rand(3, 2, 10, 12)

    def net(t):
        r = F.relu(F.conv2d(t, weight, padding=1), inplace=inplace)
        if case == "changed after relu":  # (in place, PyTorch's own backward would refuse)
            r = r * 2.0
        if case == "relu twice":
            r = F.relu(r)
        out = F.max_pool2d(r, 2)
        return out * 1.5 + r[:, :, ::2, ::2] if case == "pool+other use" else out

    upstream = torch.randn(3, 5, 5, 6)
    xr = x.clone().requires_grad_(True)
    ref, _ = _ops_in_backward(net(xr), xr, upstream)
    xf = x.clone().requires_grad_(True)
    with CPUKernels():
        out = net(xf)
    g, ops = _ops_in_backward(out, xf, upstream)
    assert torch.equal(g, ref)
    skipped = "aten::threshold_backward" not in ops
    assert skipped == (case == "pool"), ops  # "relu twice": the first ReLU keeps its mask


def test_calls_that_do_not_match_run_pytorch_unchanged():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 9, 9, requires_grad=True)
    x3 = torch.rand(2, 3, 9, 9, requires_grad=True)
    frozen = torch.randn(4, 1, 3, 3)
    rgb_weight = torch.randn(4, 3, 3, 3)
    cases = [
        lambda: F.conv2d(x, frozen, stride=2),
        lambda: F.conv2d(x, frozen, dilation=2),
        lambda: F.conv2d(x, frozen, padding="same"),
        lambda: F.conv2d(x3, rgb_weight),
        lambda: F.max_pool2d(x3, 3),
        lambda: F.max_pool2d(x3, 2, stride=1),
        lambda: F.max_pool2d(x3, 2, ceil_mode=True),
        lambda: F.max_pool2d(x3, 2, padding=1),
        lambda: F.max_pool2d(x3.contiguous(memory_format=torch.channels_last), 2),
    ]
    # too small for the real size thresholds (checked last, with them restored)
    small = [lambda: F.max_pool2d(x3, 2), lambda: F.conv2d(x, frozen)]
    for i, make in enumerate(cases + small):
        if i == len(cases):
            for name, value in DEFAULTS.items():
                setattr(cpu_kernels, name, value)
        ref = make()
        with CPUKernels():
            out = make()
        assert type(out.grad_fn) is type(ref.grad_fn), make
        assert torch.equal(out, ref)
    with CPUKernels():
        values, idx = F.max_pool2d(x3, 2, return_indices=True)
    assert torch.equal(idx, F.max_pool2d(x3, 2, return_indices=True)[1])


def _lenet_like() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 10),
    ).eval()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_training_pass_under_the_kernels_gives_the_same_parameter_and_input_gradients(dtype):
    """The FGSM hybrid's shared clean pass (parameters trainable, input gradient wanted): the
    convolution rule takes the weight and bias gradients from ATen, so they equal PyTorch's;
    the input gradient equals it to the summation order."""
    x, y = torch.rand(16, 1, 12, 12, dtype=dtype), torch.randint(0, 10, (16,))
    grads = []
    for fast in (False, True):
        model = _lenet_like().train().to(dtype)
        xr = x.clone().requires_grad_(True)
        with CPUKernels.when(fast):
            out = model(xr)
        F.cross_entropy(out, y).backward()
        grads.append((out.detach(), xr.grad, [p.grad for p in model.parameters()]))
        if fast:  # the fast rules took the pass
            assert any("OneChannelConv" in type(node).__name__
                       for node, _ in _graph_nodes(out.grad_fn))
    (out, gx, gp), (out_f, gx_f, gp_f) = grads
    assert torch.equal(out, out_f)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(gx_f, gx, rtol=tol, atol=tol)
    for a, b in zip(gp_f, gp, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def _graph_nodes(fn, seen=None):
    """Every (node, index) reachable from autograd node `fn`."""
    seen = set() if seen is None else seen
    out = []
    for nxt in (fn.next_functions if fn is not None else ()):
        if nxt[0] is not None and nxt[0] not in seen:
            seen.add(nxt[0])
            out += [nxt, *_graph_nodes(nxt[0], seen)]
    return out


def test_input_gradient_with_cpu_kernels_matches_and_leaves_parameters_alone():
    model = _lenet_like()
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = torch.rand(16, 1, 12, 12, dtype=torch.float64), torch.randint(0, 10, (16,))
    model = model.double()
    ref = input_gradient(model, x, y, ce_loss)
    fast = input_gradient(model, x, y, ce_loss, cpu_kernels=True)
    assert torch.equal(fast.logits, ref.logits) and torch.equal(fast.loss, ref.loss)
    torch.testing.assert_close(fast.grad, ref.grad, rtol=1e-12, atol=1e-14)
    assert all(p.grad is None for p in model.parameters())


def test_pgd_uses_the_kernels_on_cpu_and_finds_the_same_adversarials():
    model = _lenet_like().double()
    x, y = torch.rand(32, 1, 12, 12, dtype=torch.float64), torch.randint(0, 10, (32,))
    attack = create_attack("pgd", eps=0.2, steps=5)
    assert attack.attack_model(model, x).cpu_kernels
    fast = attack(model, x, y)
    from robustlab.attacks import base

    plain = base.AttackModel
    try:  # the same attack with the kernels switched off
        base.AttackModel = lambda *a, **k: plain(*a, **{**k, "cpu_kernels": False})
        slow = attack(model, x, y)
    finally:
        base.AttackModel = plain
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
