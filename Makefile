# Two commands: `make book` and `make test`. Both create .venv from requirements.txt when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SCALE ?= ci
XDIST := --dist loadfile --no-loadscope-reorder
# test processes side by side (pytest-xdist); each test runs on one thread, as every chapter does; each test module
# runs whole on one worker (tests/conftest.py says why and in which order)
JOBS ?= $(shell $(PYTHON) -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())")

.PHONY: book test unit lint chapters check build lab app bench clean

# pip byte-compiles the ~18,000 modules of the pinned set one at a time (113 s of the install here, 46 s
# without); compileall does it on every core (29 s on 2). Compiled at install, not at first import: where
# PYTHONDONTWRITEBYTECODE is set, nothing compiled on import is kept, and every process would compile torch again.
# (Its exit status is 1 for the few third-party files that are not Python 3, which pip skips too.)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile -r requirements.txt
	-$(PY) -m compileall -q -j 0 "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" > /dev/null 2>&1
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m sbir_core.book run --scale $(SCALE)
	$(PY) -m sbir_core.book build
	@echo "Open $(CURDIR)/_build/html/index.html"

# REQUIRE_DATA=1: a real-data row skipped for want of its dataset fails the check (what CI runs)
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q -n $(JOBS) $(XDIST) --durations=20 tests
	$(PY) -m sbir_core.book run --scale ci
	$(PY) -m sbir_core.book check $(if $(REQUIRE_DATA),--require-data)
	$(PY) -m sbir_core.book build

unit: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) $(XDIST) --durations=20 tests

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

chapters: $(STAMP)
	$(PY) -m sbir_core.book run --scale $(SCALE) $(if $(ONLY),--only $(ONLY))

check: $(STAMP)
	$(PY) -m sbir_core.book check $(if $(REQUIRE_DATA),--require-data)

build: $(STAMP)
	$(PY) -m sbir_core.book build

lab: $(STAMP)
	cd book && ../$(VENV)/bin/jupyter lab

# the sketch playground as a page (voila, no code shown) at the URL it prints (127.0.0.1:$(PORT), with a token made
# at each start: only the link opens it); Ctrl-C or SIGTERM stops it and its kernels
PORT ?= 8866
app: $(STAMP)
	$(PY) -m sbir_core.browser serve --port $(PORT)

clean:
	rm -rf _build book/*.ipynb book/.*.ipynb .cache
