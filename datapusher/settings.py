"""Data Pusher settings, all read here from the environment (and an optional `.env` file).

Every value has a safe default except SECRET_KEY, which must be set when DEBUG is off.
Product settings are prefixed `DATAPUSHER_`.
"""

import base64
import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
import limits.storage
from django.core.exceptions import ImproperlyConfigured, ValidationError

from datapusher.validators import RATE, RATE_MESSAGE, http_url_validator

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Real environment variables win over the file; `make run` writes a local SECRET_KEY there.
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY in the environment (or DEBUG=true for local development).")
    SECRET_KEY = "insecure-development-key-only-used-with-debug"  # noqa: S105 (DEBUG only)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "destinations",
    "server",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "datapusher.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "datapusher.urls"
WSGI_APPLICATION = "datapusher.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent requests write one at a time instead of failing with "database is locked", and the
    # threads of a process queue for it on a lock rather than in SQLite's busy-wait (datapusher/sqlite3).
    # WAL: readers never wait for the writer. A page cache of 512 KiB per connection (one per thread)
    # rather than 2 MiB: the operating system caches the file as well, and 1 MiB events filled it.
    DATABASES["default"]["ENGINE"] = "datapusher.sqlite3"
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-512;",
        }
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database that does not answer fails the request within seconds (503), not when the worker
    # is killed. A connect_timeout in DATABASE_URL's query string wins.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=5)
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# The largest incoming body accepted, in bytes (Django's own limit, answered with 413 by the ingest).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Signed in; staff see everything, others the accounts they are members of (accounts/permissions.py).
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.AccountRolePermission"],
    "DEFAULT_PAGINATION_CLASS": "datapusher.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "datapusher.schema.AutoSchema",
    "EXCEPTION_HANDLER": "datapusher.exceptions.exception_handler",
    # The client address of a request through this many proxies (X-Forwarded-For); 0: the socket's.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}

# Failed sign-ins allowed per username and per client address before POST /api/auth/token/ answers
# 429 (DRF's rate format: "5/minute"; counted as DATAPUSHER_RATE_LIMIT_STORAGE says).
DATAPUSHER_SIGN_IN_FAILURES_PER_USERNAME = env.str(
    "DATAPUSHER_SIGN_IN_FAILURES_PER_USERNAME", default="5/minute"
)
DATAPUSHER_SIGN_IN_FAILURES_PER_ADDRESS = env.str(
    "DATAPUSHER_SIGN_IN_FAILURES_PER_ADDRESS", default="20/minute"
)

# API tokens for people (POST /api/auth/token/) expire after this many days; service tokens made by
# `manage.py create_api_token` do not. Stored as hashes (django-rest-knox).
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=env.float("DATAPUSHER_USER_TOKEN_DAYS", default=30)),
    "AUTH_HEADER_PREFIX": "Token",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Data Pusher API",
    "DESCRIPTION": (
        "Manage accounts and destinations; push JSON to /server/incoming_data.\n\n"
        "Authentication: `Authorization: Token <token>` (POST /api/auth/token/ with a username or email "
        "and password; tokens expire) or a session. Roles: staff see and manage everything; an "
        "account's `admin` manages that account, its destinations and members; a `member` reads them "
        "(destination header values masked) and may redeliver and retry. Anything on an account you "
        "are not a member of is 404; what your role does not allow is 403."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's assets are served by the app itself, not fetched from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # A delivery's status is one enum wherever it appears; a recovery's is another.
    "ENUM_NAME_OVERRIDES": {
        "StatusEnum": "server.models.Delivery.Status",
        "RecoveryStatusEnum": ["running", "done"],
    },
}
# POST /server/incoming_data is a plain Django view: a hook documents it (datapusher/schema.py).
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    "drf_spectacular.hooks.postprocess_schema_enums",
    "datapusher.schema.ingest_path",
    "datapusher.schema.destination_auth_example",
]

