"""`pe-renal demo` end to end: cold (empty feature cache) and warm, wall time, time per stage, peak memory.

    .venv/bin/python benchmarks/bench_demo.py [--backbone resnet152]

Aims on a 2-core machine with ResNet152: under 5 minutes cold, under 90 s with the feature cache warm,
peak RSS under 3 GB.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PE_RENAL = str(Path(sys.executable).with_name("pe-renal"))


def run(out, cache, backbone):
    env = {**os.environ, "PE_RENAL_CACHE": str(cache), "PE_RENAL_QUIET": "1"}
    t = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import resource, sys; from pe_renal.cli import main; rc = main(sys.argv[1:]); "
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)",
            "demo",
            "--out",
            str(out),
            "--backbone",
            backbone,
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    if r.returncode:
        sys.exit(r.stdout + r.stderr)
    peak = [l.split()[1:] for l in r.stdout.splitlines() if l.startswith("PEAK_RSS_KB")][0]
    m = json.loads((Path(out) / "run.json").read_text())
    return wall, int(peak[0]) * 1024 / 1e9, int(peak[1]) * 1024 / 1e9, m   # ru_maxrss is in KiB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="resnet152")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rows = []
        for name, out in (("cold", d / "cold"), ("warm", d / "warm")):
            wall, rss, rss_children, m = run(out, d / "cache", a.backbone)
            rows.append((name, wall, rss, rss_children, m))
        print(f"pe-renal demo ({a.backbone}, {os.cpu_count()} cores, weights {rows[0][4]['weights']}, "
              f"precision {rows[0][4]['features']['precision']})")
        stages = list(rows[0][4]["timings_s"])
        print(f"{'':8}{'wall s':>8}{'peak RSS GB':>13}{'workers GB':>12}  " + "".join(f"{s[:10]:>11}" for s in stages))
        for name, wall, rss, rc, m in rows:
            print(f"{name:8}{wall:8.0f}{rss:13.2f}{rc:12.2f}  " + "".join(f"{m['timings_s'][s]:11.1f}" for s in stages))
        print("aims: cold < 300 s, warm < 90 s, peak RSS < 3 GB "
              "(the synthetic cohort itself, ~15-20 s, is made anew in both runs and is not one of the stages)")


if __name__ == "__main__":
    main()
