"""A training run on disk and back: its config, folder, checkpoints and weights, and reopening it.

Two levels, so that plugins may read run records without an import circle:
- records (`folder`, `checkpoint`): the run folder and its safetensors files; import only
  `robustlab.common` (the autoencoder defense reads a trained autoencoder through them);
- runs rebuilt (`config`: `TrainConfig`; `build`: a run's data and model; `load`: `load_run`):
  above the data, models and defenses they build.
This package file imports nothing, so importing a record module loads no plugin.
"""
