"""The SHA-256 of every table a study wrote, to show that a change to the code left the results as they were.

    python tools/table_hashes.py RESULTS                      # print `sha256  tables/name.csv` lines
    python tools/table_hashes.py RESULTS --check HASHES.txt   # compare with a recorded list; exit 1 on any difference

benchmarks/results/demo_tables.sha256 records the tables of `pe-renal demo` (seed 42, offline: untrained ResNet152)
on the commit before the notebooks were reshaped into cells of one definition each; a rerun of the demo on a later
commit is checked against it."""

import hashlib
import sys
from pathlib import Path


def table_hashes(results: Path) -> dict[str, str]:
    "{relative path: SHA-256} of each file under RESULTS/tables."
    tables = Path(results) / "tables"
    if not tables.is_dir():
        raise SystemExit(f"{results}: no tables/ folder; give a results folder written by `pe-renal run` or `demo`.")
    return {
        p.relative_to(results).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(tables.rglob("*"))
        if p.is_file()
    }


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    got = table_hashes(Path(argv[0]))
    if len(argv) == 1:
        print("\n".join(f"{h}  {k}" for k, h in got.items()))
        return 0
    want = dict(reversed(line.split()) for line in Path(argv[2]).read_text().splitlines() if line.strip())
    diff = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
    for k in diff:
        print(f"DIFFERS: {k} ({'missing' if k not in got else 'new' if k not in want else 'other bytes'})")
    print(f"{len(got) - len([k for k in diff if k in got])} of {len(want)} tables byte-identical")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
