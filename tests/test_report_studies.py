"""The report's "Transferability" and "Certified robustness" sections (issue #18), from the
files `robustlab transfer` and `robustlab certify` write for two tiny real-MNIST runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from robustlab.reporting import write_report

pytestmark = [pytest.mark.usefixtures("one_thread"),  # tests/conftest.py
              pytest.mark.integration]  # training runs, studies, a subprocess

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(mnist_root, tmp_path_factory):
    """runs/{a,b}: standard LeNet-5s (1,000 images, 1 epoch); each evaluated (FGSM), run a
    certified (sigma 0.25), and a transfer study of the two. About 10 s on one thread."""
    from robustlab.certification.study import certify_run
    from robustlab.evaluation.runs import evaluate_runs
    from robustlab.experiments.transfer_study import run_transfer_study
    from robustlab.training import TrainConfig, train

    root = tmp_path_factory.mktemp("studies")
    data = str(mnist_root)
    runs = []
    for seed, name in enumerate("ab"):
        out = root / "runs" / name
        train(TrainConfig(dataset="mnist", model="lenet5", epochs=1, train_size=1000,
                          val_size=100, optimizer="adam", lr=2e-3, seed=seed, data_dir=data,
                          out_dir=str(out), progress=False, device="cpu", threads=1))
        runs.append(str(out))
    evaluate_runs(runs, attacks=["fgsm"], eps=0.1, norm=None, n=50, batch_size=50, seed=0,
                  device="cpu", data_dir=data, out=None, overwrite=False, non_adaptive=False,
                  audit=False, curve_attack=None)
    certify_run(runs[0], sigma=0.25, images=10, n0=20, n=200, device="cpu", data_dir=data,
                progress=False, figure=False)
    transfer = run_transfer_study(runs, out=root / "transfer-mnist-eps0.1.json", eps=0.1,
                                  steps=3, images=50, device="cpu", data_dir=data,
                                  progress=False, figure=False)
    return root, transfer


def _copy(root, tmp_path, *, studies: bool):
    """A copy of the runs (evaluations only, or with the study files) as a plain folder."""
    dest = tmp_path / "plain"
    shutil.copytree(root, dest)
    if not studies:
        for f in [*dest.glob("transfer-*"), *dest.rglob("certify-*")]:
            f.unlink()
    return dest


def test_plain_folder_report_shows_both_sections_and_figures(results, tmp_path):
    root, transfer = results
    paths = write_report(_copy(root, tmp_path, studies=True))
    md, html = paths["md"].read_text(), paths["html"].read_text()
    data = json.loads(transfer.read_text())
    assert "## Transferability" in md and "## Certified robustness (randomized smoothing)" in md
    # the table's numbers are the file's: the white-box cell of the first model, in %
    m = data["attacks"]["pgd"]["matrix"]
    row = next(ln for ln in md.splitlines() if ln.startswith("| standard s0 |")
               and f"{100 * m[0][1]:.1f}" in ln)
    assert f"| {100 * m[0][0]:.1f} |" in row
    assert "| ensemble of others |" in md and "| clean (no attack) |" in md
    assert "off-diagonal mean" in md and "white-box attack (diagonal)" in md
    assert "Not a finding" not in md  # both models learned
    cert = json.loads(next(root.rglob("certify-sigma0.25.json")).read_text())
    at0 = 100 * cert["summary"]["certified_accuracy_at"]["0"]
    assert f"| a | standard | 0.25 | 200 | 10 | {at0:.1f} |" in md
    assert "n = 200 noise samples per image" in md and "alpha = 0.001" in md
    figs = {p.name for p in (paths["figures"]).glob("*.png")}
    assert {"fig6_transfer_transfer-mnist-eps0.1.png", "fig7_certified_radius.png"} <= figs
    for name in ("fig6_transfer_transfer-mnist-eps0.1.png", "fig7_certified_radius.png"):
        assert (paths["figures"] / name).read_bytes()[:8] == PNG_MAGIC
        assert f"figures/{name}" in md
    assert html.count("data:image/png;base64,") == len(figs)
    toc = html.split("<nav class='toc'>")[1].split("</nav>")[0]
    assert "#transferability" in toc and "#certified-robustness-randomized-smoothing" in toc
    listed = json.loads(paths["json"].read_text())["figures"]
    assert "figures/fig7_certified_radius.png" in listed


@pytest.mark.parametrize("pattern", ["transfer-*.json", "certify-sigma*.json"])
def test_an_edited_study_file_is_refused_by_the_report(results, tmp_path, pattern):
    """Study files carry a sha256 of their contents, as eval files do: a number edited after
    robustlab wrote it is one line naming the file, and no report is written."""
    from robustlab.common.files import FileFormatError

    root, _ = results
    dest = _copy(root, tmp_path, studies=True)
    path = next(dest.rglob(pattern))
    data = json.loads(path.read_text())
    assert len(data["sha256"]) == 64
    data["edited"] = True
    path.write_text(json.dumps(data))
    with pytest.raises(FileFormatError, match="was edited after robustlab wrote it.*rerun the "
                                              "study"):
        write_report(dest)
    assert not (dest / "report.md").exists()


def test_a_study_model_that_did_not_learn_is_marked_not_a_finding(results, tmp_path):
    root, transfer = results
    dest = _copy(root, tmp_path, studies=True)
    summary = dest / "runs" / "b" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "health": "collapsed"}))
    md = write_report(dest)["md"].read_text()
    section = md.split("## Transferability")[1].split("\n## ")[0]
    name = json.loads(transfer.read_text())["runs"][1]["name"]
    assert f"**Not a finding:** {name} (collapsed) did not learn (Table 1, 'Not compared')" \
        in section


def test_experiment_folder_reads_studies_and_job_runs(results, tmp_path):
    root, _ = results
    dest = _copy(root, tmp_path, studies=True)
    (dest / "studies").mkdir()
    (dest / "transfer-mnist-eps0.1.json").rename(dest / "studies" / "transfer-mnist-eps0.1.json")
    (dest / "transfer-ignored.json").write_text("{}")  # not read for an experiment folder
    jobs = [{"run_dir": f"runs/{n}", "role": None, "evals": [{"path": f"runs/{n}/eval.json"}]}
            for n in "ab"]
    (dest / "experiment.json").write_text(json.dumps({"schema": "robustlab.experiment/1",
                                                      "jobs": jobs, "preset": {}}))
    md = write_report(dest)["md"].read_text()
    assert md.count("## Transferability") == 1 and "### transfer-mnist-eps0.1" in md
    assert "## Certified robustness" in md


def test_no_study_files_no_sections(results, tmp_path):
    root, _ = results
    dest = _copy(root, tmp_path, studies=True)
    write_report(dest)  # with the figures: a later report without the files removes them
    for f in [*dest.glob("transfer-*"), *dest.rglob("certify-*")]:
        f.unlink()
    paths = write_report(dest)
    md = paths["md"].read_text()
    assert "Transferability" not in md and "Certified robustness" not in md
    assert not list(paths["figures"].glob("fig6_*")) and not list(paths["figures"].glob("fig7_*"))


def test_study_sections_never_import_torch(results, tmp_path):
    root, _ = results
    dest = _copy(root, tmp_path, studies=True)
    code = ("import sys; from robustlab.reporting import write_report; "
            f"write_report({str(dest)!r}); "
            "assert 'torch' not in sys.modules, 'reporting imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
