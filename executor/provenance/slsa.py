"""SLSA Provenance v1 (https://slsa.dev/spec/v1.0/provenance) in an in-toto Statement v1
(https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md).

Shape::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "REGISTRY/REPO", "digest": {"sha256": "<hex>"}}],   # the pushed image or index
     "predicateType": "https://slsa.dev/provenance/v1",
     "predicate": {
       "buildDefinition": {
         "buildType": BUILD_TYPE,
         "externalParameters": {"dockerfile": {"path", "digest": {"sha256"}}, "target", "platforms",
                                "buildArgs" (secret-like names and proxy variables left out),
                                "context": {"uri"}, "labels", "annotations"},
         "internalParameters": {"cache", "reproducible", "compression",
                                "steps": [{"stage", "location", "instruction", "cache": hit|miss|skipped|off,
                                           "seconds", "layerDigest"}]},
         "resolvedDependencies": [base images {"name": "base-image:REF", "uri": "pkg:docker/...",
                                  "digest": {"sha256"}}, the context {"name": "context",
                                  "digest": {"sha256": tree digest (see context_digest)}}, the git
                                  source {"name": "source", "uri": "git+URL", "digest": {"gitCommit"}}
                                  (a git:// context, or a local context directory in a git checkout:
                                  its HEAD and remote, see gitcheckout),
                                  each ADD URL {"name": "add:URL", "uri": URL without user:password,
                                  "digest": {ALG: hex of the bytes fetched, or the --checksum that
                                  keyed a cache hit}}]},
       "runDetails": {"builder": {"id": BUILDER_ID, "version": {"executor": VERSION}},
                      "metadata": {"invocationId": uuid4, "startedOn", "finishedOn"},
                      "byproducts": [one per layer a step built or took from the cache:
                                     {"name": "layer STAGE LOCATION", "digest": {"sha256"},
                                      "annotations": {"cache": ...}}]}}}

Secrets: ``--secret`` values are never read here; build args whose names look like credentials
(BuildKit's SecretsUsedInArgOrEnv rule, shared with the engine's warning) and proxy variables
(they may carry credentials) are left out, and their values are scrubbed from every string.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import urllib.parse
import uuid
from pathlib import Path

from packageurl import PackageURL

from .. import __version__
from ..reference import parse_reference

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
MEDIA_TYPE = "application/vnd.in-toto+json"
#: The project publishes no web address of its own, so its identifiers are URNs in its own
#: namespace rather than made-up URLs (SLSA v1 only asks for a URI: ``builder.id`` names the
#: build platform, ``buildType`` the meaning of the parameters; the version is in
#: ``builder.version``). A platform that runs the executor (e.g. Tekton Chains) writes its own id.
PROJECT_URN = "urn:executor"
BUILD_TYPE = f"{PROJECT_URN}:buildtype:dockerfile:v1"
BUILDER_ID = f"{PROJECT_URN}:builder"
_PROXY_ARGS = {"http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy"}


def secret_like(name: str) -> bool:
    """A build-arg name that names a credential (``NPM_TOKEN``, ``DB_PASSWORD``; not ``PUBLIC_KEY``)
    or a proxy variable."""
    from ..engine.plan import _PUBLIC_NAME, _SECRET_NAME
    return name.lower() in _PROXY_ARGS or bool(_SECRET_NAME.search(name) and not _PUBLIC_NAME.search(name))


def _time(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hex(digest: str) -> dict[str, str]:
    alg, _, hexd = digest.partition(":")
    return {alg: hexd}


def _image_uri(ref_text: str, platform: str | None) -> str:
    """BuildKit's form: ``pkg:docker/REPO@TAG?repository_url=...&platform=...``."""
    try:
        ref = parse_reference(ref_text)
    except Exception:  # noqa: BLE001 - an odd reference is still recorded, as written
        return ref_text
    q = {}
    if ref.registry != "docker.io":
        q["repository_url"] = f"{ref.registry}/{ref.repository}"
    if platform:
        q["platform"] = platform
    return PackageURL(type="docker", name=ref.repository, version=ref.tag or ref.digest, qualifiers=q).to_string()


#: ``user[:password]@`` after a URL scheme, anywhere in a string (an ADD URL in an instruction).
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")


