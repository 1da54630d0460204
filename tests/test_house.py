"""The shape of the house a reader lives in: notebooks whose exported cells are short (one definition each, told by the
prose around it), modules and functions of a size one can hold in mind. The limits and the counting are in
tools/house.py, which prints where a change went over them."""

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import house  # noqa: E402


def test_exported_cells_are_short():
    sizes = {nb.name: house.exported_cells(nb) for nb in house.notebooks()}
    over = {k: [n for n in v if n > house.CELL_MAX] for k, v in sizes.items()}
    assert not any(over.values()), (
        f"exported cells over {house.CELL_MAX} lines: { {k: v for k, v in over.items() if v} }"
    )
    every = [n for v in sizes.values() for n in v]
    assert statistics.median(every) <= house.CELL_MEDIAN, statistics.median(every)


def test_modules_and_functions_are_short():
    long_modules = {p.name: n for p in house.modules() if (n := len(p.read_text().splitlines())) > house.MODULE_MAX}
    assert not long_modules, f"modules over {house.MODULE_MAX} lines: {long_modules}"
    long_functions = {p.name: fs for p in house.modules() if (fs := house.long_functions(p))}
    assert not long_functions, f"functions over {house.FUNCTION_MAX} lines: {long_functions}"


def test_the_counting_sees_what_it_should(tmp_path):
    "A negative control: a long function and a long exported cell are seen as such."
    py = tmp_path / "m.py"
    py.write_text("def f():\n" + "    x = 1\n" * 70)
    assert house.long_functions(py) == [("f", 71)]
    import nbformat

    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("#| export\n" + "x = 1\n" * 70), nbformat.v4.new_code_cell("y = 2")]
    )
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert house.exported_cells(tmp_path / "n.ipynb") == [71]
