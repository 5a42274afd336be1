"""Tekton bundles: Tekton resources (Task, Pipeline, StepAction) packed as an OCI image.

Spec followed: Tekton Bundle Contract v0.1 (tektoncd/pipeline ``docs/tekton-bundle-contracts.md``):

* every layer holds exactly one resource, as YAML: here a tar with one regular file
  ``<name>.yaml`` (mode 0644, owner 0:0, mtime ``created``), the resource's bytes unchanged;
* every layer descriptor carries the annotations ``dev.tekton.image.apiVersion`` (the resource's
  ``apiVersion``), ``dev.tekton.image.kind`` (its ``kind``, lower-cased and singular: ``task``)
  and ``dev.tekton.image.name`` (``metadata.name``); that triple is unique within a bundle;
* at most :data:`MAX_BUNDLE_LAYERS` (20) layers per bundle; layers are gzip-compressed
  (``application/vnd.oci.image.layer.v1.tar+gzip``: the contract forbids ``+zstd``).

The bundle is an OCI image manifest (OCI image-spec ``manifest.md``) whose config is a minimal
image config (``rootfs.diff_ids`` = the layers' uncompressed digests, empty ``os`` and
``architecture``: a bundle runs nowhere), as ``tkn bundle push`` writes it. Everything is
deterministic: the same resources, annotations and ``created`` give the same digest.

Use: :func:`resource_from_yaml` per file, :func:`plan_bundles` to split a catalog into bundles of
at most 20 resources, :func:`build_bundle` for the blobs and manifest, :func:`push_bundle` to push
them with a registry client (blobs first, the manifest last). Errors: :class:`BundleError`.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from typing import Protocol, Sequence

import yaml

from executor.errors import UserError
from executor.oci.image import sha256_digest
from executor.oci.mediatypes import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST

MAX_BUNDLE_LAYERS = 20
ANNOTATION_API_VERSION = "dev.tekton.image.apiVersion"
ANNOTATION_KIND = "dev.tekton.image.kind"
ANNOTATION_NAME = "dev.tekton.image.name"
# Kinds the bundles resolver serves (``kind`` param: task, pipeline, stepaction).
BUNDLE_KINDS = ("task", "stepaction", "pipeline")


class BundleError(UserError):
    """A resource that cannot go into a Tekton bundle, or a bundle that breaks the contract."""


@dataclass(frozen=True)
class BundleResource:
    """One Tekton resource: ``document`` is its YAML exactly as stored in the layer; ``source``
    names where it came from (a path) for messages."""

    api_version: str
    kind: str
    name: str
    document: bytes
    source: str

    @property
    def file_name(self) -> str:
        """The name of the one file in the layer's tar."""
        return f"{self.name}.yaml"

    @property
    def identity(self) -> tuple[str, str, str]:
        """``(apiVersion, kind, name)``: what must be unique within a bundle."""
        return (self.api_version, self.kind, self.name)


@dataclass(frozen=True)
class BundleLayer:
    """A layer blob: ``blob`` (gzip tar bytes), its ``digest`` and the tar's ``diff_id``."""

    resource: BundleResource
    blob: bytes
    digest: str
    diff_id: str

    def descriptor(self) -> dict:
        return {"mediaType": OCI_LAYER_GZIP, "digest": self.digest, "size": len(self.blob),
                "annotations": {ANNOTATION_API_VERSION: self.resource.api_version,
                                ANNOTATION_KIND: self.resource.kind,
                                ANNOTATION_NAME: self.resource.name}}


@dataclass(frozen=True)
class Bundle:
    """A built bundle: layers, config blob and manifest (``digest`` = sha256 of ``manifest``)."""

    layers: tuple[BundleLayer, ...]
    config: bytes
    config_digest: str
    manifest: bytes
    digest: str
    media_type: str = OCI_MANIFEST


class BlobPusher(Protocol):
    """What :func:`push_bundle` needs of :class:`executor.registry.client.RegistryClient`."""

    def upload_blob(self, ref, path_or_bytes, digest: str, size: int) -> None: ...

    def put_manifest(self, ref, data: bytes, media_type: str) -> str: ...


