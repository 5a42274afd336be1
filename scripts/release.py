#!/usr/bin/env python3
"""Release: build the images with the executor itself, pin the Tekton catalog, push it as a bundle.

    scripts/release.py --repository ghcr.io/ORG/executor-project --version 0.2.0 \\
        [--platforms linux/amd64,linux/arm64] [--base-image REF] [--tools-base-image REF] \\
        [--catalog-out DIR] [--insecure-registry HOST:PORT ...] [--build-flag=FLAG ...] \\
        [--source-url URL] [--revision SHA] [--summary FILE]

Steps (any failure stops the release with one line naming the step; nothing is tagged that
names a blob the registry lacks: every push writes blobs first, the manifest last):

1. builds, concurrently, with ``python -m executor`` from this checkout and
   ``--custom-platform PLATFORMS`` (an image index when there are several; foreign platforms run
   under qemu-user-static through binfmt_misc, see README "Multi-platform images"):

   * ``REPOSITORY/executor:VERSION`` from ``Dockerfile.executor`` (``BASE_IMAGE`` = ``--base-image``);
   * ``REPOSITORY/catalog-tools:VERSION`` from ``Dockerfile.catalog-tools`` (git, ssh, skopeo for
     the git-clone Task and the Pipeline's digest check; ``BASE_IMAGE`` = ``--tools-base-image``,
     by default the same base, so the two share its layers);

2. copies ``tekton/`` (without its ``tests/``) to ``--catalog-out`` (default
   ``dist/release-VERSION/tekton``) and pins, in one pass, every image default of the copy --
   Task, StepAction, Pipelines, TriggerTemplate -- to ``IMAGE:VERSION@sha256:<digest>``
   (scripts/release_catalog.py); then refuses to go on if any image reference is left unpinned;

3. pushes the copy's Tasks, StepActions and Pipelines as Tekton bundles
   (executor/oci/bundle.py; one layer per resource, ``dev.tekton.image.*`` annotations):
   ``REPOSITORY/tekton-catalog:VERSION`` -- one bundle for the whole catalog release, as long
   as it holds at most 20 resources (Tekton's limit), else ``tekton-catalog-1``, ``-2``, ...;

4. prints ``<what> <reference>@<digest>`` for every image and bundle, and writes them as JSON to
   ``--summary`` (default ``CATALOG_OUT/../release.json``).

Registry credentials: the Docker config (``$DOCKER_CONFIG``, ``$HOME/.docker/config.json``), for the
builds and the bundle push alike. ``--build-flag`` passes one more flag to both builds (repeat
it; e.g. ``--build-flag=--push-retry=3``). Exit status 0 on success, 1 on any error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from release_catalog import (CatalogError, bundle_resources, copy_catalog, pin_catalog,  # noqa: E402
                             unpinned_images)

from executor.errors import UserError  # noqa: E402
from executor.oci.bundle import build_bundle, plan_bundles, push_bundle  # noqa: E402
from executor.reference import parse_reference  # noqa: E402
from executor.registry.auth import Keychain  # noqa: E402
from executor.registry.client import RegistryClient, RegistryOptions  # noqa: E402

VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z][0-9A-Za-z.-]*)?$")
DEFAULT_PLATFORMS = "linux/amd64,linux/arm64"
DEFAULT_BASE = "docker.io/library/python:3.12-slim"
BUNDLE_NAME = "tekton-catalog"


@dataclass(frozen=True)
class ImageSpec:
    """One image the release builds: ``name`` under the repository, its Dockerfile, its base."""

    name: str
    dockerfile: str
    base_image: str


@dataclass(frozen=True)
class Pushed:
    """What was pushed: ``what`` (image name or bundle), ``reference`` (with tag), ``digest``."""

    what: str
    reference: str
    digest: str
    contents: tuple[str, ...] = ()

    @property
    def pinned(self) -> str:
        return f"{self.reference}@{self.digest}"


class ReleaseError(Exception):
    """A release step failed (message: one line naming the step and the fix)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/release.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repository", required=True,
                   help="registry and path prefix the images and bundle go under, e.g. ghcr.io/org/executor-project")
    p.add_argument("--version", required=True, help="release version X.Y.Z[-pre] (the image and bundle tag)")
    p.add_argument("--platforms", default=DEFAULT_PLATFORMS, help=f"comma-separated (default {DEFAULT_PLATFORMS})")
    p.add_argument("--base-image", default=DEFAULT_BASE, help="BASE_IMAGE of Dockerfile.executor (default %(default)s)")
    p.add_argument("--tools-base-image", help="BASE_IMAGE of Dockerfile.catalog-tools (default: --base-image)")
    p.add_argument("--catalog-out", type=Path, help="where the pinned catalog copy goes (must not exist)")
    p.add_argument("--summary", type=Path, help="JSON summary file (default: next to the catalog copy)")
    p.add_argument("--insecure-registry", action="append", default=[], help="plain-HTTP registry (repeatable)")
    p.add_argument("--build-flag", action="append", default=[], help="one more executor flag for both builds")
    p.add_argument("--source-url", default="", help="org.opencontainers.image.source of images and bundle")
    p.add_argument("--revision", default="", help="org.opencontainers.image.revision (the git commit)")
    args = p.parse_args(argv)
    if not VERSION.match(args.version):
        p.error(f"--version {args.version!r} is not X.Y.Z or X.Y.Z-pre (it becomes an image tag)")
    args.repository = args.repository.rstrip("/")
    try:
        parse_reference(f"{args.repository}/{BUNDLE_NAME}:{args.version}")
    except UserError as e:
        p.error(f"--repository {args.repository!r}: {e}")
    if args.catalog_out is None:
        args.catalog_out = REPO / "dist" / f"release-{args.version}" / "tekton"
    if args.summary is None:
        args.summary = args.catalog_out.parent / "release.json"
    return args


