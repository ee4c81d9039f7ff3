from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from accounts.selectors import account_get_by_token
from server.payload import InvalidPayload, payload_parse
from server.services import incoming_data_push

TOKEN_HEADER = "CL-X-TOKEN"  # noqa: S105 (a header name, not a secret)


def _failure(status: int, message: str) -> JsonResponse:
    return JsonResponse({"success": False, "message": message}, status=status)


@csrf_exempt
def incoming_data(request: HttpRequest) -> JsonResponse:
    """Receive a JSON object for the account owning the CL-X-TOKEN and push it to its destinations.

    Checks in order: method (405), token (401), body (400 / 413); then 200 with one entry per
    destination. Authenticated by the token alone: no user session, no CSRF.
    """
    if request.method != "POST":
        response = _failure(405, "Invalid Data")
        response["Allow"] = "POST"
        return response
    account = account_get_by_token(token=request.headers.get(TOKEN_HEADER, ""))
    if account is None:
        return _failure(401, "Un Authenticate")
    try:
        body = request.body
        data = payload_parse(
            body=body,
            content_type=request.content_type or "",
            charset=request.content_params.get("charset"),
        )
    except RequestDataTooBig:
        return _failure(413, "Payload Too Large")
    except InvalidPayload:
        return _failure(400, "Invalid Data")
    deliveries = incoming_data_push(account=account, body=body, data=data)
    return JsonResponse(
        {
            "success": True,
            "message": "Data Received",
            "deliveries": [delivery.as_dict() for delivery in deliveries],
        }
    )
