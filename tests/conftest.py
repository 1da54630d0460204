"Shared fixtures: small cohort folders written in the data contract, the study run once, the in-process command."
import functools
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config):
    """The test session never reads or writes the user's caches: pe_renal's (features) and torch's (weights) are a
    throw-away folder of this process (each xdist worker has its own); $PE_RENAL_CACHE overrides any XDG folder."""
    import atexit
    import shutil
    import tempfile
    root = tempfile.mkdtemp(prefix="pe_renal_tests_")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    os.environ["PE_RENAL_CACHE"] = os.path.join(root, "pe_renal")
    os.environ["TORCH_HOME"] = os.path.join(root, "torch")


def write_cohort(root: Path, n: int = 12, images_per_patient: int = 1, seed: int = 0) -> Path:
    "A small valid cohort: n patients (alternating labels), gray PNGs, an ROI box, one categorical column."
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        for k in range(images_per_patient):
            name = f"images/p{i:02d}_{k}.png"
            Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).save(root / name)
            rows.append(dict(patient_id=f"P{i:02d}", path=name, x0=2, y0=2, x1=48, y1=38))
    pd.DataFrame(rows).to_csv(root / "images.csv", index=False)
    pd.DataFrame(dict(patient_id=[f"P{i:02d}" for i in range(n)], label=[i % 2 for i in range(n)],
                      age=rng.integers(20, 40, n), creatinine=rng.normal(55, 8, n).round(1),
                      parity=["nulliparous", "multiparous"] * (n // 2) + ["nulliparous"] * (n % 2))
                 ).to_csv(root / "clinical.csv", index=False)
    return root


# The slowest notebooks and tests (about 3 s or more in a quiet run, `pytest --durations`), slowest first. One list, two
# uses: they are scheduled first, so that the parallel workers finish together, and they are the checks `make test-fast`
# leaves out (marked `slow` here, beside the tests marked in their own files). What is not on them runs afterwards, in
# file order.
SLOWEST_NOTEBOOKS = [
    "07_gradcam",
    "09_study",
    "05a_internal",
    "03b_finetune",
    "05_models",
    "08_shap",
    "03_features",
    "05b_samplesize",
    "02_synthetic",
    "04_lasso",
    "04b_lasso_figures",
    "06b_calibration",
    "index",
    "08d_validate",
    "03a_finetune_parts",
    "06_evaluation",
    "10_cli",
]
SLOWEST_TESTS = [
    "test_interrupted_runs_leave_no_results_folder_and_reruns_give_the_same_results",
    "test_study_positive_control_test_auc_above_chance",
    "test_cv_interval_covers_the_final_models_true_auc",
    "test_image_signal_fine_tuned_network_learns_it",
    "test_cv_interval_covers_one_half_on_null_cohorts",
    "test_perturbing_the_test_patients_changes_nothing_that_was_fitted",
    "test_null_control_is_centred_on_one_half_with_cis_covering_it",
    "test_study_negative_control_test_auc_ci_covers_half",
    "test_positive_and_negative_control",
    "test_finetuned_weights_curve_and_manifest",
    "test_status_headings_and_figures_are_shown",
    "test_predict_new_patients_with_labels",
    "test_perturbing_the_test_patients_changes_no_fine_tuned_weight",
    "test_refit_per_fold_fine_tunes_every_fold_on_its_training_patients_only",
    "test_saved_update_is_what_predict_applies",
    "test_null_cohort_held_out_auc_covers_half",
    "test_predict_without_labels_and_with_a_missing_column",
    "test_contract",
    "test_predict_with_signal_auc_is_delong_of_the_written_scores",
    "test_internal_validation_reproducible_and_parallel",
    "test_a_failing_notebook_fails_and_says_where",
    "test_committed_reference_is_what_rms_gives",
    "test_positive_control_is_near_a_large_held_out_set",
    "test_learning_stage_on_a_null_cohort_is_flat_and_reported",
    "test_a_runner_that_dies_is_reported_and_replaced",
    "test_the_list_is_exactly_what_every_configuration_writes",
    "test_same_site_looks_like_the_first",
    "test_finetuned_features_reuse_the_trunk_and_equal_a_plain_forward_pass",
    "test_a_command_whose_stderr_is_a_file_logs_progress",
    "test_resaved_development_images_are_refused_as_overlap",
    "test_finetuning_weights_do_not_depend_on_the_thread_count",
    "test_predict_on_the_study_cohort_reproduces_predictions_csv_and_nothing_is_written_into_it",
    "test_compare_classifiers",
    "test_visible_text_has_no_markup",
    "test_every_module_imports_under_warnings_as_errors",
    "test_weights_file_round_trip_and_cli",
    "test_two_commands_into_one_folder_at_once_leave_one_complete_result",
    "test_scanner_shift_lowers_the_auc_and_case_mix_is_seen",
    "test_images_and_labs_carry_the_signal",
    "test_random_and_tampered_model_files_never_load_foreign_objects",
    "test_same_seed_same_weights",
    "test_negative_control_covers_chance",
    "test_a_killed_runs_leftovers_are_removed_by_the_next_run",
    "test_cli_synth_gives_the_paper_cohort",
    "test_default_site_is_the_first_site",
    "test_stand_in_model_is_not_a_number",
    "test_check_prints_the_warning",
    "test_busi_becomes_a_valid_cohort_and_grouped_folds_never_leak",
    "test_any_value_in_a_numeric_column",
]


# the session's whole-study builds (each a run_study or more, shared by every test that asks): a test that needs one is
# an end-to-end check, marked slow too, so `make test-fast` runs no whole study
WHOLE_STUDY_FIXTURES = {"study_results", "external_sites", "v_prev"}


@functools.lru_cache(maxsize=None)
def asked_at_run_time(source: str) -> frozenset:
    """The fixtures a test file asks for by name while it runs (`request.getfixturevalue("name")`, a string literal):
    pytest's fixture closure does not see them, so the whole-study rule treats every test of that file as needing
    them."""
    import ast
    return frozenset(
        n.args[0].value for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "getfixturevalue"
        and n.args and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)
    )


@functools.lru_cache(maxsize=None)
def _asked_in_file(path: Path) -> frozenset:
    "`asked_at_run_time` of a test file, read once per session (not once per test)."
    return asked_at_run_time(path.read_text()) if path.suffix == ".py" else frozenset()


def needs_whole_study(item) -> bool:
    "The test asks for a whole-study build: in its fixture closure, or by name at run time somewhere in its file."
    path = getattr(item, "path", None)
    late = _asked_in_file(path) if path is not None else frozenset()
    return bool(WHOLE_STUDY_FIXTURES & (set(getattr(item, "fixturenames", ())) | late))


def pytest_collection_modifyitems(config, items):
    """The slowest notebooks first, then the slowest tests, then the others in file order; the listed ones, and those
    that need a whole study, marked slow."""
    def listed(item) -> tuple:
        "(0, place) for a listed notebook, (1, place) for a listed test, (2, 0) for the others."
        nb = item.get_closest_marker("notebook") and hasattr(item, "callspec") and item.callspec.params.get("nb")
        if nb:
            return (0, SLOWEST_NOTEBOOKS.index(nb.stem)) if nb.stem in SLOWEST_NOTEBOOKS else (2, 0)
        slow = [i for i, t in enumerate(SLOWEST_TESTS) if item.name.startswith(t)]
        return (1, slow[0]) if slow else (2, 0)
    for item in items:
        if listed(item)[0] < 2 or needs_whole_study(item):
            item.add_marker(pytest.mark.slow)
    items.sort(key=listed)         # stable: the other tests keep their order


@pytest.fixture
def cohort_dir(tmp_path) -> Path:
    "20 patients: a 7:3 split leaves 7 of each class for training, enough for the run's 5-fold cross-validation."
    return write_cohort(tmp_path / "cohort", n=20)


def cli(capsys, *argv):
    "Run `pe-renal ARGV` in-process; return (status, stdout, stderr). A traceback would raise here and fail the test."
    from pe_renal.cli import main  # imported late: pytest_configure sets the caches first

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def refused(capsys, *argv, says=()):
    """Run `pe-renal ARGV`: it must fail with status 2, its error naming each of `says`, and naming it outside the test
    folder's own path (a word found only in /tmp/pytest-of-.../test_x0/ does not count)."""
    code, out, err = cli(capsys, *argv)
    assert code == 2, (code, out, err)

    def words(text):
        return re.sub(r"\S*pytest-\S*/", "", text).lower()  # the test folders' own names do not count
    for s in says:
        assert s.lower() in err.lower() and words(s) in words(err), f"{s!r} not in:\n{err}"
    return err


def edit(path: Path, fn):
    "Read a cohort CSV as text, change it with fn(df) -> df, write it back."
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    fn(df).to_csv(path, index=False)


def tree_state(root: Path) -> dict:
    "Every file under root with its size, mtime and content hash: to prove nothing was written."
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.join(dirpath, d)] = "dir"
        for f in filenames:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p)] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


