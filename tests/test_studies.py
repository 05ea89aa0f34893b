"""`reproduce`'s optional studies (issue #18): transfer matrices, certification and patches,
off in `quick`, on in `paper-cpu`; planned and checked before any compute, run after the
evaluations, cached on a rerun, and reported in their own sections."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json

import pytest
import torch

from robustlab.common.errors import ConfigError
from robustlab.experiments.plan import CERTIFY_ROLE, PATCH_LABEL, plan_jobs
from robustlab.experiments.presets import StudyPlan, get_preset
from robustlab.experiments.runner import reproduce
from robustlab.experiments.studies import check_studies, not_learned, transfer_groups

pytestmark = pytest.mark.usefixtures("one_thread")


def test_studies_are_off_in_quick_and_smoke_and_on_in_paper_cpu(tmp_path):
    for name in ("quick", "smoke"):
        preset = get_preset(name)
        assert not preset.studies.any
        jobs = plan_jobs(preset, tmp_path)
        assert all(j.role != CERTIFY_ROLE for j in jobs)
        assert all(e.label != PATCH_LABEL for j in jobs for e in j.evals)
    st = get_preset("paper-cpu").studies
    assert st.transfer and st.certify and st.patch


def test_paper_cpu_plans_one_noise_run_per_dataset_and_patch_evals_at_the_standard_budget(
        tmp_path):
    jobs = plan_jobs(get_preset("paper-cpu"), tmp_path)
    noise = [j for j in jobs if j.role == CERTIFY_ROLE]
    assert [j.name for j in noise] == ["mnist-lenet5-gaussian-aug-sigma0.25-recipe-s0",
                                       "fashion-mnist-lenet5-gaussian-aug-sigma0.25-recipe-s0"]
    assert all(j.train["method_options"] == {"sigma": 0.25} and not j.evals for j in noise)
    patched = [j for j in jobs if any(e.label == PATCH_LABEL for e in j.evals)]
    assert patched and all("-recipe-" in j.name for j in patched)  # the standard budget
    e = next(e for e in patched[0].evals if e.label == PATCH_LABEL)
    assert e.settings.attacks == ("patch-local", "patch-universal") and e.settings.eps == 1.0
    assert not e.settings.audit and e.settings.attack_options["patch-local"] == {"size": 6}
    groups = transfer_groups(jobs, tmp_path)
    assert sorted(p.name for p in groups) == [
        "transfer-fashion-mnist-paper-paper.json", "transfer-fashion-mnist-recipe-standard.json",
        "transfer-mnist-paper-paper.json", "transfer-mnist-recipe-standard.json"]
    eps, runs = groups[tmp_path / "studies" / "transfer-mnist-recipe-standard.json"]
    assert eps == 0.3 and len(runs) == len(get_preset("paper-cpu").methods)


@pytest.mark.parametrize("change, message", [
    ({"transfer_attacks": ("nope",)}, "studies.transfer_attacks: unknown attack 'nope'"),
    ({"transfer_steps": 0}, "studies.transfer_steps"),
    ({"certify_sigma": -1.0}, "studies.certify: --sigma"),
    ({"certify_images": 0}, "studies.certify_images"),
])
def test_bad_study_settings_fail_before_any_compute(tmp_path, change, message):
    study = dataclasses.replace(StudyPlan(transfer=True, certify=True), **change)
    preset = get_preset("smoke").replace(studies=study)
    with pytest.raises(ConfigError, match=message):
        check_studies(preset)
    with pytest.raises(ConfigError, match=message):
        reproduce(preset, tmp_path / "out")
    assert not (tmp_path / "out" / "runs").exists()


def test_bad_patch_settings_fail_before_any_compute(tmp_path):
    preset = get_preset("smoke").replace(studies=StudyPlan(patch=True, patch_size=99))
    with pytest.raises(ConfigError, match="studies.patch_size: 99 does not fit in the 28x28"):
        reproduce(preset, tmp_path / "out")
    assert not (tmp_path / "out" / "runs").exists()


TINY_STUDIES = StudyPlan(transfer=True, transfer_n=60, transfer_steps=3, certify=True,
                         certify_images=8, certify_n=300, patch=True, patch_n=30,
                         patch_attacks=("patch-local",), patch_budgets=("standard",))


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    smoke = get_preset("smoke")
    preset = smoke.replace(
        studies=TINY_STUDIES, train_size=600, val_size=100,
        eval=dataclasses.replace(smoke.eval, n=60, curve_n=30, audit=False))
    out = tmp_path_factory.mktemp("studied")
    before = torch.get_num_threads()
    with contextlib.redirect_stdout(io.StringIO()) as log:
        reproduce(preset, out, workers=1, threads=1)
    # in-process jobs restore the thread count (a leak broke a later bit-identical test)
    assert torch.get_num_threads() == before
    return preset, out, log.getvalue()


@pytest.mark.integration  # a reproduce pipeline with every study
def test_reproduce_runs_every_study_and_reports_it(studied):
    preset, out, log = studied
    # 600 images for 1 epoch do not train the eps-0.3 recipe runs: the study leaves out
    # models that did not learn, and skips a matrix with fewer than two left
    transfers = sorted((out / "studies").glob("transfer-*.json"))
    assert [p.name for p in transfers] == ["transfer-mnist-paper-paper.json"]
    assert "transfer-mnist-recipe-standard.json: skipped, fewer than two runs learned" in log
    data = json.loads(transfers[0].read_text())
    assert data["kind"] == "transfer" and data["settings"]["eps"] == 0.03
    cert = out / "runs" / "mnist-lenet5-gaussian-aug-sigma0.25-recipe-s0" / \
        "certify-sigma0.25.json"
    c = json.loads(cert.read_text())
    assert c["summary"]["images"] == 8 and c["settings"]["n"] == 300
    patch_files = list((out / "runs").glob(f"*/eval/{PATCH_LABEL}-*.json"))
    assert patch_files and all("-recipe-" in str(p) for p in patch_files)
    p = json.loads(patch_files[0].read_text())
    assert set(p["attacks"]) == {"patch-local"} and p["clean"]["acc"] >= p["worst_case"]["acc"]
    md = (out / "report.md").read_text()
    assert "## Transferability" in md and "## Certified robustness" in md
    assert "## Adversarial patches" in md and "| patch-local |" in md.split(
        "## Adversarial patches")[1].split("\n## ")[0]
    results = json.loads((out / "report.md").with_name("results.json").read_text())
    # a patch's threat model is its window: kept out of Table 1 and the figures
    assert PATCH_LABEL not in {b["label"] for b in results["table1"]}
    assert {r["label"] for r in results["patch_records"]} == {PATCH_LABEL}
    assert len(results["patch_records"]) == len(patch_files)


@pytest.mark.integration  # reruns that pipeline
def test_a_rerun_reuses_every_study_file(studied, capsys):
    preset, out, _ = studied
    stamps = {p: p.stat().st_mtime_ns for p in (out / "studies").glob("*.json")}
    reproduce(preset, out, workers=1, threads=1, report=False)
    assert "cached" in capsys.readouterr().out
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def _finished_run(root, *, health="ok", fgsm=0.9, pgd=0.85, eval_eps=0.3):
    """A run folder as training and evaluation leave it: summary.json and one eval file."""
    (root / "eval").mkdir(parents=True)
    (root / "summary.json").write_text(json.dumps({"health": health}))
    (root / "eval" / "standard-x.json").write_text(json.dumps({
        "run": {"eps": 0.3}, "settings": {"eps": eval_eps},
        "attacks": {"fgsm": {"acc": fgsm}, "pgd": {"acc": pgd}}}))
    return root


def test_transfer_study_leaves_out_what_the_report_does_not_compare(tmp_path):
    assert not_learned(_finished_run(tmp_path / "ok")) is None
    assert not_learned(tmp_path / "never-trained") == "unfinished"
    assert not_learned(_finished_run(tmp_path / "c", health="collapsed")) == "collapsed"
    # training's guard said ok, the test set shows the FGSM/PGD signature (reporting/overfit.py)
    note = not_learned(_finished_run(tmp_path / "co", fgsm=0.901, pgd=0.0))
    assert note == ("catastrophic overfitting: test FGSM 90.1 % vs PGD 0.0 % at eps 0.3 "
                    "(gap above 15 pp)")
    # the same gap at another budget than the training eps is not the signature
    assert not_learned(_finished_run(tmp_path / "e", fgsm=0.901, pgd=0.0, eval_eps=0.1)) is None
