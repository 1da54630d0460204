"""A model file is untrusted input: `load_model` builds nothing a pe_renal model does not hold (an exact list, never
name
prefixes), whatever a tampered, crafted or random file says."""
import builtins
import io
import json
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from pe_renal.core import PeRenalError
from pe_renal.model_file import MODEL_FILE_TYPES, MODEL_FORMAT, load_model, model_file_types, save_model

OLD_PREFIXES = (
    "pe_renal.", "sklearn.", "numpy.", "scipy.sparse.", "builtins.", "collections."
)  # the rule this replaced


def _write(path, obj):
    import skops.io as sio

    path.write_bytes(sio.dumps(obj))
    return path


def _model_dict(models, info=None):
    return {"format": MODEL_FORMAT, "models": models, "thresholds": {k: 0.5 for k in models}, "info": info or {}}


def _refused(path, *names):
    with pytest.raises(PeRenalError) as e:
        load_model(path)
    msg = str(e.value)
    assert str(path) in msg and "refusing" in msg and all(n in msg for n in names), msg
    return msg


def test_a_function_chain_that_passed_the_prefix_rule_is_refused(tmp_path, study_results, capsys):
    """A pipeline of FunctionTransformer steps that reaches builtins.exec when predict_proba runs: every type in it
    starts with
    sklearn., numpy. or builtins., so the prefix rule let it through; the exact list refuses it before building
    anything."""
    import skops.io as sio
    evil = Pipeline([("a", FunctionTransformer(func=np.asarray, kw_args={"dtype": str})),
                     ("b", FunctionTransformer(func=builtins.exec))])
    path = _write(tmp_path / "model.skops", _model_dict({"DL": evil}))
    untrusted = sio.get_untrusted_types(file=path)
    assert untrusted and all(t.startswith(OLD_PREFIXES) for t in untrusted), (
        untrusted
    )  # the old rule would have loaded it
    assert "builtins.exec" in untrusted
    _refused(path, "builtins.exec")
    # and through the command line, as a collaborator's file would arrive
    from pe_renal.cli import main
    _, cohort, _, _ = study_results
    assert main(["predict", str(cohort), "--model", str(path), "--out", str(tmp_path / "p.csv")]) == 2
    assert not (tmp_path / "p.csv").exists()
    err = capsys.readouterr().err
    assert "builtins.exec" in err and "Traceback" not in err


def test_an_unknown_class_and_an_unlisted_ufunc_are_refused_by_name(tmp_path, study_results):
    from sklearn.neural_network import MLPClassifier
    _refused(_write(tmp_path / "a.skops", _model_dict({"DL": Pipeline([("m", MLPClassifier())])})), "MLPClassifier")
    real = load_model(study_results[3] / "model.skops")
    _refused(_write(tmp_path / "b.skops", _model_dict(real["models"], info={"f": np.exp})), "numpy.exp")
    _refused(_write(tmp_path / "c.skops", _model_dict(real["models"], info={"p": pd.Timestamp(0)})), "Timestamp")


CONFIGS = (("knn", "lasso", True, False), ("logistic", "logistic", True, True), ("svm", "lasso", True, False),
           ("rf", "lasso", True, False), ("knn", "logistic", False, True), ("logistic", "lasso", False, False))
FOREST_TREES = 4       # fewer trees than the default 200: the same classes written, in a fraction of the time


def _few_trees(base):
    "`_base_classifier` as pe_renal defines it, its random forest with FOREST_TREES trees (nothing else changed)."
    from sklearn.ensemble import RandomForestClassifier

    def make(name, seed):
        est = base(name, seed)
        return est.set_params(n_estimators=FOREST_TREES) if isinstance(est, RandomForestClassifier) else est
    return make


@pytest.fixture(scope="module")
def configuration_files(tmp_path_factory):
    """A model file of each configuration: each classifier and LASSO method, with and without categorical columns,
    with and without fine-tuned weights named in the file (48 patients, 12 deep features), with the fitted models and
    the test part of their data: {config: (path, fitted, data)}."""
    import pe_renal.models as M
    from pe_renal.models import fit_models, model_data

    rng = np.random.default_rng(0)
    n = 48
    ids = [f"P{i:02d}" for i in range(n)]
    y = np.arange(n) % 2
    deep = pd.DataFrame(
        rng.normal(size=(n, 12)).astype(np.float32), index=ids, columns=[f"deep_{j:04d}" for j in range(12)]
    )
    deep.iloc[y == 1, :3] += 1.5
    clin = pd.DataFrame(dict(patient_id=ids, label=y, split=["train"] * 34 + ["test"] * 14, age=rng.normal(30, 5, n),
                             crea=np.where(rng.random(n) < .1, np.nan, rng.normal(55, 8, n)),
                             parity=rng.choice(["a", "b", "c"], n)))
    root, files = tmp_path_factory.mktemp("configurations"), {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(M, "_base_classifier", _few_trees(M._base_classifier))
        for clf, method, cat, tuned in CONFIGS:
            data = model_data(deep, clin, ["age", "crea"], ["parity"] if cat else [])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted, _ = fit_models(data, classifier=clf, seed=0, lasso={"method": method})
            path = root / f"{clf}_{method}_{cat}.skops"
            info = dict(classifier=clf, backbone="resnet18", weights="random:seed0", precision="fp32",
                        numeric=["age", "crea"], categorical=["parity"] if cat else [], deep_columns=list(deep.columns),
                        n_train=34, auc=0.5, ok=True, none=None,
                        transform=dict(size=224, resize="pad", mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]))
            if tuned:
                info.update(finetune="last", finetune_file="finetuned_resnet18.pt", finetune_sha256="0" * 64)
            save_model(path, fitted, {k: 0.5 for k in fitted}, info)
            files[clf, method, cat, tuned] = path, fitted, data
    return files


