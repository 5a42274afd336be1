"""Provenance statement and referrer artifact shapes, without a registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from executor.engine.step import BuildRecord, CacheUse, StepRecord
from executor.options import BuildOptions
from executor.provenance import context_digest, provenance_statement, secret_like
from executor.referrers import EMPTY_DESCRIPTOR, artifact_manifest, referrers_tag

DIGEST = "sha256:" + "ab" * 32


def test_secret_like_names():
    assert secret_like("NPM_TOKEN") and secret_like("DB_PASSWORD") and secret_like("https_proxy")
    assert not secret_like("PUBLIC_KEY") and not secret_like("VERSION") and not secret_like("TOKENIZER")


def test_statement_shape_and_redaction(tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "a.txt").write_text("a")
    opts = BuildOptions(context=tmp_path, dockerfile=tmp_path / "Dockerfile", target="app",
                        build_args={"NPM_TOKEN": "tok-123456", "VERSION": "1 tok-123456", "HTTP_PROXY": "http://u:p@x"},
                        source_commit="0" * 40, context_source="https://git.example/app.git")
    rec = BuildRecord(started=1.0, finished=2.5)
    rec.add(StepRecord(stage="0", location="Dockerfile:2", keyword="COPY", text="COPY a.txt /", cache=CacheUse.HIT,
                       layer_digest=DIGEST))
    tree, n = context_digest(tmp_path, tmp_path / "Dockerfile")
    st = provenance_statement(subjects=[("r.example/app", DIGEST)], opts=opts, record=rec,
                              bases={"r.example/base:1": "sha256:" + "cd" * 32}, platforms=["linux/amd64"],
                              context_digest=tree)
    text = json.dumps(st)
    assert "tok-123456" not in text and "u:p@" not in text
    bd = st["predicate"]["buildDefinition"]
    assert bd["externalParameters"]["buildArgs"] == {"VERSION": "1 ***"}
    assert bd["externalParameters"]["dockerfile"]["digest"]["sha256"] == hashlib.sha256(b"FROM scratch\n").hexdigest()
    deps = {d["name"]: d for d in bd["resolvedDependencies"]}
    assert deps["source"]["digest"] == {"gitCommit": "0" * 40} and deps["source"]["uri"].startswith("git+https://")
    assert deps["base-image:r.example/base:1"]["digest"] == {"sha256": "cd" * 32}
    assert deps["context"]["digest"] == {"sha256": tree.split(":")[1]} and n == 2
    assert bd["internalParameters"]["steps"][0]["cache"] == "hit"
    assert st["predicate"]["runDetails"]["byproducts"][0]["annotations"] == {"cache": "hit"}
    assert st["predicate"]["runDetails"]["metadata"]["startedOn"].startswith("1970-01-01T00:00:01")


def test_context_digest_follows_content_and_dockerignore(tmp_path: Path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "a.txt").write_text("a")
    d1, _ = context_digest(tmp_path, tmp_path / "Dockerfile")
    (tmp_path / "ignored.log").write_text("x")
    (tmp_path / ".dockerignore").write_text("*.log\n")
    d2, _ = context_digest(tmp_path, tmp_path / "Dockerfile")
    (tmp_path / ".dockerignore").unlink()
    (tmp_path / "ignored.log").unlink()
    assert context_digest(tmp_path, tmp_path / "Dockerfile")[0] == d1 != d2  # .dockerignore itself counts
    (tmp_path / "a.txt").write_text("b")
    assert context_digest(tmp_path, tmp_path / "Dockerfile")[0] != d1


def test_artifact_manifest():
    doc = b'{"spdxVersion":"SPDX-2.3"}'
    subject = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": DIGEST, "size": 123, "x": 1}
    m = json.loads(artifact_manifest(doc, "application/spdx+json", subject, {"k": "v"}))
    assert m["artifactType"] == "application/spdx+json" and m["config"] == EMPTY_DESCRIPTOR
    assert m["layers"] == [{"mediaType": "application/spdx+json", "digest": "sha256:" + hashlib.sha256(doc).hexdigest(),
                            "size": len(doc)}]
    assert m["subject"] == {k: subject[k] for k in ("mediaType", "digest", "size")} and m["annotations"] == {"k": "v"}
    assert EMPTY_DESCRIPTOR["digest"] == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    assert referrers_tag(DIGEST) == "sha256-" + "ab" * 32
