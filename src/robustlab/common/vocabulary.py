"""The names every layer shares, defined once: allowed values, result-file schema names and
kinds, verdict strings.

A leaf: it imports nothing (no torch), so the CLI's parsing and the report (which reads result
files only) import it as freely as the attacks and the training loop do. Every other module
imports a name from here instead of restating it; tests/test_vocabulary.py fails on a
module- or class-level constant elsewhere that equals one of these values or has one of these
names.
"""

from __future__ import annotations

# ------------------------------------------------------------------------- threat model
# perturbation norms of attacks, run configs, evaluations and studies
NORMS = ("linf", "l2", "l0", "l1")
# "l0" counts PIXELS: a pixel of an image [C, H, W] changed in any channel counts once (the
# pixel-wise threat model of Sparse-RS, Croce et al. 2022); its eps is an integer pixel count.
# the norms an attack supports unless its OPTIONS redeclare `norm` (so NORMS growing makes no
# existing attack accept a new threat model silently); "l1": the L1 ball intersected with
# [0, 1]^d (Croce & Hein 2021, "Mind the box"), eps in pixel units (e.g. 10 on MNIST)
ATTACK_NORMS = ("linf", "l2")
# the norms a training method may train at (its class attribute `norms` names its own):
# "l1" through the L1-APGD training generator (training/methods/perturb.py); never "l0"
TRAIN_NORMS = (*ATTACK_NORMS, "l1")
# The accuracy-versus-eps curve's budgets, as multiples of eps: dense around the evaluation
# budget (0.8-1.2 x), where a robust model falls off (with 1.0 then 1.5 alone Figure 3 drew
# that fall as one straight line); linf points above 1 are skipped.
CURVE_FACTORS = (0.0, 0.25, 0.5, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5, 2.0)
# the attacks an evaluation at l1 / l0 runs when it is given none (at linf / l2 each entry
# point keeps its own default: `robustlab evaluate` fgsm,pgd, `robustlab.evaluate` autoattack)
NORM_DEFAULT_ATTACKS = {"l1": ("apgd-ce", "autoattack"), "l0": ("sparse-rs", "sparse-pgd")}
TRANSFER_ATTACKS = ("pgd", "mifgsm")  # a transfer study's default crafting attacks
# budget schedules continuous in the training progress, so they may change at every step: a
# run's `eps_warmup_schedule` and the hybrid's per-step `schedule`
SMOOTH_EPS_SCHEDULES = ("linear", "cosine", "exponential")

# ------------------------------------------------------------------------- memory layout
# `memory_format` of an attack and of a run config: the same three values. "contiguous" and
# "channels_last" mean the same in both; "auto" lets the owner of the tensor decide, and the two
# owners lay out different tensors, each by its own measured rule, so "auto" is two rules with
# two names (the help texts and docs quote them):
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
# an attack's "auto" (attacks/execution.py `input_layout`): the layout of the INPUT batch
AUTO_INPUT_LAYOUT = "channels_last inputs for multi-channel 4-D inputs of conv models, CPU and CUDA"
# a run's "auto" (runs/build.py `_use_channels_last`): the layout of the MODEL's weights
AUTO_WEIGHTS_LAYOUT = "channels_last weights for conv models on CUDA only"

# ------------------------------------------------------------------------- augmentation
AUGMENTATIONS = ("none", "crop-flip")  # training augmentations (a dataset's default is one)
AUGMENT_CHOICES = ("auto", *AUGMENTATIONS)  # a run config's `augment`: auto = the dataset's

