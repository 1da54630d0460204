"""One rule for every output of every command (pe_renal.core.check_output): an output may not be, lie inside or contain
an input (the cohort folder, the model's results folder with its weights and tables, the feature cache), with or
without --overwrite; an existing empty --out is filled in place; --overwrite through a link leaves nothing behind."""
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pe_renal.core import PathError, check_output, staged_dir
from conftest import tree_state, write_cohort
from test_bad_inputs import cli, refused  # noqa: F401  (the in-process command)

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
