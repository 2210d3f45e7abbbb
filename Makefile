# tongban: `make install`, then `make test`. `make demo` runs a small federation; `make bench` the benchmarks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pytest-xdist workers for `make test`: the suite waits on real node processes much of the time.
TEST_WORKERS ?= auto
PROTO_SRC := $(wildcard proto/tongban_api/v1/*.proto)

.PHONY: install proto proto-check lint typecheck test test-fast demo bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@
	@echo "installed: $(VENV)/bin/tongban"

# Regenerate the committed protobuf package from proto/.
proto: install
	$(PY) proto/generate.py

# Fail when the committed generated package differs from what proto/ generates.
proto-check: install
	$(PY) proto/generate.py --check

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck proto-check
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

# The suite without the slow end-to-end drills.
test-fast: install
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not e2e"

demo: install
	$(PY) -m node.demo config/demo.toml

bench: install
	$(PY) bench/delivery.py
	$(PY) bench/cases.py
	$(PY) bench/certs.py
	$(PY) bench/video.py
	$(PY) bench/log.py

clean:
	rm -rf $(VENV) demo-homes .pytest_cache .mypy_cache .ruff_cache