class StudyRun(tuple):
    "(folder, cohort, config, results); `.before` is the cohort's tree state before the run."
    before: dict


def shared_dir(tmp_path_factory, request) -> Path:
    "A folder every pytest-xdist worker of this session sees (the session's own temporary folder without xdist)."
    root = tmp_path_factory.getbasetemp()
    return root.parent if hasattr(request.config, "workerinput") else root


def build_once(tmp_path_factory, request, name:str, build) -> Path:
    """A folder `name` that every pytest-xdist worker of this session shares, filled by `build(folder)` once: the first
    worker that asks builds it under a file lock, the others wait and read it. A failed attempt's leftovers are removed
    before the next try."""
    import shutil
    from filelock import FileLock
    root = shared_dir(tmp_path_factory, request)
    d = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (d / ".built").exists():
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            build(d)
            (d / ".built").touch()
    return d


KEPT_OUTCOME_DEFINING = "urine_protein_24h_g"     # the shared study keeps this outcome-defining column as a predictor
PARITY_LEVELS = ("nulliparous", "primiparous", "multiparous")


def like_a_real_cohort(root: Path) -> Path:
    """What real cohorts have and the generated one does not: a categorical predictor with three levels (parity: every
    other multiparous woman becomes primiparous) and an outcome-defining column kept as a predictor (its line removed
    from [clinical.exclude]; it stays in outcome_defining), so the study takes its incorporation-bias path."""
    import re
    clin = pd.read_csv(root / "clinical.csv", dtype=str, keep_default_na=False)
    multi = clin.index[clin["parity"] == "multiparous"]
    clin.loc[multi[::2], "parity"] = "primiparous"
    assert set(clin["parity"]) == set(PARITY_LEVELS)
    clin.to_csv(root / "clinical.csv", index=False)
    toml = (root / "cohort.toml").read_text()
    kept = re.sub(rf"^{KEPT_OUTCOME_DEFINING} = .*\n", "", toml, flags=re.M)
    assert kept != toml and f'"{KEPT_OUTCOME_DEFINING}"' in kept
    (root / "cohort.toml").write_text(kept)
    return root


