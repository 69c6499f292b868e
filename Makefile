# tokenwire: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install node-deps services-up services-down services-status run test faults lint schemas browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## npm packages, pinned by their lockfiles: the chat page's Markdown renderer and sanitizer
## (served by the edge), and the real client packages the Node tests drive (ai, openai).
NODE_STAMPS := api/static/node_modules/.installed-stamp tests/js/node_modules/.installed-stamp
%/node_modules/.installed-stamp: %/package-lock.json %/package.json
	cd $* && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-deps: $(NODE_STAMPS)

install: $(STAMP) node-deps

services-up: install
	$(BIN)/tokenwire services up

services-down: install
	$(BIN)/tokenwire services down

services-status: install
	$(BIN)/tokenwire services status

## The main job: local Kafka + InfluxDB, the simulator, the worker and the edge; Ctrl-C stops.
## Development mode: built-in local secrets, and the chat page gets a development JWT.
run: services-up
	TOKENWIRE_MODE=development $(BIN)/tokenwire run

## Headless Chromium for the browser test (Debian's package; Playwright drives it).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

lint: install
	$(BIN)/ruff check .

schemas: install
	$(BIN)/python -m schemas.export

## The test suite, against real Kafka, InfluxDB and Chromium provisioned here.
test: services-up browser lint
	$(BIN)/pytest

## The whole fault matrix on a local 3-node cluster, with the measured gaps (make test runs a
## shortened form of each scenario). FAULTS_ARGS=--repeat 3 for ranges over repeated runs.
faults: install
	$(BIN)/tokenwire faults $(FAULTS_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
