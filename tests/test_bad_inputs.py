"""Bad or awkward inputs to the command line, one test per class: nothing is lost, every failure is a clear message
naming the file, row or column (exit status 2, no traceback), and `check` applies the limits `run` will meet."""
import errno
import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from pe_renal.cli import main
from pe_renal.core import PathError, PeRenalError, check_output
from pe_renal.synthetic import make_cohort

from conftest import tree_state, write_cohort

PE_RENAL = str(Path(sys.executable).with_name("pe-renal"))


@pytest.fixture
def cohort_dir(tmp_path) -> Path:
    "20 patients: a 7:3 split leaves 7 of each class for training, enough for the run's 5-fold cross-validation."
    return write_cohort(tmp_path / "cohort", n=20)


def cli(capsys, *argv):
    "Run `pe-renal ARGV` in-process; return (status, stdout, stderr). A traceback would raise here and fail the test."
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def refused(capsys, *argv, says=()):
    code, out, err = cli(capsys, *argv)
    assert code == 2, (code, out, err)
    for s in says:
        assert s.lower() in err.lower(), f"{s!r} not in:\n{err}"
    return err


# ---- data loss ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["cohort", "inside", "above", "cache"])
def test_results_never_replace_or_sit_inside_an_input(capsys, tmp_path, cohort_dir, where):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "shard.parquet").write_text("cached")
    out = {"cohort": cohort_dir, "inside": cohort_dir / "results", "above": tmp_path, "cache": cache}[where]
    before, before_cache = tree_state(cohort_dir), tree_state(cache)
    refused(capsys, "run", cohort_dir, "--out", out, "--overwrite", "--cache", cache, "--backbone", "resnet18",
            "--weights", "random", says=["cohort folder" if where != "cache" else "feature cache", "choose"])
    assert tree_state(cohort_dir) == before and tree_state(cache) == before_cache


def test_overwrite_replaces_only_an_earlier_results_folder(capsys, tmp_path, cohort_dir):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.docx").write_text("years of work")
    refused(
        capsys, "run", cohort_dir, "--out", notes, "--overwrite", says=["not an earlier results folder", "run.json"]
    )
    assert (notes / "thesis.docx").read_text() == "years of work"
    refused(capsys, "demo", "--out", notes, "--overwrite", says=["not an earlier results folder"])
    assert (notes / "thesis.docx").read_text() == "years of work"


def test_predict_never_writes_over_its_model_or_into_the_cohort(capsys, tmp_path, cohort_dir):
    model = tmp_path / "model.skops"
    model.write_bytes(b"the model")
    refused(capsys, "predict", cohort_dir, "--model", model, "--out", model, "--overwrite", says=["model file"])
    refused(
        capsys,
        "predict",
        cohort_dir,
        "--model",
        model,
        "--out",
        cohort_dir / "p.csv",
        says=["inside the cohort folder"],
    )
    assert model.read_bytes() == b"the model" and not (cohort_dir / "p.csv").exists()


# ---- tracebacks: output locations and OS errors -------------------------------------------------------------------

def test_an_output_whose_parent_is_a_file_is_named_before_any_work(capsys, tmp_path, cohort_dir):
    f = tmp_path / "afile"
    f.write_text("x")
    for argv in (["run", cohort_dir, "--out", f / "r"], ["demo", "--out", f / "r"], ["synth", "--out", f / "c"],
                 ["features", cohort_dir, "--out", f / "x.csv", "--no-cache"],
                 ["predict", cohort_dir, "--model", tmp_path / "m.skops", "--out", f / "p.csv"]):
        refused(capsys, *argv, says=[f"{f} is a file, not a folder"])


def test_an_output_folder_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:   # root may write anywhere: pretend, as for a normal user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == ro else real(p, m))
    else:
        ro.chmod(0o500)
    with pytest.raises(PathError, match=f"you may not write in {ro}"):
        check_output(ro / "results")


