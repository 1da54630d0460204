"""An updated model file (`pe-renal validate --save-updated`): the update record is written only by `save_model`,
checked
key by key on loading, and a tampered record is refused by name."""
import numpy as np
import pytest
import skops.io as sio

from pe_renal.core import PeRenalError
from pe_renal.model_file import MODEL_FILE_TYPES, load_model, model_file_types, recalibrate_scores, save_model

INFO = dict(backbone="resnet18", weights="random:seed0", precision="fp32", numeric=["a", "b"], categorical=[],
            deep_columns=[], transform=dict(size=32, resize="squash", mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2]))
RECORD = dict(method="logistic", site="hospital B", n=3, events=1, based_on_sha256="ab" * 32, patients=["x", "y", "z"],
              models={"Clinical": dict(intercept=-0.4, slope=1.7, m=0)})


@pytest.fixture
def fitted():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    X = np.random.default_rng(0).normal(size=(60, 2))
    y = (X[:, 0] + np.random.default_rng(1).normal(size=60) > 0).astype(int)
    return {"Clinical": Pipeline([("classifier", LogisticRegression())]).fit(X, y)}, X


def test_an_updated_model_loads_with_its_record(fitted, tmp_path):
    models, X = fitted
    save_model(tmp_path / "u.skops", models, {"Clinical": 0.5}, INFO, update=RECORD)
    obj = load_model(tmp_path / "u.skops")
    assert obj["update"] == RECORD
    assert model_file_types(tmp_path / "u.skops") <= MODEL_FILE_TYPES     # no new kind of object for the record
    p = obj["models"]["Clinical"].predict_proba(X)[:, 1]
    lp = np.log(p / (1 - p))
    np.testing.assert_allclose(recalibrate_scores(p, RECORD["models"]["Clinical"]), 1 / (1 + np.exp(0.4 - 1.7 * lp)))
    save_model(tmp_path / "plain.skops", models, {"Clinical": 0.5}, INFO)
    assert "update" not in load_model(tmp_path / "plain.skops")


BAD = {"an extra key": lambda r: r | {"code": "__import__('os')"},
       "an unknown method": lambda r: r | {"method": "refit"},
       "a reversing slope": lambda r: r | {"models": {"Clinical": dict(intercept=0.0, slope=-1.0, m=0)}},
       "a slope as text": lambda r: r | {"models": {"Clinical": dict(intercept=0.0, slope="2", m=0)}},
       "an intercept update with a slope": lambda r: r | {"method": "intercept"},
       "a model without its update": lambda r: r | {"models": {}},
       "fewer patients than n": lambda r: r | {"patients": ["x"]},
       "not a record": lambda r: [r]}


@pytest.mark.parametrize("how", sorted(BAD))
def test_a_tampered_update_record_is_refused(fitted, tmp_path, how):
    models, _ = fitted
    path = tmp_path / "u.skops"
    save_model(path, models, {"Clinical": 0.5}, INFO, update=RECORD)
    obj = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    obj["update"] = BAD[how](dict(obj["update"]))
    path.write_bytes(sio.dumps(obj))
    with pytest.raises(PeRenalError, match="update record .* is malformed"):
        load_model(path)
    with pytest.raises(PeRenalError, match="not written: the model update is malformed"):   # the writer refuses it too
        save_model(tmp_path / "again.skops", models, {"Clinical": 0.5}, INFO, update=obj["update"])


def test_an_unknown_key_of_the_file_is_refused(fitted, tmp_path):
    models, _ = fitted
    path = tmp_path / "m.skops"
    save_model(path, models, {"Clinical": 0.5}, INFO)
    obj = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    path.write_bytes(sio.dumps(obj | {"updates": RECORD}))
    with pytest.raises(PeRenalError, match="'updates'.*never writes"):
        load_model(path)
