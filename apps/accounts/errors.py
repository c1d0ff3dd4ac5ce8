"""One error shape for every 4xx answer: `{"message": ..., "errors": {field: [messages]}}`."""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(exceptions.APIException):
    """A client error raised by services and views, carrying messages per field."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, errors: dict | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        if status_code is not None:
            self.status_code = status_code


def error_body(message: str, errors: dict | None = None) -> dict:
    return {"message": message, "errors": errors or {}}


def _field_errors(detail, field: str = "") -> dict[str, list[str]]:
    """DRF's error details as {field: [messages]}; nested fields are named `field.key` (`aliases.0`)."""
    if not isinstance(detail, (dict, list)):
        return {field or "non_field_errors": [str(detail)]}
    items = detail.items() if isinstance(detail, dict) else enumerate(detail)
    errors: dict[str, list[str]] = {}
    for key, value in items:
        # A list of messages belongs to its field; a dict (or a list's nested errors) names sub-fields.
        nested = isinstance(detail, dict) or isinstance(value, (dict, list))
        name = (f"{field}.{key}" if field else str(key)) if nested else field
        for error_field, messages in _field_errors(value, name).items():
            errors.setdefault(error_field, []).extend(messages)
    return errors


def exception_handler(exc, context):
    if isinstance(exc, ApiError):
        return Response(error_body(exc.message, exc.errors), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, exceptions.APIException) else None
    if isinstance(exc, exceptions.ValidationError):
        message = "Invalid input."
        errors = _field_errors(detail)
    else:
        message = str(detail) if detail is not None else response.status_text
        errors = {}
    response.data = error_body(message, errors)
    return response
