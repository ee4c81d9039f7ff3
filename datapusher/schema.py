"""The OpenAPI schema (drf-spectacular), with every error an operation can answer, not only its success."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework.permissions import SAFE_METHODS, AllowAny

from accounts.permissions import AccountRolePermission
from destinations.models import Destination
from server.models import Delivery

DETAIL = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
FIELD_ERRORS = {
    "type": "object",
    "description": 'Field name (or "non_field_errors") to its messages.',
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}


class AutoSchema(SpectacularAutoSchema):
    """Adds to each operation the errors that the API's shared machinery answers (validation,
    authentication, the account roles, unknown or hidden objects, the database being away); an
    operation's own errors (409, 429...) are declared on the view."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description, schema in self._shared_errors():
            responses.setdefault(
                str(code), {"description": description, "content": {"application/json": {"schema": schema}}}
            )
        return responses

    def _shared_errors(self) -> list[tuple[int, str, dict]]:
        view = self.view
        action = getattr(view, "action", None)
        public = any(permission is AllowAny for permission in view.permission_classes)
        listed = getattr(view, "action", None) == "list"
        errors = []
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None:
            errors.append((400, "Invalid input.", FIELD_ERRORS))
        elif listed and getattr(view, "filterset_class", None) is not None:
            errors.append((400, "A filter's value is invalid.", FIELD_ERRORS))
        if not public:
            errors.append((401, "Not signed in, or the token is unknown, revoked or expired.", DETAIL))
            member_may = self.method in SAFE_METHODS or action in getattr(view, "member_actions", ())
            by_role = AccountRolePermission in view.permission_classes
            if by_role and (action in getattr(view, "admin_actions", ()) or not member_may):
                errors.append(
                    (403, "Your role on this account does not allow this: only its admins may.", DETAIL)
                )
        if "{" in self.path:
            errors.append((404, "No such object, or it is on an account you are not a member of.", DETAIL))
        elif listed and self._get_paginator() is not None:
            errors.append((404, "No such page.", DETAIL))
        errors.append((503, "The database is unavailable; try again after Retry-After.", DETAIL))
        return errors


# --- The ingest -----------------------------------------------------------------------------------
# POST /server/incoming_data is a plain Django view (its cost per request is measured), so
# drf-spectacular does not see it: `ingest_path` adds it to the schema. Every example below is an
# answer the ingest really gives (server/tests/test_schema.py sends each case and compares).

INGEST_PATH = "/server/incoming_data"
EVENT_ID_EXAMPLE = "3b241101-e2bb-4255-8caf-4136c566a962"
DELIVERY_EXAMPLE = {
    "delivery_id": "5f0c6f7e-2d2b-4b8e-9a57-0c1f1e0b6a3d",
    "destination_id": 12,
    "url": "https://hooks.example.com/orders",
    "http_method": "POST",
}


def _received(*, duplicate: bool, **outcome: object) -> dict:
    return {
        "success": True,
        "message": "Data Received",
        "event_id": EVENT_ID_EXAMPLE,
        "duplicate": duplicate,
        "deliveries": [{**DELIVERY_EXAMPLE, **outcome}],
    }


def _refused(message: str, error: str | None = None) -> dict:
    return {"success": False, "message": message} | ({} if error is None else {"error": error})


def _invalid(error: str) -> dict:
    return _refused(INVALID, error)


SENT = {"status": "succeeded", "status_code": 200, "error": None, "duration_ms": 84}
QUEUED = {"status": "pending", "status_code": None, "error": None, "duration_ms": None}
INVALID = "Invalid Data"
NOT_JSON_EXAMPLE = "Expecting value: line 1 column 1 (char 0)."
RETRY_AFTER = {"description": "Seconds to wait before sending again.", "schema": {"type": "integer"}}

# status: (description, response headers, {example name: (summary, body)})
INGEST_ANSWERS: dict[int, tuple[str, dict, dict[str, tuple[str, dict]]]] = {
    200: (
        "Stored and sent (sync mode): one entry per destination of the account, with its outcome. A "
        "delivery that failed is still a 200: its entry says why, and it is retried.",
        {},
        {
            "received": ("Sent to one destination", _received(duplicate=False, **SENT)),
            "duplicate": (
                "The same CL-X-EVENT-ID and body again: the first event's outcome, nothing sent",
                _received(duplicate=True, **SENT),
            ),
        },
    ),
    202: (
        "Stored and queued (DATAPUSHER_DELIVERY_MODE=queue): workers send the pending deliveries.",
        {},
        {"queued": ("Queued for one destination", _received(duplicate=False, **QUEUED))},
    ),
    400: (
        "Not a UTF-8 JSON object, or a malformed CL-X-EVENT-ID: nothing stored. `error` says why.",
        {},
        {
            "not-json": ("Not JSON", _invalid("The body is not valid JSON: " + NOT_JSON_EXAMPLE)),
            "not-an-object": (
                "A JSON value, not an object",
                _invalid("The body must be a JSON object, not an array."),
            ),
            "content-type": (
                "Another Content-Type",
                _invalid("Content-Type must be application/json, not text/plain."),
            ),
            "charset": (
                "A charset other than UTF-8",
                _invalid("The body must be UTF-8, not charset=latin-1."),
            ),
            "encoding": (
                "Bytes that are not UTF-8",
                _invalid("The body is not UTF-8: invalid start byte at byte 0."),
            ),
            "event-id": (
                "A malformed CL-X-EVENT-ID",
                _invalid("CL-X-EVENT-ID must be 1 to 255 printable ASCII characters."),
            ),
        },
    ),
    401: (
        "CL-X-TOKEN is missing or is not an account's app secret token.",
        {},
        {"unauthenticated": ("No or unknown token", _refused("Un Authenticate"))},
    ),
    405: (
        "Any method but POST.",
        {"Allow": {"description": "POST", "schema": {"type": "string"}}},
        {"method": ("GET instead of POST", _refused(INVALID))},
    ),
    409: (
        "CL-X-EVENT-ID was already used by this account for a different body: nothing stored or sent. "
        "The same body again is a 200 with `duplicate: true`.",
        {},
        {
            "conflict": (
                "Same CL-X-EVENT-ID, another body",
                _refused("Conflict", "CL-X-EVENT-ID order-7 was already used with a different body."),
            )
        },
    ),
    411: (
        "A chunked body (no Content-Length) through a server that does not de-chunk it (runserver).",
        {},
        {"length-required": ("Chunked body", _refused("Length Required"))},
    ),
    413: (
        "The body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB by default).",
        {},
        {"too-large": ("Body too large", _refused("Payload Too Large"))},
    ),
    429: (
        "The account's rate limit is reached, or its share of this process is waiting on destinations: "
        "nothing stored. Send again after Retry-After.",
        {"Retry-After": RETRY_AFTER},
        {"too-many": ("Rate limited", _refused("Too Many Requests"))},
    ),
    503: (
        "The database is unavailable: nothing stored. Send again after Retry-After.",
        {"Retry-After": RETRY_AFTER},
        {"unavailable": ("Database unavailable", _refused("Service Unavailable"))},
    ),
}

