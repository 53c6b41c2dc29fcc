"""The OpenAPI document (``/openapi.json``) as the API really answers.

Routes declare the errors their dependencies and handlers raise
(:func:`api.errors.error_responses`); this module adds what the application-wide
handlers answer for any operation, on the rule FastAPI itself uses for its 422:

* an operation with a request body: 400 ``malformed_json`` (api/errors.py) and
  413 ``payload_too_large`` (api/body_limit.py);
* an operation with parameters or a body: 422, with :class:`~api.errors.ErrorBody`
  in place of FastAPI's ``HTTPValidationError``, a shape this API never sends.

``tests/integration/test_openapi_contract.py`` fuzzes the API from this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.errors import ErrorBody, error_responses

__all__ = ["install"]

SCHEMAS_REF = "#/components/schemas/{model}"
# FastAPI's default 422 body, and the item it is a list of.
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
BODY_ERRORS = error_responses(400, 413, 422)
INPUT_ERRORS = error_responses(422)


def install(app: FastAPI) -> None:
    """Serve the amended document at ``/openapi.json`` (built once, on first request)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = amend(generate())
        return app.openapi_schema

    app.openapi = openapi


def amend(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the application-wide error answers and the error schema."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" in operation:
                added = BODY_ERRORS
            elif operation.get("parameters"):
                added = INPUT_ERRORS
            else:
                added = {}
            # Replaces FastAPI's 422 where it put one.
            responses = {**operation.get("responses", {}), **{str(s): r for s, r in added.items()}}
            operation["responses"] = dict(sorted(responses.items()))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    error_schema = ErrorBody.model_json_schema(ref_template=SCHEMAS_REF, mode="serialization")
    schemas.update(error_schema.pop("$defs", {}))
    schemas[ErrorBody.__name__] = error_schema
    return document
