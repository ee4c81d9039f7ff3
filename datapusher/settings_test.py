"""Settings for the test suite: the production settings with a throwaway key and a fast hasher."""

import os

os.environ.setdefault("SECRET_KEY", "test-suite-only-secret-key")

from datapusher.settings import *  # noqa: F403

# Serve static files from the apps directly: the suite does not run collectstatic.
WHITENOISE_AUTOREFRESH = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
