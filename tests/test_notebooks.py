"""The notebooks themselves: each runs from top to bottom as `nbdev_test` runs it, committed clean, and shaped so the
documentation build stays cheap."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
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


class NotebookRunner:
    "tests/notebook_runner.py in a process of its own (one per test worker), which forks a fresh child per notebook."
    def __init__(self, env: dict, log: Path):
        self.log = log                                 # the runner's own errors (its children write their own logs)
        with open(log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("notebook_runner.py"))], env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        self.replies = queue.Queue()
        threading.Thread(target=lambda: [self.replies.put(json.loads(l)) for l in self.proc.stdout], daemon=True).start()

    def run(self, nb: Path, env: dict, log: Path, timeout: float) -> int:
        "Run one notebook; its exit code (0: passed), or None when it ran past `timeout` seconds and was stopped."
        self.proc.stdin.write(json.dumps(dict(nb=str(nb), env=env, log=str(log), root=str(ROOT))) + "\n")
        self.proc.stdin.flush()
        try: pid = self.replies.get(timeout=300)["pid"]
        except queue.Empty:
            raise RuntimeError(f"the notebook runner did not start {nb.name} (exit code {self.proc.poll()}):\n"
                               f"{self.log.read_text()[-4000:]}") from None
        try: return self.replies.get(timeout=timeout)["code"]
        except queue.Empty:
            os.kill(pid, signal.SIGKILL); self.replies.get(timeout=60)
            return None

    def close(self):
        self.proc.stdin.close(); self.proc.wait(timeout=60)


def notebook_env(tmp_path: Path) -> dict:
    "Offline, quiet, on a throw-away torch and feature cache of its own."
    return {**os.environ, "PE_RENAL_QUIET": "1", "PE_RENAL_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch"),
            "PE_RENAL_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}


@pytest.fixture(scope="session")
def notebook_runner(tmp_path_factory):
    d = tmp_path_factory.mktemp("runner")
    runner = NotebookRunner(notebook_env(d), d / "runner.log")
    yield runner
    runner.close()


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.stem)
def test_notebook_runs(nb, tmp_path, notebook_runner):
    """Each notebook in a fresh process of its own, as `nbdev_test --path NB` runs it (its test flags, its cells in
    order), offline on a throw-away torch and feature cache: no state, cache or environment variable is shared with any
    other notebook or test, so running them side by side cannot change what one computes. The process is forked from
    one that has only imported the libraries (tests/notebook_runner.py), which saves the imports' ~7 s per notebook."""
    log = tmp_path / "output.txt"
    code = notebook_runner.run(nb, notebook_env(tmp_path), log, timeout=1200)
    out = log.read_text() if log.exists() else ""
    assert code is not None, f"{nb.name} ran past 1200 s and was stopped:\n{out[-8000:]}"
    assert code == 0, f"{nb.name} failed (exit code {code}):\n{out[-8000:]}"


def test_a_failing_notebook_fails_and_says_where(tmp_path, notebook_runner):
    "The runner's negative control: a notebook whose cell raises is reported as failed, with the error in its output."
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os\nx = os.environ['PE_RENAL_CACHE']"),
                                         nbformat.v4.new_code_cell("assert x.endswith('cache'), x"),
                                         nbformat.v4.new_code_cell("raise ValueError('cell three fails')")])
    nbformat.write(nb, tmp_path / "failing.ipynb")
    code = notebook_runner.run(tmp_path / "failing.ipynb", notebook_env(tmp_path), tmp_path / "out.txt", timeout=120)
    assert code == 1 and "cell three fails" in (tmp_path / "out.txt").read_text()
