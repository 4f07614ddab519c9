# StagePulse — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-postgres lint format bench schema lock clean

# requirements*.txt are lock files (every version pinned, `make lock` writes them from the .in
# files), so a fresh machine installs exactly what CI tested, whatever PyPI published since.
$(STAMP): requirements.txt requirements-dev.txt requirements-nodeps.txt requirements-bench-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-bench-nodeps.txt
	touch $(STAMP)

install: $(STAMP)

## make demo: a whole festival on embedded defaults (Ctrl-C stops everything)
demo: install
	$(BIN)/python manage.py run_demo $(DEMO_ARGS)

## make test: the whole suite, offline, on SQLite, in TEST_WORKERS pytest-xdist processes (whole
## files to each, the longest first; tests/isolation.py gives each its own Redis db and ports)
# Three on two cores: the e2e demo, the analyzer's redelivery timeouts and the browser tests wait
# on other processes, and with two workers a core stood idle a third of the run (158 % CPU).
TEST_WORKERS ?= 3
PYTEST_PARALLEL = $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: install
	$(PYTEST_PARALLEL)

## the same suite on PostgreSQL (DATABASE_URL defaults to the local `test` database; each worker
## gets its own test database, test_<name>_gw0, test_<name>_gw1, ...)
test-postgres: install
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test} $(PYTEST_PARALLEL)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## make bench: figures into bench/results.json; installs Debian's wrk (the api load tool) if missing
bench: install
	@command -v wrk >/dev/null 2>&1 || { echo "bench: installing Debian's wrk"; \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk) >/dev/null \
	  || echo "bench: could not install wrk; the api section will fail"; }
	$(BIN)/python -m bench

schema: install
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file var/openapi.yaml

## make lock: re-resolve the pins on purpose (after editing a requirements*.in file)
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(CURDIR)/$(BIN)/pip-compile --quiet --strip-extras \
	--allow-unsafe --no-emit-index-url --no-emit-find-links
lock: install
	$(PIP_COMPILE) -o requirements.txt requirements.in
	$(PIP_COMPILE) -o requirements-dev.txt requirements-dev.in
	cd edge_package && $(PIP_COMPILE) -o requirements.txt requirements.in

clean:
	rm -rf var staticfiles
