"""The command line and its outputs: results folders never replace or sit inside an input, a folder being written is
locked against a second command, interruption (Ctrl-C, SIGTERM, SIGHUP, a killed run) leaves nothing half-written,
option values are refused at once naming the option, and OS errors (full disk, unwritable folder) name the file."""
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pe_renal.core import PathError, PeRenalError, check_output, staged_dir

from conftest import refused, tree_state, write_cohort


PE_RENAL = str(Path(sys.executable).with_name("pe-renal"))


# ---- results folders never replace or sit inside an input ------------------------------------------------------------

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
        capsys, "predict", cohort_dir, "--model", model, "--out", cohort_dir / "p.csv",
        says=["inside the cohort folder"]
    )
    assert model.read_bytes() == b"the model" and not (cohort_dir / "p.csv").exists()


# ---- output locations that cannot be used are named before any work --------------------------------------------------

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


# ---- interruption: Ctrl-C, SIGTERM, SIGHUP and a killed run leave nothing half-written -------------------------------

def _start(cmd, faulthandler=False):
    # a suite started in the background ignores SIGINT and a child would inherit that: give it the defaults;
    # its own session, so that a kill can reach its worker processes too, as a scheduler's does
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"} if faulthandler else None,
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
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


# ---- option values are checked where they are parsed, naming the option ----------------------------------------------

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
        (dict(seed=-1), "--seed"), (dict(epochs=0), "--epochs"), (dict(n_jobs=0), "--jobs"),
        (dict(n_boot=-1), "--boot"), (dict(cv_splits=1), "--cv-splits"), (dict(cv_repeats=0), "--cv-repeats"),
        (dict(stability_boot=-1), "--stability-boot")
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
            load_cohort(write_cohort(tmp_path / "w", n=20)), [f"P{i:02d}" for i in range(14)], "resnet18", "random",
            epochs=0, show_progress=False
        )


@pytest.mark.parametrize("where", ["cache", "cache/deeper"])
def test_a_cache_inside_the_cohort_is_refused_by_every_command(capsys, cohort_dir, tmp_path, where):
    before = tree_state(cohort_dir)
    cache = cohort_dir / where
    refused(
        capsys, "run", cohort_dir, "--out", tmp_path / "r", "--cache", cache, "--weights", "random",
        says=["inside the cohort"]
    )
    refused(capsys, "features", cohort_dir, "--out", tmp_path / "f.parquet", "--cache", cache, "--weights", "random",
            says=["inside the cohort"])
    assert tree_state(cohort_dir) == before and not (tmp_path / "r").exists()


# ---- one output folder, two writers ----------------------------------------------------------------------------------

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


# ---- OS errors name the file being written ---------------------------------------------------------------------------

def test_a_full_disk_is_reported_with_the_file_being_written(capsys, cohort_dir, tmp_path, monkeypatch):
    import pe_renal.core as core
    def full(fd): raise OSError(errno.ENOSPC, "No space left on device")        # as the kernel says it: no file name
    monkeypatch.setattr(core.os, "fsync", full)
    out = tmp_path / "f.parquet"
    err = refused(
        capsys, "features", cohort_dir, "--out", out, "--weights", "random", "--backbone", "resnet18", "--no-cache",
        says=["disk is full", "f.parquet"]
    )
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")], err


# ---- the command itself ----------------------------------------------------------------------------------------------

def test_python_dash_m_runs_the_cli():
    r = subprocess.run([sys.executable, "-m", "pe_renal.cli", "--version"], capture_output=True, text=True, timeout=120)
    assert "pe_renal" in r.stdout + r.stderr


# ---- empty folders, mount points and links as outputs ----------------------------------------------------------------

def test_an_existing_empty_results_folder_is_filled(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    with staged_dir(out) as tmp:
        (tmp / "run.json").write_text("{}")
    assert (out / "run.json").is_file()


def test_synth_never_writes_inside_a_cohort(capsys, cohort_dir):
    before = sorted(p.relative_to(cohort_dir) for p in cohort_dir.rglob("*"))
    refused(
        capsys, "synth", "--out", cohort_dir / "sub", "--n", 20,
        says=["inside the cohort folder", "never written into an input"]
    )
    assert sorted(p.relative_to(cohort_dir) for p in cohort_dir.rglob("*")) == before


# ---- the output rule for every command and every input (property-based) ----------------------------------------------

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def world(tmp_path):
    "A cohort, a results folder as `run` leaves it (model, fine-tuned weights, tables), and a feature cache."
    cohort = write_cohort(tmp_path / "cohort", n=12)
    res = tmp_path / "RESULTS"
    (res / "tables").mkdir(parents=True)
    for name, text in (("run.json", "{}"), ("model.skops", "model"), ("finetuned_resnet18.pt", "weights"),
                       ("predictions.csv", "patient_id,p\n"), ("tables/performance.csv", "auc\n")):
        (res / name).write_text(text)
    (tmp_path / "cache").mkdir()
    return dict(root=tmp_path, cohort=cohort, results=res, cache=tmp_path / "cache")


PREDICT_OUTS = [("RESULTS/finetuned_resnet18.pt", "fine-tuned weights file"),
                ("RESULTS/predictions.csv", "results folder"),
                ("RESULTS/model.skops", "model file"), ("RESULTS/tables/performance.csv", "results folder"),
                ("RESULTS/new.csv", "results folder"), ("cohort/clinical.csv", "cohort folder"),
                ("cohort/new.csv", "cohort folder"), ("cache/p.csv", "feature cache")]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("out, names", PREDICT_OUTS)
def test_predict_never_writes_over_or_into_an_input(capsys, world, out, names, overwrite):
    before = tree_state(world["root"])
    refused(capsys, "predict", world["cohort"], "--model", world["results"] / "model.skops",
            "--out", world["root"] / out, "--cache", world["cache"], *(["--overwrite"] if overwrite else []),
            says=[names])
    assert tree_state(world["root"]) == before


@pytest.mark.parametrize("argv, names", [
    (["features", "{cohort}", "--out", "{cohort}/f.parquet", "--cache", "{cache}"], "cohort folder"),
    (["features", "{cohort}", "--out", "{cache}/f.parquet", "--cache", "{cache}"], "feature cache"),
    (["features", "{cohort}", "--out", "{results}/f.parquet", "--cache", "{cache}"], "results folder"),
    (["run", "{cohort}", "--out", "{cohort}/r", "--cache", "{cache}"], "cohort folder"),
    (["run", "{cohort}", "--out", "{results}/r", "--cache", "{cache}"], "results folder"),
    (["run", "{cohort}", "--out", "{root}", "--cache", "{cache}"], "contains the cohort folder"),
    (["run", "{cohort}", "--out", "{cache}", "--cache", "{cache}"], "feature cache"),
    (["synth", "--out", "{cohort}/images/more"], "cohort folder"),
    (["synth", "--out", "{results}/cohort"], "results folder"),
    (["demo", "--out", "{results}/demo"], "results folder")])
@pytest.mark.parametrize("overwrite", [False, True])
def test_every_command_follows_the_rule(capsys, world, argv, names, overwrite):
    before = tree_state(world["root"])
    refused(capsys, *[a.format(**world) for a in argv], *(["--overwrite"] if overwrite else []), says=[names])
    assert tree_state(world["root"]) == before


SEGMENT = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=6)