def labels(args: argparse.Namespace) -> list[str]:
    out = [f"org.opencontainers.image.version={args.version}"]
    out += [f"org.opencontainers.image.source={args.source_url}"] if args.source_url else []
    out += [f"org.opencontainers.image.revision={args.revision}"] if args.revision else []
    return out


def build_command(spec: ImageSpec, args: argparse.Namespace, digest_file: Path) -> list[str]:
    """The executor invocation that builds and pushes ``spec`` for every platform."""
    cmd = [sys.executable, "-m", "executor", "--context", str(REPO), "--dockerfile", str(REPO / spec.dockerfile),
           "--destination", f"{args.repository}/{spec.name}:{args.version}",
           "--custom-platform", args.platforms, "--build-arg", f"BASE_IMAGE={spec.base_image}",
           "--digest-file", str(digest_file), "--progress", "plain", "--log-format", "text"]
    cmd += [a for label in labels(args) for a in ("--label", label)]
    cmd += [f"--insecure-registry={r}" for r in args.insecure_registry]
    return cmd + list(args.build_flag)


def build_images(specs: list[ImageSpec], args: argparse.Namespace, work: Path) -> list[Pushed]:
    """Build and push every image concurrently; each build's log goes to ``work/<name>.log`` and
    is printed when the build ends. Raises ReleaseError naming the failed builds."""
    def one(spec: ImageSpec) -> tuple[ImageSpec, int, str, float]:
        digest_file, log = work / f"{spec.name}.digest", work / f"{spec.name}.log"
        start = time.monotonic()
        with log.open("w") as f:
            rc = subprocess.run(build_command(spec, args, digest_file), stdout=f, stderr=subprocess.STDOUT,
                                cwd=REPO, check=False).returncode
        digest = digest_file.read_text().strip() if rc == 0 and digest_file.exists() else ""
        return spec, rc, digest, time.monotonic() - start

    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        results = list(pool.map(one, specs))
    failed = []
    for spec, rc, digest, seconds in results:
        log = (work / f"{spec.name}.log").read_text()
        print(f"--- build of {spec.name} ({spec.dockerfile}), {seconds:.1f}s, exit {rc}", flush=True)
        print(log if rc else "\n".join(log.splitlines()[-3:]), flush=True)
        if rc or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            failed.append(f"{spec.name} (exit {rc})")
    if failed:
        raise ReleaseError(f"building {', '.join(failed)} failed; see the log above")
    return [Pushed(what=spec.name, reference=f"{args.repository}/{spec.name}:{args.version}", digest=digest)
            for spec, _, digest, _ in results]


