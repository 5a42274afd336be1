"""Immutable tags: a registry's refusal to move a tag that already exists, told apart from
other refusals of a manifest PUT.

The distribution-spec has no error code for it, so each registry answers in its own words
(collected from their documentation and issue trackers):

* AWS ECR: 400, ``TAG_INVALID``: "The image tag 'v1' already exists in the 'app' repository
  and cannot be overwritten because the tag is immutable." (before 2025: "... because the
  repository is immutable."; kaniko#3481);
* Harbor, tag immutability rules: 412, ``PRECONDITION``: "Failed to process request due to
  'app:v1' configured as immutable." (goharbor/harbor, middleware ``immutable``);
* Google Artifact Registry: "The repository has enabled tag immutability" (its Docker
  troubleshooting page);
* Docker Hub: 403, ``DENIED``: "... cannot be updated due to immutability settings";
* Quay: "tag is immutable and cannot be overwritten"; Mirantis MSR: "tag=v1 cannot be
  overwritten because ... is an immutable repository"; Alibaba ACR: "The requested tag
  already exists and cannot be overwritten."

Recognised: a 4xx answer other than 401, 404 and 429 whose error text (each ``errors[]``
entry's code and message, or the plain body) speaks of immutability, or says the tag already
exists and cannot be overwritten (ECR's ``TAG_INVALID`` with "already exists" counts too; a
bare ``TAG_INVALID`` is also the spec's answer to a malformed tag and does not).
"""

from __future__ import annotations

import json

_NOT_IMMUTABILITY = frozenset({401, 404, 429})
_MAX_BODY = 65536


def _entries(body: bytes) -> list[tuple[str, str]]:
    """(code, message) of each distribution error in ``body``; the plain text as one message
    when the body is not such a document."""
    try:
        doc = json.loads(body[:_MAX_BODY])
        errs = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errs, list):
            out = [(str(e.get("code") or ""), str(e.get("message") or "")) for e in errs if isinstance(e, dict)]
            if out:
                return out
    except ValueError:
        pass
    text = body[:_MAX_BODY].decode("utf-8", "replace").strip()
    return [("", text)] if text else []


def _says_immutable(code: str, message: str) -> bool:
    text = f"{code} {message}".lower()
    if "immutab" in text:
        return True
    return "already exists" in text and ("overwrit" in text or code.upper() == "TAG_INVALID")


def immutable_tag_refusal(status: int, body: bytes) -> str | None:
    """The registry's words (``CODE: message``, at most 300 characters) when an answer
    ``status`` / ``body`` to a manifest PUT by tag refuses to move an immutable tag, else None."""
    if not 400 <= status < 500 or status in _NOT_IMMUTABILITY:
        return None
    for code, message in _entries(body):
        if _says_immutable(code, message):
            return (f"{code}: {message}" if code and message else code or message).strip()[:300]
    return None
