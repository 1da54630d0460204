"""The synthetic cohort: the paper's cohort from the command line, signal when asked for, none at effect 0; the
smallest one passes `check`, and a study run on one says it is synthetic without being told."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from pe_renal.core import PeRenalError
from pe_renal.data import load_cohort
from pe_renal.synthetic import make_cohort

from conftest import cli

PE_RENAL = str(Path(sys.executable).with_name("pe-renal"))


def test_cli_synth_gives_the_paper_cohort(tmp_path, capsys):
    """`pe-renal synth` without --n draws the paper's 279 women (151 with preeclampsia); the smallest cohort it writes
    (20 women) is rendered, read and passes `check`."""
    from pe_renal.cli import build_parser
    from pe_renal.synthetic import make_clinical
    args = build_parser().parse_args(["synth", "--out", str(tmp_path / "x")])
    paper = make_clinical(n=args.n, seed=args.seed, effect=args.effect)  # the table make_cohort writes, without images
    assert len(paper) == 279 and paper["group"].value_counts().to_dict() == {"preeclampsia": 151, "normal": 128}
    r = subprocess.run([PE_RENAL, "synth", "--out", str(tmp_path / "c"), "--n", "20"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr                # the installed command, once; `check` and the refusal in-process
    c = load_cohort(tmp_path / "c")
    small = make_clinical(n=20, seed=args.seed, effect=args.effect)
    assert (
        c.n_patients == 20 and (c.clinical["label"].to_numpy() == (small["group"] == "preeclampsia").to_numpy()).all()
    )
    assert c.clinical["label"].value_counts().to_dict() == {1: 11, 0: 9}  # 151/279 of 20, as the paper's share
    assert "NOT REAL" in (tmp_path / "c" / "README.txt").read_text().upper()
    # masks beside every image, same size as the image
    row = pd.read_csv(tmp_path / "c" / "images.csv").iloc[0]
    img = np.asarray(Image.open(tmp_path / "c" / row["path"]))
    assert np.asarray(Image.open(tmp_path / "c" / row["kidney_mask"])).shape == img.shape
    # ids do not give away the label
    assert not c.clinical["patient_id"].str.contains("PE|N", regex=True).any()
    # the smallest cohort synth writes passes check
    code, out, err = cli(capsys, "check", tmp_path / "c")
    assert code == 0 and "OK" in out, err
    # the existing folder is refused with a clear message
    code, _, err = cli(capsys, "synth", "--out", tmp_path / "c")
    assert code == 2 and "already exists" in err and "Traceback" not in err


def _cortex_brightness(root):
    imgs = pd.read_csv(root / "images.csv")
    vals = []
    for _, r in imgs.iterrows():
        a = np.asarray(Image.open(root / r["path"])).astype(float)
        m = np.asarray(Image.open(root / r["cortex_mask"])) > 0
        vals.append(a[m].mean())
    imgs["cortex"] = vals
    truth = pd.read_csv(root / "truth" / "patients.csv")
    per = imgs.groupby("patient_id")["cortex"].mean()
    return truth.set_index("patient_id").join(per)


def _auc(y, s):
    return stats.mannwhitneyu(s[y == 1], s[y == 0]).statistic / ((y == 1).sum() * (y == 0).sum())


def test_images_and_labs_carry_the_signal(synthetic_signal):
    "The session's shared cohort with the default signal (120 women, one image each)."
    root = synthetic_signal
    d = _cortex_brightness(root)
    assert _auc(d["label"].to_numpy(), d["cortex"].to_numpy()) > 0.7          # brighter cortex in preeclampsia
    clin = pd.read_csv(root / "clinical.csv").merge(d.reset_index()[["patient_id", "label"]], on="patient_id")
    cr = clin.dropna(subset=["serum_creatinine_umol_L"])
    assert _auc(cr["label"].to_numpy(), cr["serum_creatinine_umol_L"].to_numpy()) > 0.7


@pytest.mark.slow
def test_effect_zero_means_no_signal(synthetic_null):
    "The session's shared cohort drawn with effect 0 (120 women, one image each)."
    root = synthetic_null
    d = _cortex_brightness(root)
    y = d["label"].to_numpy()
    assert 0.35 < _auc(y, d["cortex"].to_numpy()) < 0.65
    clin = pd.read_csv(root / "clinical.csv").merge(d.reset_index()[["patient_id", "label"]], on="patient_id")
    for col in ["serum_creatinine_umol_L", "sbp_mmHg", "cystatin_c_mg_L"]:
        cc = clin.dropna(subset=[col])
        assert 0.35 < _auc(cc["label"].to_numpy(), cc[col].to_numpy()) < 0.65, col


def test_settings_recorded_and_bad_arguments(tmp_path):
    root = make_cohort(tmp_path / "c", n=20, seed=1, effect=0.5)
    s = json.loads((root / "synthetic.json").read_text())
    assert s["n"] == 20 and s["effect"] == 0.5 and s["seed"] == 1
    with pytest.raises(PeRenalError, match="too small"):
        make_cohort(tmp_path / "d", n=4)
    with pytest.raises(PeRenalError, match="n_pe"):
        make_cohort(tmp_path / "e", n=20, n_pe=20)


# ---- the synthetic cohort through the command line -------------------------------------------------------------------

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
