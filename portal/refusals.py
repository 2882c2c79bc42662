"""How the API refuses: its refusals documented in the OpenAPI schema, and values the database cannot store.

Routes refuse with ``{"detail": "<what is wrong and what to do>"}`` (401, 403, 404, 409, 413, and 422 for a request
that is well formed but cannot be accepted), while FastAPI's own request validation answers 422 with a list of
errors. :func:`document_error_responses` writes both into the generated schema: an :data:`ERROR_SCHEMA` response
for every 4xx (``4XX``), and a 422 that is either shape, so clients (and schema-based testing) see what the API
really answers.

Some values pass request validation but not the database: text holding the NUL character (U+0000), which
PostgreSQL cannot store (psycopg refuses the parameter; SQLAlchemy raises ``DataError``), and whole numbers beyond
the database's integer range (SQLite's driver raises ``OverflowError``, PostgreSQL ``DataError`` "out of range"),
wherever they came from (a path, a query parameter, a form field, a JSON body). :func:`refuse_unstorable_values`
answers those with 422 instead of a server error; nothing was written (the statement never ran, and the request's
transaction is rolled back). Any other ``DataError`` or ``OverflowError`` stays a server error. Routes may bound
their ids instead (e.g. :data:`portal.api_submissions.SubmissionId`), which also documents the range.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

__all__ = ["ERROR_SCHEMA", "document_error_responses", "install_refusals", "refuse_unstorable_values"]

NUL_TEXT_MESSAGE = "NUL (0x00)"
"""What psycopg's error says when a text parameter holds U+0000."""

OUT_OF_RANGE_MESSAGES = ("SQLite INTEGER", "out of range")
"""What SQLite's driver (``OverflowError``) and PostgreSQL (``DataError``) say of a number beyond an integer
column."""

ERROR_SCHEMA: dict[str, Any] = {
    "title": "ErrorMessage",
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "What is wrong and what to do about it."}},
    "required": ["detail"],
}
"""A refusal's body."""

_ERROR_REF = {"$ref": "#/components/schemas/ErrorMessage"}
_VALIDATION_REF = {"$ref": "#/components/schemas/HTTPValidationError"}


def document_error_responses(app: FastAPI) -> None:
    """Make ``app.openapi()`` document every operation's refusals (see the module docstring)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {})["ErrorMessage"] = ERROR_SCHEMA
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.setdefault("responses", {})
                if "422" in responses:
                    responses["422"]["content"] = {
                        "application/json": {"schema": {"anyOf": [_VALIDATION_REF, _ERROR_REF]}}
                    }
                responses.setdefault(
                    "4XX",
                    {
                        "description": "Refused: the detail says what is wrong and what to do",
                        "content": {"application/json": {"schema": _ERROR_REF}},
                    },
                )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def refuse_unstorable_values(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler for SQLAlchemy's ``DataError`` and for ``OverflowError``: 422 when the database refused a
    NUL character or a number out of its range (see the module docstring); anything else is raised again (a server
    error, as without this handler)."""
    text = str(exc)
    if isinstance(exc, DataError) and NUL_TEXT_MESSAGE in text:
        detail = "a text value in the request holds a NUL character (U+0000), which cannot be stored; remove it"
    elif any(message in text for message in OUT_OF_RANGE_MESSAGES):
        detail = "a number in the request is out of range (ids and counts are at most 2147483647)"
    else:
        raise exc
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": detail})


def install_refusals(app: FastAPI) -> None:
    """:func:`document_error_responses` and the :func:`refuse_unstorable_values` handler on ``app``."""
    document_error_responses(app)
    app.add_exception_handler(DataError, refuse_unstorable_values)
    app.add_exception_handler(OverflowError, refuse_unstorable_values)
