"""The notebooks themselves: each runs from top to bottom as `nbdev_test` runs it, committed clean, and shaped so the
documentation build stays cheap."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted((ROOT / "nbs").glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "tools"))
from docs import mixed_import_cells  # noqa: E402


def test_there_are_notebooks():
    assert len(NBS) >= 12, [p.name for p in NBS]


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.stem)
def test_imports_have_cells_of_their_own(nb):
    assert mixed_import_cells(nb) == []


def test_a_mixed_cell_is_found(tmp_path):
    import nbformat
    cell = nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[cell("import os"),                                  # fine: imports only
                                         cell("from os import (path,\n    sep)"),           # fine: one import on two lines
                                         cell("#| export\nimport os\nx = 1"),              # fine: export cells always run
                                         cell("#| eval: false\nimport os\nx = 1"),         # fine: not run at all
                                         cell("import sys\nprint(sys.path)"),
                                         cell("#| hide\nimport os; x = 1"),
                                         cell("if True:\n    import os\nx = 1")])
    nbformat.write(nb, tmp_path / "x.ipynb")
    assert mixed_import_cells(tmp_path / "x.ipynb") == ["x.ipynb, cell 4: 'import sys'", "x.ipynb, cell 5: 'import os; x = 1'",
                                                        "x.ipynb, cell 6: 'if True:'"]


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.stem)
def test_committed_without_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    assert [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count")] == []


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.stem)
def test_notebook_runs(nb, tmp_path):
    """Each notebook in a process of its own, as `nbdev_test --path` runs it (its test flags, its cells in order), offline
    on a throw-away torch and feature cache: no state, cache or environment variable is shared with any other notebook
    or test, so running them side by side cannot change what one computes."""
    env = {**os.environ, "PE_RENAL_QUIET": "1", "PE_RENAL_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch"),
           "PE_RENAL_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    r = subprocess.run([str(Path(sys.executable).with_name("nbdev_test")), "--path", str(nb), "--n_workers", "0"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"{nb.name} failed:\n{(r.stdout + r.stderr)[-8000:]}"
