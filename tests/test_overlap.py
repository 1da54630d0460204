"""`predict` on patients the model was developed on is not external validation, however the cohort was repackaged:
the same
images re-saved losslessly into other files (other compression, other names, another folder, other patient ids) are
recognised by their decoded pixels, and a cohort most of whose patient ids are development ids is overlap too. A new
cohort with new ids stays external (the negative control)."""
import shutil
import warnings

import pandas as pd
import pytest
from PIL import Image

from pe_renal.core import PeRenalError, file_sha256
from pe_renal.model_file import load_model, save_model
from pe_renal.predict import development_overlap, pixel_sha256, predict_cohort
from pe_renal.data import IncorporationBias, load_cohort

from conftest import first_patients


def renumber(root, prefix:str):
    "Give every patient of a cohort folder a new id (prefix + her number), in clinical.csv and images.csv alike."
    clin, imgs = pd.read_csv(root / "clinical.csv", dtype=str), pd.read_csv(root / "images.csv", dtype=str)
    new = {p: f"{prefix}{i:04d}" for i, p in enumerate(clin["patient_id"], 1)}
    clin["patient_id"] = clin["patient_id"].map(new)
    imgs["patient_id"] = imgs["patient_id"].map(new)
    clin.to_csv(root / "clinical.csv", index=False)
    imgs.to_csv(root / "images.csv", index=False)


def resaved_copy(cohort, dst):
    """The development cohort repackaged: every image re-encoded as PNG with other compression settings, under a new
    name
    in another folder, every patient renumbered; not marked synthetic (as a cohort passed on by hand would not be)."""
    shutil.copytree(cohort, dst, ignore=shutil.ignore_patterns("images"))
    (dst / "synthetic.json").unlink(missing_ok=True)
    imgs = pd.read_csv(dst / "images.csv", dtype=str)
    (dst / "scans").mkdir()
    for i, rel in enumerate(imgs["path"]):
        with Image.open(cohort / rel) as im:
            im.load()
            pic = im.copy()
        pic.save(dst / "scans" / f"exam_{i:05d}.png", compress_level=9, optimize=True)
    imgs["path"] = [f"scans/exam_{i:05d}.png" for i in range(len(imgs))]
    imgs.to_csv(dst / "images.csv", index=False)
    renumber(dst, "R")
    return dst


def test_resaved_development_images_are_refused_as_overlap(study_results, tmp_path):
    "12 development patients, their images re-saved into other files: every one of them is found by its pixels."
    _, cohort, cfg, out = study_results
    new = resaved_copy(first_patients(cohort, tmp_path / "part", 12), tmp_path / "resaved")
    assert pd.read_csv(new / "clinical.csv")["group"].nunique() == 2          # both classes: metrics are computed
    old_imgs, new_imgs = pd.read_csv(cohort / "images.csv"), pd.read_csv(new / "images.csv")
    assert not set(map(file_sha256, new / new_imgs["path"])) & set(
        map(file_sha256, cohort / old_imgs["path"])
    )  # no file in common
    assert pixel_sha256(new / new_imgs["path"][0]) == pixel_sha256(cohort / old_imgs["path"][0])  # the same pixels
    info = load_model(out / "model.skops")["info"]
    assert set(info["development"]) == {"patients", "images", "pixels", "roi"}
    o = development_overlap(info, load_cohort(new, require_label=False))
    assert o["n_overlap"] == o["n_patients"] == len(pd.read_csv(new / "clinical.csv"))
    assert o["n_images_overlap"] == o["n_images_pixels_only"] == len(new_imgs) and o["n_ids"] == 0
    with pytest.raises(PeRenalError, match="not external validation") as e:
        predict_cohort(out / "model.skops", new, cache=cfg.cache, verbose=False)
    assert "same pixels" in str(e.value)
    with pytest.warns(UserWarning, match="not external validation"):
        _, metrics = predict_cohort(out / "model.skops", new, cache=cfg.cache, verbose=False, allow_overlap=True)
    assert metrics["validation"].str.startswith("NOT external").all()
    # a model file written before pixel digests cannot tell, and says that its "external" is by image file only
    obj = load_model(out / "model.skops")
    old = {**info, "development": {k: v for k, v in info["development"].items() if k != "pixels"}}
    save_model(tmp_path / "old.skops", obj["models"], obj["thresholds"], old)
    o = development_overlap(old, load_cohort(new, require_label=False))
    assert o["n_overlap"] == 0 and not o["pixels_checked"]
    _, metrics = predict_cohort(tmp_path / "old.skops", new, cache=cfg.cache, verbose=False)
    assert (
        metrics["validation"]
        .str.startswith("external (by image file only: this model file records no pixel digests")
        .all()
    )