def test_predict_checks_its_output_before_scoring(capsys, tmp_path, cohort_dir):
    (tmp_path / "taken.csv").write_text("earlier predictions")
    refused(capsys, "predict", cohort_dir, "--model", tmp_path / "none.skops", "--out", tmp_path / "taken.csv",
            "--cache", tmp_path / "cache", says=["taken.csv already exists"])
    assert not (tmp_path / "cache").exists()   # nothing was scored (the model is not even read)


def test_an_unreadable_clinical_csv_is_named(capsys, cohort_dir, monkeypatch):
    import pe_renal.tables as data   # clinical.csv is opened by read_table
    target = cohort_dir / "clinical.csv"
    if os.geteuid() == 0:   # root reads any file: make the open fail as it would for a normal user
        def deny(p, *a, **k):
            if Path(p) == target:
                raise PermissionError(errno.EACCES, "Permission denied", str(p))
            return open(p, *a, **k)
        monkeypatch.setattr(data, "open", deny, raising=False)
    else:
        target.chmod(0)
    refused(capsys, "check", cohort_dir, says=[str(target), "permission"])


def test_an_image_path_longer_than_the_file_system_allows(capsys, cohort_dir):
    img = pd.read_csv(cohort_dir / "images.csv")
    img.loc[3, "path"] = "images/" + "x" * 300 + ".png"
    img.to_csv(cohort_dir / "images.csv", index=False)
    refused(capsys, "check", cohort_dir, says=["line 5", "longer than the file system allows"])


def test_infinite_roi_coordinate_is_named(capsys, cohort_dir):
    img = pd.read_csv(cohort_dir / "images.csv", dtype=str)
    img.loc[2, "x1"] = "inf"
    img.to_csv(cohort_dir / "images.csv", index=False)
    refused(capsys, "check", cohort_dir, says=["'x1'", "line 4", "'inf'"])


# ---- `check` says OK only when `run` can succeed ------------------------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e999"])
def test_non_finite_clinical_value_fails_check(capsys, cohort_dir, value):
    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype=str)
    clin.loc[4, "creatinine"] = value
    clin.to_csv(cohort_dir / "clinical.csv", index=False)
    refused(capsys, "check", cohort_dir, says=["'creatinine'", "line 6", repr(value)])


def test_duplicated_column_name_fails_check(capsys, cohort_dir):
    text = (cohort_dir / "clinical.csv").read_text().splitlines()
    text = [text[0] + ",age"] + [line + ",30" for line in text[1:]]
    (cohort_dir / "clinical.csv").write_text("\n".join(text) + "\n")
    refused(capsys, "check", cohort_dir, says=["'age'", "more than once"])


def test_classes_too_small_for_the_runs_cross_validation_fail_check(capsys, tmp_path):
    root = write_cohort(tmp_path / "c", n=16)   # 8 + 8: a 7:3 split leaves 6 + 5 for training
    code, out, err = cli(capsys, "check", root)
    assert code == 0 and "enough for 5-fold" in out
    refused(capsys, "check", root, "--cv-splits", "6", says=["6-fold", "--cv-splits 5"])
    # `run` applies the same limit before any feature is extracted
    refused(capsys, "run", root, "--out", tmp_path / "r", "--cv-splits", "6", "--backbone", "resnet18",
                  "--weights", "random", "--cache", tmp_path / "cache", says=["6-fold"])
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()
    refused(capsys, "run", root, "--out", tmp_path / "r", "--dpi", "5", "--backbone", "resnet18", "--weights", "random",
            "--cache", tmp_path / "cache", says=["dpi", "30 to 1200"])
    refused(
        capsys,
        "run",
        root,
        "--out",
        tmp_path / "r",
        "--image-size",
        "8",
        "--backbone",
        "resnet18",
        "--weights",
        "random",
        "--cache",
        tmp_path / "cache",
        says=["--image-size", "32 to 1024"],
    )
    refused(
        capsys,
        "run",
        root,
        "--out",
        tmp_path / "r",
        "--finetune-cv",
        "refit",
        "--backbone",
        "resnet18",
        "--weights",
        "random",
        "--cache",
        tmp_path / "cache",
        says=["refit", "set finetune"],
    )
    assert not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()