def shared_cohort(tmp_path_factory, request, name: str, folder: str = "cohort", real: bool = False, **kw) -> Path:
    """The synthetic cohort `make_cohort(**kw)` (one process unless `n_jobs` says otherwise; `real`: made like a real
    cohort, `like_a_real_cohort`), written once per session into a folder every xdist worker reads. Tests only read it:
    `cohort_subset` copies it for a test that edits."""
    from pe_renal.synthetic import make_cohort

    def build(d):
        c = make_cohort(d / folder, **{"n_jobs": 1, **kw})
        if real:
            like_a_real_cohort(c)
    return build_once(tmp_path_factory, request, name, build) / folder


def cohort_subset(src: Path, dst: Path, keep, link: bool = True) -> Path:
    """The patients `keep` (ids) of cohort folder `src` as a cohort folder `dst`: its tables' rows of those patients
    (truth/ too), its settings, and their images and masks, hard links of the same files (`link`) or copies byte for
    byte (for a test that edits them); either way their deep features are found in the feature cache."""
    import json
    import shutil
    keep = set(keep)
    dst.mkdir(parents=True)
    for f in ("cohort.toml", "README.txt"):
        if (src / f).is_file():
            shutil.copyfile(src / f, dst / f)
    for t in ("clinical.csv", "images.csv", "truth/patients.csv", "truth/images.csv"):
        if (src / t).is_file():
            df = pd.read_csv(src / t, dtype=str, keep_default_na=False)
            (dst / t).parent.mkdir(exist_ok=True)
            df[df["patient_id"].isin(keep)].to_csv(dst / t, index=False)
    imgs = pd.read_csv(dst / "images.csv", dtype=str, keep_default_na=False)
    for f in [f for col in ("path", "kidney_mask", "cortex_mask") for f in imgs.get(col, []) if f]:
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        (os.link if link else shutil.copyfile)(src / f, dst / f)
    if (src / "synthetic.json").is_file():
        truth = pd.read_csv(dst / "truth/patients.csv")
        meta = json.loads((src / "synthetic.json").read_text())
        (dst / "synthetic.json").write_text(json.dumps(meta | dict(n=len(truth), n_pe=int(truth["label"].sum()),
                                                                    subset_of=src.name), indent=2))
    return dst