def resource_from_yaml(document: bytes, source: str) -> BundleResource:
    """The resource in ``document`` (one YAML document with ``apiVersion: tekton.dev/...``,
    ``kind`` one of Task, Pipeline, StepAction, and ``metadata.name``).

    Raises :class:`BundleError` naming ``source`` for invalid YAML, several documents, another
    API group or kind, or a missing name.
    """
    try:
        docs = [d for d in yaml.safe_load_all(document) if d is not None]
    except yaml.YAMLError as e:
        raise BundleError(f"{source}: not valid YAML: {str(e).splitlines()[0]}") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise BundleError(f"{source}: a bundle layer holds exactly one resource; found {len(docs)} documents")
    doc = docs[0]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
    if not isinstance(api_version, str) or not api_version.startswith("tekton.dev/"):
        raise BundleError(f"{source}: apiVersion {api_version!r} is not tekton.dev/*; only Tekton "
                          "Tasks, Pipelines and StepActions go into a bundle")
    if not isinstance(kind, str) or kind.lower() not in BUNDLE_KINDS:
        raise BundleError(f"{source}: kind {kind!r} cannot be resolved from a bundle "
                          f"(the bundles resolver serves {', '.join(BUNDLE_KINDS)})")
    if not isinstance(name, str) or not name:
        raise BundleError(f"{source}: metadata.name is missing")
    return BundleResource(api_version=api_version, kind=kind.lower(), name=name, document=bytes(document),
                          source=source)


def plan_bundles(resources: Sequence[BundleResource], max_layers: int = MAX_BUNDLE_LAYERS
                 ) -> list[tuple[BundleResource, ...]]:
    """``resources`` in bundles of at most ``max_layers``, in a stable order (kind as in
    :data:`BUNDLE_KINDS`, then name, then apiVersion). Raises :class:`BundleError` when two
    resources share apiVersion, kind and name, or there is none."""
    if not resources:
        raise BundleError("no Tekton resource to put into a bundle")
    seen: dict[tuple[str, str, str], str] = {}
    for r in resources:
        if r.identity in seen:
            raise BundleError(f"{r.source} and {seen[r.identity]} are both {r.kind} {r.name!r} "
                              f"({r.api_version}); a bundle holds each kind/name once")
        seen[r.identity] = r.source
    ordered = sorted(resources, key=lambda r: (BUNDLE_KINDS.index(r.kind), r.name, r.api_version))
    return [tuple(ordered[i:i + max_layers]) for i in range(0, len(ordered), max_layers)]


def _layer(resource: BundleResource, created: int) -> BundleLayer:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(resource.file_name)
        info.size, info.mode, info.mtime = len(resource.document), 0o644, created
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(resource.document))
    tar_bytes = raw.getvalue()
    blob = gzip.compress(tar_bytes, compresslevel=9, mtime=0)
    return BundleLayer(resource=resource, blob=blob, digest=sha256_digest(blob), diff_id=sha256_digest(tar_bytes))


def build_bundle(resources: Sequence[BundleResource], annotations: dict[str, str] | None = None,
                 created: int = 0) -> Bundle:
    """The bundle holding ``resources`` (one layer each, in the order given).

    ``annotations``: manifest annotations (e.g. ``org.opencontainers.image.version``);
    ``created``: seconds since the epoch for the tar entries' mtime. Raises :class:`BundleError`
    for more than :data:`MAX_BUNDLE_LAYERS` resources or a duplicate apiVersion/kind/name.
    """
    if len(resources) > MAX_BUNDLE_LAYERS:
        raise BundleError(f"{len(resources)} resources in one bundle; Tekton allows at most "
                          f"{MAX_BUNDLE_LAYERS} (split them with plan_bundles)")
    plan_bundles(resources, max_layers=MAX_BUNDLE_LAYERS)  # uniqueness and non-emptiness
    layers = tuple(_layer(r, created) for r in resources)
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in layers]}},
                        sort_keys=True, separators=(",", ":")).encode()
    manifest_doc: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(config), "size": len(config)},
                          "layers": [la.descriptor() for la in layers]}
    if annotations:
        manifest_doc["annotations"] = dict(sorted(annotations.items()))
    manifest = json.dumps(manifest_doc, indent=2).encode()
    return Bundle(layers=layers, config=config, config_digest=sha256_digest(config), manifest=manifest,
                  digest=sha256_digest(manifest))


def push_bundle(client: BlobPusher, ref, bundle: Bundle) -> str:
    """Push ``bundle`` to ``ref`` (an :class:`executor.reference.Reference` with a tag): every
    layer and the config first (blobs already there are skipped), the manifest last, so the
    tag never names a bundle with missing blobs. Returns the manifest digest. Registry failures
    raise :class:`executor.errors.RegistryError`."""
    for layer in bundle.layers:
        client.upload_blob(ref, layer.blob, layer.digest, len(layer.blob))
    client.upload_blob(ref, bundle.config, bundle.config_digest, len(bundle.config))
    return client.put_manifest(ref, bundle.manifest, bundle.media_type)