def _without_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (credentials never land in an attestation)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def provenance_statement(*, subjects: list[tuple[str, str]], opts, record, bases: dict[str, str],
                         platforms: list[str], context_digest: str | None, checkout=None) -> dict:
    """The Statement (a dict ready for json.dumps). ``subjects``: (name, ``sha256:`` digest);
    ``opts``: the BuildOptions; ``record``: the BuildRecord; ``bases``: reference -> manifest
    digest of every base image; ``context_digest``: the tree digest of the context, or None;
    ``checkout``: the :class:`~.gitcheckout.Checkout` holding a local context directory, or None
    (a ``git://`` context's commit comes in ``opts.source_commit``)."""
    secrets = {k for k in opts.build_args if secret_like(k)}
    scrub = sorted((opts.build_args[k] for k in secrets if len(opts.build_args[k]) >= 4), key=len, reverse=True)

    def clean(text: str) -> str:
        for value in scrub:
            text = text.replace(value, "***")
        return _USERINFO.sub(r"\1", text)

    dockerfile = Path(opts.dockerfile)
    try:
        df_path = str(dockerfile.relative_to(opts.context))
    except ValueError:
        df_path = str(dockerfile)
    external: dict = {
        "dockerfile": {"path": df_path, "digest": {"sha256": hashlib.sha256(dockerfile.read_bytes()).hexdigest()}},
        "platforms": platforms,
        "buildArgs": {k: clean(v) for k, v in sorted(opts.build_args.items()) if k not in secrets},
        "context": {"uri": opts.context_source or "dir:" + str(opts.context)},
    }
    if opts.target:
        external["target"] = opts.target
    if opts.labels:
        external["labels"] = {k: clean(v) for k, v in opts.labels.items()}
    if opts.annotations:
        external["annotations"] = {k: clean(v) for k, v in opts.annotations.items()}
    steps, byproducts = [], []
    for s in record.steps:
        steps.append({"stage": s.stage, "location": s.location, "instruction": clean(s.text), "cache": str(s.cache),
                      "seconds": round(s.seconds, 3), **({"layerDigest": s.layer_digest} if s.layer_digest else {})})
        if s.layer_digest:
            byproducts.append({"name": f"layer {s.stage} {s.location}".replace("  ", " "),
                               "digest": _hex(s.layer_digest), "annotations": {"cache": str(s.cache)}})
    internal = {"cache": {"enabled": bool(opts.cache), **({"repository": opts.cache_repo} if opts.cache_repo else {})},
                "reproducible": bool(opts.reproducible), "compression": opts.compression, "steps": steps}
    deps = [{"name": f"base-image:{ref}", "uri": _image_uri(ref, platforms[0] if len(platforms) == 1 else None),
             "digest": _hex(digest)} for ref, digest in sorted(bases.items()) if digest.startswith("sha")]
    if context_digest:
        deps.append({"name": "context", "uri": opts.context_source or "dir:" + str(opts.context),
                     "digest": _hex(context_digest)})
    for url, digest in sorted(getattr(record, "downloads", {}).items()):
        public = clean(_without_userinfo(url))
        deps.append({"name": f"add:{public}", "uri": public, "digest": _hex(digest)})
    if opts.source_commit:
        src = opts.context_source or ""
        deps.append({"name": "source", "uri": src if src.startswith("git") else "git+" + src,
                     "digest": {"gitCommit": opts.source_commit}})
    elif checkout is not None:
        from .gitcheckout import source_uri
        uri = {"uri": clean(_without_userinfo(source_uri(checkout.url)))} if checkout.url else {}
        deps.append({"name": "source", **uri, "digest": {"gitCommit": checkout.commit}})
    started, finished = record.started, record.finished or record.started
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": _hex(digest)} for name, digest in subjects],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {"buildType": BUILD_TYPE, "externalParameters": external,
                                "internalParameters": internal, "resolvedDependencies": deps},
            "runDetails": {"builder": {"id": BUILDER_ID, "version": {"executor": __version__}},
                           "metadata": {"invocationId": str(uuid.uuid4()), "startedOn": _time(started),
                                        "finishedOn": _time(finished)},
                           "byproducts": byproducts},
        },
    }
