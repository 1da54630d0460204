"""How long the default synthetic cohort (279 women) takes to generate, and its size on disk.

    .venv/bin/python benchmarks/bench_synthetic.py [--n 279] [--jobs 1 0]

Aim: under 30 s on a 2-core machine with the default settings (all cores).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

from pe_renal.synthetic import make_cohort
from pe_renal.data import load_cohort


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=279)
    ap.add_argument(
        "--jobs", type=int, nargs="+", default=[0, 1], help="worker processes to compare (0 = default: all cores)"
    )
    a = ap.parse_args()
    os.environ.setdefault("PE_RENAL_QUIET", "1")
    print(f"cores: {os.cpu_count()}  patients: {a.n}")
    rows = []
    for jobs in a.jobs:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            root = make_cohort(Path(d) / "c", n=a.n, seed=0, n_jobs=jobs or None)
            gen = time.perf_counter() - t
            t = time.perf_counter()
            c = load_cohort(root)
            load = time.perf_counter() - t
            rows.append((jobs or os.cpu_count(), gen, c.n_images, du(root), load))
    print(f"{'workers':>8} {'generate s':>11} {'images':>7} {'img/s':>7} {'MB on disk':>11} {'load+validate s':>16}")
    for jobs, gen, n_img, size, load in rows:
        print(f"{jobs:>8} {gen:>11.1f} {n_img:>7} {n_img/gen:>7.1f} {size/1e6:>11.1f} {load:>16.1f}")
    if len(rows) > 1:
        print(f"speed-up of {rows[0][0]} workers over {rows[-1][0]}: {rows[-1][1] / rows[0][1]:.2f}x")


if __name__ == "__main__":
    main()