def first_patients(src: Path, dst: Path, n: int, link: bool = False) -> Path:
    """The first n patients of the cohort folder `src` as a cohort folder `dst` (`cohort_subset`): copies for a test to
    edit, or hard links (`link`) for one that only reads them."""
    clin = pd.read_csv(src / "clinical.csv", dtype=str, keep_default_na=False)
    return cohort_subset(src, dst, clin["patient_id"][:n], link=link)


# small figures (dpi 100) wherever a test does not look at their resolution: at 300 dpi about a quarter of a small
# study's time is drawing and stamping PNGs
TEST_DPI = 100


@pytest.fixture(scope="session")
def study_results(tmp_path_factory, request):
    """One small synthetic run of the whole study (resnet18, random weights, few resamples), shared by the test modules
    and computed once per session even with several xdist workers. Tests only read it. The config does not say
    synthetic=True: the cohort's own marker (synthetic.json) must make every output say so."""
    import json
    from pe_renal.study import StudyConfig, run_study
    from pe_renal.synthetic import make_cohort
    d = shared_dir(tmp_path_factory, request) / "study"
    cfg = StudyConfig(backbone="resnet18", weights="random", device="cpu", cv_repeats=2, n_boot=3, n_boot_ci=100,
                      stability_boot=5, shap_background=10, dpi=TEST_DPI, cache=str(d / "cache"))
    def build(d):
        make_cohort(
            d / "cohort", n=70, seed=0, delta=2.5
        )  # a strong signal: LASSO keeps deep features even from an untrained resnet18
        like_a_real_cohort(d / "cohort")
        before = tree_state(d / "cohort")
        run_study(d / "cohort", d / "results", cfg, verbose=False, copy_cohort=True)
        (d / "before.json").write_text(json.dumps(before))
    build_once(tmp_path_factory, request, "study", build)
    run = StudyRun((d, d / "cohort", cfg, d / "results"))
    run.before = {
        k: tuple(v) if isinstance(v, list) else v for k, v in json.loads((d / "before.json").read_text()).items()
    }
    return run


@pytest.fixture(params=["fp32", "bf16"])
def cpu_kind(request, monkeypatch):
    """`precision="auto"` as it decides on a CPU without native bf16 kernels ("fp32") and on one with them ("bf16"),
    whichever this CPU is: both paths run on every machine (bf16 arithmetic is emulated, slower, where it is not
    native)."""
    import pe_renal.features as F
    monkeypatch.setattr(F, "cpu_bf16_kernels", lambda: request.param == "bf16")
    return request.param


@pytest.fixture(scope="module")
def model(study_results):
    "The session's small synthetic study (tests/conftest.py): its folder and saved model."
    d, cohort, cfg, out = study_results
    return d, out / "model.skops"


# --- what a person sees of an HTML page (the report, the validation report): headless Debian Chromium ---------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# markup or an HTML entity shown as text: a page that escaped what it should have rendered
MARKUP = re.compile(
    r"<\s*/?\s*(table|thead|tbody|tr|td|th|div|span|p|br|img|details|summary)\b|&(lt|gt|amp|quot|nbsp|#\d+);", re.I
)
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason="Debian's chromium is not installed (apt-get install chromium)"
)


