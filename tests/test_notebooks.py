"""The notebooks themselves: each runs from top to bottom as `nbdev_test` runs it, committed clean, and shaped so the
documentation build stays cheap."""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
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
    nb = nbformat.v4.new_notebook(
        cells=[
            cell("import os"),  # fine: imports only
            cell("from os import (path,\n    sep)"),  # fine: one import on two lines
            cell("#| export\nimport os\nx = 1"),  # fine: export cells always run
            cell("#| eval: false\nimport os\nx = 1"),  # fine: not run at all
            cell("import sys\nprint(sys.path)"),
            cell("#| hide\nimport os; x = 1"),
            cell("if True:\n    import os\nx = 1"),
        ]
    )
    nbformat.write(nb, tmp_path / "x.ipynb")
    assert mixed_import_cells(tmp_path / "x.ipynb") == [
        "x.ipynb, cell 4: 'import sys'",
        "x.ipynb, cell 5: 'import os; x = 1'",
        "x.ipynb, cell 6: 'if True:'",
    ]


@pytest.mark.parametrize("nb", NBS, ids=lambda p: p.stem)
def test_committed_without_outputs(nb):
    cells = json.loads(nb.read_text())["cells"]
    assert [i for i, c in enumerate(cells) if c.get("outputs") or c.get("execution_count")] == []


class NotebookRunner:
    "tests/notebook_runner.py in a process of its own (one per test worker), which forks a fresh child per notebook."
    def __init__(self, env: dict, log: Path):
        self.env, self.log = env, log                  # the runner's own errors (its children write their own logs)
        self._start()

    def _start(self):
        if getattr(self, "proc", None) is not None:
            self._release()  # a runner that stopped: its pipes closed, not leaked
        with open(self.log, "a") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("notebook_runner.py"))], env=self.env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
        self.replies = queue.Queue()
        def read(q=self.replies, out=self.proc.stdout):
            for line in out:
                q.put(json.loads(line))
            q.put(None)                                # after every line it wrote: the runner has stopped
        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()

    def _release(self):
        "Close the pipes of a runner that has stopped (an unclosed pipe is a ResourceWarning, an error in the tests)."
        self.reader.join(timeout=60)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass  # a pipe to a process that died with unread input

    def _log_tail(self) -> str:
        return f"its log:\n{self.log.read_text()[-4000:]}"

    def _reply(self, timeout: float, doing: str):
        "The runner's next reply; None after `timeout` s; a RuntimeError with its log's tail if it stops meanwhile."
        try:
            reply = self.replies.get(timeout=timeout)
        except queue.Empty:
            return None
        if reply is None:
            raise RuntimeError(
                f"the notebook runner stopped (exit code {self.proc.wait(timeout=60)}) while {doing}; "
                    f"{self._log_tail()}"
            )
        return reply

    def run(self, nb: Path, env: dict, log: Path, timeout: float) -> int:
        "Run one notebook; its exit code (0: passed), or None when it ran past `timeout` seconds and was stopped."
        if self.proc.poll() is not None:
            self._start()  # an earlier notebook took the runner down: a fresh one
        self.proc.stdin.write(json.dumps(dict(nb=str(nb), env=env, log=str(log), root=str(ROOT))) + "\n")
        self.proc.stdin.flush()
        started = self._reply(300, f"starting {nb.name}")
        if started is None:
            raise RuntimeError(f"the notebook runner did not start {nb.name} in 300 s; {self._log_tail()}")
        done = self._reply(timeout, f"running {nb.name}")    # a runner that stops takes its child with it
        if done is None:
            os.kill(started["pid"], signal.SIGKILL)
            self._reply(60, f"stopping {nb.name}")
            return None
        return done["code"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self._release()


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


def test_a_runner_that_dies_is_reported_and_replaced(tmp_path, notebook_runner):
    """If a notebook takes the runner down, the test says so at once with the runner's log, and the next notebook still
    runs."""
    import nbformat
    pid_file = tmp_path / "pid"
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                f"import os, signal\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                "os.kill(os.getppid(), signal.SIGKILL)"
            ),
            nbformat.v4.new_code_cell("import time\ntime.sleep(60)"),
        ]
    )
    nbformat.write(nb, tmp_path / "kills.ipynb")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="runner stopped .* while running kills.ipynb"):
        notebook_runner.run(tmp_path / "kills.ipynb", notebook_env(tmp_path), tmp_path / "out.txt", timeout=600)
    assert time.monotonic() - t0 < 30
    def running(pid):  # a zombie waiting for its new parent to reap it is not running
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    pid = int(pid_file.read_text())
    for _ in range(50):
        if not running(pid):
            break
        time.sleep(0.1)
    assert not running(pid), "the notebook kept running after its runner stopped"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise ValueError('after the restart')")])
    nbformat.write(nb, tmp_path / "after.ipynb")
    code = notebook_runner.run(tmp_path / "after.ipynb", notebook_env(tmp_path), tmp_path / "after.txt", timeout=120)
    assert code == 1 and "after the restart" in (tmp_path / "after.txt").read_text()


def _module_order() -> dict:
    "Each pe_renal module and the notebook it is exported from, as a sortable key ('03b_finetune' after '03_features')."
    import re
    order = {}
    for py in (ROOT / "pe_renal").glob("*.py"):
        m = re.search(r"File to edit: \.\./nbs/(\w+)\.ipynb", py.read_text())
        if m:
            order[py.stem] = m.group(1).replace("_", "!", 1)  # '!' sorts before letters: 03_x < 03b_y
    return order


def _imports(py: Path) -> set:
    "pe_renal modules imported anywhere in a file, inside functions too."
    import ast
    out = set()
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            name = node.module if node.level == 0 else "pe_renal." + node.module
            if name.startswith("pe_renal."):
                out.add(name.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("pe_renal.")}
    return out


def test_no_module_imports_a_later_notebooks_module():
    """The notebooks read in order: a module imports only modules of earlier notebooks (the report never imports the
    study)."""
    order = _module_order()
    assert {"report", "predict", "study", "cli"} <= set(order), order
    assert order["report"] < order["predict"] < order["study"] < order["cli"]
    upward = [(mod, dep) for mod in order for dep in _imports(ROOT / "pe_renal" / f"{mod}.py")
              if dep in order and order[dep] > order[mod]]
    assert upward == []


def test_an_upward_import_is_found(tmp_path):
    py = tmp_path / "x.py"
    py.write_text("def f():\n    from pe_renal.study import run_study\n    from .cli import main\n")
    assert _imports(py) == {"study", "cli"}
