__version__ = "0.1.0"

# Loaded with Django so that tasks are sent through the configured app.
from datapusher.celery import app as celery_app

__all__ = ["__version__", "celery_app"]