INGEST_SCHEMAS = {
    "IngestDelivery": {
        "type": "object",
        "properties": {
            "delivery_id": {"type": "string", "format": "uuid"},
            # null: the destination was deleted since (a duplicate's answer, the first event's deliveries).
            "destination_id": {"type": "integer", "nullable": True},
            "url": {"type": "string", "description": "The destination's URL, without credentials."},
            "http_method": {"type": "string", "enum": Destination.HttpMethod.values},
            "status": {"type": "string", "enum": Delivery.Status.values},
            "status_code": {"type": "integer", "nullable": True},
            "error": {"type": "string", "nullable": True},
            "duration_ms": {"type": "integer", "nullable": True},
        },
        "required": [*DELIVERY_EXAMPLE, *SENT],
    },
    "IngestReceived": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "message": {"type": "string", "enum": ["Data Received"]},
            "event_id": {"type": "string", "format": "uuid"},
            "duplicate": {
                "type": "boolean",
                "description": "True when this CL-X-EVENT-ID and body were received before: nothing was "
                "sent, the deliveries are the first event's.",
            },
            "deliveries": {"type": "array", "items": {"$ref": "#/components/schemas/IngestDelivery"}},
        },
        "required": ["success", "message", "event_id", "duplicate", "deliveries"],
    },
    "IngestError": {
        "type": "object",
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "message": {"type": "string"},
            "error": {"type": "string", "description": "Why (on 400 and 409)."},
        },
        "required": ["success", "message"],
    },
}


def _ingest_response(status: int) -> dict:
    description, headers, examples = INGEST_ANSWERS[status]
    schema = "IngestReceived" if status < 300 else "IngestError"
    media = {
        "schema": {"$ref": f"#/components/schemas/{schema}"},
        "examples": {name: {"summary": summary, "value": body} for name, (summary, body) in examples.items()},
    }
    return {"description": description, "content": {"application/json": media}} | (
        {"headers": headers} if headers else {}
    )


INGEST_OPERATION = {
    "operationId": "incoming_data",
    "summary": "Push a JSON object to the account's destinations",
    "description": "Authenticated by the account's app secret token in CL-X-TOKEN alone (no user "
    "token, no session). The body is stored as received and sent byte for byte to every destination of "
    "the account (GET destinations get its top-level keys as the query string), signed with Standard "
    "Webhooks headers. Checked in order: method, token, rate limit, body, CL-X-EVENT-ID.",
    "tags": ["ingest"],
    "security": [],
    "parameters": [
        {
            "name": "CL-X-TOKEN",
            "in": "header",
            "required": True,
            "description": "The account's app secret token.",
            "schema": {"type": "string"},
        },
        {
            "name": "CL-X-EVENT-ID",
            "in": "header",
            "required": False,
            "description": "Your id for this event, 1 to 255 printable ASCII characters, unique per "
            "account: sent again with the same body, it is answered as the first time and sent nowhere; "
            "with a different body, 409.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~][ -~]{0,254}$"},
            "example": "order-7",
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": {"order_id": 7, "status": "paid"},
            }
        },
    },
    "responses": {str(status): _ingest_response(status) for status in INGEST_ANSWERS},
}


def ingest_path(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: POST /server/incoming_data, its headers and every answer."""
    result["paths"][INGEST_PATH] = {"post": INGEST_OPERATION}
    result.setdefault("components", {}).setdefault("schemas", {}).update(INGEST_SCHEMAS)
    return result


def destination_auth_example(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: `auth`'s example is `{"type": "none"}`, and the limits'
    `null` (no limit), so that the body Swagger UI's "Try it out" builds is accepted (one made of
    every auth field at once is not, nor a rate_limit of 0)."""
    schemas = result.get("components", {}).get("schemas", {})
    for name in ("DestinationAuthRequest", "DestinationAuth"):
        if name in schemas:
            schemas[name]["example"] = {"type": "none"}
    for name in ("DestinationRequest", "PatchedDestinationRequest"):
        for field in ("rate_limit", "max_in_flight"):
            if field in schemas.get(name, {}).get("properties", {}):
                schemas[name]["properties"][field]["example"] = None
    return result
