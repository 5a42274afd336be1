"""User-facing text for registry failures: HTTP status phrases, fixes, error bodies.

Error bodies follow the distribution-spec (spec.md "Error codes"):
``{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "...", "detail": ...}]}``.
"""

from __future__ import annotations

import json

import httpx

#: What to do about an HTTP status, appended to the error message.
STATUS_HINTS = {
    401: "check credentials in DOCKER_CONFIG/config.json",
    403: "the credentials lack permission for this repository; check the account's access",
    404: "check the image name and tag",
    405: "the registry does not support this operation (is it a read-only mirror?)",
    413: "the registry rejected the size; check the registry's (or its proxy's) request size limits",
    429: "the registry is rate-limiting; retry later or use --registry-mirror",
}


def error_detail(resp: httpx.Response) -> str:
    """``CODE: message`` pairs of a distribution error body (at most 300 characters), or ''.
    The response must have been read."""
    try:
        body = resp.content
        errs = json.loads(body[:65536]).get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errs if isinstance(e, dict)]
        return "; ".join(p for p in parts if p)[:300]
    except Exception:  # noqa: BLE001 - best-effort decoration of an error message
        return ""


def status_text(code: int) -> str:
    """``"404 not found"``: the code and its lower-case reason phrase (the code alone if unknown)."""
    try:
        return f"{code} {httpx.codes.get_reason_phrase(code).lower()}"
    except Exception:  # noqa: BLE001
        return str(code)
