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

# Local settings in .env, read by every process on this checkout (make run, make serve, make worker,
# manage.py); real environment variables override them. A SECRET_KEY, made once, and destinations on
# this machine allowed (local use only: production leaves DATAPUSHER_ALLOWED_NETWORKS unset). A .env
# without a DATAPUSHER_ALLOWED_NETWORKS line gets one appended; one that has it is left as it is.
# The same for DATAPUSHER_ENCRYPTION_KEYS: a key of its own, made once, encrypts destinations' credentials.
.PHONY: dotenv receiver
LOCAL_NETWORKS := 127.0.0.0/8,::1/128
dotenv:
	@test -f .env || $(PY) -c "import secrets; print('SECRET_KEY=' + secrets.token_urlsafe(50))" > .env
	@grep -q '^DATAPUSHER_ALLOWED_NETWORKS=' .env || { test -z "$$(tail -c 1 .env)" || echo >> .env; \
		echo 'DATAPUSHER_ALLOWED_NETWORKS=$(LOCAL_NETWORKS)' >> .env; }
	@grep -q '^DATAPUSHER_ENCRYPTION_KEYS=' .env || { test -z "$$(tail -c 1 .env)" || echo >> .env; \
		$(PY) -c "from cryptography.fernet import Fernet; print('DATAPUSHER_ENCRYPTION_KEYS=' + Fernet.generate_key().decode())" >> .env; }

# An echo server for trying deliveries: prints every request it gets and answers 200 (README).
RECEIVER_PORT ?= 8001
receiver: install
	$(PY) -m server.receiver --port $(RECEIVER_PORT)

run: install dotenv
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
# Metrics (docs/deployment.md, "Health and metrics"): the gunicorn processes write their counts to
# METRICS_DIR, emptied here at each start; a worker on this host to METRICS_DIR/worker, which is
# kept (a file per worker process that ever ran: its counts stay in the sums). GET /metrics adds up both.
METRICS_DIR ?= $(CURDIR)/var/metrics
serve: export PROMETHEUS_MULTIPROC_DIR = $(METRICS_DIR)
worker: export PROMETHEUS_MULTIPROC_DIR = $(METRICS_DIR)/worker

serve: install
	env -u PROMETHEUS_MULTIPROC_DIR $(PY) manage.py collectstatic --noinput --verbosity 0
	mkdir -p $(METRICS_DIR) && rm -f $(METRICS_DIR)/*.db
	$(VENV)/bin/gunicorn datapusher.wsgi --bind $(BIND) --workers $(WEB_CONCURRENCY) \
		--worker-class gthread --threads $(WEB_THREADS) --timeout 60 --graceful-timeout 30 \
		--access-logfile - --config python:datapusher.gunicorn_conf

# A Celery worker (needs CELERY_BROKER_URL). Deliveries wait on the network, so a thread pool.
worker: install
	mkdir -p $(METRICS_DIR)/worker
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