@PROPERTY
@given(kind=st.sampled_from(["cohort", "results", "cache"]), parts=st.lists(SEGMENT, max_size=3), folder=st.booleans(),
       overwrite=st.booleans())
def test_any_path_in_an_input_is_refused(world, kind, parts, folder, overwrite):
    assume(parts or kind != "results")   # the results folder itself is an earlier output: --overwrite may replace it
    out = world[kind].joinpath(*parts)
    inputs = {"cohort folder": world["cohort"], "feature cache": world["cache"]}
    with pytest.raises(PathError) as e:
        check_output(out, inputs, overwrite=overwrite, folder=folder)
    assert str(world[kind]) in str(e.value) and "even with --overwrite" in str(e.value)


def test_an_empty_folder_is_filled_in_place(tmp_path):
    vol = tmp_path / "volume"
    vol.mkdir()
    ino = vol.stat().st_ino
    with staged_dir(vol) as d:
        (d / "run.json").write_text("{}")
    assert vol.stat().st_ino == ino and sorted(p.name for p in vol.iterdir()) == ["run.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume"]


def test_a_mount_point_is_never_renamed_even_with_overwrite(tmp_path, monkeypatch):
    "A mount point cannot be renamed: its earlier results are replaced inside it."
    vol = tmp_path / "volume"
    vol.mkdir()
    (vol / "run.json").write_text("old")
    (vol / "old.csv").write_text("x")
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == vol)
    monkeypatch.setattr(Path, "rename", _no_rename_of(vol, Path.rename))
    with staged_dir(vol, overwrite=True) as d:
        (d / "run.json").write_text("new")
    assert sorted(p.name for p in vol.iterdir()) == ["run.json"] and (vol / "run.json").read_text() == "new"
    with pytest.raises(PathError, match="already exists"):
        staged_dir(vol).__enter__()


def _no_rename_of(vol: Path, rename):
    def guarded(self, target):
        if Path(self) == vol:
            raise OSError(16, "Device or resource busy", str(self))
        return rename(self, target)
    return guarded


def test_a_failed_run_into_an_empty_folder_leaves_it_empty(tmp_path):
    vol = tmp_path / "volume"
    vol.mkdir()
    with pytest.raises(RuntimeError):
        with staged_dir(vol) as d:
            (d / "half.csv").write_text("x")
            raise RuntimeError("crash")
    assert list(vol.iterdir()) == []


def test_overwrite_through_a_link_leaves_nothing_behind(tmp_path):
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "run.json").write_text("{}")
    (tmp_path / "latest").symlink_to(tmp_path / "run1")
    with staged_dir(tmp_path / "latest", overwrite=True) as d:
        (d / "run.json").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run1"]
    assert (tmp_path / "run1" / "run.json").read_text() == "{}"
    assert (tmp_path / "latest" / "run.json").read_text() == "new"


def test_a_link_to_an_empty_folder_fills_that_folder(tmp_path):
    (tmp_path / "vol").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "vol")
    with staged_dir(tmp_path / "out") as d:
        (d / "run.json").write_text("{}")
    assert (tmp_path / "out").is_symlink() and [p.name for p in (tmp_path / "vol").iterdir()] == ["run.json"]


def test_predict_in_python_refuses_the_results_table(world):
    from pe_renal.predict import predict_cohort
    with pytest.raises(PathError, match="results folder"):
        predict_cohort(world["results"] / "model.skops", world["cohort"], world["results"] / "predictions.csv",
                       overwrite=True, cache=world["cache"])
    assert (world["results"] / "predictions.csv").read_text() == "patient_id,p\n"


def test_an_output_beside_the_inputs_is_allowed(world):
    "The positive control: the rule refuses inputs, not their neighbours."
    inputs = {"cohort folder": world["cohort"], "feature cache": world["cache"],
              "model file": world["results"] / "model.skops"}
    for out, folder in ((world["root"] / "predictions.csv", False), (world["root"] / "RESULTS2", True),
                        (world["root"] / "cohort2" / "x.csv", False)):
        assert check_output(out, inputs, folder=folder) == out
