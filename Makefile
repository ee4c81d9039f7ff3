# Data Pusher: `make run` serves the app, `make test` runs the test suite.
# Both create .venv with Python 3.13 and install the pinned requirements on first use.

PORT ?= 8000
VENV := .venv
PY := $(VENV)/bin/python
# Python 3.13: pyenv resolves it through .python-version; otherwise python3.13 on PATH.
PYTHON313 := $(shell for p in python3.13 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' >/dev/null 2>&1 && echo $$p && break; \
	done)

.DEFAULT_GOAL := run
.PHONY: install run test lint format migrate serve worker dispatcher

# Production processes (docs/deployment.md). Sizes are overridable: `WORKER_CONCURRENCY=64 make worker`.
BIND ?= 127.0.0.1:$(PORT)
WEB_CONCURRENCY ?= $(shell nproc 2>/dev/null || echo 2)
WEB_THREADS ?= 32
WORKER_CONCURRENCY ?= 32

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -n "$(PYTHON313)" || { echo "Python 3.13 is needed: 'pyenv install 3.13' or python3.13 on PATH." >&2; exit 1; }
	$(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# A local SECRET_KEY, made once; real environment variables override it.
.env: | $(VENV)/.installed
	$(PY) -c "import secrets; print('SECRET_KEY=' + secrets.token_urlsafe(50))" > $@

# Local demos deliver to receivers on this machine; production allows no internal network by default.
run: export DATAPUSHER_ALLOWED_NETWORKS ?= 127.0.0.0/8,::1/128
run: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py bootstrap_admin
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

test: install
	$(PY) -m pytest

migrate: install
	$(PY) manage.py migrate --noinput

# glibc's allocator, told to hand blocks of 128 KiB and more (a megabyte body) back to the system
# as soon as they are freed, and to keep 2 arenas rather than one per thread, so that large ingests
# do not leave a worker holding their memory (docs/deployment.md). Other C libraries ignore these.
serve worker: export MALLOC_ARENA_MAX ?= 2
serve worker: export MALLOC_MMAP_THRESHOLD_ ?= 131072
# Production processes log one JSON object a line (docs/deployment.md, "Logs and alerts").
serve worker dispatcher: export DATAPUSHER_LOG_FORMAT ?= json

# gunicorn: WEB_CONCURRENCY processes of WEB_THREADS threads. A sync-mode ingest waits up to
# connect + read timeout on its slowest destination, so threads, not processes, carry that wait;
# one account may hold at most DATAPUSHER_ACCOUNT_CONCURRENCY (16) of them per process.
serve: install
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(VENV)/bin/gunicorn datapusher.wsgi --bind $(BIND) --workers $(WEB_CONCURRENCY) \
		--worker-class gthread --threads $(WEB_THREADS) --timeout 60 --graceful-timeout 30 \
		--access-logfile -

# A Celery worker (needs CELERY_BROKER_URL). Deliveries wait on the network, so a thread pool.
worker: install
	$(VENV)/bin/celery -A datapusher worker --pool threads --concurrency $(WORKER_CONCURRENCY) --loglevel INFO

# Publishes due deliveries to the broker (retries, what the ingest could not publish, what the
# broker or a killed worker lost). One is enough; a second is safe.
dispatcher: install
	$(PY) manage.py dispatch

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_SETTINGS_MODULE=datapusher.settings_test $(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