def test_most_development_ids_are_overlap_and_new_ids_are_external(study_results, other_images, tmp_path):
    """A cohort with other images but the ids of most development patients (the same women, re-imaged or re-exported) is
    refused; the same cohort with new ids is external; a generated cohort scored by a generated model only warns (the
    generator numbers every cohort S0001, S0002, ...)."""
    _, cohort, cfg, out = study_results
    other = shutil.copytree(other_images, tmp_path / "other")                   # generated: S0001 ... S0012
    info = load_model(out / "model.skops")["info"]
    o = development_overlap(info, load_cohort(other, require_label=False))
    assert o["n_overlap"] == 0 and o["n_ids"] == 12 and not o["most_ids"]        # both synthetic: ids say nothing
    (other / "synthetic.json").unlink()
    with pytest.raises(PeRenalError, match=r"12 of 12 patient ids \(100%\)"):
        predict_cohort(out / "model.skops", other, cache=cfg.cache, verbose=False)
    renumber(other, "N")
    o = development_overlap(info, load_cohort(other, require_label=False))
    assert o["n_overlap"] == o["n_ids"] == 0 and not o["most_ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                            # no overlap warning either
        warnings.simplefilter("ignore", IncorporationBias)   # the shared study's model keeps an outcome-defining column
        _, metrics = predict_cohort(out / "model.skops", other, cache=cfg.cache, verbose=False)
    assert (metrics["validation"] == "external").all()


def _dev(cohort, out):
    "The development patients (ids, split) and their images, as the study saw them."
    split = pd.read_csv(out / "split.csv", dtype={"patient_id": str})
    return split, pd.read_csv(cohort / "images.csv", dtype=str), pd.read_csv(cohort / "clinical.csv", dtype=str)


def _cli(args, capsys):
    from pe_renal.cli import main
    rc = main(args)
    o = capsys.readouterr()
    assert "Traceback" not in o.err
    return rc, " ".join(o.out.split()), " ".join(o.err.split())


@pytest.fixture(scope="module")
def other_images(new_patients, tmp_path_factory):
    "12 new patients' images (the session's new women, tests/conftest.py; each test works on its own copy)."
    return first_patients(new_patients, tmp_path_factory.mktemp("other") / "c", 12)


def test_development_files_copied_and_renamed_are_not_external_whatever_their_ids(study_results, other_images, tmp_path,
                                                                                   capsys):
    """Some development patients' image files copied byte for byte under other names into another folder, their ids
    changed, among new patients: predict refuses them by file digest and counts them right (patients, training patients,
    images); with --allow-overlap its words say NOT external with the same counts."""
    _, cohort, cfg, out = study_results
    split, imgs, clin = _dev(cohort, out)
    picked = split.groupby("split").head(5)["patient_id"].tolist()[:9]        # training and test patients
    n_train = int(split.set_index("patient_id").loc[picked, "split"].eq("train").sum())
    new = shutil.copytree(other_images, tmp_path / "new")
    renumber(new, "N")
    (new / "synthetic.json").unlink()
    (new / "elsewhere").mkdir()
    ids = {p: f"X{i:04d}" for i, p in enumerate(picked, 1)}
    mine = imgs[imgs["patient_id"].isin(picked)].copy()
    for i, rel in enumerate(mine["path"]):
        shutil.copyfile(cohort / rel, new / "elsewhere" / f"copy_{i:03d}.png")
    mine["path"] = [f"elsewhere/copy_{i:03d}.png" for i in range(len(mine))]
    mine["patient_id"] = mine["patient_id"].map(ids)
    rows = clin[clin["patient_id"].isin(picked)].assign(patient_id=lambda d: d["patient_id"].map(ids))
    for name, add in (("images.csv", mine), ("clinical.csv", rows)):
        base = pd.read_csv(new / name, dtype=str)
        pd.concat([base, add[base.columns]], ignore_index=True).to_csv(new / name, index=False)
    shutil.copyfile(cohort / "cohort.toml", new / "cohort.toml")
    n, n_img = 12 + len(picked), len(pd.read_csv(new / "images.csv"))
    words = (f"{len(picked)} of {n} patients ({n_train} of them training patients of this model) have images identical "
             f"to those this model was developed on ({len(mine)} of {n_img} images)")
    args = ["predict", str(new), "--model", str(out / "model.skops"), "--cache", cfg.cache, "--device", "cpu"]
    rc, _, err = _cli(args + ["--out", str(tmp_path / "p.csv")], capsys)
    assert rc == 2 and words in err and "not external validation" in err and "same pixels" not in err, err
    assert not (tmp_path / "p.csv").exists()
    rc, text, err = _cli(args + ["--out", str(tmp_path / "q.csv"), "--allow-overlap"], capsys)
    assert rc == 0 and f"NOT external validation (labels present): {words}." in text, text
    assert f"{n} patients scored" in text and "External validation (labels present):" not in text
    assert pd.read_csv(tmp_path / "q_metrics.csv")["validation"].eq(f"NOT external: {words}").all()


@pytest.mark.parametrize("k", [7, 5])
def test_re_imaged_development_ids_are_counted_and_most_of_them_refused(study_results, other_images, tmp_path, capsys,
                                                                        k):
    """A cohort of other images where k of 12 patients carry development ids (the same women re-imaged): 7 of 12 is
    most of the cohort, refused with the count; 5 of 12 is scored as external by image content, the 5 named."""
    _, cohort, cfg, out = study_results
    split = _dev(cohort, out)[0]
    new = shutil.copytree(other_images, tmp_path / "new")
    (new / "synthetic.json").unlink()
    renumber(new, "N")
    clin, imgs = pd.read_csv(new / "clinical.csv", dtype=str), pd.read_csv(new / "images.csv", dtype=str)
    ids = dict(zip(clin["patient_id"][:k], split["patient_id"][-k:]))
    for t, name in ((clin, "clinical.csv"), (imgs, "images.csv")):
        t["patient_id"] = t["patient_id"].map(lambda p: ids.get(p, p))
        t.to_csv(new / name, index=False)
    args = ["predict", str(new), "--model", str(out / "model.skops"), "--cache", cfg.cache, "--device", "cpu",
            "--out", str(tmp_path / "p.csv")]
    rc, text, err = _cli(args, capsys)
    if k > 6:
        said = f"{k} of 12 patient ids ({k / 12:.0%}) are ids of the patients this model was developed on"
        assert rc == 2 and said in err
        assert "not external validation" in err and "images identical" not in err
    else:
        assert rc == 0 and "NOT external" not in text and "ids of the patients this model was developed on" not in err
        assert (f"External validation (labels present), by image content ({k} patient ids also occur in the "
                "development cohort):") in text, text
        assert f"{k} patient id(s) of" in err
