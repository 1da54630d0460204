"""Progress for batch users: where stderr is a file (nohup, a SLURM or cron log), plain rate-limited lines
instead of a bar."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import write_cohort

PE_RENAL = str(Path(sys.executable).with_name("pe-renal"))


def test_log_progress_lines_say_stage_count_elapsed_and_time_left(monkeypatch, capsys):
    from pe_renal.core import LogProgress
    monkeypatch.setenv("PE_RENAL_PROGRESS_EVERY", "0")
    assert list(LogProgress(range(4), "stage A", total=4)) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("stage A: 1/4 (25%), 0s elapsed, about ") and lines[0].endswith(" left")
    assert lines[-1].startswith("stage A: done, 4/4 (100%)") and len(lines) == 5
    monkeypatch.setenv("PE_RENAL_PROGRESS_EVERY", "3600")  # a short step under the interval: silent
    bar = LogProgress(None, "stage B", total=10)
    bar.update(10)
    bar.close()
    assert capsys.readouterr().err == ""


def test_a_command_whose_stderr_is_a_file_logs_progress(tmp_path):
    root = write_cohort(tmp_path / "c", n=12)
    env = {k: v for k, v in os.environ.items() if k != "PE_RENAL_QUIET"} | {"PE_RENAL_PROGRESS_EVERY": "0"}
    with open(tmp_path / "log.txt", "w") as log:
        r = subprocess.run(
            [
                PE_RENAL,
                "features",
                str(root),
                "--out",
                str(tmp_path / "f.parquet"),
                "--backbone",
                "resnet18",
                "--weights",
                "random",
                "--no-cache",
                "--batch-size",
                "4",
            ],
            stdout=log,
            stderr=log,
            env=env,
        )
    text = (tmp_path / "log.txt").read_text()
    assert r.returncode == 0, text
    assert "resnet18 features: 1/3 (33%)" in text and "resnet18 features: done, 3/3 (100%)" in text, text
    assert "\r" not in text                                                # no terminal bar redrawing itself in the log