# Logs and alerts (docs/deployment.md). Every line carries the request id: X-Request-ID when it is a
# UUID (32 hex digits or the 36-character form; datapusher/logs.py), else generated (django-guid),
# returned in the response, stored with the event for the workers' lines. json: one object a line
# (make serve, worker, dispatcher); text: readable.
INSTALLED_APPS += ["django_guid"]
MIDDLEWARE[:0] = ["datapusher.logs.request_id_checked", "django_guid.middleware.guid_middleware"]
DJANGO_GUID = {"GUID_HEADER_NAME": "X-Request-ID", "VALIDATE_GUID": True, "EXPOSE_HEADER": False}
DATAPUSHER_LOG_FORMAT = env.str("DATAPUSHER_LOG_FORMAT", default="text")
if DATAPUSHER_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("DATAPUSHER_LOG_FORMAT must be 'json' or 'text'.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "django_guid.log_filters.CorrelationId", "correlation_id_field": "request_id"}
    },
    "formatters": {
        "json": {"()": "datapusher.logs.json_formatter"},
        "text": {"()": "datapusher.logs.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id"],
            "formatter": DATAPUSHER_LOG_FORMAT,
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # django-guid says at INFO, on every request, whether an id was given, and at WARNING repeats
    # an X-Request-ID it replaces: no header value is logged.
    "loggers": {"django_guid": {"level": "ERROR"}},
}
# The worker logs through the same handler, not Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# The alert hook: a WARNING line when a delivery fails for good, and when a destination's attempts
# have failed this many times in a row (once, until one succeeds). With DATAPUSHER_ALERT_URL, also a
# JSON notification POSTed there in the background (through server.http: its timeouts, its guard).
DATAPUSHER_ALERT_AFTER_FAILURES = env.int("DATAPUSHER_ALERT_AFTER_FAILURES", default=5)
if DATAPUSHER_ALERT_AFTER_FAILURES < 1:
    raise ImproperlyConfigured("DATAPUSHER_ALERT_AFTER_FAILURES must be at least 1.")
DATAPUSHER_ALERT_URL = env.str("DATAPUSHER_ALERT_URL", default="")
if DATAPUSHER_ALERT_URL:
    try:
        http_url_validator(DATAPUSHER_ALERT_URL)
    except ValidationError:  # the value itself is not repeated: it may hold a token
        raise ImproperlyConfigured("DATAPUSHER_ALERT_URL must be an http(s) URL.") from None

# Outbound delivery. Each request: connect timeout, read timeout, and an overall deadline of both
# added together (seconds), however slowly a destination drips its answer.
DATAPUSHER_CONNECT_TIMEOUT = env.float("DATAPUSHER_CONNECT_TIMEOUT", default=5.0)
DATAPUSHER_READ_TIMEOUT = env.float("DATAPUSHER_READ_TIMEOUT", default=10.0)
# Outbound requests in flight at once per process (the delivery pool and its connection pool), and
# what one account may take of it: at most this many sends waiting at once (each holds a web or
# worker thread: keep it at most half of WEB_THREADS and WORKER_CONCURRENCY), and requests beyond
# it only while as many pool slots stay free for other accounts. A request that finds no slot is
# not sent now: its delivery stays pending (docs/delivery.md).
DATAPUSHER_DELIVERY_CONCURRENCY = env.int("DATAPUSHER_DELIVERY_CONCURRENCY", default=64)
DATAPUSHER_ACCOUNT_CONCURRENCY = env.int("DATAPUSHER_ACCOUNT_CONCURRENCY", default=16)
if not 1 <= DATAPUSHER_ACCOUNT_CONCURRENCY <= DATAPUSHER_DELIVERY_CONCURRENCY:
    raise ImproperlyConfigured(
        "DATAPUSHER_ACCOUNT_CONCURRENCY must be at least 1 and at most DATAPUSHER_DELIVERY_CONCURRENCY."
    )
