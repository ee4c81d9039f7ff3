"""The OpenAPI schema (drf-spectacular), with every error an operation can answer, not only its success."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework.permissions import SAFE_METHODS, AllowAny

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
        errors = []
        if self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None:
            errors.append((400, "Invalid input.", FIELD_ERRORS))
        if not public:
            errors.append((401, "Not signed in, or the token is unknown, revoked or expired.", DETAIL))
            member_may = self.method in SAFE_METHODS or action in getattr(view, "member_actions", ())
            if action in getattr(view, "admin_actions", ()) or not member_may:
                errors.append(
                    (403, "Your role on this account does not allow this: only its admins may.", DETAIL)
                )
        if "{" in self.path:
            errors.append((404, "No such object, or it is on an account you are not a member of.", DETAIL))
        errors.append((503, "The database is unavailable; try again after Retry-After.", DETAIL))
        return errors
