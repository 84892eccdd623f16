# The two commands a newcomer needs: `make run` and `make test`.
# Both create the virtual environment on first use (and refresh it when the
# dependency files change), so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test soak lint venv worker sync clean lock bench bench-quick screenshots

# Installs exactly the hashed lock (requirements/dev.txt: runtime, local, dev and bench), then
# Modelgate itself, editable and without dependencies, so nothing unpinned gets in.
# Quiet (@, --quiet): on a fresh clone `make run` shows one line for this, then its banner.
$(STAMP): pyproject.toml requirements/dev.txt
	@echo "Installing the pinned packages into $(VENV)/ (first run, or after a dependency change)…"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/dev.txt
	@$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	@$(PY) manage.py up

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The README's tour and the layout set of every page at 1280 and 1920 px (docs/tour/,
# docs/screenshots/), taken by the browser layout test; only this target rewrites them.
screenshots: $(STAMP)
	MODELGATE_SCREENSHOTS=docs MODELGATE_BROWSER_REQUIRED=1 $(PY) -m pytest tests/test_browser_layout.py -n0

# The long versions of two tests that `make test` runs short (tests/soak.py): 32 clients of
# mixed API load for 2 minutes (needs DATABASE_URL on PostgreSQL and a Redis, else it skips)
# and the property-based API run at full size. CI runs this once, on PostgreSQL and Redis.
soak: $(STAMP)
	MODELGATE_SOAK=1 $(PY) -m pytest tests/test_mixed_load.py tests/test_api_properties.py $(PYTEST_ARGS)

# The rules written as checks (CI runs this before the tests): style, types (mypy with the
# Django and DRF stubs, pyproject.toml [tool.mypy]), the import layers of docs/architecture.md,
# migrations that match the models, and a production configuration that `check --deploy`
# finds nothing wrong with.
PRODUCTION_ENV := DEBUG=false SECRET_KEY=lint-only-$$(date +%s)-not-a-real-secret-0123456789abcdefghij \
	ALLOWED_HOSTS=modelgate.example.com SECURE_SSL_REDIRECT=true SECURE_HSTS_SECONDS=31536000 SECURE_HSTS_PRELOAD=true
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run
	env $(PRODUCTION_ENV) $(PY) manage.py check --deploy --fail-level WARNING

worker: $(STAMP)
	$(VENV)/bin/celery -A console worker -B -l info -Q celery,deploy

sync: $(STAMP)
	$(PY) manage.py registry_sync

# Benchmarks (bench/README.md): Modelgate next to MLflow's own server on PostgreSQL and Redis.
# Uses its own databases (modelgate_bench, mlflow_bench) and Redis db 9; BENCH_PG / BENCH_REDIS_URL
# point it elsewhere. Reports land in bench/results/.
bench: $(STAMP)
	$(PY) -m bench.run --scale full $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(PY) -m bench.run --scale quick $(BENCH_ARGS)

# Re-pin after changing pyproject.toml: keeps every existing pin that still fits, with hashes.
# requirements/runtime.txt is what the production image installs; requirements/dev.txt the rest.
LOCK := $(VENV)/bin/uv pip compile pyproject.toml --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --override requirements/overrides.txt --custom-compile-command "make lock"
lock: $(STAMP)
	$(LOCK) -o requirements/runtime.txt
	$(LOCK) --extra local --extra dev --extra bench -o requirements/dev.txt

clean:
	rm -rf $(VENV) var
