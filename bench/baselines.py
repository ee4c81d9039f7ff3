"""Django settings and URLs that serve a baseline at /server/incoming_data, for benchmarks only.

Data Pusher's own settings and middleware, with the ingest path answered by the view that
BENCH_BASELINE names instead of the product's:
  naive    the sequential baseline the product is compared with (see `naive`);
  ceiling  a bare JSON answer: what Django itself serves through the same middleware.

Usage:  DJANGO_SETTINGS_MODULE=bench.baselines BENCH_BASELINE=naive|ceiling make serve
(from the repository's root, where `bench` imports as a namespace package).
"""

import json
import os

# The baseline sends as simple implementations do, with requests itself, not the product's client.
import requests
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt

from datapusher.settings import *  # noqa: F403

ROOT_URLCONF = "bench.baselines"
NAIVE_TIMEOUT_SECONDS = 30


@csrf_exempt
def naive(request: HttpRequest) -> JsonResponse:
    """The sequential baseline the product is compared with, not a mode of the product: what a
    simple public implementation of this service does. It looks the account up by its token, then
    sends the JSON to each destination in turn with requests' module-level functions (a new
    connection each time), records nothing, and answers once the last destination has."""
    # Imported here: this module is also the settings, read before the models can be.
    from accounts.models import Account
    from accounts.tokens import app_secret_token_hash

    token = request.headers.get("CL-X-TOKEN", "")
    account = Account.objects.filter(app_secret_token_hash=app_secret_token_hash(token)).first()
    if account is None:
        return JsonResponse({"success": False, "message": "Un Authenticate"}, status=401)
    data = json.loads(request.body)
    for destination in account.destinations.all():
        if destination.http_method == "GET":
            requests.get(
                destination.url, params=data, headers=destination.headers, timeout=NAIVE_TIMEOUT_SECONDS
            )
        else:
            requests.request(
                destination.http_method,
                destination.url,
                json=data,
                headers=destination.headers,
                timeout=NAIVE_TIMEOUT_SECONDS,
            )
    return JsonResponse({"success": True, "message": "Data Received"})


@csrf_exempt
def ceiling(request: HttpRequest) -> JsonResponse:
    """Answers at once, touching neither the body nor the database."""
    return JsonResponse({"success": True})


BASELINES = {"naive": naive, "ceiling": ceiling}
try:
    baseline = BASELINES[os.environ.get("BENCH_BASELINE", "")]
except KeyError:
    raise ImproperlyConfigured(f"Set BENCH_BASELINE to one of: {', '.join(BASELINES)}.") from None

urlpatterns = [re_path(r"^server/incoming_data/?$", baseline)]
