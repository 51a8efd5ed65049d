# The README's two commands, and a few helpers.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test install install-test static db demo bench clean

run: install static db
	$(BIN)/pictor-portal serve --host $(HOST) --port $(PORT)

test: install-test static
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'

# htmx comes from the npm registry (pinned in package.json), never committed.
static: static/js/htmx.min.js
static/js/htmx.min.js: package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	mkdir -p $(@D)
	cp node_modules/htmx.org/dist/htmx.min.js $@

db: install
	$(BIN)/pictor-portal init-db

demo: install db
	$(BIN)/pictor-portal demo

clean:
	rm -rf node_modules static/js/htmx.min.js .pytest_cache

# The Windows installers, built on Linux (needs Debian's nsis; see installer/build.py): the 64-bit one, and
# the 32-bit one where its Python can be had (build.py says why not).
.PHONY: installer
installer:
	$(PY) installer/build.py --arch all $(INSTALLER_ARGS)