def test_an_image_with_non_finite_pixels_fails_check(capsys, cohort_dir):
    a = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    a[5, 5] = np.nan
    tifffile.imwrite(cohort_dir / "images" / "nan.tif", a)
    img = pd.read_csv(cohort_dir / "images.csv")
    img.loc[0, "path"] = "images/nan.tif"
    img.to_csv(cohort_dir / "images.csv", index=False)
    refused(capsys, "check", cohort_dir, says=["images/nan.tif", "not finite"])


# ---- messages that mislead ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_or_tab_separated_csv_is_read(capsys, cohort_dir, sep):
    for f in ("clinical.csv", "images.csv"):
        pd.read_csv(cohort_dir / f, dtype=str).to_csv(cohort_dir / f, index=False, sep=sep)
    code, out, err = cli(capsys, "check", cohort_dir)
    assert code == 0 and "patients: 20" in out


def test_decimal_commas(capsys, cohort_dir):
    from pe_renal.data import load_cohort
    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype=str)
    comma = clin.assign(creatinine=clin["creatinine"].str.replace(".", ",", regex=False))
    comma.to_csv(cohort_dir / "clinical.csv", index=False, sep=";")      # as spreadsheets in many locales save it
    c = load_cohort(cohort_dir)
    np.testing.assert_allclose(c.clinical["creatinine"], clin["creatinine"].astype(float))
    assert "creatinine" in c.numeric
    comma.to_csv(cohort_dir / "clinical.csv", index=False)  # quoted "44,4" in a comma-separated file: the
    c = load_cohort(cohort_dir)  # values show their decimal comma, so read alike
    np.testing.assert_allclose(c.clinical["creatinine"], clin["creatinine"].astype(float))
    comma.assign(creatinine=["166,000"] * len(comma)).to_csv(
        cohort_dir / "clinical.csv", index=False
    )  # 166000 or 166.0?
    refused(capsys, "check", cohort_dir, says=["'creatinine'", "166000 (with a thousands separator) or 166.000"])


def test_toml_with_a_byte_order_mark_is_read(capsys, cohort_dir):
    clin = pd.read_csv(cohort_dir / "clinical.csv", dtype=str).rename(columns={"label": "group"})
    clin["group"] = clin["group"].map({"0": "normal", "1": "pe"})
    clin.to_csv(cohort_dir / "clinical.csv", index=False)
    (cohort_dir / "cohort.toml").write_bytes('[label]\ncolumn = "group"\npositive = "pe"\n'.encode("utf-8-sig"))
    code, out, err = cli(capsys, "check", cohort_dir)
    assert code == 0, err


def test_a_top_level_key_is_told_where_it_belongs(capsys, cohort_dir):
    (cohort_dir / "cohort.toml").write_text('label = "group"\n')
    err = refused(capsys, "check", cohort_dir, says=["[label]", 'column = "group"'])
    assert "unknown section [label]" not in err
    (cohort_dir / "cohort.toml").write_text('positive = "pe"\n')
    refused(capsys, "check", cohort_dir, says=["section [label]"])


# ---- interruption -------------------------------------------------------------------------------------------------

def _start(cmd, faulthandler=False):
    # a suite started in the background ignores SIGINT and a child would inherit that: give it the defaults;
    # its own session, so that a kill can reach its worker processes too, as a scheduler's does
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"} if faulthandler else None,
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)],
    )


