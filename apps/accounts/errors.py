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


def _field_errors(detail) -> dict:
    if isinstance(detail, dict):
        return {
            field: [str(item) for item in (value if isinstance(value, list) else [value])]
            for field, value in detail.items()
        }
    if isinstance(detail, list):
        return {"non_field_errors": [str(item) for item in detail]}
    return {}


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
