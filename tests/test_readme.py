"""The README a newcomer reads: every local link resolves, and `make readme` (which writes it from
nbs/index.ipynb) keeps them so."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def local_links(text:str)->list[str]:
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"^[a-z]+:|^#", t)]


def test_every_local_link_of_the_readme_resolves():
    links = local_links((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(links) >= 10 and "nbs/03b_finetune.ipynb" in links
    missing = [t for t in links if not (ROOT / t.split("#")[0]).exists()]
    assert missing == []


def test_make_readme_keeps_the_links(tmp_path):
    """The rewrite `make readme` applies to index.ipynb's links points every notebook link, 03b_finetune included, into
    nbs/."""
    make = (ROOT / "Makefile").read_text()
    sed = re.search(r"sed -i\.bak -E '([^']+)' README\.md", make).group(1)
    text = "see [03b_finetune](03b_finetune.ipynb) and [01_data](01_data.ipynb) and [site](https://example.org/x.ipynb)"
    if shutil.which("sed") is None:
        pytest.skip("no sed")
    out = subprocess.run(["sed", "-E", sed], input=text, capture_output=True, text=True, check=True).stdout
    assert "(nbs/03b_finetune.ipynb)" in out and "(nbs/01_data.ipynb)" in out and "(https://example.org/x.ipynb)" in out


def test_run_json_is_utf8_without_escapes(study_results):
    raw = (study_results[3] / "run.json").read_bytes().decode("utf-8")
    assert "\\u00b7" not in raw and "·" in raw                 # the status label's middle dot, as written
