"""Which scores choose the thresholds, and what the run says about it: out-of-fold scores of the training patients;
with a
backbone fine-tuned once, the deep models' on the patients whose labels never trained the network (its inner validation)
or, when there are none, on all of them, said to be optimistic; a model identical to another takes its threshold."""
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pe_renal.evaluation import youden_threshold
from pe_renal.models import make_model
from pe_renal.stages_eval import THRESHOLD_RULE, choose_thresholds
from pe_renal.study import StudyConfig

N, REPEATS = 60, 2


def stage(same:bool=False)->SimpleNamespace:
    """The parts of a ModelStage `choose_thresholds` reads: unfitted pipelines (DL and Composite take deep features)
    and scores."""
    rng = np.random.default_rng(0)
    y = rng.permutation(np.r_[np.ones(N // 2), np.zeros(N // 2)]).astype(int)
    res = {m: {"train": (y, rng.random(N)), "test": (y[:20], rng.random(20))} for m in ("DL", "Clinical", "Composite")}
    if same:
        res["Composite"] = res["Clinical"]
    fitted = {"DL": make_model("DL", ["d"]), "Clinical": make_model("Clinical", numeric=["a"]),
              "Composite": make_model("Composite", ["d"], ["a"])}
    return SimpleNamespace(fitted=fitted, results=res, selector=None, y=y)


def null_oof(y:np.ndarray, unseen:set)->pd.DataFrame:
    """Out-of-fold scores under the null: the clinical model's and, for the patients whose labels never trained the
    network,
    the deep models' are noise; the other patients' deep scores follow their labels (a network trained on them)."""
    rng = np.random.default_rng(2)
    ids = np.array([f"P{i:03d}" for i in range(N)])
    rows = []
    for m in ("DL", "Clinical", "Composite"):
        for r in range(1, REPEATS + 1):
            s = rng.random(N)
            if m != "Clinical":
                s = np.where(np.isin(ids, list(unseen)), s, 0.5 * y + 0.5 * rng.random(N))
            rows.append(pd.DataFrame(dict(model=m, repeat=r, patient_id=ids, label=y, score=np.round(s, 2))))
    return pd.concat(rows, ignore_index=True)


def finetuned(val:list, select:str="last")->SimpleNamespace:
    return SimpleNamespace(result=SimpleNamespace(info=dict(select=select, val_patients=val)))


def test_frozen_backbone_thresholds_are_youden_on_all_out_of_fold_scores():
    st = stage()
    oof = null_oof(st.y, set())
    th, rule, used = choose_thresholds(oof, st, StudyConfig(backbone="resnet18"))
    assert rule == THRESHOLD_RULE
    for m in st.results:
        o = oof[oof["model"] == m]
        assert th[m] == youden_threshold(o["label"], o["score"])


def test_finetuned_once_deep_thresholds_use_only_scores_that_never_saw_the_labels():
    st = stage()
    val = [f"P{i:03d}" for i in range(0, N, 5)]                    # 12 patients held out of the fine-tuning
    oof = null_oof(st.y, set(val))
    cfg = StudyConfig(backbone="resnet18", finetune="last", finetune_cv="once")
    th, rule, used = choose_thresholds(oof, st, cfg, finetuned(val))
    for m in ("DL", "Composite"):
        o = oof[(oof["model"] == m) & oof["patient_id"].isin(val)]
        assert th[m] == youden_threshold(o["label"], o["score"])   # on the unseen patients' scores only ...
        everyone = oof[oof["model"] == m]
        assert th[m] != youden_threshold(everyone["label"], everyone["score"])   # ... not where the labels show through
    o = oof[oof["model"] == "Clinical"]
    assert th["Clinical"] == youden_threshold(o["label"], o["score"])
    for m in st.results:                                           # the rows written as having chosen it recompute it
        u = used[(used["model"] == m) & used["chooses_threshold"]]
        assert th[m] == youden_threshold(u["label"], u["score"])
    assert used.groupby("model")["chooses_threshold"].sum().to_dict() == {"DL": 12 * REPEATS, "Clinical": N * REPEATS,
                                                                          "Composite": 12 * REPEATS}
    n_pos = int(pd.Series(st.y, index=[f"P{i:03d}" for i in range(N)]).loc[val].sum())
    assert rule.startswith(
        f"Clinical: {THRESHOLD_RULE}; DL, Composite: Youden index on the out-of-fold predictions of only "
        f"the 12 training patients ({n_pos} with preeclampsia) that the fine-tuning held out"
    ), rule
    assert "DL AUC 0.8" in rule or "DL AUC 0.9" in rule or "DL AUC 1.0" in rule, rule   # the optimism, in numbers
    assert "so that no patient is scored by a model that saw her" not in rule.split("; DL, Composite:")[1]


def test_finetuned_once_without_unseen_patients_says_optimistic():
    st = stage()
    oof = null_oof(st.y, set())
    cfg = StudyConfig(backbone="resnet18", finetune="full", finetune_cv="once")
    for ft in (finetuned([], select="last"), finetuned(["P000", "P005"], select="auc")):
        with pytest.warns(UserWarning, match="OPTIMISTIC"):
            th, rule, used = choose_thresholds(oof, st, cfg, ft)
        assert "DL, Composite: OPTIMISTIC" in rule, rule
        o = oof[oof["model"] == "DL"]
        assert th["DL"] == youden_threshold(o["label"], o["score"])


def test_a_model_identical_to_another_takes_its_threshold():
    st = stage(same=True)
    oof = null_oof(st.y, set())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        th, rule, used = choose_thresholds(oof, st, StudyConfig(backbone="resnet18"))
    assert th["Composite"] == th["Clinical"]
    assert not used.loc[used["model"] == "Composite", "chooses_threshold"].any()  # it has no threshold of its own
    assert (
        rule
        == f"{THRESHOLD_RULE}; Composite is the Clinical model: the same prediction for every patient, so its "
            "threshold is Clinical's"
    )
    cfg = StudyConfig(
        backbone="resnet18", finetune="last", finetune_cv="once"
    )  # fine-tuned once: Composite = Clinical is not deep
    val = [f"P{i:03d}" for i in range(0, N, 5)]
    th, rule, used = choose_thresholds(null_oof(st.y, set(val)), st, cfg, finetuned(val))
    assert th["Composite"] == th["Clinical"] and rule.startswith(f"Clinical, Composite: {THRESHOLD_RULE}; DL: "), rule
