from django.core.exceptions import ObjectDoesNotExist, ObjectNotUpdated
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """DRF's handler, plus services' Django ValidationErrors answered as 400 field errors, and an
    object deleted while a request was changing it as 404."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, ObjectDoesNotExist | ObjectNotUpdated):
        exc = exceptions.NotFound()
    return drf_exception_handler(exc, context)
