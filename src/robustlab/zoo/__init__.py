"""robustlab's zoo: pretrained models, each a safetensors weights file and a JSON model card
(`cards.py`), loaded by name with the digest checked (`load.py`: `load_pretrained`), and added
from a finished run folder, or re-measured in place (`add.py`: `add_entry`, `replace_evaluation`,
`python -m robustlab.zoo.add`).

The shipped entries live in `robustlab/zoo/models/` (package data); `$ROBUSTLAB_ZOO` or the
`zoo_dir=` argument of each function names another folder. See docs/zoo.md.
"""

from __future__ import annotations

from robustlab.zoo.cards import ZooError, default_zoo_dir, list_pretrained, read_card
from robustlab.zoo.load import load_pretrained

__all__ = ["ZooError", "default_zoo_dir", "list_pretrained", "load_pretrained", "read_card"]
