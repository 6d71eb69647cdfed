# The README's two commands: `make run` and `make test`. Both set up .venv when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0
# The `laplace` extra's three packages that declare torchvision (which would replace the
# pinned CPU torch): installed without their dependencies, which the extra lists instead.
LAPLACE_NO_DEPS := laplace-torch==0.3 backpack-for-pytorch==1.7.1 curvlinops-for-pytorch==3.0.1
EXTRAS ?= dev
comma  := ,
# Re-install only when the project definition changes (or the extras do).
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
SUITE  ?= quick
ARGS   ?=

.PHONY: run test install lint bench bench-ratios regress regress-baseline clean-venv

run: $(STAMP)
	$(VENV)/bin/uqbench run --suite $(SUITE) --out reports $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check uqbench adapters tests benchmarks

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: this machine has the 2.13.0 CPU wheel on disk, and an unpinned
# torch (or one pulled in by a dependency) would download a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet --disable-pip-version-check "$(TORCH)"
	$(PIP) install --quiet --disable-pip-version-check -e ".[$(EXTRAS)]"
	$(if $(findstring laplace,$(EXTRAS)),$(PIP) install --quiet --disable-pip-version-check --no-deps $(LAPLACE_NO_DEPS))
	$(PY) -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 'torch was replaced: ' + torch.__version__)"
	touch $@

# asv benchmarks in this venv (asv.conf.json: "environment_type": "existing"): speed, peak
# memory and quality (track_) of every adapter, recorded under HEAD's hash (the working
# tree as it is: commit first) in .asv/results, then the HTML in .asv/html. Installs the
# bench extra on top of EXTRAS. ASV_ARGS passes options on, e.g. ASV_ARGS='--bench track_'.
# The HTML is published even when some benchmarks failed; the exit status is asv run's.
ASV_ARGS ?=
bench:
	$(MAKE) --no-print-directory install EXTRAS=$(EXTRAS),bench
	$(VENV)/bin/asv machine --yes >/dev/null
	status=0; $(VENV)/bin/asv run -E existing:same --set-commit-hash=$$(git rev-parse HEAD) $(ASV_ARGS) || status=$$?; \
	$(VENV)/bin/asv publish && exit $$status

# The regression gate against the checked-in baseline run (reports/baseline): the quick
# suite, serially so that timings compare with the baseline's, then `uqbench compare`
# (exit 1 on a significant regression). COMPARE_ARGS passes options, e.g. --format markdown.
COMPARE_ARGS ?=
regress: $(STAMP)
	rm -rf reports/regress
	$(VENV)/bin/uqbench run --suite quick --executor serial --out reports/regress $(ARGS)
	$(VENV)/bin/uqbench compare reports/baseline reports/regress/run-*-quick $(COMPARE_ARGS)

# Replace the baseline (commit it when a change is meant to move the numbers); only what
# `compare` reads is kept: run.json, results.csv, cells/.
regress-baseline: $(STAMP)
	rm -rf reports/regress-new
	$(VENV)/bin/uqbench run --suite quick --executor serial --out reports/regress-new $(ARGS)
	rm -rf reports/baseline
	mv reports/regress-new/run-*-quick reports/baseline
	rm -rf reports/regress-new reports/baseline/arrays reports/baseline/index.html reports/baseline/run.lock

# Speed ratios measured within one process each (see README "Speed").
bench-ratios: $(STAMP)
	$(PY) -m benchmarks.bench_variational
	$(PY) -m benchmarks.bench_ensemble

clean-venv:
	rm -rf $(VENV)