# ------------------------------------------------------------------------- result files
EVAL_SCHEMA = "robustlab.eval/1"  # `schema` of an evaluation file (docs/evaluation.md)
TRANSFER_SCHEMA = "robustlab.transfer/1"  # `schema` of a transfer-study file (docs/transfer.md)
TRANSFER_KIND = "transfer"  # `kind` of a transfer-study file
CERTIFY_KIND = "certification"  # `kind` of a certification file (robustlab certify)
CERTIFY_SCHEMA_VERSION = 1  # `schema_version` of a certification file
EXPERIMENT_SCHEMA = "robustlab.experiment/1"  # `schema` of OUT/experiment.json (reproduce)
RESULTS_SCHEMA = "robustlab.results/1"  # `schema` of the report's results.json
BENCHMARK_SCHEMA = "robustlab.benchmark/1"  # `robustlab benchmark`'s JSON (docs/benchmark.md)
ZOO_CARD_SCHEMA = "robustlab.zoo-card/1"  # a pretrained model's card (docs/zoo.md)
EXPERIMENT_FILE = "experiment.json"  # reproduce's job list and preset, in the experiment folder
# the files of a run folder (runs/folder.py RUN_LAYOUT) that other layers and the report read
RUN_CONFIG_FILE = "config.json"  # the run's TrainConfig (its `train` object)
METRICS_FILE = "metrics.jsonl"  # one row of metrics and flags per epoch
CHECKPOINT_FILE = "checkpoint.safetensors"  # the whole training state, for --resume
WEIGHTS_FILE = "model.safetensors"  # the final weights
AVERAGED_WEIGHTS_FILE = "model-averaged.safetensors"  # the averaged weights (EMA or SWA)
# which weights of a run to load (`load_run(weights=...)`, `evaluate --run-weights`, the eval
# file's `weights`): the averaged ones when the run has them (else the last), or the last iterate
WEIGHTS_AVERAGED = "averaged"  # model-averaged.safetensors (model.safetensors if the run has none)
WEIGHTS_LAST = "last"  # model.safetensors: the last iterate
RUN_WEIGHTS = (WEIGHTS_AVERAGED, WEIGHTS_LAST)  # every value; the first is the default
# how a run averages its weights (summary.json and eval file `averaging`; from TrainConfig's
# `ema` / `swa_start`)
AVERAGING_EMA = "ema"  # an exponential moving average, updated after every optimizer step
AVERAGING_SWA = "swa"  # the equal-weight mean of the epoch-end weights (stochastic weight avg.)
SUMMARY_FILE = "summary.json"  # written when training ends: test accuracy, times, `health`
EVAL_FILE = "eval.json"  # `robustlab evaluate RUN`'s default result file (reproduce: eval/*.json)
# experiment.json `role` of the certify study's noise-trained run (it has no evaluations)
CERTIFY_ROLE = "certification"
PATCH_LABEL = "patch"  # budget `label` of the patch study's evaluations (kept out of Table 1)

# ------------------------------------------------------------------------- training health
# summary.json `health` of a run, the report's `health` column
HEALTH_OK = "ok"  # the run learned
HEALTH_COLLAPSED = "collapsed"  # last epoch's validation accuracy near chance
HEALTH_NON_FINITE = "non-finite loss"  # an epoch's loss was NaN or infinite (training stopped)
HEALTH_OVERFIT = "catastrophic overfitting"  # FGSM accuracy far above PGD accuracy
HEALTH_UNFINISHED = "unfinished"  # evaluated before training ended (no summary.json then)
HEALTH_VERDICTS = (HEALTH_OK, HEALTH_COLLAPSED, HEALTH_NON_FINITE, HEALTH_OVERFIT,
                   HEALTH_UNFINISHED)  # every value of `health`
# metrics.jsonl per-epoch flags behind the verdicts
FLAG_COLLAPSED = "collapsed"  # this epoch's validation accuracy is near chance
FLAG_NON_FINITE = "non_finite_loss"  # this epoch's loss is NaN or infinite
FLAG_OVERFIT = "catastrophic_overfitting"  # logged by the methods that run the overfit guard
EPOCH_FLAGS = (FLAG_COLLAPSED, FLAG_NON_FINITE, FLAG_OVERFIT)  # every per-epoch flag
# FGSM accuracy above PGD accuracy by more than this share: catastrophic overfitting (the
# training guard's `co_gap` default on validation data, the report's check on test data)
OVERFIT_GAP = 0.15

# ------------------------------------------------------------------------- the audit
# `status` of one gradient-masking audit check in an eval file (evaluation/audit.py)
AUDIT_PASS = "pass"  # the check ran and found nothing
AUDIT_FLAG = "flag"  # the check found a sign of masked gradients or an unconverged attack
AUDIT_SKIPPED = "skipped"  # the check could not run (its attack or input is missing)
AUDIT_STATUSES = (AUDIT_PASS, AUDIT_FLAG, AUDIT_SKIPPED)  # every audit check status
