"""robustlab replaces or deletes only what it wrote (issue #32 items 1, 2 and 4).

`--overwrite` deletes a run folder (train) or an experiment's runs/ (reproduce) only when every
entry in the folder is a name robustlab writes there and its records parse; a single result
file (evaluate, certify, transfer) only when its content is robustlab's. Nothing is written
through a symbolic link planted at a name robustlab uses (the run lock, a figure's temporary
file, a staging folder), and the run lock is named after the resolved path, so two spellings
of one folder share it. Every refusal is one line, before any compute.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustlab.cli import main
from robustlab.runs.folder import RunFolderError

PRECIOUS = "precious, not robustlab's"


def train_args(out: Path) -> list[str]:
    return ["train", "--dataset", "synthetic", "--model", "lenet5", "--method", "standard",
            "--epochs", "1", "--batch-size", "32", "--set",
            "dataset_options={n_train: 64, n_test: 32}", "--recipe", "none", "--no-progress",
            "--threads", "1", "--device", "cpu", "--out", str(out)]


@pytest.fixture
def no_compute(monkeypatch):
    """Any training or evaluation job starting is a test failure: refusals come first."""
    import robustlab.experiments.runner as runner

    def compute(*args, **kwargs):
        raise AssertionError("compute began")

    monkeypatch.setattr(runner, "run_on_workers", compute)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# ---------------------------------------------------------------- reproduce --overwrite (item 1)

def _home_with_tensorboard(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "runs" / "Dec05_mnist").mkdir(parents=True)
    (home / "runs" / "Dec05_mnist" / "events.out.tfevents.1733.host").write_text(PRECIOUS)
    (home / ".bashrc").write_text(PRECIOUS)
    return home


def test_reproduce_overwrite_keeps_the_runs_folder_of_a_home_folder(tmp_path, capsys,
                                                                     monkeypatch, no_compute):
    import robustlab.data

    home = _home_with_tensorboard(tmp_path)
    monkeypatch.setattr(robustlab.data, "load_dataset", lambda *a, **k: None)  # no data needed
    assert main(["reproduce", "--preset", "smoke", "--out", str(home), "--overwrite",
                 "--device", "cpu", "--threads", "1"]) == 2
    err = one_line_error(capsys)
    assert "not a robustlab experiment folder" in err and ".bashrc" in err
    assert (home / "runs" / "Dec05_mnist" / "events.out.tfevents.1733.host").read_text() \
        == PRECIOUS
    assert sorted(p.name for p in home.iterdir()) == [".bashrc", "runs"]  # nothing written


def test_reproduce_overwrite_names_the_first_foreign_entry_even_deep_in_runs(tmp_path,
                                                                          no_compute):
    from robustlab.experiments.presets import get_preset
    from robustlab.experiments.runner import reproduce

    home = _home_with_tensorboard(tmp_path)
    (home / ".bashrc").unlink()
    with pytest.raises(RunFolderError, match=r"runs/Dec05_mnist/events\.out\.tfevents"):
        reproduce(get_preset("smoke"), home, overwrite=True, device="cpu", threads=1)
    # runs/ of run folders but an experiment.json that is not reproduce's: refused too
    (home / "runs" / "Dec05_mnist" / "events.out.tfevents.1733.host").unlink()
    (home / "experiment.json").write_text('{"name": "my experiment"}')
    with pytest.raises(RunFolderError, match="schema 'robustlab.experiment/1'"):
        reproduce(get_preset("smoke"), home, overwrite=True, device="cpu", threads=1)
    assert (home / "runs" / "Dec05_mnist").is_dir()


def _experiment_folder(tmp_path: Path) -> Path:
    """The shape reproduce leaves: experiment.json, runs/ (with locks), report, figures."""
    out = tmp_path / "exp"
    run = out / "runs" / "mnist-lenet5-standard-s0"
    (run / "eval").mkdir(parents=True)
    (out / "figures").mkdir()
    (out / "studies").mkdir()
    (out / "experiment.json").write_text(json.dumps({"schema": "robustlab.experiment/1"}))
    (out / "runs" / ".mnist-lenet5-standard-s0.lock").write_text("123")
    for name in ("config.json", "metrics.jsonl", "model.safetensors", "summary.json",
                 "certify-sigma0.25.json", "certify-sigma0.25.png"):
        (run / name).write_text("{}")
    (run / "config.json").write_text('{"train": {}}')
    (run / "eval" / "paper-abc.json").write_text("{}")
    for name in ("report.md", "report.html", "results.json", "results.csv"):
        (out / name).write_text("")
    (out / "figures" / "fig1_confidence_pgd.png").write_text("")
    (out / "studies" / "transfer-mnist-paper-paper.json").write_text("{}")
    return out


def test_reproduce_overwrite_still_replaces_an_experiment_folder_robustlab_wrote(tmp_path,
                                                                              no_compute):
    from robustlab.experiments.presets import get_preset
    from robustlab.experiments.runner import reproduce

    out = _experiment_folder(tmp_path)
    with pytest.raises(AssertionError, match="compute began"):  # got past every check
        reproduce(get_preset("smoke"), out, overwrite=True, device="cpu", threads=1)
    assert not (out / "runs" / "mnist-lenet5-standard-s0").exists()  # the old runs went
    # a user's file in it: refused, the runs kept
    out = _experiment_folder(tmp_path / "2")
    (out / "notes.md").write_text(PRECIOUS)
    with pytest.raises(RunFolderError, match=r"holds files \(notes\.md\)"):
        reproduce(get_preset("smoke"), out, overwrite=True, device="cpu", threads=1)
    assert (out / "runs" / "mnist-lenet5-standard-s0" / "config.json").is_file()


def test_reproduce_without_overwrite_refuses_a_folder_of_other_files(tmp_path, no_compute):
    from robustlab.experiments.presets import get_preset
    from robustlab.experiments.runner import reproduce

    home = _home_with_tensorboard(tmp_path)
    with pytest.raises(RunFolderError, match="not a robustlab experiment.*e.g. .bashrc"):
        reproduce(get_preset("smoke"), home, device="cpu", threads=1)
    assert not (home / "experiment.json").exists()


@pytest.mark.parametrize("content", ["[1, 2]", '{"preset": "smoke"}', "not json"])
def test_reproduce_refuses_an_experiment_json_it_did_not_write(tmp_path, capsys, monkeypatch,
                                                               no_compute, content):
    import robustlab.data

    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "experiment.json").write_text(content)
    monkeypatch.setattr(robustlab.data, "load_dataset", lambda *a, **k: None)
    assert main(["reproduce", "--preset", "smoke", "--out", str(folder), "--device", "cpu",
                 "--threads", "1"]) == 2
    assert "experiment.json" in one_line_error(capsys)
    assert (folder / "experiment.json").read_text() == content


# --------------------------------------------------------------------- train --overwrite (item 2)

def test_train_overwrite_refuses_a_flat_folder_whose_config_has_a_train_object(tmp_path,
                                                                               capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text('{"train": {"lr": 0.1}, "model": "my-net"}')
    (folder / "notes.txt").write_text(PRECIOUS)
    assert main(train_args(folder) + ["--overwrite"]) == 2
    err = one_line_error(capsys)
    assert "not a robustlab run folder" in err and "notes.txt" in err
    assert (folder / "notes.txt").read_text() == PRECIOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == [".project.lock", "project"]


def test_a_run_folder_with_everything_robustlab_writes_into_it_is_replaceable(tmp_path):
    from robustlab.runs.folder import check_run_folder

    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "checkpoint.safetensors", "model.safetensors",
                 "summary.json", "eval.json", "eval-pgd.json", "certify-sigma0.5.json",
                 "certify-sigma0.5.png", ".summary.json.a1b2.tmp"):
        (run / name).write_text("{}")
    (run / "config.json").write_text('{"train": {}}')
    (run / "eval" / "paper-abc.json").write_text("{}")
    folder, resuming = check_run_folder(run, {}, resume=False, overwrite=True)
    assert folder.path == tmp_path / ".run.staging" and folder.replaces == run and not resuming
    (run / "eval" / "adv").mkdir()  # a folder where only eval files belong: refused
    with pytest.raises(RunFolderError, match=r"holds folders \(eval/adv\)"):
        check_run_folder(run, {}, resume=False, overwrite=True)


def test_files_added_to_the_old_run_while_the_new_one_trains_are_not_deleted(tmp_path):
    from robustlab.runs.folder import RunFolder

    old, staging = tmp_path / "run", tmp_path / ".run.staging"
    for folder in (old, staging):
        folder.mkdir()
        (folder / "config.json").write_text('{"train": {}}')
        (folder / "summary.json").write_text("{}")
    (old / "notes.txt").write_text(PRECIOUS)  # written during the --overwrite run
    new = RunFolder(staging, replaces=old)
    with pytest.raises(RunFolderError, match=r"notes\.txt.*the new run is kept whole in"):
        new.finish()
    assert (old / "notes.txt").read_text() == PRECIOUS and (staging / "summary.json").is_file()


# ------------------------------------------------------ single result files (evaluate, certify)

def test_evaluate_overwrite_refuses_a_file_that_is_not_an_eval_json(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"eps": 0.1, "method": "pgd-at"}}))
    notes = tmp_path / "notes.txt"
    notes.write_text(PRECIOUS)
    assert main(["evaluate", str(run), "--out", str(notes), "--overwrite", "--device",
                 "cpu"]) == 2
    err = one_line_error(capsys)
    assert "notes.txt is not a file robustlab wrote" in err
    assert notes.read_text() == PRECIOUS
    link = tmp_path / "link.json"
    link.symlink_to(notes)
    assert main(["evaluate", str(run), "--out", str(link), "--overwrite", "--device",
                 "cpu"]) == 2
    assert "is a symbolic link" in one_line_error(capsys)


def test_each_result_kind_is_replaceable_only_when_its_content_is_robustlabs(tmp_path):
    from robustlab.certification.study import _is_certify_file
    from robustlab.evaluation.runs import check_replaceable
    from robustlab.evaluation.schema import SCHEMA_VERSION
    from robustlab.experiments.transfer_study import SCHEMA, _is_transfer_file

    cases = [(None, {"schema": SCHEMA_VERSION, "clean": {"acc": 1.5}}),  # damaged: still ours
             (_is_certify_file, {"kind": "certification"}),
             (_is_transfer_file, {"schema": SCHEMA})]
    for i, (is_ours, data) in enumerate(cases):
        path = tmp_path / f"result{i}.json"
        path.write_text(json.dumps(data))
        check_replaceable(path, is_ours)  # robustlab's: may be replaced
        path.write_text(json.dumps({"mine": True}))
        with pytest.raises(RunFolderError, match="not a file robustlab wrote"):
            check_replaceable(path, is_ours)
    check_replaceable(tmp_path / "new.json")  # nothing there: nothing to refuse


# ------------------------------------------------------------------- symbolic links (item 4)

def test_a_link_planted_at_the_lock_path_is_refused_not_written_through(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text(PRECIOUS)
    (tmp_path / ".run.lock").symlink_to(victim)
    assert main(train_args(tmp_path / "run")) == 2
    err = one_line_error(capsys)
    assert "lock file" in err and "symbolic link" in err
    assert victim.read_text() == PRECIOUS
    assert not (tmp_path / "run").exists()


def test_a_symlinked_out_shares_the_lock_of_the_folder_it_names(tmp_path, capsys):
    from robustlab.runs.folder import hold_lock

    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    with hold_lock(real):  # as a training process writing into `real` holds it
        with pytest.raises(RunFolderError, match="in use by another robustlab process"):
            with hold_lock(link):
                pass
        assert main(train_args(link)) == 2
        assert "in use by another robustlab process" in one_line_error(capsys)
    assert not any(real.iterdir())
    assert not (tmp_path / ".link.lock").exists()  # one lock, named after the real folder


def test_a_link_planted_at_the_staging_name_is_refused(tmp_path):
    from robustlab.runs.folder import check_run_folder

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"train": {}}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".run.staging").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(RunFolderError, match="symbolic link"):
        check_run_folder(run, {}, resume=False, overwrite=True, clean=True)
    assert elsewhere.is_dir()


def test_a_link_planted_at_a_figure_temporary_name_is_not_written_through(tmp_path):
    import matplotlib.pyplot as plt

    from robustlab.reporting.plot_style import save

    figdir = tmp_path / "figures"
    figdir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text(PRECIOUS)
    (figdir / ".fig1_confidence_pgd.png.tmp.png").symlink_to(victim)  # the old fixed name
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1])
    path = save(fig, figdir / "fig1_confidence_pgd.png")
    assert victim.read_text() == PRECIOUS
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in figdir.iterdir()) == [".fig1_confidence_pgd.png.tmp.png",
                                                        "fig1_confidence_pgd.png"]


def test_report_replaces_its_own_files_but_not_a_users_report_md(tmp_path, capsys):
    from test_report import _fake_eval

    from robustlab.reporting import write_report

    run = tmp_path / "r"
    run.mkdir()
    (run / "eval.json").write_text(json.dumps(_fake_eval("standard", 0, 0.3, 0.99, 0.1)))
    write_report(tmp_path)
    write_report(tmp_path)  # its own files: replaced on a rerun
    for name in ("report.md", "results.json"):
        mine = tmp_path / name
        ours = mine.read_text()
        mine.write_text(PRECIOUS)
        assert main(["report", str(tmp_path)]) == 2
        assert f"{name} is not a file robustlab wrote" in one_line_error(capsys)
        assert mine.read_text() == PRECIOUS
        mine.write_text(ours)


def test_temporary_files_are_cleaned_only_in_a_run_folder(tmp_path, capsys):
    """A killed write's `.NAME.XXXX.tmp` is deleted when a run folder is claimed; a user's
    `.draft.tmp` in a folder of other files is not (the claim is refused, nothing deleted)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text(PRECIOUS)
    (home / ".draft.tmp").write_text(PRECIOUS)
    assert main(train_args(home)) == 2
    assert "not a robustlab run" in one_line_error(capsys)
    assert (home / ".draft.tmp").read_text() == PRECIOUS
