"""Parse Kaniko's ``--cache-ttl`` (a Go duration such as ``336h`` or ``30m``)."""

from __future__ import annotations

from ..dockerfile.duration import parse_go_duration
from ..errors import UserError


def parse_ttl(text: str) -> int:
    """Seconds in a Go duration string; raises UserError for a malformed value."""
    try:
        return parse_go_duration(text) // 1_000_000_000
    except ValueError:
        raise UserError(f"--cache-ttl={text}: not a duration (e.g. 336h, 30m)") from None