def test_the_list_is_exactly_what_every_configuration_writes(configuration_files, study_results):
    """Each classifier and LASSO method, with and without categorical columns, with and without fine-tuned weights named
    in the file, and the shared study's own file: every file holds nothing off the list and loads, and together they
    write every type on it (set equality: a type no configuration writes has no business on a security list). The
    forests have FOREST_TREES trees: the number of trees changes how many objects a file holds, not their types."""
    from sklearn.ensemble import RandomForestClassifier

    written = model_file_types(study_results[3] / "model.skops")
    assert set(configuration_files) == set(CONFIGS)
    knn = model_file_types(configuration_files["knn", "lasso", True, False][0])
    assert written <= knn, written - knn       # the file tampered with below holds every type the study's file holds
    for (clf, *_), (path, fitted, data) in configuration_files.items():
        forest = fitted["Composite"].named_steps["classifier"].best_estimator_
        assert (clf == "rf") == isinstance(forest, RandomForestClassifier)
        types = model_file_types(path)
        assert types <= MODEL_FILE_TYPES, (clf, types - MODEL_FILE_TYPES)
        written |= types
        got = load_model(path)["models"]["Composite"].predict_proba(data.part("test")[0])
        np.testing.assert_array_equal(got, fitted["Composite"].predict_proba(data.part("test")[0]))
    assert MODEL_FILE_TYPES - written == set(), "listed but never written"
    assert written == MODEL_FILE_TYPES


NODE_POOL = [
    ("FunctionNode", "builtins", "exec"),
    ("FunctionNode", "builtins", "eval"),
    ("FunctionNode", "os", "system"),
    ("FunctionNode", "numpy", "exp"),
    ("ObjectNode", "sklearn.preprocessing._function_transformer", "FunctionTransformer"),
    ("ObjectNode", "collections", "OrderedDict"),
    ("MethodNode", "builtins", "str"),
    ("TypeNode", "builtins", "type"),
    ("ObjectNode", "sklearn.pipeline", "Pipeline"),
    ("JsonNode", "builtins", "str"),
    ("NdArrayNode", "numpy", "ndarray"),
    ("ObjectNode", "pe_renal.models", "TunedClassifier"),
    ("DictNode", "builtins", "dict"),
]


def _nodes(n, out):
    if isinstance(n, dict):
        if "__loader__" in n:
            out.append(n)
        for v in n.values():
            _nodes(v, out)
    elif isinstance(n, list):
        for v in n:
            _nodes(v, out)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_and_tampered_model_files_never_load_foreign_objects(configuration_files, tmp_path_factory, data):
    """Random bytes, random zips, and a real model file with nodes swapped for others (dangerous or merely
    misplaced): load_model returns a pe_renal model built only from listed types, or refuses with a PeRenalError naming
    the file; never anything else. The real file is the KNN configuration's with a categorical column: the types of
    the study's own file (a KNN study), in a schema small enough to tamper with quickly (12 deep features, not 512)."""
    real = configuration_files["knn", "lasso", True, False][0]
    with zipfile.ZipFile(real) as z:
        files = {n: z.read(n) for n in z.namelist()}
    kind = data.draw(st.sampled_from(["bytes", "zip", "tamper"]))
    if kind == "bytes":
        blob = data.draw(st.binary(max_size=2000))
    else:
        schema = json.loads(files["schema.json"])
        if kind == "zip":
            schema = data.draw(
                st.recursive(
                    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                    max_leaves=12,
                )
            )
        else:
            nodes = _nodes(schema, [])
            for _ in range(data.draw(st.integers(1, 3))):
                node = nodes[data.draw(st.integers(0, len(nodes) - 1))]
                node["__loader__"], node["__module__"], node["__class__"] = data.draw(st.sampled_from(NODE_POOL))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for n, b in files.items():
                z.writestr(n, json.dumps(schema) if n == "schema.json" else b)
        blob = buf.getvalue()
    path = tmp_path_factory.mktemp("m") / "model.skops"
    path.write_bytes(blob)
    try:
        obj = load_model(path)
    except PeRenalError as e:
        assert str(path) in str(e)
        return
    assert obj["format"] == MODEL_FORMAT and model_file_types(path) <= MODEL_FILE_TYPES
