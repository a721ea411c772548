"""Schemathesis extension for tests/api/test_schemathesis.py (loaded by SCHEMATHESIS_HOOKS).

A request the schema calls valid may still break a rule no schema states: an address
checksum, a minimum amount, a daily limit, an object in the wrong state. Such a 400 carries
the rule's code, and the schema is right to accept the request. A 400 with one of the codes
of malformed input below is different: the schema let through what the API refuses as
shape, so the schema is looser than the API. That is a finding.
"""

from __future__ import annotations

import schemathesis
from schemathesis import Case, CheckContext, Response

# The codes of input the OpenAPI schema can describe (input_boundary.py, web.py, money.py).
SHAPE_CODES = frozenset(
    {
        "parameter_invalid",
        "parameter_missing",
        "parameter_unknown",
        "body_invalid_json",
        "body_duplicate_key",
        "body_too_deep",
        "body_too_large",
        "content_type_unsupported",
        "idempotency_key_invalid",
        "asset_unknown",
        "event_type_invalid",
    }
)


@schemathesis.check
def schema_valid_input_is_refused_only_by_rules(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """A schema-valid request is never refused as malformed."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code >= 500:
        return None
    if response.status_code < 400:
        return None
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None  # the error shape itself is the schema's response check
    if code in SHAPE_CODES:
        raise AssertionError(
            f"a request the schema accepts was refused as malformed ({response.status_code} "
            f"{code}): the schema is looser than the API"
        )
    return None
