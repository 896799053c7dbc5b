# Two set-up commands on a fresh machine: `make demo` and `make test` (each creates .venv when needed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench install influxdb clean

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/firmware-bridge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/firmware-bridge

demo: install
	$(BIN)/firmware-bridge demo

# The tests start a real InfluxDB 1.x server: Debian's influxdb package.
influxdb:
	@command -v influxd >/dev/null || { echo "installing Debian's influxdb package (the tests start a real server)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >/dev/null; }

test: install influxdb
	$(BIN)/python -m pytest -q

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
