"""Every study setting is declared once (pe_renal.settings): the README's option table, `--help`, StudyConfig and
run.json are made from that declaration, and every public function takes values by one policy (NumPy scalars are their
Python values, a single string is never read as a list of names, a wrong type is a PeRenalError/TypeError naming the
parameter)."""
import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pe_renal.cli import STUDY_OPTIONS, build_parser, main
from pe_renal.core import PeRenalError
from pe_renal.settings import (SETTING, SETTINGS, GRADCAM_LAYERS, GRADCAM_METHODS, FINETUNE_MODES, SettingError,
                               help_text, options_table, settings_json)
from pe_renal.study import StudyConfig

ROOT = Path(__file__).resolve().parents[1]
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


# ---- one declaration: README, --help, StudyConfig ------------------------------------------------------------------

def test_the_readme_option_table_is_the_declaration():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert options_table() in readme, "README's option table differs from pe_renal.settings: run `make readme`"
    index = json.loads((ROOT / "nbs" / "index.ipynb").read_text(encoding="utf-8"))
    assert any(options_table() in "".join(c["source"]) for c in index["cells"])


@pytest.mark.parametrize("command", ["run", "demo"])
def test_help_is_the_declaration(command):
    p = _subparser(command)
    acts = {a.dest: a for a in p._actions if a.dest in SETTING}
    assert list(acts) == STUDY_OPTIONS == [s.name for s in SETTINGS if s.flag]
    for name, a in acts.items():
        s = SETTING[name]
        assert a.option_strings == [s.flag] and a.default == s.default, name
        assert a.choices == s.choices or (a.choices is None and s.choices is None), name
        if not (command == "demo" and name == "weights"):
            assert a.help == help_text(s), name
    text = " ".join(p.format_help().split())
    for s in SETTINGS:
        if s.flag and not (command == "demo" and s.name == "weights"):
            assert s.flag in text and " ".join(help_text(s).split())[:40] in text, s.flag


def test_studyconfig_is_the_declaration():
    assert [(f.name, f.default) for f in dataclasses.fields(StudyConfig)] == [(s.name, s.default) for s in SETTINGS]
    assert StudyConfig.__module__ == "pe_renal.study"


def test_modules_take_their_lists_from_the_declaration():
    from pe_renal.finetune_parts import MODES
    from pe_renal.gradcam import CAM_LAYERS, cam_methods
    from pe_renal.quoted import GRADCAM_PRESETS as report_presets
    from pe_renal.settings import GRADCAM_PRESETS
    assert tuple(cam_methods()) == GRADCAM_METHODS and CAM_LAYERS == GRADCAM_LAYERS
    assert ("none", *MODES) == FINETUNE_MODES and report_presets is GRADCAM_PRESETS


def test_the_command_line_and_python_say_the_same(capsys):
    assert main(["check", "nowhere", "--seed", "-1"]) == 2
    cli_says = capsys.readouterr().err
    with pytest.raises(PeRenalError) as e:
        StudyConfig(seed=-1)
    assert str(e.value) in cli_says


def test_run_takes_every_declared_option():
    args = build_parser().parse_args(["run", "C", "--out", "R", "--test-size", "0.25", "--formats", "png", "pdf",
                                      "--seed", "7", "--jobs", "-1"])
    from pe_renal.commands import config_of
    cfg = config_of(args)
    assert (cfg.test_size, cfg.formats, cfg.seed, cfg.n_jobs) == (0.25, ("png", "pdf"), 7, -1)
    assert args.given == {"test_size", "formats", "seed", "n_jobs"}


# ---- one policy for values ----------------------------------------------------------------------------------------

def _numpy(v):
    "The same value as a NumPy scalar, where there is one."
    if isinstance(v, bool):
        return np.bool_(v)
    if isinstance(v, int):
        return np.int64(v) if -(2**63) <= v < 2**63 else v
    if isinstance(v, float):
        return np.float64(v)
    if isinstance(v, str):
        return np.str_(v)
    return v


@pytest.mark.parametrize("name", [s.name for s in SETTINGS])
def test_each_default_as_a_numpy_scalar_is_its_python_value(name):
    s = SETTING[name]
    v = _numpy(s.default)
    if v is None or isinstance(v, tuple):
        v = s.default
    assert s.check(v) == s.default and type(s.check(v)) is type(s.default)


ANY_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                      st.floats(allow_nan=True, allow_infinity=True),
                      st.text(max_size=12), st.lists(st.text(max_size=6), max_size=3), st.integers(-5, 5).map(np.int32),
                      st.floats(-2, 2).map(np.float32), st.sampled_from(["png", "0.3", "7", "knn", "layer2", ""]),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.just(object()))


@PROPERTY
@given(name=st.sampled_from([s.name for s in SETTINGS]), value=ANY_VALUE)
def test_any_value_is_taken_as_python_or_refused_by_name(name, value):
    "Whatever the type: a JSON-ready Python value of the declared kind, or a PeRenalError naming the setting."
    s = SETTING[name]
    try:
        v = s.check(value)
    except PeRenalError as e:
        assert str(e).startswith(name), str(e)
        return
    assert json.loads(json.dumps(v)) == (list(v) if isinstance(v, tuple) else v)   # JSON as it is, no default=str
    kinds = dict(whole=int, number=float, choice=str, text=str, flag=bool, names=tuple)
    assert v is None or type(v) is kinds[s.kind]
    assert s.check(v) == v                                   # idempotent: a checked value passes again unchanged


