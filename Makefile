# The two commands: `make run` (the service with demo data) and `make test` (everything).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV := DJANGO_DEBUG=1
# The second test pass runs the whole suite again on these real services.
SERVICES_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
SERVICES_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test lint schema

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

run: $(BIN)/.installed
	PYTHON=$(BIN)/python scripts/serve

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest
	@if $(BIN)/python scripts/services_available.py "$(SERVICES_DATABASE_URL)" "$(SERVICES_REDIS_URL)"; then \
		echo "== again on PostgreSQL ($(SERVICES_DATABASE_URL)) and Redis ($(SERVICES_REDIS_URL))"; \
		DATABASE_URL="$(SERVICES_DATABASE_URL)" REDIS_URL="$(SERVICES_REDIS_URL)" $(BIN)/pytest; \
	elif [ "$$REQUIRE_SERVICES" = "1" ]; then \
		echo "REQUIRE_SERVICES=1: the PostgreSQL and Redis pass cannot be skipped"; exit 1; \
	else \
		echo "SKIPPED the PostgreSQL and Redis pass: the service above is not reachable"; \
	fi

schema: $(BIN)/.installed
	$(DEV) $(BIN)/python manage.py export_schema graph.schema --path schema.graphql