# At most this much of a destination's answer is read; the first 4 KiB are kept in the log.
DATAPUSHER_RESPONSE_MAX_BYTES = env.int("DATAPUSHER_RESPONSE_MAX_BYTES", default=65_536)
# The longest query string sent (for GET/DELETE destinations, the URL's own query and the event's
# top-level keys): a longer one is never sent, as servers answer it with 414 however often retried.
DATAPUSHER_MAX_QUERY_BYTES = env.int("DATAPUSHER_MAX_QUERY_BYTES", default=8192)
# SSRF guard: destinations on loopback, private, link-local... addresses are refused unless their
# network is listed here (CIDRs, e.g. "10.20.0.0/16,127.0.0.1/32"). None by default.
DATAPUSHER_ALLOWED_NETWORKS = env.list("DATAPUSHER_ALLOWED_NETWORKS", default=[])
for _cidr in DATAPUSHER_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_cidr, strict=False)
    except ValueError as _err:
        raise ImproperlyConfigured(f"DATAPUSHER_ALLOWED_NETWORKS: {_err}") from _err
# Ingests accepted per account (DRF's rate format, counted in the shared cache; an account's own
# `rate_limit` wins); past it the ingest answers 429 and stores nothing. `off`: no default limit.
DATAPUSHER_INGEST_RATE_LIMIT = env.str("DATAPUSHER_INGEST_RATE_LIMIT", default="50/second")
if DATAPUSHER_INGEST_RATE_LIMIT == "off":
    DATAPUSHER_INGEST_RATE_LIMIT = None
elif not RATE.fullmatch(DATAPUSHER_INGEST_RATE_LIMIT):
    raise ImproperlyConfigured(f"DATAPUSHER_INGEST_RATE_LIMIT: {RATE_MESSAGE} Or 'off'.")
# After a destination's signing secret is rotated, deliveries carry a signature with the previous
# secret too for this many seconds (24 h), so that receivers can switch over without failing any.
DATAPUSHER_SECRET_ROTATION_OVERLAP = env.float("DATAPUSHER_SECRET_ROTATION_OVERLAP", default=86400)
# Destination credentials (auth: passwords, tokens, client secrets) are stored encrypted with these
# Fernet keys (comma-separated, each from Fernet.generate_key()): the first encrypts, every one
# decrypts, so a new key goes first and an old one stays until nothing is encrypted with it. None:
# destinations with credentials cannot be saved (400) and those stored cannot be sent.
DATAPUSHER_ENCRYPTION_KEYS = env.list("DATAPUSHER_ENCRYPTION_KEYS", default=[])
for _key in DATAPUSHER_ENCRYPTION_KEYS:
    try:
        _fernet_key = base64.urlsafe_b64decode(_key.encode())
    except ValueError:
        _fernet_key = b""
    if len(_fernet_key) != 32:  # the value itself is not repeated: it is a secret
        raise ImproperlyConfigured(
            "DATAPUSHER_ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes."
        )
# `manage.py purge_events` deletes events older than this many days by default.
DATAPUSHER_EVENT_RETENTION_DAYS = env.int("DATAPUSHER_EVENT_RETENTION_DAYS", default=30)

# sync: first attempts inline, results in the answer. queue: the ingest stores and enqueues, answers 202.
DATAPUSHER_DELIVERY_MODE = env.str("DATAPUSHER_DELIVERY_MODE", default="sync")
if DATAPUSHER_DELIVERY_MODE not in ("sync", "queue"):
    raise ImproperlyConfigured("DATAPUSHER_DELIVERY_MODE must be 'sync' or 'queue'.")
# Seconds between attempts after the first (8 attempts in all, as Svix), each varied by +/- the jitter.
# Used when a broker is configured; without one a failed delivery stays failed until redelivered.
DATAPUSHER_RETRY_SCHEDULE = env.list(
    "DATAPUSHER_RETRY_SCHEDULE", cast=float, default=[5, 300, 1800, 7200, 18000, 36000, 36000]
)
DATAPUSHER_RETRY_JITTER = env.float("DATAPUSHER_RETRY_JITTER", default=0.2)

# Celery (queued delivery and background retries). No broker: everything runs in the web process.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
if DATAPUSHER_DELIVERY_MODE == "queue" and not CELERY_BROKER_URL:
    raise ImproperlyConfigured("DATAPUSHER_DELIVERY_MODE=queue needs CELERY_BROKER_URL.")
