# Everything a new user needs: `make demo`, `make test`, `make dev`, `make bench`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
BENCH_ARGS ?=
# The UI's port: `make dev UI_PORT=3001` when 3000 is taken.
UI_PORT ?= 3000

.PHONY: install system-packages demo dev snowflake-local test ui-check lint bench clean

$(INSTALLED): pyproject.toml setup.cfg
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(INSTALLED)

install: $(INSTALLED)
	@$(BIN)/python -m pipeline.instance

# Exit code 1 from `pipeline load` means a month failed its checks: the demo plants such a month.
demo: install
	$(BIN)/pipeline sample-data
	$(BIN)/pipeline load flights --from 2024-01 --to 2024-12 || [ $$? -eq 1 ]
	$(BIN)/pipeline load settlements --from 2024-01 --to 2024-03
	@echo
	@echo "Where to look next:"
	@echo "  $(BIN)/pipeline status flights      per-month status, rows and checks (also: settlements)"
	@echo "  make dev                             the Dagster UI on http://127.0.0.1:$(UI_PORT)"
	@echo "  data/warehouse.duckdb                raw.*, pipeline.check_results, analytics.* (fiscal columns)"
	@echo "  planted on purpose, as the first run's summaries said (pipeline status shows them):"
	@echo "  ERROR  flights 2024-08 schema (2% bad lines), flights 2024-11 completeness (a missing day)"
	@echo "  WARN   flights 2024-05 a WARNING rule; settlements 2024-02 closed_days (a holiday),"
	@echo "         2024-03 volume (a spike) and schema_drift (an extra column)"
	@echo "  INFO   volume on each dataset's first two months: not enough history yet (in the"
	@echo "         load's summary only: status counts them as passed)"
	@echo
	$(BIN)/pipeline report flights
	$(BIN)/pipeline report settlements

# A Snowflake-protocol server (fakesnow, in memory) to try the Snowflake path without an account:
# it prints the variables to export in another shell.
snowflake-local: $(INSTALLED)
	$(BIN)/python -m pipeline_tests.snowflake_server

dev: install
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# What the tests drive besides Python: tmux (the CLI in a terminal), Chromium (the UI check, the
# reports rendered and printed), pdftotext (poppler-utils: the PDF report read back) and
# PostgreSQL (the shared deployment's instance, started by the tests in a temp folder; Debian keeps
# its programs in /usr/lib/postgresql/<version>/bin).
# Installed with apt (Debian, Ubuntu) only when missing: root or sudo is needed once per machine.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-packages:
	@command -v chromium >/dev/null && command -v tmux >/dev/null && \
		command -v pdftotext >/dev/null && \
		ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
		$(SUDO) apt-get update && \
		$(SUDO) apt-get install -y --no-install-recommends chromium tmux poppler-utils postgresql; }

# The suite on every core, then the few tests that need dbt's target folder to themselves.
test: lint system-packages
	$(BIN)/pytest
	$(BIN)/pytest -m alone -n 0

# raw/flights in the Dagster UI, through headless Chromium (about a minute; CI runs it after the
# tests). UI_CHECK_ARGS="--screenshot docs/ui-raw-flights.png" refreshes the README's picture.
UI_CHECK_ARGS ?=
ui-check: install system-packages
	$(BIN)/python -m pipeline_tests.ui_check $(UI_CHECK_ARGS)

bench: install
	$(BIN)/python -m pipeline.bench $(BENCH_ARGS)

clean:
	rm -rf data .dagster_home dbt_project/target dbt_project/logs
