"""Where a small study's time goes: one `run_study` of the test suite's shared study (70 synthetic women, resnet18 with
random weights, few resamples, figures at 100 dpi), profiled; prints the CPU seconds of each stage and of drawing the
figures. A whole study costs about the same whatever the cohort's size, which is why the test suite's time is set by
how many whole studies it runs.

    python benchmarks/profile_study.py [--n 70] [--image-size 224]
"""
import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import TEST_DPI, like_a_real_cohort  # noqa: E402

PARTS = ["features_stage", "validation_stage", "gradcam_stage", "shap_stage", "evaluation_stage", "report_stage",
         "save_figure"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=70)
    ap.add_argument("--image-size", type=int, default=224)
    a = ap.parse_args(argv)
    from pe_renal.study import StudyConfig, run_study
    from pe_renal.synthetic import make_cohort
    d = Path(tempfile.mkdtemp())
    like_a_real_cohort(make_cohort(d / "cohort", n=a.n, seed=0, delta=2.5, n_jobs=1))
    cfg = StudyConfig(backbone="resnet18", weights="random", device="cpu", cv_repeats=2, n_boot=3, n_boot_ci=100,
                      stability_boot=5, shap_background=10, dpi=TEST_DPI, image_size=a.image_size,
                      cache=str(d / "cache"))
    run_study(d / "cohort", d / "warm", cfg, verbose=False)     # imports and the feature cache paid once
    t0, prof = time.process_time(), cProfile.Profile()
    prof.runcall(run_study, d / "cohort", d / "results", cfg, verbose=False)
    total = time.process_time() - t0
    stats = pstats.Stats(prof).stats
    print(f"study of {a.n} women, resnet18 random weights, {a.image_size} px, second run (warm imports and cache): "
          f"{total:.1f} CPU s")
    for part in PARTS:
        cum = sum(v[3] for (file, line, fn), v in stats.items() if fn == part)
        print(f"  {part:18s} {cum:5.1f} s")


if __name__ == "__main__":
    main()
