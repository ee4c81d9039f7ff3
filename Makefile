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
.PHONY: install run test lint format

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

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
