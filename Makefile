# The README's two commands: `make run` and `make test`. Both set up .venv when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0
EXTRAS ?= dev
comma  := ,
# Re-install only when the project definition changes (or the extras do).
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
SUITE  ?= quick
ARGS   ?=

.PHONY: run test install lint bench clean-venv

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
	touch $@

# Speed ratios measured within one process each (see README "Speed").
bench: $(STAMP)
	$(PY) -m benchmarks.bench_variational
	$(PY) -m benchmarks.bench_ensemble

clean-venv:
	rm -rf $(VENV)
