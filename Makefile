# The two commands: `make demo` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The services `make test` starts (loopback only). scripts/kafka.sh reads the port and the venv.
export STRANGLER_KAFKA_PORT ?= 19092
export STRANGLER_VENV := $(abspath $(VENV))
export STRANGLER_TEST_PG_URL ?= postgresql://postgres:strangler@127.0.0.1:5432/postgres
export STRANGLER_TEST_KAFKA ?= 127.0.0.1:$(STRANGLER_KAFKA_PORT)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: demo test services services-down test-tools venv clean bench bench-shadow bench-cdc

venv: $(STAMP)

$(STAMP): pyproject.toml
	scripts/venv.sh $(PYTHON) $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/strangler demo

services:
	scripts/postgres.sh start
	scripts/kafka.sh start --fresh

services-down:
	-scripts/kafka.sh stop
	-scripts/postgres.sh stop

# Tools the suite drives besides the services: headless Chromium for the HTML report test.
test-tools:
	scripts/chromium.sh

test: $(STAMP) services test-tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The proxy benchmark needs wrk and nginx (installed from Debian if missing), not PG or Kafka.
bench: $(STAMP)
	scripts/bench-deps.sh
	$(BIN)/python -m benchmarks proxy $(BENCH_ARGS)

# Client latency with 100 % shadowing against 0 %, and shadows shed under overload.
bench-shadow: $(STAMP)
	scripts/bench-deps.sh
	$(BIN)/python -m benchmarks shadow $(BENCH_ARGS)

# The CDC end to end through Kafka between two PostgreSQL databases, beside its parts' rates.
bench-cdc: $(STAMP) services
	$(BIN)/python -m benchmarks cdc $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
