"""Pure checks of payment requests: metadata size, priorities and their default targets."""

from __future__ import annotations

import json
import secrets

from tonrail.errors import InvalidRequest

DEFAULT_TARGET_SECONDS = {"urgent": 15, "normal": 60, "low": 3600}
METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500
_REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud safely


def check_metadata(metadata: dict[str, str], max_bytes: int) -> None:
    """Raise InvalidRequest(metadata_invalid) for too many, too long or too large entries."""
    if len(metadata) > METADATA_MAX_KEYS:
        raise InvalidRequest(
            f"metadata has more than {METADATA_MAX_KEYS} keys",
            param="metadata",
            code="metadata_invalid",
        )
    for key, value in metadata.items():
        if not key or len(key) > METADATA_MAX_KEY_LENGTH:
            raise InvalidRequest(
                f"metadata keys must be 1 to {METADATA_MAX_KEY_LENGTH} characters",
                param=f"metadata[{key[:40]}]",
                code="metadata_invalid",
            )
        if len(value) > METADATA_MAX_VALUE_LENGTH:
            raise InvalidRequest(
                f"metadata values must be at most {METADATA_MAX_VALUE_LENGTH} characters",
                param=f"metadata[{key}]",
                code="metadata_invalid",
            )
    if len(json.dumps(metadata, ensure_ascii=False).encode()) > max_bytes:
        raise InvalidRequest(
            f"metadata is larger than {max_bytes} bytes",
            param="metadata",
            code="metadata_invalid",
        )


def new_reference() -> str:
    """An invoice reference customers put in the transfer comment: `TR-` and 10 symbols."""
    return "TR-" + "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(10))
