# The two quick-start commands: `make run` and `make test`. Each makes the
# virtual environment and installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1:8000

.PHONY: run test bench bench-flow bench-refresh bench-api

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The .env's PUBLIC_BASE_URL follows HOST, so that Connect comes back here.
run: $(VENV)/.installed
	$(PY) scripts/write_env.py .env $(HOST)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_superuser
	$(PY) manage.py runserver $(HOST)

test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

# The benchmarks (not tests): see README, "Benchmarks". `make bench
# BENCH_ARGS=--quick` takes a first look in about a minute.
bench: $(VENV)/.installed-dev
	$(PY) bench/run.py $(BENCH_ARGS)

# The connect flow's requests against their floors, under gunicorn; add
# BENCH_ARGS="--postgres postgres://postgres@127.0.0.1:5432/postgres" for PostgreSQL too.
bench-flow: $(VENV)/.installed-dev
	$(PY) bench/flow.py $(BENCH_ARGS)

bench-refresh: $(VENV)/.installed-dev
	$(PY) bench/refresh_tokens.py --accounts 2000 --rate 50
	$(PY) bench/refresh_tokens.py --hosts 2 --accounts 200 --rate 5
	$(PY) bench/refresh_tokens.py --slow-spell --accounts 40 --workers 4
	$(PY) bench/refresh_tokens.py --memory-check

bench-api: $(VENV)/.installed-dev
	$(PY) bench/api.py $(BENCH_ARGS)