def read_in_chromium(html: Path, screenshot: Path | None = None) -> dict:
    """What Chromium shows of `html`: body text, title, status line, h1 and h2 headings, each table (its data-source and
    data-filter, header and cell texts), each image (alt, loaded, natural width and height) and the page's script
    errors; with `screenshot`, a full-page screenshot with every <details> opened."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(Path(html).as_uri())
        page.wait_for_load_state("load")
        out = dict(
            text=page.inner_text("body"), errors=errors, title=page.title(),
            status=page.inner_text("p.status") if page.query_selector("p.status") else "",
            h1=page.inner_text("h1") if page.query_selector("h1") else "",
            h2=[h.inner_text() for h in page.query_selector_all("h2")],
            tables=page.evaluate("""Array.from(document.querySelectorAll('table')).map(t => ({
                source: t.dataset.source || '', filter: t.dataset.filter || '',
                header: Array.from(t.querySelectorAll('thead th')).map(c => c.textContent.trim()),
                rows: Array.from(t.querySelectorAll('tbody tr'))
                  .map(r => Array.from(r.cells).map(c => c.textContent.trim()))}))"""),
            imgs=page.evaluate(
                "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
            ),
        )
        if screenshot:
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return out


# --- external validation ---------------------------------------------------------------------------------------------
def external_site(tmp_path_factory, request, name: str, real: bool = True, **kw) -> Path:
    """A second hospital drawn like the study's cohort (delta 2.5, `kw` to make_cohort; `real`: as real cohorts, three
    parity levels and a kept outcome column), written once per session and shared by the xdist workers."""
    return shared_cohort(tmp_path_factory, request, f"external_{name}", folder=name, real=real, delta=2.5, n_jobs=2,
                         **kw)


def external_validated(tmp_path_factory, request, study_results, cohort: Path, name: str, **kw) -> Path:
    "`validate_cohort` of the study's model on `cohort` (50 resamples, small figures), once per session; read only."
    from pe_renal.external import validate_cohort

    def build(d):
        validate_cohort(study_results[3] / "model.skops", cohort, d / "v", n_boot=50, cache=study_results[2].cache,
                        device="cpu", verbose=False, dpi=60, **kw)
    return build_once(tmp_path_factory, request, f"external_{name}", build) / "v"


EXTERNAL_N = 80            # patients of the second site drawn like the first


@pytest.fixture(scope="session")
def external_sites(study_results, tmp_path_factory, request):
    """Two more hospitals: `same`, drawn like the study's cohort (n=80, seed 11); `prev`, all of its women without
    preeclampsia and a quarter as many with it: 20% prevalence instead of 54%, each outcome's patients drawn as at the
    first hospital (a shift of prevalence alone, what make_cohort's n_pe draws too). `prev`'s images are `same`'s, so
    their features are extracted once."""
    same = external_site(tmp_path_factory, request, "same", n=EXTERNAL_N, seed=11, site=dict(id_prefix="B"))

    def build(d):
        y = pd.read_csv(same / "truth/patients.csv").set_index("patient_id")["label"]
        controls, cases = y.index[y == 0], y.index[y == 1]
        cohort_subset(same, d / "prev", list(controls) + list(cases[: round(len(controls) / 4)]))
    prev = build_once(tmp_path_factory, request, "external_prev", build) / "prev"
    return same, prev


@pytest.fixture(scope="session")
def v_prev(study_results, external_sites, tmp_path_factory, request):
    """The validation at 20% prevalence, saving its logistic update (written after the tables, which it changes not):
    read by tests/test_external.py and, as a person sees its report, by tests/test_validation_report_browser.py."""
    return external_validated(tmp_path_factory, request, study_results, external_sites[1], "v_prev",
                              save_updated="logistic")


# --- fine-tuning ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ft_small_cohort(tmp_path_factory, request) -> Path:
    "30 women with a strong image signal and no lab signal, one image each: fine-tuning runs compared with each other."
    return shared_cohort(tmp_path_factory, request, "ft_small_cohort", n=30, seed=2, image_effect=3.0, lab_effect=0.0,
                         annotation_rate=0.0, two_views_rate=0.0)


@pytest.fixture(scope="session")
def ft_study_cohort(tmp_path_factory, request) -> Path:
    "40 women (delta 2.5): the cohort of the fine-tuned studies (fp32 and bf16)."
    return shared_cohort(tmp_path_factory, request, "ft_study_cohort", n=40, seed=3, delta=2.5)


# --- features, synthetic data and explanations ------------------------------------------------------------------------
def _synthetic_pair(tmp_path_factory, request, effect: float, seed: int) -> Path:
    "A synthetic cohort of 120 women, one image each, written once per session (every xdist worker reads it)."
    return shared_cohort(tmp_path_factory, request, f"synthetic_effect{effect:g}", folder="c", n=120, seed=seed,
                         effect=effect, two_views_rate=0)


@pytest.fixture(scope="session")
def synthetic_signal(tmp_path_factory, request) -> Path:
    "The positive control of the generator and of deep features: a synthetic cohort with its default signal."
    return _synthetic_pair(tmp_path_factory, request, 1.0, 2)


@pytest.fixture(scope="session")
def synthetic_null(tmp_path_factory, request) -> Path:
    "The negative control: a synthetic cohort drawn with effect 0 (no signal in images or labs)."
    return _synthetic_pair(tmp_path_factory, request, 0.0, 3)


# --- known answers, model files, overlap, predict, report -------------------------------------------------------------
@pytest.fixture(scope="session")
def new_patients(tmp_path_factory, request) -> Path:
    """40 new women with a strong signal (seed 11, delta 2.5, as the shared study): built once per session; tests copy
    it (`first_patients`) before editing it. Their deep features, once computed under the shared study's cache, are
    read from it by every later copy."""
    return shared_cohort(tmp_path_factory, request, "new_patients", n=40, seed=11, delta=2.5)
