"""The shape of the code a reader lives in: exported notebook cells, module and function lengths.

    python tools/house.py            # every notebook and module, with what is over the limits
    python tools/house.py 01_data    # the notebooks and modules whose names contain 01_data

Limits (tests/test_house.py holds them): an exported cell at most 60 lines and the median exported cell at most 20; a
module at most 600 lines; a function at most 60 lines."""

import ast
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELL_MAX, CELL_MEDIAN, MODULE_MAX, FUNCTION_MAX = 60, 20, 600, 60
EXPORT = re.compile(r"^\s*#\|\s*export", re.M)


def exported_cells(nb: Path) -> list[int]:
    "The number of lines of each exported code cell of notebook `nb`, in order."
    cells = json.loads(nb.read_text())["cells"]
    return [
        len("".join(c["source"]).splitlines())
        for c in cells
        if c["cell_type"] == "code" and EXPORT.search("".join(c["source"]))
    ]


def long_functions(py: Path, limit: int = FUNCTION_MAX) -> list[tuple[str, int]]:
    "(name, lines) of each function or method of module `py` over `limit` lines."
    tree = ast.parse(py.read_text())
    return [
        (n.name, n.end_lineno - n.lineno + 1)
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > limit
    ]


def modules() -> list[Path]:
    return sorted(p for p in (ROOT / "pe_renal").glob("*.py") if p.name != "_modidx.py")


def notebooks() -> list[Path]:
    return sorted(p for p in (ROOT / "nbs").glob("*.ipynb") if not p.name.startswith("index"))


def main(args: list[str]) -> int:
    pick = lambda p: not args or any(a in p.stem for a in args)
    sizes, bad = [], 0
    for nb in filter(pick, notebooks()):
        n = exported_cells(nb)
        sizes += n
        over = [x for x in n if x > CELL_MAX]
        med = statistics.median(n) if n else 0
        print(
            f"{nb.name:28} {len(n):3} exported cells, median {med:5.1f}, longest {max(n, default=0):4}"
            + (f"  OVER {CELL_MAX}: {over}" if over else "")
        )
        bad += len(over)
    if sizes:
        print(f"{'all':28} {len(sizes):3} exported cells, median {statistics.median(sizes):5.1f} (limit {CELL_MEDIAN})")
    for py in filter(pick, modules()):
        n = len(py.read_text().splitlines())
        fs = long_functions(py)
        if n > MODULE_MAX or fs:
            print(
                f"{py.name:28} {n} lines"
                + (f"  OVER {MODULE_MAX}" if n > MODULE_MAX else "")
                + "".join(f"\n    function {f} {k} lines (limit {FUNCTION_MAX})" for f, k in fs)
            )
            bad += (n > MODULE_MAX) + len(fs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
