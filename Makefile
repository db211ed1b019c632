# The two commands: `make demo` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The services `make test` starts (loopback only).
export STRANGLER_TEST_PG_URL ?= postgresql://postgres:strangler@127.0.0.1:5432/postgres
export STRANGLER_TEST_KAFKA ?= 127.0.0.1:19092
PYTEST_ARGS ?=

.PHONY: demo test services services-down venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	scripts/venv.sh $(PYTHON) $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/strangler demo

services:
	scripts/postgres.sh start
	scripts/kafka.sh start

services-down:
	-scripts/kafka.sh stop
	-scripts/postgres.sh stop

test: $(STAMP) services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) services
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