def _wait_for_partial(parent, name, proc, timeout=120):
    t0 = time.time()
    while not list(parent.glob(f".{name}.partial-*")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() - t0 < timeout, "no partial folder appeared"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(tmp_path, sig):
    proc = _start([PE_RENAL, "synth", "--out", str(tmp_path / "c"), "--n", "400"], faulthandler=True)
    _wait_for_partial(tmp_path, "c", proc)
    proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # a stack dump of where it hangs (faulthandler on SIGABRT), its workers too
        os.killpg(proc.pid, signal.SIGABRT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"pe-renal synth did not stop within 60 s of {sig.name}; its output:\n{out[-8000:]}")
    assert proc.returncode == 128 + sig, out
    assert "nothing was left half-written" in out and "Traceback" not in out
    assert not list(tmp_path.iterdir())


def test_a_killed_runs_leftovers_are_removed_by_the_next_run(tmp_path):
    proc = _start([PE_RENAL, "synth", "--out", str(tmp_path / "c"), "--n", "400"])
    _wait_for_partial(tmp_path, "c", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)  # the whole job, workers included
    assert list(tmp_path.glob(".c.partial-*"))            # SIGKILL cannot be handled: a leftover stays ...
    r = subprocess.run([PE_RENAL, "synth", "--out", str(tmp_path / "c"), "--n", "20"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # ... until the next run to the same place


# ---- predict ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(study_results):
    "The session's small synthetic study (tests/conftest.py): its folder and saved model."
    d, cohort, cfg, out = study_results
    return d, out / "model.skops"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    "16 new women (seed 5), written once for the predict tests below: each test edits a copy of its own."
    return make_cohort(tmp_path_factory.mktemp("fresh") / "new5", n=16, seed=5)


def _new(fresh, tmp_path):
    "A copy of `fresh` (the same images, so their features come from the cache after the first predict)."
    import shutil
    return shutil.copytree(fresh, tmp_path / fresh.name)


def test_predict_scores_a_cohort_whose_labels_are_all_one_value(capsys, model, fresh, tmp_path):
    d, m = model
    new = _new(fresh, tmp_path)
    clin = pd.read_csv(new / "clinical.csv", dtype=str)
    clin["group"] = "preeclampsia"
    clin.to_csv(new / "clinical.csv", index=False)
    code, out, err = cli(capsys, "predict", new, "--model", m, "--out", tmp_path / "p.csv", "--cache", d / "cache")
    assert code == 0, err
    assert "16 patients scored" in out and "same label" in err and "both classes" in err
    p = pd.read_csv(tmp_path / "p.csv")
    assert len(p) == 16 and (p["label"] == 1).all() and not (tmp_path / "p_metrics.csv").exists()


def test_predict_warns_about_categories_never_seen_in_training(capsys, model, fresh, tmp_path):
    d, m = model
    new = _new(fresh, tmp_path)
    clin = pd.read_csv(new / "clinical.csv", dtype=str)
    col = "parity"
    assert col in clin, clin.columns
    seen = sorted(clin[col].dropna().unique())
    clin.loc[:3, col] = "grand multiparous"               # 4 of 16 patients
    clin.to_csv(new / "clinical.csv", index=False)
    code, out, err = cli(capsys, "predict", new, "--model", m, "--out", tmp_path / "p.csv", "--cache", d / "cache")
    assert code == 0, err
    assert "'parity'" in err and "'grand multiparous'" in err and "4 of 16 patients, 25%" in err
    # a column with no value the model knows (recoded 0/1) is refused
    clin[col] = (clin[col] == seen[0]).astype(int).astype(str)
    clin.to_csv(new / "clinical.csv", index=False)
    refused(capsys, "predict", new, "--model", m, "--out", tmp_path / "q.csv", "--cache", d / "cache",
            says=["'parity'", "none of the values the model was trained with"])
    assert not (tmp_path / "q.csv").exists()


def test_non_finite_features_name_the_images_and_a_fix_that_applies(cohort_dir):
    "A network that overflows on one image in fp32: the message names that image and does not advise fp32 again."
    import torch
    from pe_renal.data import load_cohort
    from pe_renal.backbones import Backbone
    from pe_renal.features import extract_features

    class Overflows(torch.nn.Module):
        def forward(self, x):
            m = x.mean(dim=(1, 2, 3), keepdim=True).flatten(1)
            return torch.where(m > m.max() - 1e-6, torch.full_like(m, float("inf")), m).repeat(1, 4)

    bb = Backbone(Overflows(), "overflows", "random:test", 4, untrained=True)
    cohort = load_cohort(cohort_dir)
    with pytest.raises(PeRenalError) as e:
        extract_features(
            cohort, bb, device="cpu", precision="fp32", batch_size=len(cohort.images), cache=False, show_progress=False
        )
    msg = str(e.value)
    assert "1 image(s): images/p" in msg and "check the images" in msg and "--precision fp32" not in msg


def test_a_run_on_a_synthetic_cohort_says_so_without_being_told(model):
    "The cohort comes from make_cohort (its synthetic.json marks it); the config does not say synthetic=True."
    import json
    d, m = model
    run = json.loads((m.parent / "run.json").read_text())
    assert run["config"]["synthetic"] is False
    assert "SYNTHETIC" in run["status"] and run["data"] == "synthetic (not real patients)"
    assert (
        "SYNTHETIC" in (m.parent / "report.html").read_text()
        and "SYNTHETIC" in (m.parent / "tables" / "README.txt").read_text()
    )


def test_a_stop_signal_that_lands_where_python_cannot_raise_is_quiet_and_still_stops(monkeypatch):
    "A signal handled inside a fork hook or a __del__ cannot raise there: no stray traceback, the next check stops."
    import gc
    from pe_renal.core import _on_signal, check_stop, stoppable, Interrupted

    class StopInDel:
        def __del__(self): _on_signal(signal.SIGTERM, None)

    class FailInDel:
        def __del__(self): raise ValueError("a real error in __del__")

    reported = []
    hook = lambda u: reported.append(u.exc_type)
    monkeypatch.setattr(sys, "unraisablehook", hook)
    with stoppable():
        StopInDel()
        gc.collect()
        with pytest.raises(Interrupted):
            check_stop()
        FailInDel()
        gc.collect()  # other unraisable errors are still reported
    assert reported == [ValueError]
    check_stop()                                       # leaving the block forgets the stop ...
    assert sys.unraisablehook is hook                  # ... and gives the caller's hook back


# ---- option values are checked where they are parsed, naming the option ------------------------------------------

@pytest.mark.parametrize(
    "argv, option",
    [
        (["check", "{c}", "--seed", "-1"], "--seed"),
        (["check", "{c}", "--test-size", "1.5"], "--test-size"),
        (["check", "{c}", "--cv-splits", "1"], "--cv-splits"),
        (["check", "{c}", "--cv-splits", "0"], "--cv-splits"),
        (["synth", "--out", "{t}/s", "--effect", "nan"], "--effect"),
        (["synth", "--out", "{t}/s", "--effect", "inf"], "--effect"),
        (["synth", "--out", "{t}/s", "--n", "12"], "--n"),
        (["run", "{c}", "--out", "{t}/r", "--epochs", "0", "--finetune", "last"], "--epochs"),
        (["run", "{c}", "--out", "{t}/r", "--jobs", "0"], "--jobs"),
        (["run", "{c}", "--out", "{t}/r", "--boot", "-1"], "--boot"),
        (["run", "{c}", "--out", "{t}/r", "--seed", "-3"], "--seed"),
        (["run", "{c}", "--out", "{t}/r", "--cv-repeats", "0"], "--cv-repeats"),
        (["run", "{c}", "--out", "{t}/r", "--stability-boot", "-2"], "--stability-boot"),
    ],
)
def test_bad_option_values_are_refused_at_once_naming_the_option(capsys, cohort_dir, tmp_path, argv, option):
    before = tree_state(cohort_dir)
    err = refused(capsys, *[a.format(c=cohort_dir, t=tmp_path) for a in argv], says=[option])
    assert len(err) < 400 and not (tmp_path / "r").exists() and not (tmp_path / "s").exists()
    assert tree_state(cohort_dir) == before


def test_a_test_size_that_leaves_a_class_without_test_patients_is_refused(capsys, cohort_dir):
    refused(capsys, "check", cohort_dir, "--test-size", "0.01", says=["--test-size", "test size"])


def test_library_settings_are_checked_too(tmp_path):
    from pe_renal.study import StudyConfig
    from pe_renal.synthetic import make_cohort

    for kw, option in (
        (dict(seed=-1), "--seed"),
        (dict(epochs=0), "--epochs"),
        (dict(n_jobs=0), "--jobs"),
        (dict(n_boot=-1), "--boot"),
        (dict(cv_splits=1), "--cv-splits"),
        (dict(cv_repeats=0), "--cv-repeats"),
        (dict(stability_boot=-1), "--stability-boot"),
    ):
        with pytest.raises(PeRenalError, match=option):
            StudyConfig(**kw)
    assert StudyConfig(n_jobs=-1).n_jobs == -1 and StudyConfig(epochs=None).epochs is None
    with pytest.raises(PeRenalError, match="finite"):
        make_cohort(tmp_path / "c", n=10, effect=float("nan"))
    from pe_renal.finetune import finetune_backbone
    from pe_renal.data import load_cohort
    with pytest.raises(PeRenalError, match="epochs"):  # 0 epochs is refused, not taken for the default
        finetune_backbone(
            load_cohort(write_cohort(tmp_path / "w", n=20)),
            [f"P{i:02d}" for i in range(14)],
            "resnet18",
            "random",
            epochs=0,
            show_progress=False,
        )


@pytest.mark.parametrize("where", ["cache", "cache/deeper"])
def test_a_cache_inside_the_cohort_is_refused_by_every_command(capsys, cohort_dir, tmp_path, where):
    before = tree_state(cohort_dir)
    cache = cohort_dir / where
    refused(
        capsys,
        "run",
        cohort_dir,
        "--out",
        tmp_path / "r",
        "--cache",
        cache,
        "--weights",
        "random",
        says=["inside the cohort"],
    )
    refused(capsys, "features", cohort_dir, "--out", tmp_path / "f.parquet", "--cache", cache, "--weights", "random",
            says=["inside the cohort"])
    assert tree_state(cohort_dir) == before and not (tmp_path / "r").exists()


def test_the_smallest_cohort_synth_writes_passes_check(capsys, tmp_path):
    code, _, err = cli(capsys, "synth", "--out", tmp_path / "s", "--n", "20")
    assert code == 0, err
    code, out, err = cli(capsys, "check", tmp_path / "s")
    assert code == 0 and "OK" in out, err


# ---- one output folder, two writers --------------------------------------------------------------------------------

def test_a_folder_being_written_is_locked_and_one_that_appears_meanwhile_is_never_replaced(tmp_path):
    from pe_renal.core import staged_dir
    out = tmp_path / "results"
    with staged_dir(out) as tmp:
        (tmp / "run.json").write_text("first")
        with pytest.raises(PeRenalError, match="another pe_renal process .*is writing"):
            with staged_dir(out):
                pass  # a second writer: refused at once
    assert (out / "run.json").read_text() == "first" and not list(tmp_path.glob(".results.lock"))
    # a folder appears under the name while a run works: left as it is, the run's results go beside it
    out2 = tmp_path / "r2"
    with pytest.raises(PeRenalError, match="appeared while this run was working") as e:
        with staged_dir(out2) as tmp:
            (tmp / "run.json").write_text("mine")
            out2.mkdir()
            (out2 / "run.json").write_text("theirs")
    assert (out2 / "run.json").read_text() == "theirs"
    alt = [p for p in tmp_path.iterdir() if p.name.startswith("r2-")]
    assert len(alt) == 1 and (alt[0] / "run.json").read_text() == "mine" and str(alt[0]) in str(e.value)
    # with overwrite, replacing it is what was asked for
    with staged_dir(out2, overwrite=True) as tmp:
        (tmp / "run.json").write_text("again")
    assert (out2 / "run.json").read_text() == "again"


def test_two_commands_into_one_folder_at_once_leave_one_complete_result(tmp_path):
    """Two `pe-renal synth` into the same folder at the same time: one writes it, the other is refused; nothing is lost
    or mixed."""
    out = tmp_path / "same"
    procs = [
        subprocess.Popen(
            [PE_RENAL, "synth", "--out", str(out), "--n", "40", "--seed", str(s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in (1, 2)
    ]
    res = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in res)
    assert codes == [0, 2], res
    refused_err = next(r[1] for r in res if r[2] == 2)
    assert ("is writing" in refused_err or "already exists" in refused_err) and "Traceback" not in refused_err, (
        refused_err
    )
    assert (out / "clinical.csv").is_file() and len(pd.read_csv(out / "clinical.csv")) == 40
    assert not [p for p in tmp_path.iterdir() if p.name != "same"]                 # no leftovers beside it


# ---- `report` on a damaged results folder ---------------------------------------------------------------------------

def _copy_results(study_results, tmp_path):
    import shutil
    return shutil.copytree(study_results[3], tmp_path / "results")


@pytest.mark.parametrize(
    "damage, names",
    [
        (lambda d: (d / "run.json").write_text((d / "run.json").read_text()[:500]), ["run.json", "JSON"]),
        (
            lambda d: (d / "run.json").write_text(
                json.dumps({k: v for k, v in json.loads((d / "run.json").read_text()).items() if k != "summary"})
            ),
            ["run.json", "summary"],
        ),
        (lambda d: (d / "run.json").write_text("[1, 2]"), ["run.json", "list"]),
        (
            lambda d: (
                pd.read_csv(d / "tables" / "delong_comparisons.csv")
                .drop(columns=["cohort"])
                .to_csv(d / "tables" / "delong_comparisons.csv", index=False)
            ),
            ["delong_comparisons.csv", "cohort"],
        ),
    ],
)
def test_report_refuses_a_damaged_results_folder_naming_the_file(capsys, study_results, tmp_path, damage, names):
    d = _copy_results(study_results, tmp_path)
    damage(d)
    before = tree_state(d)
    err = refused(capsys, "report", d, says=names + ["run the study again"])
    assert tree_state(d) == before and len(err) < 800, err


def test_predict_ignores_columns_the_model_never_uses_but_not_those_it_needs(capsys, study_results, tmp_path):
    import shutil
    _, cohort, cfg, out = study_results
    new = shutil.copytree(cohort, tmp_path / "new")
    df = pd.read_csv(new / "clinical.csv")
    used = load_model_columns(out)
    unused = [c for c in df.columns if c not in used + ["patient_id", "group", "label"]]
    assert unused
    df[unused[0]] = None
    df["free_text_notes"] = "see chart"
    df["empty_extra"] = None
    df.to_csv(new / "clinical.csv", index=False)
    code, outp, err = cli(
        capsys,
        "predict",
        new,
        "--model",
        out / "model.skops",
        "--out",
        tmp_path / "p.csv",
        "--cache",
        cfg.cache,
        "--allow-overlap",
    )
    assert code == 0 and (tmp_path / "p.csv").is_file(), err
    df[used[0]] = None  # a column the model uses, empty: refused by name
    df.to_csv(new / "clinical.csv", index=False)
    refused(capsys, "predict", new, "--model", out / "model.skops", "--out", tmp_path / "q.csv", "--cache", cfg.cache,
            "--allow-overlap", says=[used[0], "empty"])


def load_model_columns(out):
    from pe_renal.model_file import load_model
    info = load_model(out / "model.skops")["info"]
    return list(info["numeric"]) + list(info["categorical"])


def test_a_full_disk_is_reported_with_the_file_being_written(capsys, cohort_dir, tmp_path, monkeypatch):
    import pe_renal.core as core
    def full(fd): raise OSError(errno.ENOSPC, "No space left on device")        # as the kernel says it: no file name
    monkeypatch.setattr(core.os, "fsync", full)
    out = tmp_path / "f.parquet"
    err = refused(
        capsys,
        "features",
        cohort_dir,
        "--out",
        out,
        "--weights",
        "random",
        "--backbone",
        "resnet18",
        "--no-cache",
        says=["disk is full", "f.parquet"],
    )
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], err


def test_an_unwritable_cache_keeps_the_computed_features(capsys, cohort_dir, tmp_path):
    (tmp_path / "afile").write_text("a file where the cache folder should be")
    out = tmp_path / "f.parquet"
    code, stdout, err = cli(
        capsys,
        "features",
        cohort_dir,
        "--out",
        out,
        "--weights",
        "random",
        "--backbone",
        "resnet18",
        "--cache",
        tmp_path / "afile" / "cache",
    )
    assert code == 0 and out.is_file() and len(pd.read_parquet(out)) == 20, err
    assert "could not be written" in err and "afile" in err


def test_check_applies_the_limits_fine_tuning_will_meet(capsys, tmp_path):
    "check --finetune / --finetune-cv refuse, before any work, what run would refuse later, with advice that works."
    from pe_renal.split import check_finetune_sizes
    root = write_cohort(tmp_path / "c", n=20)                      # 7 + 7 training patients: too few to fine-tune
    code, out, err = cli(capsys, "check", root)
    assert code == 0, err
    refused(
        capsys, "check", root, "--finetune", "last", says=["--finetune last", "at least 10 of each", "--finetune none"]
    )
    refused(
        capsys,
        "run",
        root,
        "--out",
        tmp_path / "r",
        "--finetune",
        "last",
        "--weights",
        "random",
        "--backbone",
        "resnet18",
        "--cache",
        tmp_path / "cache",
        says=["at least 10 of each"],
    )
    assert (
        not (tmp_path / "cache").exists() and not (tmp_path / "r").exists()
    )  # refused before any feature was computed
    # refit: each fold's training part must allow a fine-tune; the advice (more folds) is checked to be enough
    split = pd.DataFrame(dict(patient_id=[f"P{i}" for i in range(40)], label=[0] * 20 + [1] * 20,
                              split=(["train"] * 14 + ["test"] * 6) * 2))           # 14 + 14 in training
    check_finetune_sizes(split, "last", "once", 3)
    with pytest.raises(PeRenalError, match=r"--cv-splits (\d+)") as e:
        check_finetune_sizes(split, "last", "refit", 3)
    better = int(re.search(r"--cv-splits (\d+)", str(e.value)).group(1))
    check_finetune_sizes(split, "last", "refit", better)  # the advice works
    with pytest.raises(PeRenalError):
        check_finetune_sizes(split, "last", "refit", better - 1)


def test_predict_warns_when_the_model_was_trained_on_roi_crops_and_the_images_have_none(capsys, model, fresh, tmp_path):
    "The model file says how many training images had an ROI; new images without one are scored, with a warning."
    from pe_renal.model_file import load_model
    d, m = model
    roi = load_model(m)["info"]["development"]["roi"]
    assert roi["box"] + roi["mask"] > roi["none"], roi        # the synthetic cohort's training images have boxes
    new = _new(fresh, tmp_path)
    code, out, err = cli(capsys, "predict", new, "--model", m, "--out", tmp_path / "p.csv", "--cache", d / "cache")
    assert code == 0 and "ROI crops" not in err, err          # boxes given: no warning (negative control)
    imgs = pd.read_csv(new / "images.csv")
    imgs.drop(columns=["x0", "y0", "x1", "y1"]).to_csv(new / "images.csv", index=False)
    code, out, err = cli(capsys, "predict", new, "--model", m, "--out", tmp_path / "q.csv", "--cache", d / "cache")
    assert (
        code == 0 and "developed on ROI crops" in err and f"{len(imgs)} of {len(imgs)} images here have none" in err
    ), err
    assert (tmp_path / "q.csv").is_file()
