"""The `Attack` base class: the contract every attack follows.

The model as an attack sees it (`AttackModel`) and the one input-gradient routine are in
`attack_model.py`; how a call runs fast (layouts, frozen parameters, the class-count cache) in
`execution.py` beside `cpu_kernels.py`.

How to write an attack
----------------------
1. Subclass `Attack`, register it, declare its options, and implement `perturb`::

       from robustlab.registry import ATTACKS
       from robustlab.attacks.base import Attack, AttackModel
       from robustlab.common.options import Option

       @ATTACKS.register("my-attack")
       class MyAttack(Attack):
           OPTIONS = {"steps": Option(10, "int", "iterations", low=1)}

           def perturb(self, model, x, y, eps, target, generator):
               ...  # return x_adv, same shape as x, in [0, 1] and in the eps-ball

   `OPTIONS` (`robustlab.common.options.Option`: default, kind, bounds, one doc line) extends
   the options of the bases (`Attack.OPTIONS`: norm, seed, adaptive, eot_iter,
   memory_format, cpu_kernels); a subclass redeclares one to change its default. Construction
   checks every option once, before any compute (`AttackError` naming `my-attack.steps`, the
   value and what is accepted; an unknown option is named with the known ones), and sets each
   as an attribute (`self.steps`). `MyAttack(eps=..., steps=5)`, `create_attack("my-attack",
   ...)`, `help(MyAttack)` and docs/attack-options.md all read the declaration. An `__init__`
   of its own (keyword arguments only, passed on to `super().__init__`) only makes checks
   that tie options together (a step against eps) and derived state.

2. `Attack.__call__(model, x, y, target=None)` does everything generic, then calls `perturb`:
   validates inputs (`check_images`: finite float tensor in [0, 1]; `check_labels`: integer
   `[N]` labels in range; `target`), casts `x` to the model's dtype (`compute_dtype`: float64 /
   float16 / bfloat16 inputs work, the result comes back in x's dtype), checks the model
   returns logits `[N, K]` and their width against `min_classes` (one forward pass on one
   sample, cached per model), checks the attack's first forward pass for nan/inf logits
   (error) and softmax outputs (warning) without an extra pass, puts the
   model in eval mode and sets `requires_grad=False` on its parameters (restoring every
   submodule's mode and every flag afterwards), builds a fresh seeded
   `torch.Generator` (same seed -> same output), builds the per-sample eps tensor `[N]`, and
   finally projects the result onto the eps-ball ∩ [0, 1] (a no-op for a correct attack; it
   also returns `x` bit-exactly when eps = 0) and restores the caller's memory layout.

3. Inside `perturb`, talk to the model ONLY through the `AttackModel` it receives:
   - `model.logits(x)` -- a plain forward pass without autograd (`[N, K]`);
   - `model.gradient(x, y, loss_fn, target)` -> `Gradient(loss [N], logits [N, K], grad)`,
     the gradient of the per-sample `loss_fn` w.r.t. the INPUT only. This is where BPDA
     (models with `nondifferentiable = True`, via their `bpda_forward`) and EOT (models with
     `randomized = True`, averaged over `eot_iter` passes) are applied, so every gradient
     attack is adaptive for free. Parameters and their `.grad` are never touched.
   Losses (`robustlab.attacks.losses`) all have the signature
   `loss(logits, y, target) -> [N]` and are MAXIMISED (targeted ones use `target`).
   Use `generator` for all randomness (`torch.rand(..., generator=generator)`), and
   `robustlab.attacks.norms` for projections / steps / random starts (never per-norm classes).

4. Return the best iterate per sample, not the last one (`BestIterate` helps: a successful
   iterate beats any unsuccessful one, otherwise the higher loss wins). Freezing samples that
   are already adversarial is encouraged when it does not change the other samples' results
   (draw random numbers for the whole batch, then index).

5. Class attributes describe the attack to the generic code and the tests:
   `bounded` (output lies in the eps-ball; False e.g. for CW-L2, which ignores eps),
   `needs_eps`, `gradient_based`, `min_classes` (checked on the logits' width at call time),
   `supports_target`.

Composite attacks (AutoAttack) call their parts' `perturb` directly with the same
`AttackModel` on the subset still robust.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from robustlab.accel.cpu_kernels import CPUKernels
from robustlab.attacks.adaptive import DEFAULT_EOT_ITER, adaptive_settings
from robustlab.attacks.attack_model import AttackModel, Gradient, input_gradient
from robustlab.attacks.errors import AttackError
from robustlab.attacks.execution import (
    ClassCounts,
    frozen_parameters,
    input_layout,
    weights_layout,
    weights_layout_for,
)
from robustlab.attacks.inputs import check_images, check_labels, compute_dtype
from robustlab.attacks.losses import LossFn, get_loss, is_adversarial
from robustlab.attacks.norms import (
    check_l0_eps,
    eps_view,
    l0_mask,
    layout_of,
    linf_box,
    project_and_clip,
)
from robustlab.common.checks import SEED_MAX, check_number
from robustlab.common.modes import eval_mode
from robustlab.common.options import Option, merged_options, options_signature, resolve_options
from robustlab.common.vocabulary import ATTACK_NORMS, MEMORY_FORMATS, NORMS

__all__ = ["Attack", "AttackError", "AttackModel", "BestIterate", "Gradient", "input_gradient",
           "eval_mode", "frozen_parameters"]


class BestIterate:
    """Per-sample best iterate of an iterative attack over the full batch `[N, ...]`.

    Order: an adversarial iterate beats any non-adversarial one (the first adversarial one found
    is kept); among non-adversarial ones the higher loss wins.
    """

    def __init__(self, x: Tensor) -> None:
        self.x = x.clone()
        self.loss = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=x.dtype)
        self.found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    @classmethod
    def from_clean(
        cls,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        loss_fn: LossFn,
        target: Tensor | None = None,
    ) -> BestIterate:
        """Start from the clean inputs (one forward pass), so a sample that is adversarial
        already stays so and the attack never raises accuracy above the clean accuracy."""
        best = cls(x)
        best.offer_clean(model, x, y, loss_fn, target)  # every sample is still remaining
        return best

    def offer_clean(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        loss_fn: LossFn,
        target: Tensor | None = None,
    ) -> None:
        """Offer the clean inputs as the last candidates, evaluated (one forward pass) only
        for the samples no iterate made adversarial: the attack never raises accuracy above
        the clean accuracy, without a forward pass over the samples it broke (what PGD saves
        against `from_clean`)."""
        idx = self.remaining()
        if idx.numel() == 0:
            return
        xc, yc = x[idx], y[idx]
        tc = target[idx] if target is not None else None
        logits = model.logits(xc)
        self.update(idx, xc, loss_fn(logits, yc, tc), is_adversarial(logits, yc, tc))

    def remaining(self) -> Tensor:
        """Indices `[M]` (int64) of the samples not yet adversarial."""
        return (~self.found).nonzero().flatten()

    def update(self, idx: Tensor, x_cand: Tensor, loss: Tensor, success: Tensor) -> None:
        """Offer candidates `x_cand` for the rows `idx` of the full batch."""
        found = self.found[idx]
        better = ~found & (success | (loss > self.loss[idx]))
        rows = idx[better]
        self.x[rows] = x_cand[better]
        self.loss[rows] = loss[better].to(self.loss.dtype)
        self.found[rows] = success[better]


class Attack:
    """Base class of every attack. See the module docstring for how to write one.

    `eps` (float >= 0 or a per-sample tensor `[N]`; radius of the threat model in pixel units
    of [0, 1] images; <= 1 for linf) is the threat model, not an option; the options every
    attack takes are declared in `OPTIONS` below (`norm` is case-insensitive: "Linf" / "L2"
    work too).
    """

    name: ClassVar[str] = ""  # set by the registry decorator (`ATTACKS.register(name)`)
    bounded: ClassVar[bool] = True
    needs_eps: ClassVar[bool] = True
    gradient_based: ClassVar[bool] = True
    min_classes: ClassVar[int] = 2
    supports_target: ClassVar[bool] = True
    #: Images `[N, C, H, W]` only (windows, pixels, squares): any other shape is refused.
    needs_images: ClassVar[bool] = False
    #: The options every attack takes, declared once; a subclass's `OPTIONS` extends them
    #: (merged along the MRO, `options()`), redeclaring one to change its default.
    OPTIONS: ClassVar[dict[str, Option]] = {
        "norm": Option("linf", "choice", "threat-model norm (case-insensitive)",
                       choices=ATTACK_NORMS),
        "seed": Option(0, "int", "seed of the attack's random numbers (same seed, same output)",
                       low=0, high=SEED_MAX),
        "adaptive": Option(True, "bool", "use BPDA / EOT where the model declares them "
                           "(nondifferentiable / randomized)"),
        "eot_iter": Option(None, "int", f"EOT passes for randomized models (null: "
                           f"{DEFAULT_EOT_ITER})", low=1, allow_none=True),
        "memory_format": Option("auto", "choice", "layout of the inputs for the model's conv "
                                "layers (auto: channels_last for multi-channel 4-D inputs of "
                                "conv models)", choices=MEMORY_FORMATS),
        "cpu_kernels": Option(True, "bool", "on the CPU, faster kernels with PyTorch's values "
                              "for 1-channel convolutions, 2x2 max-pools and ReLUs (false: "
                              "PyTorch's own)"),
    }
    #: Options a base declares that this attack fixes, with their value: refused when passed,
    #: left out of `options()` and the docs, set as attributes like the others.
    fixed_options: ClassVar[dict[str, Any]] = {}
    #: Options for a quick run (few steps / queries): the property tests build every attack
    #: with them, so a new attack joins those tests by declaring them here.
    quick_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, eps: float | Tensor | None = None, **options: Any) -> None:
        values = self._resolve(options)
        self.norm = values.pop("norm")
        if self.needs_eps and eps is None:
            raise AttackError(f"eps: {type(self).__name__} needs eps (the threat-model radius)")
        self.eps = None if eps is None else self.check_eps(eps, self.norm)
        vars(self).update(values)
        self._class_counts = ClassCounts()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = vars(cls).get("__init__")
        taken = set() if init is None else {
            p.name for p in inspect.signature(init).parameters.values()
            if p.kind is p.KEYWORD_ONLY}
        undeclared = sorted(taken - {p.name for p in cls.parameters()})
        if undeclared:  # an option only __init__ knows: the checks and the docs would miss it
            raise TypeError(f"{cls.__name__}.__init__ takes {', '.join(undeclared)}, which "
                            f"{cls.__name__}.OPTIONS does not declare: declare every option "
                            "in OPTIONS (robustlab.attacks.base, 'How to write an attack')")
        cls.__signature__ = cls._signature()

    # ------------------------------------------------------------------------- options
    @classmethod
    def options(cls) -> dict[str, Option]:
        """The attack's options by name: its own `OPTIONS` extended by its bases' (along the
        MRO), less `fixed_options`. `eps` is the threat model, not an option."""
        return merged_options(cls, drop=cls.fixed_options)

    @classmethod
    def parameters(cls) -> list[inspect.Parameter]:
        """The keyword parameters beside the options: `eps` (and, in some attacks, objects no
        option kind describes, such as a surrogate model)."""
        return [inspect.Parameter("eps", inspect.Parameter.KEYWORD_ONLY, default=None,
                                  annotation="float | Tensor | None")]

    @classmethod
    def _signature(cls) -> inspect.Signature:
        """`inspect.signature(cls)` / `help(cls)`: the parameters, then every option with
        its default."""
        return options_signature(cls.options(), before=cls.parameters())

    @classmethod
    def label(cls) -> str:
        """The name the attack was registered under (the class name if it was not)."""
        return vars(cls).get("name") or cls.__name__

    @classmethod
    def field(cls, option: str) -> str:
        """`option` as the user spells it: `pgd.steps` (`--attack-opt pgd.steps=...`)."""
        return f"{cls.label()}.{option}"

    @classmethod
    def known_options(cls, given: dict[str, Any]) -> list[str]:
        """The keywords the attack takes (its parameters, then its options, sorted); `given`
        for attacks whose options depend on another (transfer: its inner attack's)."""
        return [p.name for p in cls.parameters()] + sorted(cls.options())

    @classmethod
    def check_option_names(cls, given: dict[str, Any]) -> None:
        """`AttackError` naming the keys of `given` the attack does not declare (and the
        ones it does), or a fixed option."""
        name = cls.label()
        for key in sorted(given.keys() & cls.fixed_options.keys()):
            raise AttackError(f"{cls.field(key)}: expected no {key} ({name} always uses "
                              f"{cls.fixed_options[key]!r}), got {given[key]!r}")
        known = cls.known_options(given)
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise AttackError(f"{name}: unknown option(s) {', '.join(unknown)} for attack "
                              f"{name!r}; known: {', '.join(known)} (docs/attack-options.md)")

    def _resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """Every option (fixed ones included): the given value or the default, each checked
        against its declaration (`AttackError` naming `ATTACK.OPTION`)."""
        type(self).check_option_names(given)
        norm = given.get("norm")
        if isinstance(norm, str) and norm.lower() in NORMS:  # "Linf" / "L2" spellings
            given = {**given, "norm": norm.lower()}
        name = type(self).label()
        return resolve_options(merged_options(type(self)), {**given, **self.fixed_options},
                               owner=f"attack {name!r}", error=AttackError,
                               prefix=f"{name}.")

    # ----------------------------------------------------------------- validation helpers
    @staticmethod
    def check_eps(eps: Any, norm: str) -> float | Tensor:
        """`eps` as a float or a detached tensor (scalar or `[N]`): finite, >= 0, and <= 1 for
        linf (pixel units of [0, 1] images: 8/255, not 8); else `AttackError` naming eps."""
        if isinstance(eps, Tensor):
            ok = eps.dim() <= 1 and not eps.is_complex() and bool(torch.isfinite(eps).all())
            if not ok or bool((eps < 0).any()):
                raise AttackError(
                    f"eps: expected a finite, non-negative scalar or per-sample tensor "
                    f"[N], got a {eps.dtype} tensor of shape {tuple(eps.shape)}"
                    + (f" with min {eps.min().item()}" if eps.numel() else "")
                )
            top, eps = (float(eps.max()) if eps.numel() else 0.0), eps.detach()
        else:
            top = eps = check_number("eps", eps, 0.0, error=AttackError,
                                     expected="a number >= 0 or a tensor")
        if norm == "l0":
            check_l0_eps(eps)
        if norm == "linf" and top > 1.0:
            raise AttackError(
                f"eps: {top:g} exceeds 1, the whole pixel range; eps is in pixel units of "
                "images scaled to [0, 1] (e.g. 8/255, not 8)"
            )
        return eps

    def chosen_loss(self) -> LossFn:
        """The loss the `loss` option names (`attacks/losses.py`); dlr needs >= 3 classes, so
        choosing it raises this attack's `min_classes`."""
        if self.loss == "dlr":
            self.min_classes = 3
        return get_loss(self.loss)

    def check_step(self, option: str) -> None:
        """The step-size option `option` (absolute, in the norm's units; null: derived from
        eps) against eps: > 0 unless eps is 0 everywhere (a zero step never moves). Call after
        `Attack.__init__` (which checked it is a number >= 0)."""
        value, eps = getattr(self, option), self.eps
        eps_max = float(eps.max()) if isinstance(eps, Tensor) and eps.numel() else float(eps or 0)
        if value is not None and eps_max > 0:
            check_number(self.field(option), value, 0.0, low_open=True, error=AttackError,
                         expected="a number > 0 when eps > 0 (a zero step never moves)")

    def describe(self) -> dict[str, Any]:
        """Hyper-parameters as a JSON-friendly dict (for result files)."""
        out: dict[str, Any] = {"name": self.name or type(self).__name__}
        for k, v in vars(self).items():
            if k.startswith("_") or k.startswith("last_"):
                continue
            out[k] = v.tolist() if isinstance(v, Tensor) else v
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "name")
        return f"{type(self).__name__}({args})"

    # ---------------------------------------------------------------------------- running
    def __call__(
        self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None
    ) -> Tensor:
        """Adversarial examples for `x` `[N, C, H, W]` (float in [0, 1]) with labels `y` `[N]`
        (any integer dtype).

        `target` `[N]` (integer) makes a targeted attack where supported. The attack computes
        in the model's parameter dtype (float64 / float16 / bfloat16 inputs are cast to it).
        Returns a tensor of the same shape, dtype and device as `x`, in [0, 1] (and in the
        eps-ball if `bounded`).
        """
        self._check_inputs(x, y, target)
        if x.shape[0] == 0:
            return x.clone()
        y, target = y.long(), None if target is None else target.long()
        xc = x.detach().to(compute_dtype(model, x))
        eps = self.eps_tensor(xc)
        with eval_mode(model), frozen_parameters(model), \
                weights_layout(model, weights_layout_for(self.memory_format, xc)):
            amodel = self.attack_model(model, xc)
            self._check_classes(self._first_forward(model, amodel, xc), y, target)
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
            x_in = amodel.prepare(xc)
            x_adv = self.perturb(amodel, x_in, y, eps, target, generator)
        x_adv = self._project(x_in, x_adv.detach(), eps)
        if x_adv.dtype != x.dtype:
            x_adv = self._in_dtype_of(x, x_adv)
        return x_adv.contiguous(memory_format=layout_of(x))

    def _first_forward(self, model: nn.Module, amodel: AttackModel, x: Tensor) -> int:
        """The logits' width (`ClassCounts`: the attack's first forward pass, on one sample);
        a model that fails on the input raises `AttackError` naming x's shape and the model's
        error (a traceback from deep inside the model says neither). No extra pass."""
        try:
            return self._class_counts.get(model, amodel, x)
        except AttackError:
            raise
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of the user's forward()
            lines = str(err).strip().splitlines()
            said = f": {lines[0][:300]}" if lines else ""
            raise AttackError(
                f"model: its forward pass on x of shape {list(x.shape)} ({x.dtype}, {x.device}) "
                f"failed with {type(err).__name__}{said}; x must be the [N, C, H, W] images the "
                "model takes (channels-last [N, H, W, C] arrays: x.permute(0, 3, 1, 2))"
            ) from err

    def _check_classes(self, k: int, y: Tensor, target: Tensor | None) -> None:
        """Labels `y` / `target` `[N]` against the model's logits width `k`."""
        if k < self.min_classes:
            raise AttackError(
                f"{type(self).__name__} needs a model with at least {self.min_classes} "
                f"classes; the model's logits have width {k}"
            )
        for field, t in (("y", y), ("target", target)):
            if t is not None and int(t.max()) >= k:
                raise AttackError(
                    f"{field}: labels must be < the number of classes {k}, got max {int(t.max())}"
                )

    def _project(self, x: Tensor, x_adv: Tensor, eps: Tensor) -> Tensor:
        """`x_adv` onto the eps-ball around `x` (if `bounded`) ∩ [0, 1]; `eps` is `[N]`."""
        if self.bounded and self.norm == "linf":
            return torch.clamp(x_adv, *linf_box(x, eps_view(eps, x)))
        if self.bounded and self.norm == "l0":  # keep the eps most changed pixels, bit-exactly
            return torch.where(l0_mask(x_adv - x, eps_view(eps, x)), x_adv, x).clamp(0.0, 1.0)
        if self.bounded:
            return project_and_clip(x, x_adv, eps_view(eps, x), self.norm)
        return x_adv.clamp(0.0, 1.0)

    def _in_dtype_of(self, x: Tensor, x_adv: Tensor) -> Tensor:
        """`x_adv` (computed in another dtype) in `x`'s dtype, still in [0, 1] and the budget:
        projected again around the original `x` in the finer of the two dtypes, then rounded
        towards `x` (each coordinate's |x_adv - x| never grows by the rounding)."""
        fine = torch.promote_types(x.dtype, x_adv.dtype)
        xf = x.detach().to(fine)
        adv = self._project(xf, x_adv.to(fine), self.eps_tensor(xf))
        out = adv.to(x.dtype)
        if fine != x.dtype:
            away = (out.to(fine) - xf).abs() > (adv - xf).abs()
            out = torch.where(away, torch.nextafter(out, x.detach()), out)
        return out

    def perturb(
        self,
        model: AttackModel,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        generator: torch.Generator,
    ) -> Tensor:
        """The attack proper. `eps` is `[N]`; see the module docstring. Subclasses implement."""
        raise NotImplementedError(f"{type(self).__name__} must implement perturb()")

    # --------------------------------------------------------------------------- internals
    def attack_model(self, model: nn.Module, x: Tensor) -> AttackModel:
        """The `AttackModel` for `model` given this attack's adaptive / layout settings."""
        bpda, eot = adaptive_settings(model, self.adaptive, self.eot_iter)
        compiled = hasattr(model, "_orig_mod")  # torch.compile'd: keep dynamo's graph intact
        kernels = (self.cpu_kernels and x.device.type == "cpu" and not compiled
                   and CPUKernels.may_apply(model))
        return AttackModel(model, bpda=bpda, eot_iter=eot,
                           layout=input_layout(self.memory_format, model, x),
                           bucket_batches=x.is_cuda, cpu_kernels=kernels)

    def eps_tensor(self, x: Tensor) -> Tensor:
        """Per-sample eps `[N]` on x's device/dtype (zeros when the attack takes no eps)."""
        n = x.shape[0]
        if self.eps is None:
            return torch.zeros(n, device=x.device, dtype=x.dtype)
        if isinstance(self.eps, Tensor):
            e = self.eps.to(device=x.device, dtype=x.dtype)
            if e.dim() == 0:
                return e.expand(n).clone()
            if e.shape[0] != n:
                raise AttackError(
                    f"eps: per-sample tensor has {e.shape[0]} entries but x has {n} samples"
                )
            return e.clone()
        return torch.full((n,), self.eps, device=x.device, dtype=x.dtype)

    def _check_inputs(self, x: Tensor, y: Tensor, target: Tensor | None) -> None:
        """Validate one call's inputs before any compute (`AttackError` naming the argument):
        `x` `[N, ...]` float images in [0, 1]; `y` / `target` integer `[N]` labels >= 0 on
        x's device (the upper bound is checked against the logits' width later)."""
        check_images(x)
        if self.needs_images and x.dim() != 4:
            raise AttackError(f"x: {type(self).label()} needs images [N, C, H, W], got shape "
                              f"{tuple(x.shape)}")
        check_labels("y", y, x)
        if target is not None:
            if not self.supports_target:
                raise AttackError(f"target: {type(self).__name__} is untargeted only")
            check_labels("target", target, x)
            if bool((target == y).any()):
                raise AttackError("target: some target labels equal the true labels y")


Attack.__signature__ = Attack._signature()  # subclasses: `Attack.__init_subclass__`
