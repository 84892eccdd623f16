# The two commands a newcomer needs: `make run` and `make test`.
# Both create the virtual environment on first use (and refresh it when the
# dependency files change), so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test venv worker sync clean lock bench bench-quick

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) manage.py up

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

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

# Re-pin every package after changing pyproject.toml.
lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf $(VENV) var
