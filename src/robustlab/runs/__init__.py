"""A training run on disk and back: its config, folder, checkpoints and weights, and reopening it.

One layer, above the data, models and defenses it builds (no plugin imports from here):
- records (`folder`, `checkpoint`): the run folder and its safetensors files; import only
  `robustlab.common`;
- runs rebuilt (`config`: `TrainConfig`; `saved`: a finished run's config, recorded model and
  weights' digest, and the models of the run folders a defense's options name; `build`: a
  run's data and model; `load`: `load_run`, `load_model`).
This package file imports nothing, so importing a record module loads no plugin.
"""
