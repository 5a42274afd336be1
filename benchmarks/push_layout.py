#!/usr/bin/env python3
"""Push an OCI image layout (one image) with the executor's own registry client, as
executor.outputs.push does (blobs on a 4-thread pool, HEAD first, then the manifest).
Used by the push benchmark to compare with ``skopeo copy oci:LAYOUT docker://REF``.

Usage: push_layout.py LAYOUT_DIR REGISTRY/REPO:TAG   (plain HTTP: loopback registries only)
"""

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from executor.reference import parse_reference
from executor.registry.client import RegistryClient, RegistryOptions


def main() -> int:
    lay, dest = Path(sys.argv[1]), parse_reference(sys.argv[2])
    index = json.loads((lay / "index.json").read_text())
    mdesc = index["manifests"][0]

    def blob(d: str) -> Path:
        return lay / "blobs" / d.split(":")[0] / d.split(":")[1]

    manifest = blob(mdesc["digest"]).read_bytes()
    m = json.loads(manifest)
    with RegistryClient(RegistryOptions(insecure=True)) as client:
        descs = m["layers"] + [m["config"]]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda d: client.upload_blob(dest, blob(d["digest"]), d["digest"], d["size"]), descs))
        client.put_manifest(dest, manifest, mdesc.get("mediaType") or m["mediaType"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
