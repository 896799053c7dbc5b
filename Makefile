# Two set-up commands on a fresh machine: `make demo` and `make test` (each creates .venv when needed).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench install test-tools clean

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/firmware-bridge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/firmware-bridge

demo: install
	$(BIN)/firmware-bridge demo

# What the tests run for real, from Debian: an InfluxDB 1.x server, headless Chromium (the report's
# screenshot), systemd-analyze (the unit), shellcheck (the installer), gpsd with gpsfake (GPS input), and node
# with npm (Grafana's own packages check the dashboards). Installed once, when missing.
TEST_TOOLS := influxd:influxdb chromium:chromium systemd-analyze:systemd shellcheck:shellcheck gpsfake:gpsd gpsfake:gpsd-clients \
	node:nodejs npm:npm

test-tools:
	@missing=""; for pair in $(TEST_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing Debian packages for the tests:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

test: install test-tools
	$(BIN)/python -m pytest -q -n auto --dist worksteal

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
