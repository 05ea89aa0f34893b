"""Option names that changed, read under their new names (a leaf: imports nothing else).

One idea has one name across robustlab: the training methods' PGD iteration count was the
method option `k` and is `steps`, as every attack calls it (`--opt steps=7` trains with what
`--attack-opt pgd.steps=7` evaluates with). Run folders and config files written before the
rename say `method_options.k`; `upgrade_train_fields` reads them as `steps`, with one warning
line on stderr per file, so resuming an old run (`train --resume`, `reproduce` into an old
experiment folder) and loading one keep working. Nothing is rewritten on disk: a run's
config.json stays as it was written (its digest binds the run's checkpoint).
"""

from __future__ import annotations

import sys
from typing import Any

from robustlab.common.errors import ConfigError

#: Renamed method options, old name -> new name.
RENAMED_METHOD_OPTIONS = {"k": "steps"}


def upgrade_method_options(options: Any, *, source: str) -> Any:
    """`options` (a method_options table) with every old name replaced by its new one, and one
    warning line per renamed name on stderr naming `source` (a file, a job); anything but a
    dict is returned as is (the config's type check names it). Both names given is a
    `ConfigError`."""
    if not isinstance(options, dict) or not set(options) & set(RENAMED_METHOD_OPTIONS):
        return options
    out = dict(options)
    for old, new in RENAMED_METHOD_OPTIONS.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"{source}: method_options: both {old} (the old name) and {new} "
                              f"given; expected {new} only ({old} was renamed {new})")
        out = {(new if key == old else key): value for key, value in out.items()}
        print(f"warning: {source}: method_options.{old} is now method_options.{new} (the "
              f"attacks' name for it); read as {new}={out[new]!r}", file=sys.stderr)
    return out


def upgrade_train_fields(fields: dict[str, Any], *, source: str) -> dict[str, Any]:
    """A training config's fields (a `train` table) with renamed option names upgraded (see
    `upgrade_method_options`); `fields` itself is not changed."""
    if "method_options" not in fields:
        return fields
    options = upgrade_method_options(fields["method_options"], source=source)
    return fields if options is fields["method_options"] else {**fields,
                                                                "method_options": options}
