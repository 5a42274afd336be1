"""The retry policy of the registry client, and what to tell the user when it gives up.

Retried: connection errors and timeouts (except TLS configuration errors no retry can
fix), HTTP 408/429/5xx, and data that does not match its digest (:class:`IntegrityError`).
Waits: full-jitter exponential backoff (:func:`backoff_delay`), or the server's
``Retry-After`` in seconds (RFC 9110 section 10.2.3; capped, HTTP-dates ignored).
The budget per request is ``1 + DEFAULT_EXTRA_RETRIES + --push-retry`` (or
``--image-download-retry`` for pulls) attempts.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

from executor.registry.cancel import CancelToken

log = logging.getLogger("executor.registry")

T = TypeVar("T")

#: Retries added to the user's --push-retry / --image-download-retry so a flaky network survives.
DEFAULT_EXTRA_RETRIES = 3
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 8.0


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` (seconds) when the server asked for a delay,
    ``status`` the HTTP status that caused it (None: no HTTP answer did)."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class IntegrityError(TransientError):
    """Bytes that do not hash to their digest (a blob, or a manifest against its reference
    digest or ``Docker-Content-Digest``). Retried -- the caller starts the transfer over from
    scratch -- because a flaky proxy or storage node may serve good bytes next time.
    ``detail`` says what arrived, e.g. ``"received 1234 bytes hashing to sha256:..."``."""

    def __init__(self, detail: str):
        super().__init__(f"corrupt data: {detail}")
        self.detail = detail


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` delta-seconds -> float seconds (capped); None for absent/HTTP-date/garbage."""
    if not value:
        return None
    try:
        return min(max(float(value.strip()), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return None


def backoff_delay(attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): ``Retry-After`` if given,
    else full-jitter exponential ``uniform(0, min(max, base*2**attempt))``."""
    if retry_after is not None:
        return retry_after
    r = rng or random
    return r.uniform(BACKOFF_BASE_S / 2, min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** attempt)))


def with_retries(fn: Callable[[], T], attempts: int, what: str, sleep: Callable[[float], None] = time.sleep,
                 cancel: CancelToken | None = None) -> T:
    """Call ``fn`` up to ``attempts`` times while it raises :class:`TransientError`
    or a retryable ``httpx.TransportError`` (:func:`is_retryable`); re-raise the last
    error when the budget is spent. Waits :func:`backoff_delay` seconds between attempts.

    With ``cancel``: no retry once it is cancelled (the error is re-raised at once), and
    the wait between attempts ends with :class:`~executor.registry.cancel.Cancelled` as
    soon as it is. The first attempt is a plain call; the retries after a failure are
    tenacity's (stop after N attempts, custom wait honouring Retry-After), imported then:
    most requests never fail, and importing tenacity costs ~10 ms of every start-up."""
    if cancel is not None:
        sleep = cancel.sleep

    def retryable(e: BaseException) -> bool:
        return is_retryable(e) and not (cancel is not None and cancel.cancelled)

    def warn(attempt: int, exc: BaseException | None) -> None:
        log.warning("%s failed (attempt %d/%d): %s; retrying", what, attempt, attempts, _describe(exc))

    try:
        return fn()
    except Exception as e:
        if attempts <= 1 or not retryable(e):
            raise
        warn(1, e)
        sleep(backoff_delay(1, e.retry_after if isinstance(e, TransientError) else None))

    import tenacity

    def _wait(state: tenacity.RetryCallState) -> float:  # attempt numbers count the first, plain one
        exc = state.outcome.exception() if state.outcome else None
        ra = exc.retry_after if isinstance(exc, TransientError) else None
        return backoff_delay(state.attempt_number + 1, ra)

    def _before_sleep(state: tenacity.RetryCallState) -> None:
        warn(state.attempt_number + 1, state.outcome.exception() if state.outcome else None)

    r = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts - 1),
        wait=_wait,
        retry=tenacity.retry_if_exception(retryable),
        before_sleep=_before_sleep,
        sleep=sleep,
        reraise=True,
    )
    return r(fn)


_PERMANENT_TLS = ("certificate_verify_failed", "certificate verify failed", "wrong_version_number",
                  "wrong version number", "bad_certificate", "bad certificate", "certificate_required",
                  "certificate required", "unknown_ca", "unknown ca")


def is_retryable(exc: BaseException) -> bool:
    """Transient failures: TransientError (429/5xx) and connection errors, except TLS
    configuration problems (untrusted certificate, client certificate refused, HTTP vs HTTPS)
    that no retry can fix."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, httpx.TransportError):
        low = str(exc).lower()
        return not any(p in low for p in _PERMANENT_TLS)
    return False


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, httpx.ConnectError):
        low = str(exc).lower()
        if "refused" in low:
            return "connection refused"
        if _unknown_host(low):
            return "its host name does not resolve"
        return f"cannot connect ({type(exc).__name__})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.TransportError):
        return f"connection error ({type(exc).__name__})"
    return str(exc)


def _unknown_host(low: str) -> bool:
    """True for getaddrinfo's failures (EAI_NONAME, EAI_AGAIN, EAI_NODATA) in an error's text."""
    return any(p in low for p in ("name or service not known", "name resolution", "nodename nor servname",
                                  "no address associated", "errno -2]", "errno -3]", "errno -5]"))


def transport_error_message(registry: str, exc: BaseException, attempts: int, https: bool, what: str = "",
                            retry_flag: str = "--push-retry/--image-download-retry",
                            timeout: float | None = None) -> str:
    """User-facing text for a connection-level failure after ``attempts`` tries, with the flag to fix it
    (``retry_flag``: the option that raises the retry budget of the operation that failed;
    ``timeout``: the seconds without progress after which a transfer timed out)."""
    desc = _describe(exc)
    text = str(exc)
    low = text.lower()
    during = f" while {what}" if what else ""
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        return (f"TLS certificate of registry {registry} is not trusted{during} ({text[:160]}); pass "
                f"--registry-certificate {registry}=CA.pem or --skip-tls-verify-registry {registry}")
    if "wrong_version_number" in low or "wrong version number" in low or "record layer failure" in low:
        return (f"registry {registry} does not speak HTTPS (TLS handshake failed{during}); if it serves plain HTTP "
                f"use --insecure-registry {registry}")
    if any(a in low for a in ("certificate required", "certificate_required", "bad certificate", "bad_certificate",
                              "unknown ca", "unknown_ca", "certificate unknown")):
        return (f"registry {registry} rejected our TLS client certificate{during} ({text[:120]}); pass "
                f"--registry-client-cert {registry}=CERT.pem,KEY.pem with a certificate it trusts")
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        silent = f" (no data moved for {timeout:g} s)" if timeout else ""
        return (f"registry {registry} timed out{silent} in all {attempts} attempts{during}; the registry or the "
                f"network stalls: check them, or raise {retry_flag}")
    msg = f"cannot reach registry {registry} ({desc}) after {attempts} attempts{during}"
    if isinstance(exc, httpx.ConnectError) or isinstance(exc, httpx.ConnectTimeout):
        if registry in ("docker.io", "registry-1.docker.io", "index.docker.io"):
            return msg + ("; Docker Hub is unreachable from here: use --registry-mirror MIRROR or "
                          "--registry-map docker.io=MIRROR, or name the image with a reachable registry")
        if _unknown_host(text.lower()):
            return msg + "; check the registry's name (and the pod's DNS)"
        from executor.registry.options import is_loopback
        if https and not is_loopback(registry):  # (a loopback registry's plain HTTP needs no flag)
            return msg + f"; is it running? use --insecure-registry {registry} for plain HTTP"
        return msg + "; is it running?"
    if https and not text:
        return msg + f"; the connection broke (TLS?); if the registry needs a client certificate pass --registry-client-cert {registry}=CERT.pem,KEY.pem"
    return msg + f"; the connection broke ({text[:120] or type(exc).__name__}); check the network or raise {retry_flag}"
