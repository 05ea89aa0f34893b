"""One vocabulary (issue #33): the names every layer shares — norms, memory formats,
augmentations, result-file schema names and kinds, verdict strings — are defined once, in the
torch-free leaf `robustlab.common.vocabulary`, and imported everywhere else (reporting included)
instead of restated or mirrored by hand."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import robustlab.common.vocabulary as vocabulary

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "robustlab"
VOCABULARY_FILE = PACKAGE / "common" / "vocabulary.py"

NAMES = {n: v for n, v in vars(vocabulary).items() if n.isupper() and not n.startswith("_")}

# Constants elsewhere whose literal happens to equal a vocabulary value but that name something
# else (file -> {constant: what it is}); everything not listed here must import the vocabulary.
UNRELATED: dict[str, dict[str, str]] = {
    "cli/transfer.py": {"NAME": "the command's name `robustlab transfer`, not a file's kind"},
}


def _value_key(value: Any) -> str | None:
    """What a value is compared by (its repr, so 1 != 1.0 != True; a tuple of names in any
    order), or None for values too plain to mean anything shared (whole numbers, flags, None)."""
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return repr(tuple(sorted(value)))
    return repr(value)


VALUES: dict[str, str] = {}
for _name, _value in NAMES.items():
    if (_key := _value_key(_value)) is not None:
        VALUES[_key] = f"{VALUES[_key]} / {_name}" if _key in VALUES else _name


def _literal(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _bindings(node: ast.stmt) -> list[tuple[str, ast.expr | None]]:
    """(name, value expression) for each name an assignment statement binds; a tuple
    unpacking `A, B = "x", "y"` binds each name to its own value."""
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [(node.target.id, node.value)]
    if not isinstance(node, ast.Assign):
        return []
    out: list[tuple[str, ast.expr | None]] = []
    for target in node.targets:
        if isinstance(target, ast.Name):
            out.append((target.id, node.value))
        elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple) \
                and len(target.elts) == len(node.value.elts):
            out += [(t.id, v) for t, v in zip(target.elts, node.value.elts, strict=True)
                    if isinstance(t, ast.Name)]
    return out


def _constants(tree: ast.Module) -> list[tuple[int, str, Any]]:
    """(line, name, literal value) of every module-level and class-level assignment (a
    dataclass default such as `curve_factors = (0.0, ...)` is a constant too), and of each
    tuple nested in its value (`{"norm": (check_choice, {"choices": ("linf", "l2")})}`)."""
    found = []
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for stmt in body:
            for name, expr in _bindings(stmt):
                found.append((stmt.lineno, name, _literal(expr)))
                nested = [n for n in ast.walk(expr) if isinstance(n, ast.Tuple)] if expr else []
                found += [(n.lineno, f"{name}[...]", _literal(n)) for n in nested
                          if n is not expr]
    return found


def _restated(path: Path) -> list[str]:
    rel = path.relative_to(PACKAGE).as_posix()
    allowed = UNRELATED.get(rel, {})
    out = []
    for line, name, value in _constants(ast.parse(path.read_text(), str(path))):
        if name in allowed:
            continue
        key = _value_key(value)
        if name in NAMES:
            out.append(f"{rel}:{line}: {name} is the vocabulary's name; import it")
        elif key is not None and key in VALUES:
            out.append(f"{rel}:{line}: {name} = {value!r} restates vocabulary "
                       f"{VALUES[key]}; import it")
    return out


@pytest.mark.integration  # a fresh interpreter
def test_vocabulary_is_a_torch_free_leaf() -> None:
    """(a) Importing the vocabulary in a fresh interpreter loads no torch, and the module
    imports nothing at all (the standard library's `__future__` aside): a leaf every layer,
    the report and the CLI's parsing can import."""
    code = ("import sys, robustlab.common.vocabulary as v; "
            "print('torch' in sys.modules, len([n for n in vars(v) if n.isupper()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out[0] == "False", "importing robustlab.common.vocabulary loaded torch"
    assert int(out[1]) == len(NAMES) > 20
    tree = ast.parse(VOCABULARY_FILE.read_text())
    imports = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert imports == ["from __future__ import annotations"]


def test_every_vocabulary_name_says_what_it_means() -> None:
    """Each name is defined once in the vocabulary with a comment of its meaning (on its line
    or the lines just above it)."""
    lines = VOCABULARY_FILE.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    defined = [name for _, name, _ in _constants(tree) if not name.endswith("[...]")]
    assert sorted(defined) == sorted(NAMES), "a vocabulary name defined twice or not at top level"
    for stmt in (s for s in tree.body if isinstance(s, ast.Assign)):
        own = " ".join(lines[stmt.lineno - 1:stmt.end_lineno])
        above = lines[stmt.lineno - 2].lstrip()
        assert "#" in own or above.startswith("#"), f"line {stmt.lineno}: no comment"


def test_every_shared_name_has_one_definition() -> None:
    """(b) No module of src/robustlab but the vocabulary assigns a module- or class-level
    constant a literal equal to one of the vocabulary's values, or binds one of its names."""
    modules = [p for p in sorted(PACKAGE.rglob("*.py")) if p != VOCABULARY_FILE]
    assert len(modules) > 100
    found = [hit for path in modules for hit in _restated(path)]
    assert not found, "\n".join(found)


def test_the_check_finds_a_restated_name() -> None:
    """The check of (b) is not vacuous: it finds each way a shared name was restated before
    (a mirrored schema, a tuple of norms under another name, the health verdicts unpacked
    from one tuple, a dataclass default copied by hand, the vocabulary's own name)."""
    source = ('EVAL_SCHEMA_COPY = "robustlab.eval/1"\n'
              'ALLOWED = ("l2", "linf")\n'
              'OK, COLLAPSED = "ok", "collapsed"\n'
              'class Plan:\n    curve: tuple = (0.0, 0.25, 0.5, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, '
              '2.0)\n'
              'PATCH_LABEL = "window"\n'
              'UNRELATED_NUMBER = 1\n')
    source += 'KINDS = {"norm": (print, {"choices": ("linf", "l2")})}\n'
    tree = ast.parse(source)
    hits = []
    for _, name, value in _constants(tree):
        key = _value_key(value)
        if name in NAMES or (key is not None and key in VALUES):
            hits.append(name)
    assert hits == ["EVAL_SCHEMA_COPY", "ALLOWED", "OK", "COLLAPSED", "PATCH_LABEL",
                    "KINDS[...]", "curve"]


def test_no_mirror_comments_left() -> None:
    """(c) No hand-kept mirror is left: no `# = other.module.NAME` comment, nor a constant
    said to be restated because an import would load torch."""
    mirror = re.compile(r"#\s*=\s|\(no torch (import )?here\)|not imported: ")
    found = [f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}"
             for p in sorted(PACKAGE.rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if mirror.search(line)]
    assert not found, "\n".join(found)


def test_the_layers_read_the_vocabulary() -> None:
    """The definers that once restated a name now hand out the vocabulary's own object, and
    the two memory-format "auto"s are two named rules over one set of values."""
    from robustlab.attacks import norms
    from robustlab.certification import study
    from robustlab.data import containers
    from robustlab.evaluation import schema, settings, transfer_matrix
    from robustlab.experiments import plan, presets, runner, transfer_study
    from robustlab.reporting import collect, overfit, patches, report, studies  # noqa: F401
    from robustlab.runs import config
    from robustlab.training import health

    v = vocabulary
    assert norms.NORMS is v.NORMS and config.NORMS is v.NORMS and settings.NORMS is v.NORMS
    assert transfer_study.NORMS is v.NORMS
    assert config.MEMORY_FORMATS is v.MEMORY_FORMATS and config.AUGMENT_CHOICES[1:] == \
        containers.AUGMENTATIONS
    assert schema.SCHEMA_VERSION is v.EVAL_SCHEMA and transfer_study.SCHEMA is v.TRANSFER_SCHEMA
    assert study.KIND is v.CERTIFY_KIND and runner.EXPERIMENT_SCHEMA is v.EXPERIMENT_SCHEMA
    assert plan.PATCH_LABEL is v.PATCH_LABEL and plan.CERTIFY_ROLE is v.CERTIFY_ROLE
    assert presets.EvalPlan().curve_factors is v.CURVE_FACTORS is settings.CURVE_FACTORS
    assert transfer_matrix.TRANSFER_ATTACKS is v.TRANSFER_ATTACKS
    assert (health.OK, health.COLLAPSED, health.NON_FINITE, health.OVERFIT) == \
        v.HEALTH_VERDICTS[:4]
    assert health.run_health([{v.FLAG_NON_FINITE: True}]) == v.HEALTH_NON_FINITE
    assert set(v.MEMORY_FORMATS) == {"auto", "channels_last", "contiguous"}
    assert v.AUTO_INPUT_LAYOUT != v.AUTO_WEIGHTS_LAYOUT


def test_the_two_auto_layouts_are_the_rules_the_vocabulary_names() -> None:
    """An attack's "auto" lays out the input batch (AUTO_INPUT_LAYOUT: channels_last for a
    multi-channel input of a conv model, on the CPU too); a run's "auto" lays out the model's
    weights (AUTO_WEIGHTS_LAYOUT: channels_last for a conv model on CUDA only)."""
    import torch
    from torch import nn

    from robustlab.attacks.execution import input_layout
    from robustlab.runs.build import _use_channels_last
    from robustlab.runs.config import TrainConfig

    conv, linear = nn.Sequential(nn.Conv2d(3, 4, 3)), nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    rgb, gray = torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8)
    assert "multi-channel" in vocabulary.AUTO_INPUT_LAYOUT and "CPU" in vocabulary.AUTO_INPUT_LAYOUT
    assert input_layout("auto", conv, rgb) == torch.channels_last  # a CPU tensor
    assert input_layout("auto", conv, gray) == torch.contiguous_format
    assert input_layout("auto", linear, rgb) == torch.contiguous_format
    assert "CUDA only" in vocabulary.AUTO_WEIGHTS_LAYOUT
    cfg = TrainConfig(memory_format="auto")
    assert not _use_channels_last(cfg, conv, torch.device("cpu"))
    assert _use_channels_last(cfg, conv, torch.device("cuda"))
    assert not _use_channels_last(cfg, linear, torch.device("cuda"))
    from robustlab.attacks import create_attack

    for value in vocabulary.MEMORY_FORMATS:  # both options take the same values
        TrainConfig(memory_format=value).validate()
        assert create_attack("fgsm", eps=0.1, memory_format=value).memory_format == value
