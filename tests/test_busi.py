"""The real-ultrasound benchmark's data preparation (skipped when ../shared/data is absent)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED_DATA, tree_state

BUSI = SHARED_DATA / "busi_breast_us"
pytestmark = pytest.mark.skipif(not (BUSI / "labels.csv").is_file(), reason="shared BUSI data not present")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_busi_becomes_a_valid_cohort_and_grouped_folds_never_leak(tmp_path):
    import bench_busi
    from sklearn.model_selection import StratifiedGroupKFold
    from pe_renal.data import load_cohort
    before = tree_state(BUSI)
    ids, y, groups = bench_busi.to_cohort(BUSI, tmp_path / "c")
    assert tree_state(BUSI) == before                       # the data folder is only read
    c = load_cohort(tmp_path / "c")
    assert c.n_patients == 640 and int(y.sum()) == 207 and len(set(groups)) < 640
    assert not set(bench_busi.CONFLICTS) & set(ids)
    for tr, te in StratifiedGroupKFold(5, shuffle=True, random_state=0).split(ids, y, groups):
        assert not set(groups[tr]) & set(groups[te])


def test_texture_features_are_finite_and_informative(tmp_path):
    import bench_busi
    ids, y, groups = bench_busi.to_cohort(BUSI, tmp_path / "c")
    from pe_renal.data import load_cohort
    c = load_cohort(tmp_path / "c", check_images=False)
    pick = np.r_[np.flatnonzero(y == 0)[:30], np.flatnonzero(y == 1)[:30]]
    t = bench_busi.texture_features(c.images["abspath"].iloc[pick])
    assert t.shape == (60, 25) and np.isfinite(t.to_numpy()).all()
