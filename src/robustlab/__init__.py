"""robustlab: train adversarially robust image classifiers and evaluate them honestly.

`robustlab.evaluate(model, x, y, eps=...)` attacks any `nn.Module` in one call
(`robustlab.evaluation.api`); `robustlab.load_user_model("net.py:make_net", weights=...)`
builds a model robustlab did not train (`robustlab.models.user`);
`robustlab.load_model(run_folder)` a trained run's model from its folder alone;
`robustlab.load_robustbench("Carmon2019Unlabeled")` a RobustBench model, checksum-checked
and read without unpickling code (`robustlab.models.robustbench`);
`robustlab.load_pretrained("mnist-lenet5-linf")` a model of robustlab's zoo, its weights
digest checked against its model card (`robustlab.zoo`);
`robustlab.train(model, (x, y), method=..., eps=...)` trains your own `nn.Module` on your own
tensors or DataLoader (`robustlab.training.api`). All are
imported on first use, so `import robustlab` stays light (reporting reads result files
without torch).
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "evaluate": ("robustlab.evaluation.api", "evaluate"),
    "RobustnessResult": ("robustlab.evaluation.api", "RobustnessResult"),
    "load_user_model": ("robustlab.models.user", "load_user_model"),
    "load_model": ("robustlab.runs.load", "load_model"),
    "load_robustbench": ("robustlab.models.robustbench", "load_robustbench"),
    "load_pretrained": ("robustlab.zoo.load", "load_pretrained"),
    "train": ("robustlab.training.api", "train"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'robustlab' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