def push_bundles(catalog: Path, args: argparse.Namespace) -> list[Pushed]:
    """Push the pinned catalog's Tasks, StepActions and Pipelines as bundle(s); see the module doc."""
    groups = plan_bundles(bundle_resources(catalog))
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    annotations = {"org.opencontainers.image.version": args.version,
                   "org.opencontainers.image.title": BUNDLE_NAME,
                   "org.opencontainers.image.description": "Tekton resources of the executor catalog (Tekton bundle)"}
    annotations.update({"org.opencontainers.image.source": args.source_url} if args.source_url else {})
    annotations.update({"org.opencontainers.image.revision": args.revision} if args.revision else {})
    options = RegistryOptions(insecure_registries=frozenset(args.insecure_registry))
    out = []
    with RegistryClient(options, Keychain.from_environment()) as client:
        for n, group in enumerate(groups, 1):
            name = BUNDLE_NAME if len(groups) == 1 else f"{BUNDLE_NAME}-{n}"
            ref = parse_reference(f"{args.repository}/{name}:{args.version}")
            digest = push_bundle(client, ref, build_bundle(group, annotations, created=epoch))
            out.append(Pushed(what="bundle", reference=f"{args.repository}/{name}:{args.version}", digest=digest,
                              contents=tuple(f"{r.kind}/{r.name}" for r in group)))
    return out


def check_pinned(catalog: Path) -> None:
    left = unpinned_images(catalog)
    if left:
        raise ReleaseError("image references the release does not pin (build the image in the release, or "
                           "make it a param default the release pins): " + "; ".join(left))


def release(args: argparse.Namespace) -> list[Pushed]:
    tools_base = args.tools_base_image or args.base_image
    specs = [ImageSpec("executor", "Dockerfile.executor", args.base_image),
             ImageSpec("catalog-tools", "Dockerfile.catalog-tools", tools_base)]
    if args.catalog_out.exists():
        raise ReleaseError(f"--catalog-out {args.catalog_out} already exists; remove it or name a new directory")
    # Fail before building when the catalog cannot be released (unknown image params, an image
    # no release builds, bad YAML): the same steps on a scratch copy with stand-in digests.
    with tempfile.TemporaryDirectory(prefix="release-check-") as tmp:
        probe = copy_catalog(REPO / "tekton", Path(tmp) / "tekton")
        pin_catalog(probe, {s.name: f"{args.repository}/{s.name}:{args.version}@sha256:{'0' * 64}" for s in specs})
        check_pinned(probe)
        plan_bundles(bundle_resources(probe))
    with tempfile.TemporaryDirectory(prefix="release-build-") as tmp:
        images = build_images(specs, args, Path(tmp))
    catalog = copy_catalog(REPO / "tekton", args.catalog_out)
    changes = pin_catalog(catalog, {p.what: p.pinned for p in images})
    for c in changes:
        print(f"pinned {c.path}:{c.line} {c.param}: {c.old} -> {c.new}")
    check_pinned(catalog)
    bundles = push_bundles(catalog, args)
    pushed = images + bundles
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps({"version": args.version, "platforms": args.platforms.split(","),
                                        "catalog": str(catalog), "pushed": [asdict(p) for p in pushed]},
                                       indent=2) + "\n")
    return pushed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        pushed = release(args)
    except (ReleaseError, CatalogError, UserError) as e:
        print(f"release: error: {e}", file=sys.stderr)
        return 1
    print(f"release {args.version}: pinned catalog in {args.catalog_out}, summary {args.summary}")
    for p in pushed:
        extra = f"  ({', '.join(p.contents)})" if p.contents else ""
        print(f"{p.what} {p.pinned}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
