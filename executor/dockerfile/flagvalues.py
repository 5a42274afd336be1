"""Checks and conversions of instruction flag values, shared by the parser and the typed
instructions (:mod:`executor.dockerfile.convert`), and usable by the engine once a ``$`` value
has been expanded.

Each function takes the raw value and returns the typed value or raises :class:`FlagValueError`
whose message names the flag and says what to write instead (the caller adds the Dockerfile
line). Sources: Docker Dockerfile reference (HEALTHCHECK, RUN --network/--security,
COPY/ADD --chmod) and BuildKit ``frontend/dockerfile/instructions/parse.go`` /
``dockerfile2llb`` (1 ms minimum HEALTHCHECK interval, octal ``--chmod``).
"""

from __future__ import annotations

import re

from .duration import parse_go_duration

__all__ = ["FlagValueError", "shown", "NETWORK_MODES", "SECURITY_MODES", "MIN_HEALTHCHECK_NS", "parse_chmod",
           "parse_healthcheck_duration", "parse_retries", "check_network", "check_security"]

NETWORK_MODES = ("default", "none", "host")
SECURITY_MODES = ("sandbox", "insecure")
#: Smallest non-zero HEALTHCHECK duration Docker accepts: 1 ms, in nanoseconds.
MIN_HEALTHCHECK_NS = 1_000_000
_OCTAL = re.compile(r"[0-7]{1,6}\Z")
_INT = re.compile(r"[+-]?[0-9]{1,18}\Z")


class FlagValueError(ValueError):
    """A flag value that is not valid; the message is one line naming the flag."""


def shown(value: str, limit: int = 80) -> str:
    """``value`` for an error message: at most ``limit`` characters (longer ones cut, ``...``)."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


def parse_healthcheck_duration(flag: str, value: str) -> int | None:
    """``HEALTHCHECK --<flag>=<value>`` -> nanoseconds (Go duration syntax: ``30s``, ``1m30s``,
    ``.5s``, ``0``), None when ``value`` is empty (the default). Raises FlagValueError when
    malformed, negative, or non-zero but below 1 ms."""
    if value == "":
        return None
    try:
        ns = parse_go_duration(value)
    except ValueError:
        raise FlagValueError(f"HEALTHCHECK --{flag}={shown(value)}: invalid duration; "
                             "write a number with a unit such as 30s, 1m30s or 500ms") from None
    if ns < 0:
        raise FlagValueError(f"HEALTHCHECK --{flag}={shown(value)}: cannot be negative; "
                             "write a duration such as 30s")
    if 0 < ns < MIN_HEALTHCHECK_NS:
        raise FlagValueError(f"HEALTHCHECK --{flag}={shown(value)}: cannot be less than 1ms; "
                             "write at least 1ms (or 0 for the default)")
    return ns


def parse_retries(value: str) -> int | None:
    """``HEALTHCHECK --retries`` -> int >= 0, None when empty. Raises FlagValueError."""
    if value == "":
        return None
    if not _INT.match(value):
        raise FlagValueError(f"HEALTHCHECK --retries={shown(value)}: not an integer; "
                             "write a whole number such as 3")
    retries = int(value, 10)
    if retries < 0:
        raise FlagValueError(f"HEALTHCHECK --retries={shown(value)}: --retries cannot be negative; "
                             "write 0 or more")
    return retries


def parse_chmod(keyword: str, value: str) -> int:
    """``COPY/ADD --chmod`` -> permission bits (octal digits, at most 7777).
    Raises FlagValueError otherwise (the value must already be expanded)."""
    if not _OCTAL.match(value) or int(value, 8) > 0o7777:
        raise FlagValueError(f"{keyword} --chmod={shown(value)}: not an octal mode; "
                             "write octal permission bits such as 755 or 0644")
    return int(value, 8)


def check_network(value: str) -> str:
    """``RUN --network`` -> one of :data:`NETWORK_MODES`; raises FlagValueError otherwise."""
    if value not in NETWORK_MODES:
        raise FlagValueError(f"RUN --network={shown(value)}: unsupported network mode; "
                             "write --network=default, --network=none or --network=host")
    return value


def check_security(value: str) -> str:
    """``RUN --security`` -> ``sandbox`` or ``insecure``; raises FlagValueError otherwise."""
    if value not in SECURITY_MODES:
        raise FlagValueError(f"RUN --security={shown(value)}: unsupported security mode; "
                             "write --security=sandbox or --security=insecure")
    return value
