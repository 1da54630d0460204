"""Progress for batch users: where stderr is a file (nohup, a SLURM or cron log), plain rate-limited lines
instead of a bar."""

import sys

from conftest import write_cohort


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


def test_a_command_whose_stderr_is_a_file_logs_progress(tmp_path, monkeypatch):
    """`pe-renal features` with its stderr a log file (run in this process, its stderr the file: the choice of a bar or
    plain lines is made when the command starts, from what stderr is)."""
    from pe_renal.cli import main
    root = write_cohort(tmp_path / "c", n=12)
    monkeypatch.delenv("PE_RENAL_QUIET", raising=False)
    monkeypatch.setenv("PE_RENAL_PROGRESS_EVERY", "0")
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)    # as from a shell, not a notebook
    with open(tmp_path / "log.txt", "w") as log:
        monkeypatch.setattr(sys, "stdout", log)
        monkeypatch.setattr(sys, "stderr", log)
        code = main([
            "features", str(root), "--out", str(tmp_path / "f.parquet"), "--backbone", "resnet18", "--weights",
            "random", "--no-cache", "--batch-size", "4",
        ])
        monkeypatch.undo()
    text = (tmp_path / "log.txt").read_text()
    assert code == 0, text
    assert "resnet18 features: 1/3 (33%)" in text and "resnet18 features: done, 3/3 (100%)" in text, text
    assert "\r" not in text                                                # no terminal bar redrawing itself in the log
