"""Event types: the rules for a type's name and for its payload schema.

A type's ``schema`` is a JSON Schema (any draft; 2020-12 when it names none),
compiled by ``jsonschema-rs`` offline: a ``$ref`` to a URL is refused, never
fetched, so a schema cannot make the API call out (SSRF). A schema that is not a
valid JSON Schema, or larger than :data:`MAX_SCHEMA_BYTES`, is refused when it is
registered; a payload is checked against the compiled one on every message.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs

__all__ = [
    "MAX_SCHEMA_BYTES",
    "MESSAGE_TYPE_PATTERN",
    "NAME_PATTERN",
    "SchemaRefused",
    "compile_schema",
    "payload_problem",
]

# A message's event_type (and an endpoint's filter_types, a list's ?event_type=).
MESSAGE_TYPE_PATTERN = r"^[A-Za-z0-9_.:\-/]+$"
# Dotted, like `order.paid` or `invoice.payment_failed.v2`: the characters a message's
# event_type allows but `/` (a type's name is part of its path).
NAME_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
MAX_SCHEMA_BYTES = 65536
# How many of a payload's schema errors an answer lists.
MAX_LISTED_ERRORS = 5


class SchemaRefused(ValueError):
    """The schema cannot be used; the message says why, for a 422."""


def compile_schema(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A validator for ``schema``, or :class:`SchemaRefused`."""
    size = len(json.dumps(schema, separators=(",", ":")).encode())
    if size > MAX_SCHEMA_BYTES:
        raise SchemaRefused(f"schema is {size} bytes; the limit is {MAX_SCHEMA_BYTES}")
    try:
        jsonschema_rs.meta.validate(schema)
        return jsonschema_rs.validator_for(schema, offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SchemaRefused(f"not a usable JSON Schema: {first_line}") from None


def payload_problem(validator: jsonschema_rs.Validator, payload: Any) -> str | None:
    """Why ``payload`` fails the schema (the first few errors, each with its JSON
    path), or None when it passes."""
    problems = []
    for error in validator.iter_errors(payload):
        path = "".join(
            f"[{part!r}]" if isinstance(part, str) else f"[{part}]" for part in error.instance_path
        )
        problems.append(f"payload{path}: {error.message}")
        if len(problems) == MAX_LISTED_ERRORS:
            break
    return "; ".join(problems) or None