CELERY_TASK_ACKS_LATE = True  # a task is acknowledged when done, not when received
CELERY_TASK_REJECT_ON_WORKER_LOST = True  # a killed worker's task goes back to the queue
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2.0  # seconds for a worker to connect to the broker
# Publishing (the ingest, the dispatcher): every broker call waits at most this long, in all (DNS,
# connect, a broker that never answers), is never retried in a request, and after a failure the
# process leaves the broker alone for the backoff; the dispatcher publishes what was not.
DATAPUSHER_PUBLISH_TIMEOUT = env.float("DATAPUSHER_PUBLISH_TIMEOUT", default=1.0)
DATAPUSHER_PUBLISH_BACKOFF = env.float("DATAPUSHER_PUBLISH_BACKOFF", default=5.0)
# The dispatcher (`make dispatcher`) publishes due pending deliveries every interval, in batches. A
# delivery handed to the broker and not taken by a worker is handed over again 5 s later when the
# broker's queue cannot still hold it, and after DATAPUSHER_REDISPATCH_AFTER seconds in any case.
DATAPUSHER_DISPATCH_INTERVAL = env.float("DATAPUSHER_DISPATCH_INTERVAL", default=1.0)
DATAPUSHER_DISPATCH_BATCH = env.int("DATAPUSHER_DISPATCH_BATCH", default=500)
DATAPUSHER_REDISPATCH_AFTER = env.float("DATAPUSHER_REDISPATCH_AFTER", default=3600)
for _name in (
    "DATAPUSHER_MAX_QUERY_BYTES",
    "DATAPUSHER_PUBLISH_TIMEOUT",
    "DATAPUSHER_DISPATCH_INTERVAL",
    "DATAPUSHER_DISPATCH_BATCH",
):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be greater than 0.")

# Rate-limit counters (the limits library's storage URI, datapusher/ratelimit.py): in Redis when
# REDIS_URL is set, so that a limit holds across processes; in each process's memory otherwise.
REDIS_URL = env.str("REDIS_URL", default="")
DATAPUSHER_RATE_LIMIT_STORAGE = REDIS_URL or "memory://"
# A scheme the limits library has no storage for would leave every limit unchecked: refused at start.
if DATAPUSHER_RATE_LIMIT_STORAGE.partition("://")[0] not in limits.storage.SCHEMES:
    raise ImproperlyConfigured(
        "REDIS_URL must be a redis://, rediss:// or redis+unix:// URL (rate limits are counted there)."
    )

# Where the repository's files are browsed (e.g. https://github.com/acme/datapusher/blob/main/): the
# landing page, `/`, links README.md and docs/ there; empty, it names them.
DATAPUSHER_DOCS_URL = env.str("DATAPUSHER_DOCS_URL", default="")
if DATAPUSHER_DOCS_URL and not DATAPUSHER_DOCS_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured("DATAPUSHER_DOCS_URL must be an http(s) URL.")

# Health and metrics (docs/deployment.md): every /readyz check gives up after this many seconds.
# GET /metrics answers a request with `Authorization: Bearer <DATAPUSHER_METRICS_TOKEN>`; without a
# token, only clients on loopback with no proxy in front (NUM_PROXIES=0).
DATAPUSHER_READY_TIMEOUT = env.float("DATAPUSHER_READY_TIMEOUT", default=2.0)
if DATAPUSHER_READY_TIMEOUT <= 0:
    raise ImproperlyConfigured("DATAPUSHER_READY_TIMEOUT must be greater than 0.")
DATAPUSHER_METRICS_TOKEN = env.str("DATAPUSHER_METRICS_TOKEN", default="")