@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(32, 1024), ts=st.floats(0.01, 0.99), np_types=st.booleans())
def test_run_json_holds_json_numbers(seed, size, ts, np_types):
    kw = dict(seed=seed, image_size=size, test_size=ts)
    if np_types:
        kw = dict(seed=np.uint32(seed), image_size=np.int16(size), test_size=np.float32(ts))
    cfg = StudyConfig(**kw, formats=np.array(["png", "svg"]))
    back = json.loads(json.dumps(settings_json(cfg)))                 # no default=str: every value is JSON already
    assert back["seed"] == seed and back["image_size"] == size and back["formats"] == ["png", "svg"]
    assert isinstance(back["seed"], int) and isinstance(back["test_size"], float)


@pytest.mark.parametrize("kw, says", [(dict(formats="png"), "formats must be a list of names"),
                                      (dict(test_size="0.3"), "test_size (--test-size) must be a number"),
                                      (dict(seed="7"), "seed (--seed) must be a whole number"),
                                      (dict(image_size=64.0), "image_size (--image-size) must be a whole number"),
                                      (dict(synthetic=1), "synthetic must be True or False"),
                                      (dict(classifier=["knn"]), "classifier (--classifier) must be one of")])
def test_studyconfig_refuses_a_wrong_type_by_name(kw, says):
    with pytest.raises(SettingError, match=r".*") as e:
        StudyConfig(**kw)
    assert says in str(e.value) and isinstance(e.value, TypeError)


def test_run_study_takes_a_dict_of_settings_and_refuses_anything_else(tmp_path):
    from pe_renal.study import run_study
    with pytest.raises(PeRenalError, match="cohort folder not found"):          # the dict was read: the cohort is next
        run_study(tmp_path / "none", tmp_path / "out", {"seed": np.int64(7), "formats": ["png"]}, verbose=False)
    for config, says in (({"sed": 7}, "unknown setting(s) 'sed'"), ("seed=7", "config must be a StudyConfig or a dict"),
                         ({"seed": "7"}, "seed (--seed) must be a whole number")):
        with pytest.raises(SettingError, match=r".*") as e:
            run_study(tmp_path / "none", tmp_path / "out", config)
        assert says in str(e.value)
    assert not (tmp_path / "out").exists()


NAME = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=12)


@PROPERTY
@given(name=NAME)
def test_a_single_string_is_never_read_letter_by_letter(name, tmp_path_factory):
    "load_cohort(features=), table_one(columns=, categorical=), extract_features(images): a string is refused by name."
    import pandas as pd
    from pe_renal.data import load_cohort
    from pe_renal.split import table_one
    from pe_renal.features import extract_features
    with pytest.raises(SettingError, match="features must be a list of names"):
        load_cohort(tmp_path_factory.getbasetemp(), features=name)
    df = pd.DataFrame({"label": [0, 1, 0, 1], name: [1.0, 2.0, 3.0, 4.0]})
    for kw in ("columns", "categorical"):
        with pytest.raises(SettingError, match=f"{kw} must be a list of names"):
            table_one(df, **{kw: name})
    assert name in table_one(df, columns=[name]).to_string()      # the same name in a list is one column
    with pytest.raises(SettingError, match="images must be a Cohort, its images table, or a list of image paths"):
        extract_features(name + ".png")


@pytest.mark.parametrize("bad", [3, 2.5, None, {"a": 1}])
def test_wrong_types_for_paths_and_tables_are_named(bad):
    from pe_renal.data import load_cohort
    from pe_renal.split import table_one
    from pe_renal.features import extract_features
    if bad is not None:
        with pytest.raises(SettingError, match="path must be text or a path"):
            load_cohort(bad)
    with pytest.raises(SettingError, match="table_one: clinical must be a DataFrame"):
        table_one(bad)
    with pytest.raises(SettingError, match="images must be"):
        extract_features(bad)


@PROPERTY
@given(test_size=ANY_VALUE, seed=ANY_VALUE)
def test_split_cohort_checks_its_settings_as_studyconfig_does(test_size, seed):
    import pandas as pd
    from pe_renal.split import split_cohort
    df = pd.DataFrame(dict(patient_id=[f"P{i}" for i in range(20)], label=[0, 1] * 10))
    try:
        SETTING["test_size"].check(test_size)
        SETTING["seed"].check(seed)
        ok = test_size is not None and seed is not None
    except PeRenalError:
        ok = False
    if ok:
        assert set(split_cohort(df, test_size=test_size, seed=seed)["split"]) == {"train", "test"}
    else:
        with pytest.raises(PeRenalError, match=r"^(test_size|seed) \(--(test-size|seed)\)"):
            split_cohort(df, test_size=test_size, seed=seed)
