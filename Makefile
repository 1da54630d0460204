# One command sets up and runs the demo; one command runs every test.
#   make demo    create .venv, install pe_renal with everything it needs, run the demo study
#   make demo-external RESULTS=DIR  a second synthetic hospital and the validation of DIR's model there
#   make test    create .venv, install, lint (ruff), run every test: each notebook from top to bottom and tests/, in parallel (pytest)
#   make test-fast  the same without the checks marked slow (about 3 s or more, or needing a whole study)
#   make lab     open the notebooks in JupyterLab (options with LAB_ARGS, e.g. LAB_ARGS="--no-browser --port 8890")
# The install stamp depends on setup.py, settings.ini and pyproject.toml; nbdev_export leaves them alone
# (update_pyproject = False in settings.ini), so exporting does not trigger a reinstall.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= demo_results/$(shell date +%Y%m%d-%H%M%S)
LAB_ARGS ?=
# parallel test workers: one per core, at most 4 (each holds a torch process of 1-2 GB); one thread each
TEST_JOBS ?= $(shell $(PYTHON) -c 'import os; print(max(1, min(4, len(os.sched_getaffinity(0)))))' 2>/dev/null || echo 2)
PYTEST := PE_RENAL_QUIET=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests -q -n $(TEST_JOBS) --dist worksteal --durations=15

.PHONY: setup demo demo-external lint test test-fast test-notebooks test-pytest check-export lab readme bench clean docs docs-preview

$(STAMP): setup.py settings.ini pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "pe_renal needs Python >= 3.10 (set PYTHON=...)"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/pe-renal demo --out "$(OUT)"

# A second synthetic hospital (30% prevalence, a brighter and blurrier scanner, older and heavier women) and the external
# validation of a demo study's model there, its logistic recalibration saved as updated_model.skops:
# make demo-external RESULTS=demo_results/<a folder of make demo>
demo-external: setup
	@test -n "$(RESULTS)" || { echo "give RESULTS=<a results folder written by make demo>"; exit 2; }
	$(BIN)/pe-renal synth --out "$(RESULTS)-site2" --seed 1 --prevalence 0.3 --gain 1.3 --blur 1 --case-mix 0.3 --id-prefix B
	$(BIN)/pe-renal validate "$(RESULTS)-site2" --model "$(RESULTS)/model.skops" --out "$(RESULTS)-validation" \
	  --save-updated logistic

check-export: setup
	$(BIN)/nbdev_export
	@if git rev-parse --git-dir >/dev/null 2>&1 && ! git diff --quiet -- pe_renal; then \
	  git --no-pager diff --stat -- pe_renal; \
	  echo "pe_renal/ differs from the notebooks: run .venv/bin/nbdev_export and commit pe_renal/"; exit 1; fi

# `make test` runs every notebook as a test of its own (tests/test_notebooks.py: `nbdev_test --path NB` in a fresh
# process, offline, on a throw-away torch and feature cache), side by side with tests/, so both cores stay busy.
# test-notebooks runs the notebooks alone with nbdev_test, the same way; test-pytest runs tests/ without them.
test-notebooks: setup
	T=$$(mktemp -d) && PE_RENAL_QUIET=1 PE_RENAL_OFFLINE=1 TORCH_HOME=$$T/torch PE_RENAL_CACHE=$$T/cache \
	  $(BIN)/nbdev_test --n_workers 1 --do_print --timing; rc=$$?; rm -rf $$T; exit $$rc

test-pytest: setup
	$(PYTEST) -m "not notebook"

# the lint gate: 120 characters a line, no unused imports, no statements joined with `;` (pyproject.toml [tool.ruff])
lint: setup
	$(BIN)/ruff check .

test: check-export lint
	$(PYTEST)

# a quicker loop while editing: every notebook and test except the ones marked slow; `make test` before committing
test-fast: check-export lint
	$(PYTEST) -m "not slow"

lab: setup
	$(BIN)/jupyter lab --notebook-dir=nbs $(LAB_ARGS)

readme: setup
	$(BIN)/jupyter nbconvert --log-level=WARN --to markdown nbs/index.ipynb --output-dir . --output README
	sed -i.bak -E 's#\]\(([0-9][0-9][a-z]?[0-9]?_[a-z_]+)\.ipynb\)#](nbs/\1.ipynb)#g' README.md && rm -f README.md.bak

bench: setup
	$(BIN)/python benchmarks/bench_synthetic.py

clean:
	rm -rf _proc _docs _docs_preview _nbs_executed .pytest_cache

docs: setup
	$(BIN)/python tools/docs.py --quarto

docs-preview: setup
	$(BIN)/python tools/docs.py --check