# The operator console (the Django admin, docs/admin.md): list filters by account and destination
# are autocompletes; times show seconds (datapusher/formats). Its redeliver/retry actions, without a
# broker, send at most DATAPUSHER_ADMIN_SEND_CONCURRENCY at once and start no send that could not
# end within DATAPUSHER_ADMIN_ACTION_SECONDS of the action's start (well inside gunicorn's 60 s).
INSTALLED_APPS += ["admin_auto_filters"]
# Its messages may carry a token or secret shown once: kept in the session, not in a cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
FORMAT_MODULE_PATH = ["datapusher.formats"]
DATAPUSHER_ADMIN_SEND_CONCURRENCY = env.int("DATAPUSHER_ADMIN_SEND_CONCURRENCY", default=16)
DATAPUSHER_ADMIN_ACTION_SECONDS = env.float("DATAPUSHER_ADMIN_ACTION_SECONDS", default=40.0)
# A redeliver/retry selecting more deliveries than this sends nothing and says so (with a broker too:
# claiming and handing over are done in the request).
DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES = env.int("DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES", default=1000)
if (
    DATAPUSHER_ADMIN_SEND_CONCURRENCY < 1
    or DATAPUSHER_ADMIN_ACTION_SECONDS <= 0
    or DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES < 1
):
    raise ImproperlyConfigured(
        "DATAPUSHER_ADMIN_SEND_CONCURRENCY and DATAPUSHER_ADMIN_ACTION_MAX_DELIVERIES must be at least 1 "
        "and DATAPUSHER_ADMIN_ACTION_SECONDS above 0."
    )

# HTTPS (docs/deployment.md#https). Django's defaults, all off, so that `make run` and local tools
# work over plain HTTP; production behind TLS turns them on (`check --deploy` is then clean).
# SECURE_PROXY_SSL_HEADER: the header a TLS-terminating proxy sets and its value for HTTPS requests,
# e.g. "HTTP_X_FORWARDED_PROTO,https"; only when that proxy overwrites the header clients send.
SECURE_PROXY_SSL_HEADER = env.tuple("SECURE_PROXY_SSL_HEADER", default=None) or None
if SECURE_PROXY_SSL_HEADER is not None and len(SECURE_PROXY_SSL_HEADER) != 2:
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER must be a header and its value for HTTPS: HTTP_X_FORWARDED_PROTO,https"
    )
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

# A destination answering 429 or 503 with Retry-After is tried again that much later (at most this
# many seconds), without spending one of the schedule's attempts.
DATAPUSHER_RETRY_AFTER_MAX = env.float("DATAPUSHER_RETRY_AFTER_MAX", default=3600)
if DATAPUSHER_RETRY_AFTER_MAX < 1:
    raise ImproperlyConfigured("DATAPUSHER_RETRY_AFTER_MAX must be at least 1 (second).")

# The circuit breaker (server/services/breaker.py): after DATAPUSHER_BREAKER_FAILURES retryable
# failures in a row a destination's circuit opens and its deliveries wait, without spending attempts,
# for a probe after DATAPUSHER_BREAKER_COOLDOWN seconds, doubling with each reopening up to
# DATAPUSHER_BREAKER_COOLDOWN_MAX. Open for DATAPUSHER_DISABLE_AFTER seconds (5 days), the destination
# is disabled. DATAPUSHER_BREAKER_FAILURES=0 turns the breaker off.
DATAPUSHER_BREAKER_FAILURES = env.int("DATAPUSHER_BREAKER_FAILURES", default=10)
DATAPUSHER_BREAKER_COOLDOWN = env.float("DATAPUSHER_BREAKER_COOLDOWN", default=60.0)
DATAPUSHER_BREAKER_COOLDOWN_MAX = env.float("DATAPUSHER_BREAKER_COOLDOWN_MAX", default=3600.0)
DATAPUSHER_DISABLE_AFTER = env.float("DATAPUSHER_DISABLE_AFTER", default=5 * 86400.0)
if DATAPUSHER_BREAKER_FAILURES < 0:
    raise ImproperlyConfigured("DATAPUSHER_BREAKER_FAILURES must be 0 (off) or more.")
if not 0 < DATAPUSHER_BREAKER_COOLDOWN <= DATAPUSHER_BREAKER_COOLDOWN_MAX or DATAPUSHER_DISABLE_AFTER <= 0:
    raise ImproperlyConfigured(
        "DATAPUSHER_BREAKER_COOLDOWN must be above 0 and at most DATAPUSHER_BREAKER_COOLDOWN_MAX, "
        "and DATAPUSHER_DISABLE_AFTER above 0."
    )
