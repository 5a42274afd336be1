"""Plain-data options of a build, filled from the CLI (Kaniko's flag names)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class BuildOptions:
    """Everything one ``executor`` build needs to know; no behaviour here.

    Paths are absolute. ``build_args`` maps name -> value (bare ``--build-arg KEY`` already
    resolved from the environment by the CLI). ``platform`` is ``os/arch[/variant]``.
    """

    context: Path
    dockerfile: Path
    destinations: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    no_push: bool = False
    push_ignore_immutable_tag_errors: bool = False  # a refused immutable tag: warn, carry on
    tar_path: Path | None = None
    oci_layout_path: Path | None = None
    digest_file: Path | None = None
    image_name_with_digest_file: Path | None = None
    image_name_tag_with_digest_file: Path | None = None
    labels: dict[str, str] = field(default_factory=dict)
    platform: str = "linux/amd64"
    platforms: list[str] = field(default_factory=list)  # several: one image each, pushed as one index
    work_dir: Path | None = None         # --kaniko-dir: the run's own work dir is made inside it
    cleanup: bool = True
    run_isolation: str = "auto"          # auto | namespace | userns | chroot
    reproducible: bool = False
    source_date_epoch: int | None = None
    compression: str = "gzip"
    compression_level: int | None = None
    single_snapshot: bool = False
    jobs: int | None = None               # stages built at once (None: 2 x the CPUs this process may use)
    ignore_paths: list[str] = field(default_factory=list)
    secrets: dict[str, "SecretSource"] = field(default_factory=dict)
    ssh: list[str] = field(default_factory=list)
    # cache
    cache: bool = False
    cache_repo: str | None = None
    cache_from: list[str] = field(default_factory=list)  # read-only cache sources (--cache-from), in order
    cache_dir: Path | None = None
    cache_ttl_seconds: int = 336 * 3600
    cache_run_layers: bool = True
    cache_copy_layers: bool = True
    no_push_cache: bool = False
    run_cache_dir: Path | None = None     # RUN --mount=type=cache storage
    # outputs
    annotations: dict[str, str] = field(default_factory=dict)  # manifest annotations (--annotation)
    image_format: bool | None = None      # True: OCI manifest, False: Docker v2.2, None: the base image's
    # supply chain (executor.attest): attach as OCI referrers when pushing; the paths also write files
    sbom: bool = False
    sbom_format: str = "spdx"             # spdx (SPDX 2.3 JSON) | cyclonedx (CycloneDX 1.6 JSON)
    sbom_path: Path | None = None
    provenance: bool = False
    provenance_path: Path | None = None
    # provenance of the build context (--context): the source as given (credentials redacted; None
    # for a local directory) and, for a git context, the commit that was checked out
    context_source: str | None = None
    source_commit: str | None = None


@dataclass(frozen=True, repr=False)
class SecretSource:
    """A ``--secret id=X,src=PATH`` or ``id=X,env=VAR`` definition (value never repr'd)."""

    id: str
    path: Path | None = None
    env: str | None = None

    def __repr__(self) -> str:
        return f"SecretSource(id={self.id!r})"
