"""Registry client for the OCI distribution-spec (v1.1, spec.md) / Docker Registry HTTP API v2.

Pull: manifests (with OCI index / Docker manifest list platform selection),
config and layer blobs streamed to a file and digest-verified.
Push: blob existence check, cross-repository mount, monolithic or chunked
upload with resume, manifest PUT.

All failures a user can act on raise :class:`executor.errors.RegistryError`
whose message names the registry, the operation, the HTTP status and a fix.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx

from executor.errors import RegistryError
from executor.reference import DOCKER_HUB, Reference, normalize_registry
from executor.registry.auth import Keychain, scope_for
from executor.registry.transport import (
    DEFAULT_EXTRA_RETRIES,
    Endpoint,
    TransientError,
    Transport,
    make_base,
    transport_error_message,
    with_retries,
)

log = logging.getLogger("executor.registry")

# Media types (OCI image-spec media-types.md; Docker image manifest v2 schema 2).
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
IMAGE_MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ALL_MANIFEST_TYPES: tuple[str, ...] = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

MAX_MANIFEST_BYTES = 4 * 1024 * 1024     # distribution's limit for manifests
MAX_CONFIG_BYTES = 16 * 1024 * 1024
_READ_CHUNK = 1024 * 1024


@dataclass
class RegistryOptions:
    """Per-build registry settings (CLI flags).

    Scheme: plain HTTP when the registry is in ``insecure_registries``, or for any
    registry when ``insecure`` is set, or for pulls when ``insecure_pull`` is set.
    TLS verification is skipped when the registry is in ``skip_tls_verify_registries``,
    or ``skip_tls_verify`` is set, or for pulls with ``skip_tls_verify_pull``.
    ``registry_certificates``: registry -> extra CA bundle path;
    ``registry_client_certs``: registry -> (cert path, key path) for mTLS.
    Mirrors (pulls only): ``registry_mirrors`` for docker.io, ``registry_maps``
    ORIG -> mirrors; each mirror is ``host[:port][/path-prefix]``. The original
    registry is tried last unless ``skip_default_registry_fallback``.
    Retry counts are *extra* attempts on top of :data:`DEFAULT_EXTRA_RETRIES`.
    ``chunk_size`` in bytes: blobs larger than this are uploaded with PATCH chunks.
    """

    insecure: bool = False
    insecure_pull: bool = False
    insecure_registries: frozenset[str] = frozenset()
    skip_tls_verify: bool = False
    skip_tls_verify_pull: bool = False
    skip_tls_verify_registries: frozenset[str] = frozenset()
    registry_certificates: dict[str, str] = field(default_factory=dict)
    registry_client_certs: dict[str, tuple[str, str]] = field(default_factory=dict)
    registry_mirrors: tuple[str, ...] = ()
    registry_maps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    skip_default_registry_fallback: bool = False
    push_retry: int = 0
    image_download_retry: int = 0
    chunk_size: int = 16 * 1024 * 1024
    user_agent: str = "executor/0.1"


@dataclass
class ResolvedImage:
    """A platform image fetched from a registry.

    ``reference`` is where it was fetched from (after mirror selection) with the
    platform manifest's ``digest`` set; ``manifest``/``config`` are parsed JSON.
    """

    reference: Reference
    manifest: dict
    manifest_bytes: bytes
    media_type: str
    digest: str
    config: dict
    config_bytes: bytes


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _lookup(mapping: dict, registry: str):
    """Value for ``registry`` in a per-registry option map: exact, then Hub alias, then host without port."""
    if registry in mapping:
        return mapping[registry]
    norm = normalize_registry(registry)
    for k, v in mapping.items():
        if normalize_registry(k) == norm:
            return v
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    return mapping.get(host)


def _in(regs: frozenset[str], registry: str) -> bool:
    norm = normalize_registry(registry)
    return any(normalize_registry(r) == norm for r in regs)


def parse_platform(platform: str) -> tuple[str, str, str | None]:
    """``"linux/arm64/v8"`` -> ``("linux", "arm64", "v8")``; arch aliases normalised."""
    parts = platform.strip().lower().split("/")
    if len(parts) < 2 or len(parts) > 3 or not all(parts):
        raise RegistryError(f"invalid platform {platform!r}: use OS/ARCH[/VARIANT], e.g. linux/amd64")
    arch = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm"}.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else None
    if arch == "arm64" and variant == "v8":
        variant = None
    return parts[0], arch, variant


def platform_matches(want: tuple[str, str, str | None], plat: dict | None) -> bool:
    """True when an index entry's ``platform`` object satisfies ``want`` (variant
    compared only when requested; arm64 treats missing variant as v8)."""
    if not isinstance(plat, dict):
        return False
    os_, arch, variant = want
    p_os = str(plat.get("os", "")).lower()
    p_arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(str(plat.get("architecture", "")).lower(),
                                                          str(plat.get("architecture", "")).lower())
    p_var = str(plat.get("variant") or "").lower() or None
    if p_arch == "arm64" and p_var == "v8":
        p_var = None
    if p_os != os_ or p_arch != arch:
        return False
    return variant is None or p_var == variant


def select_platform(index: dict, platform: str) -> dict:
    """The manifest descriptor of ``index`` (OCI image index / Docker manifest list)
    for ``platform``. Without a requested variant, an entry without variant wins.
    Raises RegistryError listing the platforms that exist."""
    want = parse_platform(platform)
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    matches = [m for m in entries if platform_matches(want, m.get("platform"))
               and m.get("mediaType", OCI_MANIFEST) not in INDEX_TYPES]
    if not matches:
        have = sorted({"/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
                       for m in entries if isinstance(p := m.get("platform"), dict)})
        raise RegistryError(f"no image for platform {platform} in the index; available: {', '.join(have) or 'none'}; "
                            "pass --custom-platform with one of them")
    if want[2] is None:
        plain = [m for m in matches if not m.get("platform", {}).get("variant")]
        if plain:
            return plain[0]
    return matches[0]


def _error_detail(resp: httpx.Response) -> str:
    """``CODE: message`` from a distribution error body (spec.md "Error codes"), or ''."""
    try:
        body = resp.content
        errs = json.loads(body[:65536]).get("errors") or []
        parts = [f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errs if isinstance(e, dict)]
        return "; ".join(p for p in parts if p)[:300]
    except Exception:  # noqa: BLE001 - best-effort decoration of an error message
        return ""


_STATUS_HINTS = {
    401: "check credentials in DOCKER_CONFIG/config.json",
    403: "the credentials lack permission for this repository; check the account's access",
    404: "check the image name and tag",
    405: "the registry does not support this operation (is it a read-only mirror?)",
    413: "the registry rejected the size; check the registry's (or its proxy's) request size limits",
    429: "the registry is rate-limiting; retry later or use --registry-mirror",
}


def _status_text(code: int) -> str:
    try:
        return f"{code} {httpx.codes.get_reason_phrase(code).lower()}"
    except Exception:  # noqa: BLE001
        return str(code)


class RegistryClient:
    """Talks OCI distribution to any number of registries (see module docstring).

    Usable as a context manager; :meth:`close` releases connections.
    """

    def __init__(self, options: RegistryOptions | None = None, keychain: Keychain | None = None):
        self.options = options or RegistryOptions()
        self.keychain = keychain if keychain is not None else Keychain.anonymous()
        self._transport = Transport(self.keychain, self._endpoint, self.options.user_agent)

    # -- lifecycle --------------------------------------------------------------
    def close(self) -> None:
        """Close all connections (idempotent)."""
        self._transport.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- endpoint selection ----------------------------------------------------
    def _endpoint(self, registry: str, pull: bool) -> Endpoint:
        o = self.options
        plain = o.insecure or (pull and o.insecure_pull) or _in(o.insecure_registries, registry)
        skip = o.skip_tls_verify or (pull and o.skip_tls_verify_pull) or _in(o.skip_tls_verify_registries, registry)
        ca = _lookup(o.registry_certificates, registry)
        cert = _lookup(o.registry_client_certs, registry)
        verify: bool | str = False if skip else (ca or True)
        return Endpoint(registry=registry, base=make_base(registry, plain), verify=verify,
                        cert=tuple(cert) if cert else None)

    def _attempts(self, pull: bool) -> int:
        extra = self.options.image_download_retry if pull else self.options.push_retry
        return 1 + DEFAULT_EXTRA_RETRIES + max(0, extra)

    def _call(self, registry: str, pull: bool, what: str, fn: Callable[[Endpoint], httpx.Response | object]):
        """Run ``fn(endpoint)`` with retries; translate transport failures to RegistryError."""
        ep = self._endpoint(registry, pull)
        attempts = self._attempts(pull)
        flag = "--image-download-retry" if pull else "--push-retry"
        try:
            return with_retries(lambda: fn(ep), attempts, f"{what} at {registry}")
        except httpx.TransportError as e:
            raise RegistryError(transport_error_message(registry, e, attempts, not ep.plain_http, what, flag)) from None
        except TransientError as e:
            hint = _STATUS_HINTS.get(e.status or 0, f"the registry is having trouble; retry later or raise {flag}")
            if e.status == 429:
                hint += f", or raise {flag}"
            raise RegistryError(f"registry {registry}: {what} failed after {attempts} attempts ({e}); {hint}") from None

    def _fail(self, ref: Reference, what: str, resp: httpx.Response) -> RegistryError:
        detail = _error_detail(resp)
        code = resp.status_code
        hint = _STATUS_HINTS.get(code, "check the registry's logs")
        if code == 401:
            hint = self._credentials_hint(ref.registry)
        return RegistryError(
            f"registry {ref.registry} refused {what} of repo '{ref.repository}' ({_status_text(code)}"
            f"{': ' + detail if detail else ''}): {hint}"
        )

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
        return f"{ep.base}/v2/{ref.repository}/{kind}/{ident}"

    # -- mirrors -----------------------------------------------------------------
    def pull_candidates(self, ref: Reference) -> list[Reference]:
        """References to try for a pull, mirrors first (``host[/prefix]`` rewrites), then
        the original unless ``skip_default_registry_fallback``."""
        o = self.options
        mirrors: tuple[str, ...] = ()
        mapped = _lookup(o.registry_maps, ref.registry) if o.registry_maps else None
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
        cands = self.pull_candidates(ref)
        last: RegistryError | None = None
        for i, cand in enumerate(cands):
            try:
                return op(cand)
            except RegistryError as e:
                last = e
                if i + 1 < len(cands):
                    log.warning("pull from %s failed (%s); trying %s", cand.name, e, cands[i + 1].name)
        assert last is not None
        raise last

    # -- ping ----------------------------------------------------------------------
    def ping(self, registry: str) -> None:
        """``GET /v2/`` (spec.md "Determining support"); 200 or an authenticable 401 is fine.

        With a 401, credentials (if any) are exercised against the token realm.
        Raises RegistryError naming the registry and what to do.
        """
        def once(ep: Endpoint):
            resp = self._transport.client(ep).get(f"{ep.base}/v2/")
            if resp.status_code in (500, 502, 503, 504, 429):
                raise TransientError(f"GET /v2/ answered {resp.status_code}", None, resp.status_code)
            return resp

        resp = self._call(registry, False, "ping", once)
        if resp.status_code == 200:
            return
        if resp.status_code == 401:
            ep = self._endpoint(registry, False)
            self._transport.learn_challenge(ep, resp)
            probe = self._call(registry, False, "ping", lambda e: self._transport.send(e, "GET", f"{e.base}/v2/", ()))
            if probe.status_code in (200,):
                return
            if probe.status_code == 401 and self._transport.auth_session(registry).credentials is None:
                return  # anonymous: repository-scoped tokens may still work
            raise RegistryError(f"registry {registry} refused our credentials on GET /v2/ ({_status_text(probe.status_code)}): "
                                f"check credentials in DOCKER_CONFIG/config.json ({self.keychain.source})")
        raise RegistryError(f"registry {registry} does not look like an OCI/Docker v2 registry "
                            f"(GET /v2/ answered {_status_text(resp.status_code)}); check the host name and port")

    # -- manifests -----------------------------------------------------------------
    def get_manifest(self, ref: Reference, accept: Sequence[str] = ALL_MANIFEST_TYPES) -> tuple[bytes, str, str]:
        """``GET /v2/<name>/manifests/<digest|tag>`` (spec.md "Pulling manifests").

        Returns (raw bytes, media type, ``sha256:`` digest of the bytes). When ``ref``
        has a digest, the bytes must hash to it (RegistryError otherwise). Mirrors
        are tried first for pulls. Schema-1 manifests are rejected.
        """
        return self._with_mirrors(ref, lambda r: self._get_manifest_direct(r, accept))

    def _get_manifest_direct(self, ref: Reference, accept: Sequence[str]) -> tuple[bytes, str, str]:
        scopes = (scope_for(ref.repository, "pull"),)

        def once(ep: Endpoint):
            resp = self._transport.send(ep, "GET", self._url(ep, ref, "manifests", ref.identifier), scopes,
                                        headers={"Accept": ", ".join(accept)}, stream=True)
            try:
                if resp.status_code != 200:
                    resp.read()
                    return resp, b""
                data = _read_limited(resp, MAX_MANIFEST_BYTES, f"manifest {ref}")
                return resp, data
            finally:
                resp.close()

        resp, data = self._call(ref.registry, True, f"fetching manifest {ref}", once)
        if resp.status_code == 404:
            what = f"tag '{ref.tag}'" if ref.digest is None else f"digest {ref.digest}"
            raise RegistryError(f"registry {ref.registry}: repository '{ref.repository}' has no {what} "
                                f"(manifest not found, 404): check the image name and tag")
        if resp.status_code != 200:
            raise self._fail(ref, "the manifest fetch", resp)
        digest = sha256_digest(data)
        if ref.digest and ref.digest.startswith("sha256:") and digest != ref.digest:
            raise RegistryError(f"registry {ref.registry} returned a manifest for {ref} whose digest is {digest}; "
                                "the registry or a proxy corrupted it")
        media_type = _media_type(resp.headers.get("Content-Type", ""), data)
        if media_type in DOCKER_SCHEMA1:
            raise RegistryError(f"{ref} uses the deprecated Docker schema 1 manifest format, which is not supported; "
                                "re-push the image with a current tool")
        return data, media_type, digest

    def head_manifest(self, ref: Reference) -> tuple[str, str] | None:
        """``HEAD /v2/<name>/manifests/<ref>`` -> (digest, media type) or None on 404.

        Digest from ``Docker-Content-Digest``; falls back to a GET when the header is absent.
        """
        scopes = (scope_for(ref.repository, "pull"),)

        def once(ep: Endpoint):
            return self._transport.send(ep, "HEAD", self._url(ep, ref, "manifests", ref.identifier), scopes,
                                        headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)})

        resp = self._call(ref.registry, True, f"checking manifest {ref}", once)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(ref, "the manifest check", resp)
        digest = resp.headers.get("Docker-Content-Digest")
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if not digest or not ctype or ctype == "application/json":
            _, ctype2, digest2 = self._get_manifest_direct(ref, ALL_MANIFEST_TYPES)
            return digest2, ctype2
        return digest, ctype

    def put_manifest(self, ref: Reference, data: bytes, media_type: str) -> str:
        """``PUT /v2/<name>/manifests/<tag|digest>`` (spec.md "Pushing manifests").

        Returns the ``sha256:`` digest of ``data``. If ``ref`` has a digest it must match.
        Tag wins over digest when both are set (the digest is then only checked).
        """
        digest = sha256_digest(data)
        if ref.digest and ref.digest != digest:
            raise RegistryError(f"manifest for {ref} hashes to {digest}, not the digest in the reference")
        ident = ref.tag or digest
        scopes = (scope_for(ref.repository, "pull,push"),)

        def once(ep: Endpoint):
            return self._transport.send(ep, "PUT", self._url(ep, ref, "manifests", ident), scopes,
                                        headers={"Content-Type": media_type}, content=data)

        resp = self._call(ref.registry, False, f"pushing manifest {ref.name}:{ident}", once)
        if resp.status_code not in (200, 201, 202):
            raise self._fail(ref, "the push", resp)
        got = resp.headers.get("Docker-Content-Digest")
        if got and got.startswith("sha256:") and got != digest:
            raise RegistryError(f"registry {ref.registry} stored manifest {ref} with digest {got}, expected {digest}")
        log.info("pushed manifest %s:%s (%s)", ref.name, ident, digest)
        return digest

    # -- image resolution -----------------------------------------------------------
    def resolve_image(self, ref: Reference, platform: str = "linux/amd64") -> ResolvedImage:
        """Fetch the image manifest for ``platform`` and its config blob.

        Follows an OCI index / Docker manifest list to the entry matching
        ``os/arch[/variant]`` (spec: OCI image-spec image-index.md). Raises
        RegistryError if there is no such platform or the manifest type is unknown.
        """
        def op(cand: Reference) -> ResolvedImage:
            data, mt, digest = self._get_manifest_direct(cand, ALL_MANIFEST_TYPES)
            doc = _parse_json(data, f"manifest of {cand}")
            if mt in INDEX_TYPES or (mt not in IMAGE_MANIFEST_TYPES and "manifests" in doc):
                desc = select_platform(doc, platform)
                cand = cand.with_digest(desc["digest"])
                data, mt, digest = self._get_manifest_direct(cand, IMAGE_MANIFEST_TYPES)
                doc = _parse_json(data, f"manifest of {cand}")
            if "config" not in doc or not isinstance(doc["config"], dict):
                raise RegistryError(f"{cand} has media type {mt} without a config; it is not a container image")
            cfg_desc = doc["config"]
            if int(cfg_desc.get("size", 0)) > MAX_CONFIG_BYTES:
                raise RegistryError(f"config blob of {cand} is {cfg_desc.get('size')} bytes; refusing more than {MAX_CONFIG_BYTES}")
            buf = io.BytesIO()
            self._fetch_blob_direct(cand, cfg_desc["digest"], buf)
            cfg_bytes = buf.getvalue()
            config = _parse_json(cfg_bytes, f"config of {cand}")
            got = f"{config.get('os', '?')}/{config.get('architecture', '?')}"
            want = parse_platform(platform)
            if config.get("os") and config.get("architecture") and (config["os"], config["architecture"]) != want[:2]:
                log.warning("image %s is %s, not the requested %s", cand, got, platform)
            return ResolvedImage(reference=cand if cand.digest == digest else cand.with_digest(digest),
                                 manifest=doc, manifest_bytes=data, media_type=mt, digest=digest,
                                 config=config, config_bytes=cfg_bytes)

        return self._with_mirrors(ref, op)

    # -- blobs -------------------------------------------------------------------------
    def fetch_blob(self, ref: Reference, digest: str, dest: BinaryIO) -> int:
        """Stream blob ``digest`` of ``ref``'s repository into ``dest`` (spec.md "Pulling blobs").

        Follows redirects (without forwarding Authorization to another host),
        verifies the sha256 digest, resumes with ``Range`` after a broken
        connection (or restarts if ``dest`` is seekable and the server ignores
        Range). Returns the number of bytes written. Mirrors are tried first.
        """
        return self._with_mirrors(ref, lambda r: self._fetch_blob_direct(r, digest, dest))

    def _fetch_blob_direct(self, ref: Reference, digest: str, dest: BinaryIO) -> int:
        algo, _, expected_hex = digest.partition(":")
        if algo != "sha256":
            raise RegistryError(f"blob {digest} of {ref.name}: only sha256 digests are supported")
        start = _tell(dest)
        state = {"hasher": hashlib.sha256(), "written": 0}
        scopes = (scope_for(ref.repository, "pull"),)

        def once(ep: Endpoint) -> int:
            headers = {}
            if state["written"]:
                headers["Range"] = f"bytes={state['written']}-"
            url = self._url(ep, ref, "blobs", digest)
            resp = self._transport.send(ep, "GET", url, scopes, headers=headers, stream=True)
            hops = 0
            while resp.status_code in (301, 302, 303, 307, 308) and hops < 5:
                loc = resp.headers.get("Location")
                resp.close()
                if not loc:
                    break
                hops += 1
                target = httpx.URL(url).join(loc)
                # Different origin (e.g. S3): no Authorization, plain client with default TLS.
                same = target.host == httpx.URL(url).host and target.port == httpx.URL(url).port
                cl = self._transport.client(ep)
                h = dict(headers)
                if same:
                    resp = self._transport.send(ep, "GET", str(target), scopes, headers=h, stream=True)
                else:
                    resp = cl.send(cl.build_request("GET", target, headers=h), stream=True)
                    if resp.status_code in (429, 500, 502, 503, 504):
                        resp.close()
                        raise TransientError(f"blob redirect target answered {resp.status_code}", None, resp.status_code)
                url = str(target)
            try:
                if resp.status_code == 200 and state["written"]:
                    # Server ignored Range: start over if we can.
                    if start is None:
                        raise RegistryError(f"download of blob {digest} from {ref.registry} broke and the registry "
                                            "does not support resuming; retry the build")
                    dest.seek(start)
                    dest.truncate()
                    state["hasher"], state["written"] = hashlib.sha256(), 0
                if resp.status_code not in (200, 206):
                    resp.read()
                    return -resp.status_code
                for chunk in resp.iter_raw(_READ_CHUNK):
                    dest.write(chunk)
                    state["hasher"].update(chunk)
                    state["written"] += len(chunk)
                return state["written"]
            except (httpx.TransportError) as e:
                log.debug("blob %s download interrupted after %d bytes: %s", digest, state["written"], type(e).__name__)
                raise
            finally:
                resp.close()

        n = self._call(ref.registry, True, f"downloading blob {digest} of {ref.name}", once)
        if n < 0:
            code = -n
            if code == 404:
                raise RegistryError(f"registry {ref.registry}: blob {digest} of repo '{ref.repository}' not found (404); "
                                    "the image is incomplete on the registry; re-push it")
            raise RegistryError(f"registry {ref.registry} refused the download of blob {digest} of repo "
                                f"'{ref.repository}' ({_status_text(code)}): {_STATUS_HINTS.get(code, 'check the registry logs')}")
        if state["hasher"].hexdigest() != expected_hex:
            raise RegistryError(f"blob {digest} from {ref.registry}/{ref.repository} has sha256:{state['hasher'].hexdigest()}; "
                                "the download was corrupted; retry")
        return n

    def blob_exists(self, ref: Reference, digest: str) -> bool:
        """``HEAD /v2/<name>/blobs/<digest>``: True on 200, False on 404 (spec.md "Checking if content exists")."""
        scopes = (scope_for(ref.repository, "pull,push"),)

        def once(ep: Endpoint):
            return self._transport.send(ep, "HEAD", self._url(ep, ref, "blobs", digest), scopes)

        resp = self._call(ref.registry, False, f"checking blob {digest} in {ref.name}", once)
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        # Some registries answer 307 to HEAD for redirected storage: it exists.
        if resp.status_code in (301, 302, 307, 308):
            return True
        raise self._fail(ref, "the blob check (before pushing)", resp)

    def mount_blob(self, ref: Reference, digest: str, from_repository: str) -> bool:
        """``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`` (spec.md
        "Mounting a blob from another repository"). True if mounted (201); False
        when the registry opened an upload instead (202; that session is cancelled)."""
        scopes = (scope_for(ref.repository, "pull,push"), scope_for(from_repository, "pull"))

        def once(ep: Endpoint):
            return self._transport.send(ep, "POST", f"{ep.base}/v2/{ref.repository}/blobs/uploads/", scopes,
                                        params={"mount": digest, "from": from_repository}, content=b"")

        resp = self._call(ref.registry, False, f"mounting blob {digest} into {ref.name}", once)
        if resp.status_code == 201:
            log.info("mounted %s from %s into %s", digest, from_repository, ref.name)
            return True
        if resp.status_code == 202:
            loc = resp.headers.get("Location")
            if loc:
                ep = self._endpoint(ref.registry, False)
                try:
                    self._transport.send(ep, "DELETE", str(httpx.URL(ep.base + "/").join(loc)), scopes).close()
                except Exception:  # noqa: BLE001 - cancelling is best effort
                    pass
            return False
        if resp.status_code in (401, 403, 404):
            return False
        raise self._fail(ref, "the blob mount", resp)

    def upload_blob(self, ref: Reference, path_or_bytes: Path | bytes, digest: str, size: int) -> None:
        """Upload a blob unless it already exists (spec.md "Pushing blobs").

        ``POST`` opens a session; blobs up to ``chunk_size`` bytes go in one
        ``PUT ?digest=``; larger ones as ``PATCH`` chunks with ``Content-Range``,
        then a closing ``PUT``. After a broken connection the upload resumes from
        the offset the registry reports (``GET`` the session, ``Range: 0-N``),
        or restarts with a new session if the session is gone. ``path_or_bytes``
        is streamed from disk when it is a Path.
        """
        if self.blob_exists(ref, digest):
            log.debug("blob %s already in %s; skipping upload", digest, ref.name)
            return
        src = _BlobSource(path_or_bytes, size)
        scopes = (scope_for(ref.repository, "pull,push"),)
        chunk = max(1, int(self.options.chunk_size))
        state: dict = {"location": None, "offset": 0, "confirmed": 0, "rewinds": 0}

        def open_session(ep: Endpoint) -> None:
            resp = self._transport.send(ep, "POST", f"{ep.base}/v2/{ref.repository}/blobs/uploads/", scopes, content=b"")
            if resp.status_code not in (202, 201):
                raise self._fail(ref, "the push", resp)
            loc = resp.headers.get("Location")
            if not loc:
                raise RegistryError(f"registry {ref.registry} opened an upload for {ref.name} without a Location header")
            state["location"] = str(httpx.URL(ep.base + "/").join(loc))
            state["offset"] = state["confirmed"] = 0

        def resume_offset(ep: Endpoint) -> None:
            """Ask the registry how much of the session it has (spec.md "Resuming an upload")."""
            resp = self._transport.send(ep, "GET", state["location"], scopes)
            if resp.status_code == 204 and (rng := resp.headers.get("Range")):
                end = int(rng.split("-")[-1])
                # distribution reports "0-0" both for 0 and for 1 byte received: trust our own
                # last confirmed offset to tell them apart.
                state["offset"] = end + 1 if end > 0 else min(state["confirmed"], 1)
                if resp.headers.get("Location"):
                    state["location"] = str(httpx.URL(state["location"]).join(resp.headers["Location"]))
            else:
                state["location"] = None

        def once(ep: Endpoint) -> None:
            if state.get("broken"):
                state["broken"] = False
                if state["location"] is not None and size > chunk:
                    resume_offset(ep)
                else:
                    state["location"] = None
            if state["location"] is None:
                open_session(ep)
            try:
                if size <= chunk:
                    put = self._transport.send(
                        ep, "PUT", _with_digest(state["location"], digest), scopes,
                        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                        content=lambda: src.iter_range(0, size))
                else:
                    while state["offset"] < size:
                        off = state["offset"]
                        end = min(size, off + chunk)
                        resp = self._transport.send(
                            ep, "PATCH", state["location"], scopes,
                            headers={"Content-Type": "application/octet-stream", "Content-Length": str(end - off),
                                     "Content-Range": f"{off}-{end - 1}"},
                            content=lambda off=off, end=end: src.iter_range(off, end))
                        if resp.status_code == 416:
                            state["rewinds"] += 1
                            if state["rewinds"] > 3:
                                raise self._fail(ref, "the push (upload offsets keep disagreeing)", resp)
                            resume_offset(ep)
                            if state["location"] is None:
                                raise TransientError("upload session lost")
                            continue
                        if resp.status_code != 202:
                            raise self._fail(ref, "the push", resp)
                        if resp.headers.get("Location"):
                            state["location"] = str(httpx.URL(state["location"]).join(resp.headers["Location"]))
                        rng = resp.headers.get("Range")
                        state["offset"] = state["confirmed"] = int(rng.split("-")[-1]) + 1 if rng else end
                    put = self._transport.send(ep, "PUT", _with_digest(state["location"], digest), scopes,
                                               headers={"Content-Length": "0"}, content=b"")
            except (httpx.TransportError, TransientError):
                state["broken"] = True
                raise
            if put.status_code == 404 and size > chunk:
                state["location"] = None
                raise TransientError("upload session vanished before commit")
            if put.status_code not in (201, 204):
                raise self._fail(ref, "the push", put)

        self._call(ref.registry, False, f"uploading blob {digest} ({size} bytes) to {ref.name}", once)
        log.info("uploaded blob %s (%d bytes) to %s", digest, size, ref.name)


class _BlobSource:
    """Byte ranges of a file or bytes object, streamed in 1 MiB pieces."""

    def __init__(self, src: Path | bytes, size: int):
        self.src = src
        if isinstance(src, (bytes, bytearray, memoryview)):
            actual = len(src)
        else:
            actual = os.stat(src).st_size
        if actual != size:
            raise RegistryError(f"blob source {'<bytes>' if isinstance(src, (bytes, bytearray, memoryview)) else src} "
                                f"is {actual} bytes, expected {size}")

    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        if isinstance(self.src, (bytes, bytearray, memoryview)):
            mv = memoryview(self.src)
            for off in range(start, end, _READ_CHUNK):
                yield bytes(mv[off:min(end, off + _READ_CHUNK)])
            return
        with open(self.src, "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                b = f.read(min(_READ_CHUNK, left))
                if not b:
                    raise RegistryError(f"blob source {self.src} shrank while uploading")
                left -= len(b)
                yield b


def _with_digest(location: str, digest: str) -> str:
    """The upload ``location`` with ``digest=`` added, keeping its own query (e.g. ``_state``)."""
    return str(httpx.URL(location).copy_merge_params({"digest": digest}))


def _tell(f: BinaryIO) -> int | None:
    try:
        return f.tell() if f.seekable() else None
    except (OSError, AttributeError, ValueError):
        return None


def _read_limited(resp: httpx.Response, limit: int, what: str) -> bytes:
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > limit:
            raise RegistryError(f"{what} is larger than {limit} bytes; refusing it")
    return bytes(buf)


def _parse_json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return doc


def _media_type(content_type: str, data: bytes) -> str:
    """Manifest media type: the body's ``mediaType`` when present, else Content-Type."""
    ct = content_type.split(";")[0].strip()
    try:
        mt = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        mt = None
    if isinstance(mt, str) and mt:
        return mt
    if ct and ct not in ("application/json", "text/plain", "application/octet-stream"):
        return ct
    try:
        doc = json.loads(data)
        if "manifests" in doc:
            return OCI_INDEX
        if doc.get("schemaVersion") == 1:
            return DOCKER_SCHEMA1[0]
    except (ValueError, AttributeError):
        pass
    return OCI_MANIFEST
