"""Runs notebooks as `nbdev_test --path NB --n_workers 0` does, each in a fresh process, without paying the imports
every time: this process imports the libraries the notebooks use once, then forks one child per notebook. A child
starts with those modules imported and nothing else done (this process runs no notebook code and no test), sets the
notebook's environment, runs it with nbdev's `test_nb` (its displayed figures drawn as plain PNG instead of retina) and
exits.

Protocol: one JSON request per line on stdin, {"nb": path, "env": {...}, "log": path}; for each, two JSON lines on
stdout: {"pid": child} when it starts and {"code": exit code} when it ends (0 passed, 1 a cell failed, 3 the runner
failed). The child's output goes to the log file. Closing stdin ends the process."""
import functools
import json
import os
import sys
import traceback
from pathlib import Path

import matplotlib
import torch, torchvision, sklearn, pandas, scipy, shap, pytorch_grad_cam  # noqa: E401,F401  what the notebooks import
import matplotlib.pyplot  # noqa: F401
import execnb.shell, nbdev.config, nbdev.test  # noqa: E401


def die_with_parent():
    "Linux: the child is killed when the runner stops, so a runner that dies leaves no notebook running."
    try:
        import ctypes
        import signal
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_one(req: dict) -> int:
    "In the child: the notebook's environment and folder, then nbdev's test of it; the exit code."
    die_with_parent()
    fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(req["env"])
    os.chdir(req["root"])
    cfg = nbdev.config.get_config()
    os.chdir(cfg.nbs_path)                                     # where nbdev_test runs the notebooks
    # the figures a notebook displays are drawn as plain PNG, not at twice the resolution (nbdev_test's retina): a test
    # throws the outputs away, and the figures' code runs all the same (`pytest --durations`: 07_gradcam, 08_shap)
    nbdev.test.CaptureShell = functools.partial(execnb.shell.CaptureShell, mpl_format="png")
    ok, _ = nbdev.test.test_nb(Path(req["nb"]), skip_flags=cfg.tst_flags.split(), force_flags=[],
                               basepath=cfg.config_path)
    return 0 if ok else 1


def main():
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                code = run_one(req)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"code": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
