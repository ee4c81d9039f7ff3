"""Settings for the test suite: the production settings with a throwaway key and a fast hasher."""

import os

os.environ.setdefault("SECRET_KEY", "test-suite-only-secret-key")

from datapusher.settings import *  # noqa: F403

# Serve static files from the apps directly: the suite does not run collectstatic.
WHITENOISE_AUTOREFRESH = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Local receivers in the tests listen on loopback; tests of the SSRF guard override this.
DATAPUSHER_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
# No broker and sync mode unless a test says otherwise, whatever the environment or .env holds;
# the integration suite's worker process runs on the production settings.
CELERY_BROKER_URL = ""
DATAPUSHER_DELIVERY_MODE = "sync"
# Destination credentials are encrypted with this key (a test-only one); tests without a key set it empty.
DATAPUSHER_ENCRYPTION_KEYS = ["dGVzdC1zdWl0ZS1vbmx5LWVuY3J5cHRpb24ta2V5LTE="]
