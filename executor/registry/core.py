"""The shared core of :class:`executor.registry.client.RegistryClient`: connections, endpoint
choice, the retry budget, error translation, pull mirrors and the ``/v2/`` ping.

The operations live in mixins built on this core: manifests
(:mod:`executor.registry.manifests`), blob downloads (:mod:`executor.registry.blob_download`)
and blob uploads (:mod:`executor.registry.blob_upload`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from executor.errors import Interrupted, RegistryError
from executor.reference import DOCKER_HUB, Reference, normalize_registry
from executor.registry.auth import Keychain
from executor.registry.cancel import Cancelled, CancelToken
from executor.registry.firstcontact import RETRY_STATUSES as PING_RETRY_STATUSES
from executor.registry.messages import STATUS_HINTS, error_detail, status_text
from executor.registry.options import RegistryOptions, endpoint_for, lookup
from executor.registry.transport import (
    DEFAULT_EXTRA_RETRIES,
    Endpoint,
    IntegrityError,
    parse_retry_after,
    TransientError,
    Transport,
    transport_error_message,
    with_retries,
)

log = logging.getLogger("executor.registry")


class ClientCore:
    """Talks OCI distribution to any number of registries.

    Usable as a context manager; :meth:`close` releases connections, :meth:`cancel`
    aborts transfers from any thread.
    """

    def __init__(self, options: RegistryOptions | None = None, keychain: Keychain | None = None):
        self.options = options or RegistryOptions()
        self.keychain = keychain if keychain is not None else Keychain.anonymous()
        self._cancel = CancelToken()
        self._transport = Transport(self.keychain, lambda registry, pull: endpoint_for(self.options, registry, pull),
                                    self.options.user_agent,
                                    timeout=self.options.timeout, cancel=self._cancel)

    # -- lifecycle --------------------------------------------------------------
    def close(self) -> None:
        """Close all connections (idempotent)."""
        self._transport.close()

    def cancel(self, signum: int | None = None) -> None:
        """Abort every transfer in flight and refuse new requests, from any thread (also
        from a signal handler); idempotent and permanent for this client. Operations in
        progress or started later raise :class:`~executor.registry.cancel.Cancelled`
        (``exit_code`` 128 + ``signum`` when given). Returns at once; the aborted threads
        notice within milliseconds (their sockets are shut down)."""
        self._cancel.cancel(signum)

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called (or :func:`~executor.registry.cancel.cancel_all`)."""
        return self._cancel.cancelled

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- endpoint selection, retries, errors ------------------------------------------
    def _endpoint(self, registry: str, pull: bool) -> Endpoint:
        """The endpoint of ``registry`` (plain HTTP for a loopback registry that does not speak TLS:
        :meth:`Transport.endpoint`)."""
        return self._transport.endpoint(registry, pull)

    def _attempts(self, pull: bool) -> int:
        """Attempts per request: 1 + the built-in retries + ``--image-download-retry`` (pulls)
        or ``--push-retry`` (pushes)."""
        extra = self.options.image_download_retry if pull else self.options.push_retry
        return 1 + DEFAULT_EXTRA_RETRIES + max(0, extra)

    def _call(self, registry: str, pull: bool, what: str, fn: Callable[[Endpoint], object]):
        """Run ``fn(endpoint)`` with the retry budget of a pull or a push; translate
        connection failures and an exhausted budget to one RegistryError naming the
        registry, ``what`` was being done and the flag that raises the budget. Once the
        client is cancelled, any failure becomes :class:`~executor.registry.cancel.Cancelled`
        and nothing is retried; :class:`~executor.errors.Interrupted` (raised by the CLI's
        signal handler in the main thread) passes through unchanged."""
        attempts = self._attempts(pull)
        flag = "--image-download-retry" if pull else "--push-retry"
        self._cancel.check(f"registry {registry}: {what}")
        ep = endpoint_for(self.options, registry, pull)

        def attempt():
            # Per attempt: a loopback registry whose scheme could not be probed yet is probed again.
            nonlocal ep
            ep = self._endpoint(registry, pull)
            return fn(ep)

        try:
            try:
                return with_retries(attempt, attempts, f"{what} at {registry}", cancel=self._cancel)
            except (Cancelled, Interrupted):
                raise
            except Exception:
                # Once cancelled, whatever broke (a shut-down socket, a half-sent body) is the cancellation.
                self._cancel.check(f"registry {registry}: {what}")
                raise
        except httpx.TransportError as e:
            raise RegistryError(transport_error_message(registry, e, attempts, not ep.plain_http, what, flag,
                                                        self.options.timeout)) from None
        except IntegrityError as e:
            raise RegistryError(f"registry {registry}: {what} failed after {attempts} attempts, the data corrupt every "
                                f"time (last: {e.detail}); the registry's storage or a proxy on the way corrupts it: "
                                f"check them, or raise {flag} if it is intermittent") from None
        except TransientError as e:
            hint = STATUS_HINTS.get(e.status or 0, f"the registry is having trouble; retry later or raise {flag}")
            if e.status == 429:
                hint += f", or raise {flag}"
            raise RegistryError(f"registry {registry}: {what} failed after {attempts} attempts ({e}); {hint}",
                                status=e.status) from None

    def _fail(self, ref: Reference, what: str, resp: httpx.Response) -> RegistryError:
        """The error for an unexpected HTTP answer ``resp`` to ``what`` on ``ref``'s repository."""
        detail = error_detail(resp)
        code = resp.status_code
        hint = STATUS_HINTS.get(code, "check the registry's logs")
        if code == 401:
            hint = self._credentials_hint(ref.registry)
        return RegistryError(
            f"registry {ref.registry} refused {what} of repo '{ref.repository}' ({status_text(code)}"
            f"{': ' + detail if detail else ''}): {hint}", status=code)

    def _credentials_hint(self, registry: str) -> str:
        """What to do about a 401: say whether credentials were found for ``registry``, and where."""
        source = self._transport.keychain.source
        if self._transport.auth_session(registry).credentials is None:
            where = (f"in {source}" if source != "<none>" else
                     "(no config.json in $DOCKER_CONFIG, $HOME/.docker, /kaniko/.docker or /tekton/creds/.docker)")
            return (f"no credentials for {registry} were found {where}; add an 'auths' or 'credHelpers' "
                    f"entry for {registry} to a Docker config.json")
        return f"the registry did not accept the credentials for {registry} from {source}; check them"

    def _url(self, ep: Endpoint, ref: Reference, kind: str, ident: str = "") -> str:
        """``<base>/v2/<name>/<kind>/<ident>`` (kind: ``manifests`` or ``blobs``)."""
        return f"{ep.base}/v2/{ref.repository}/{kind}/{ident}"

    # -- mirrors -----------------------------------------------------------------
    def pull_candidates(self, ref: Reference) -> list[Reference]:
        """References to try for a pull, mirrors first (``host[/prefix]`` rewrites), then
        the original unless ``skip_default_registry_fallback``."""
        o = self.options
        mirrors: tuple[str, ...] = ()
        mapped = lookup(o.registry_maps, ref.registry) if o.registry_maps else None
        if mapped:
            mirrors = tuple(mapped)
        elif normalize_registry(ref.registry) == DOCKER_HUB:
            mirrors = tuple(o.registry_mirrors)
        out: list[Reference] = []
        for m in mirrors:
            m = m.strip().rstrip("/")
            for prefix in ("https://", "http://"):
                if m.startswith(prefix):
                    m = m[len(prefix):]
            host, _, path = m.partition("/")
            repo = f"{path}/{ref.repository}" if path else ref.repository
            out.append(Reference(registry=normalize_registry(host), repository=repo, tag=ref.tag, digest=ref.digest))
        if not out or not o.skip_default_registry_fallback:
            out.append(ref)
        return out

    def _with_mirrors(self, ref: Reference, op: Callable[[Reference], object]):
        """``op(candidate)`` for each pull candidate until one succeeds; the last error otherwise
        (a cancellation stops at once)."""
        cands = self.pull_candidates(ref)
        last: RegistryError | None = None
        for i, cand in enumerate(cands):
            try:
                return op(cand)
            except Cancelled:
                raise
            except RegistryError as e:
                last = e
                if i + 1 < len(cands):
                    log.warning("pull from %s failed (%s); trying %s", cand.name, e, cands[i + 1].name)
        assert last is not None
        raise last

    # -- ping ----------------------------------------------------------------------
    def seed(self, contacts: Mapping[Endpoint, Any]) -> None:
        """Take the answers of the CLI's first contact (:mod:`executor.registry.firstcontact`:
        asked endpoint -> Contact), so :meth:`ping` and the first request of each of those
        registries send no ``GET /v2/`` of their own."""
        for asked, contact in contacts.items():
            self._transport.seed(asked, contact)

    def ping(self, registry: str) -> None:
        """``GET /v2/`` (spec.md "Determining support"); 200 or an authenticable 401 is fine.

        With a 401, credentials (if any) are exercised against the token realm.
        Raises RegistryError naming the registry and what to do.
        """
        sess = self._transport.auth_session(registry)
        seeded = sess.ping_status  # the CLI's first contact's answer
        # A 429/5xx to the first contact was this ping's first attempt: it counts in the budget
        # (and its warning), as when the client sent the first GET /v2/ itself.
        failed = [seeded] if seeded in PING_RETRY_STATUSES else []
        if failed:
            sess.ping_status = None

        def once(ep: Endpoint):
            self._cancel.check(f"registry {registry}: checking it (GET /v2/)")
            if failed:
                status = failed.pop()
                raise TransientError(f"GET /v2/ answered {status}", None, status)
            resp = self._transport.client(ep).get(f"{ep.base}/v2/", extensions=self._transport.extensions)
            if resp.status_code in PING_RETRY_STATUSES:
                resp.close()
                raise TransientError(f"GET /v2/ answered {resp.status_code}",
                                     parse_retry_after(resp.headers.get("Retry-After")), resp.status_code)
            return resp

        if seeded == 200:
            return
        what = "checking the registry (GET /v2/)"
        resp = None if seeded == 401 else self._call(registry, False, what, once)
        if resp is None or resp.status_code == 401:
            if resp is not None:
                self._transport.learn_challenge(self._endpoint(registry, False), resp)
            probe = self._call(registry, False, what, lambda e: self._transport.send(e, "GET", f"{e.base}/v2/", ()))
            if probe.status_code in (200,):
                return
            if probe.status_code == 401 and self._transport.auth_session(registry).credentials is None:
                return  # anonymous: repository-scoped tokens may still work
            raise RegistryError(f"registry {registry} refused our credentials on GET /v2/ ({status_text(probe.status_code)}): "
                                f"check credentials in DOCKER_CONFIG/config.json ({self.keychain.source})",
                                status=probe.status_code)
        if resp.status_code == 200:
            # no challenge: the auth scheme is learnt, the first request of the build needs no
            # second GET /v2/ (Transport.ensure_challenge)
            self._transport.auth_session(registry).pinged = True
            return
        raise RegistryError(f"registry {registry} does not look like an OCI/Docker v2 registry "
                            f"(GET /v2/ answered {status_text(resp.status_code)}); check the host name and port",
                            status=resp.status_code)
