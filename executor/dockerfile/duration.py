"""Go ``time.ParseDuration`` syntax, the one parser for every duration the executor reads.

Used for HEALTHCHECK ``--interval/--timeout/--start-period/--start-interval`` (Docker stores
them as nanoseconds in the image config) and for ``--cache-ttl``.
Grammar (Go's time package): an optional sign, then one or more ``<decimal><unit>`` parts
(``1h30m``, ``1.5h``, ``.5s``, ``300ms``), units ns, us (µs, μs), ms, s, m, h; ``0`` alone
is zero.
"""

from __future__ import annotations

import re

_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}
_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")  # ASCII digits, as Go


def parse_go_duration(text: str) -> int:
    """Nanoseconds in Go duration ``text`` (exact; may be negative). Raises ValueError when malformed."""
    s = text
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    parts = []
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r}")
        parts.append((m.group(1), _UNIT_NS[m.group(2)]))
        pos = m.end()
    if all("." not in number for number, _ in parts):  # whole numbers (the usual case): exact in int
        return sign * sum(int(number) * unit for number, unit in parts)
    from fractions import Fraction  # exact sums of decimal fractions, as Go's parser (truncated at the end)
    return sign * int(sum((Fraction(number) * unit for number, unit in parts), Fraction(0)))
