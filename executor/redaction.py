"""Credentials in URLs kept out of logs, errors, image history and cache records.

A URL may carry ``user:password@`` (RFC 3986 userinfo), e.g. ``ADD https://u:token@host/f``
or a ``--context`` URL. The executor uses it for the request and shows it nowhere:
:func:`redact_userinfo` replaces the userinfo of every URL in a text with ``***``.
"""

from __future__ import annotations

import re

# scheme "://" userinfo "@": userinfo stops at the first character a URL authority cannot hold
# before "@" ("/", "?", "#", whitespace, quotes), so "a@b" in a path is never mistaken for it
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@#?\s'\"]+@")


def redact_userinfo(text: str) -> str:
    """``text`` with the ``user[:password]@`` of every ``scheme://`` URL replaced by ``***@``.

    ``"ADD https://u:p@h/f /f"`` -> ``"ADD https://***@h/f /f"``; text without such a URL is
    returned unchanged (the same object)."""
    if "@" not in text or "://" not in text:
        return text
    return _USERINFO.sub(r"\1***@", text)
