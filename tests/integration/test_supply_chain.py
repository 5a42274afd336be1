"""SBOM and provenance end to end: real builds through the CLI against the loopback
docker-registry (no referrers API there, so the referrers tag schema is exercised), the
documents read back from the image digest alone, checked with their own validators, and the
image itself unchanged by attaching them."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from packageurl import PackageURL

from tests.support.tools import run, run_executor, skopeo_inspect

pytestmark = pytest.mark.integration

NPM_TOKEN = "npm_T0kenValue4242deadbeef"
SECRET = "s3cr3t-Value-xyz-9876"
DPKG_STATUS = """Package: libfake1
Status: install ok installed
Priority: optional
Architecture: amd64
Maintainer: Fake Maintainers <fake@example.org>
Version: 1.2.3-4
Description: a fake library

Package: fake-tool
Status: install ok installed
Architecture: amd64
Source: fake-src (2.0-1)
Version: 2.0-1+deb12u1
Description: a fake tool

"""
METADATA = "Metadata-Version: 2.1\nName: fake_py\nVersion: 0.9.1\nLicense-Expression: MIT\n"
DOCKERFILE = """\
FROM {base}
ARG NPM_TOKEN
ARG FLAVOUR=plain
COPY os-release /etc/os-release
COPY gobin/ /usr/local/bin/
COPY status /var/lib/dpkg/status
COPY site/ /usr/lib/python3/dist-packages/
COPY node_modules/ /app/node_modules/
RUN --mount=type=secret,id=mysecret test -s /run/secrets/mysecret && echo "$FLAVOUR" > /flavour
"""


def make_context(ctx: Path, base: str) -> Path:
    files = {
        "Dockerfile": DOCKERFILE.format(base=base),
        "os-release": 'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
        "status": DPKG_STATUS,
        "site/fake_py-0.9.1.dist-info/METADATA": METADATA,
        "node_modules/leftpad/package.json": json.dumps({"name": "leftpad", "version": "1.3.0", "license": "WTFPL"}),
        "node_modules/leftpad/lib/package.json": json.dumps({"name": "not-a-package", "version": "0.0.0"}),
    }
    for name, text in files.items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(text)
    (ctx / "gobin").mkdir()
    shutil.copy(shutil.which("umoci"), ctx / "gobin" / "umoci")  # a real Go binary (Debian's, GOPATH build)
    return ctx


def build(host: str, ctx: Path, dest: str, out: Path, *extra: str):
    digest_file = out / f"digest-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    p = run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", host,
                      "--build-arg", f"NPM_TOKEN={NPM_TOKEN}", "--secret", "id=mysecret,env=MYSECRET",
                      "--cache", "--cache-repo", f"oci:{out / 'cache'}", "--log-format", "text",
                      "--digest-file", str(digest_file), *extra], env={"MYSECRET": SECRET})
    return digest_file.read_text(), p, time.monotonic() - t0


def registry_get(host: str, repo: str, kind: str, ident: str, accept: str = "*/*") -> httpx.Response:
    r = httpx.get(f"http://{host}/v2/{repo}/{kind}/{ident}", headers={"Accept": accept})
    r.raise_for_status()
    return r


def referrers(host: str, repo: str, digest: str) -> dict[str, bytes]:
    """artifactType -> document, found from ``digest`` alone through the referrers tag."""
    tag = "sha256-" + digest.split(":", 1)[1]
    index = registry_get(host, repo, "manifests", tag, "application/vnd.oci.image.index.v1+json").json()
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    out = {}
    for d in index["manifests"]:
        man = registry_get(host, repo, "manifests", d["digest"], d["mediaType"]).json()
        assert man["subject"]["digest"] == digest and man["artifactType"] == d["artifactType"]
        assert man["config"]["mediaType"] == "application/vnd.oci.empty.v1+json" and man["config"]["size"] == 2
        assert len(man["layers"]) == 1
        out[d["artifactType"]] = registry_get(host, repo, "blobs", man["layers"][0]["digest"]).content
    return out


@pytest.fixture(scope="module")
def first(registry, busybox, tmp_path_factory):
    """The first build (cold cache): SPDX SBOM and provenance, attached and written as files."""
    work = tmp_path_factory.mktemp("supply")
    ctx = make_context(work / "ctx", busybox)
    dest = f"{registry.host}/supply/app:v1"
    digest, p, secs = build(registry.host, ctx, dest, work, "--sbom", "--provenance",
                            "--sbom-path", str(work / "sbom.spdx.json"), "--provenance-path", str(work / "prov.json"),
                            "--oci-layout-path", str(work / "layout"))
    return {"work": work, "ctx": ctx, "dest": dest, "digest": digest, "log": p.stdout + p.stderr, "seconds": secs}


def test_spdx_sbom_lists_the_packages_with_their_layers(first, registry, tmp_path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    path = first["work"] / "sbom.spdx.json"
    assert validate_full_spdx_document(parse_file(str(path))) == []
    doc = json.loads(path.read_text())
    pkgs = {p["name"]: p for p in doc["packages"]}
    purls = {n: p["externalRefs"][0]["referenceLocator"] for n, p in pkgs.items()}
    assert purls["libfake1"] == "pkg:deb/debian/libfake1@1.2.3-4?arch=amd64&distro=debian-12"
    assert purls["fake-tool"] == "pkg:deb/debian/fake-tool@2.0-1%2Bdeb12u1?arch=amd64&distro=debian-12&upstream=fake-src"
    assert purls["fake_py"] == "pkg:pypi/fake-py@0.9.1" and pkgs["fake_py"]["licenseDeclared"] == "MIT"
    assert purls["leftpad"] == "pkg:npm/leftpad@1.3.0" and pkgs["leftpad"]["licenseDeclared"] == "WTFPL"
    assert "not-a-package" not in pkgs
    go = purls["stdlib"]  # Go build info of the umoci binary: the Go version it was built with
    assert go.startswith("pkg:golang/stdlib@1.") and pkgs["stdlib"]["versionInfo"] == "go" + go.split("@")[1]
    assert purls["github.com/opencontainers/umoci/cmd/umoci"] == "pkg:golang/github.com/opencontainers/umoci/cmd/umoci"
    for purl in purls.values():
        assert PackageURL.from_string(purl).to_string() == purl
    assert pkgs[f"{registry.host}/supply/app"]["versionInfo"] == first["digest"]
    # each package names the layer its COPY made: the manifest's layers after busybox's, in order
    layers = [d["digest"] for d in skopeo_inspect(first["dest"], raw=True)["layers"]]
    layer_of = {p["name"]: p["sourceInfo"].split()[0].removeprefix("layer=")
                for p in doc["packages"] if "sourceInfo" in p}
    assert layer_of["libfake1"] == layer_of["fake-tool"] == layers[-4]
    assert layer_of["fake_py"] == layers[-3] and layer_of["leftpad"] == layers[-2]


def test_provenance_names_the_image_its_base_and_context(first, registry, busybox):
    st = json.loads((first["work"] / "prov.json").read_text())
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    assert st["subject"] == [{"name": f"{registry.host}/supply/app",
                              "digest": {"sha256": first["digest"].split(":")[1]}}]
    pred = st["predicate"]
    deps = {d["name"]: d for d in pred["buildDefinition"]["resolvedDependencies"]}
    base_digest = skopeo_inspect(busybox)["Digest"]
    assert deps[f"base-image:{busybox}"]["digest"] == {"sha256": base_digest.split(":")[1]}
    assert len(deps["context"]["digest"]["sha256"]) == 64
    ext = pred["buildDefinition"]["externalParameters"]
    assert ext["dockerfile"]["path"] == "Dockerfile" and ext["buildArgs"] == {}
    assert pred["runDetails"]["builder"]["version"]["executor"]
    assert pred["runDetails"]["metadata"]["startedOn"] <= pred["runDetails"]["metadata"]["finishedOn"]
    steps = pred["buildDefinition"]["internalParameters"]["steps"]
    assert [s["cache"] for s in steps if s["instruction"].startswith(("COPY", "RUN"))] == ["miss"] * 6


def test_documents_are_found_from_the_digest_alone_and_keep_no_secret(first, registry):
    before = skopeo_inspect(first["dest"])["Digest"]
    docs = referrers(registry.host, "supply/app", first["digest"])
    assert set(docs) == {"application/spdx+json", "application/vnd.in-toto+json"}
    assert docs["application/spdx+json"] == (first["work"] / "sbom.spdx.json").read_bytes()
    assert docs["application/vnd.in-toto+json"] == (first["work"] / "prov.json").read_bytes()
    assert before == first["digest"] == skopeo_inspect(first["dest"])["Digest"]  # the tag still names the image
    for data in docs.values():
        assert NPM_TOKEN.encode() not in data and SECRET.encode() not in data


def test_oci_layout_holds_the_image_and_its_referrers(first):
    """--oci-layout-path: index.json lists the image (ref.name = the tag) and both artifacts
    (artifactType, no ref.name), each an artifact manifest whose subject is the image; skopeo
    still reads the image by its tag, and the documents are the ones written as files."""
    layout = first["work"] / "layout"
    index = json.loads((layout / "index.json").read_text())
    blob = lambda d: (layout / "blobs" / "sha256" / d.split(":")[1]).read_bytes()  # noqa: E731
    [image] = [m for m in index["manifests"] if "artifactType" not in m]
    assert image["digest"] == first["digest"] and image["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    artifacts = {m["artifactType"]: m for m in index["manifests"] if "artifactType" in m}
    assert set(artifacts) == {"application/spdx+json", "application/vnd.in-toto+json"}
    for artifact_type, desc in artifacts.items():
        assert "org.opencontainers.image.ref.name" not in desc.get("annotations", {})
        data = blob(desc["digest"])
        assert len(data) == desc["size"]
        man = json.loads(data)
        assert man["subject"] == {k: image[k] for k in ("mediaType", "digest", "size")}
        assert man["artifactType"] == artifact_type and json.loads(blob(man["config"]["digest"])) == {}
    assert blob(json.loads(blob(artifacts["application/spdx+json"]["digest"]))["layers"][0]["digest"]) == \
        (first["work"] / "sbom.spdx.json").read_bytes()
    assert blob(json.loads(blob(artifacts["application/vnd.in-toto+json"]["digest"]))["layers"][0]["digest"]) == \
        (first["work"] / "prov.json").read_bytes()
    # the same artifacts as the registry holds: the same manifest digests
    tag = registry_get(first["dest"].split("/")[0], "supply/app", "manifests", "sha256-" + first["digest"].split(":")[1],
                       "application/vnd.oci.image.index.v1+json").json()
    assert {m["digest"] for m in artifacts.values()} <= {m["digest"] for m in tag["manifests"]}
    out = json.loads(run(["skopeo", "inspect", "--raw", f"oci:{layout}:v1"]).stdout)
    assert out["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert json.loads(run(["skopeo", "inspect", f"oci:{layout}:v1"]).stdout)["Digest"] == first["digest"]


def test_a_cached_rebuild_records_hits_and_cyclonedx(first, registry):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    work = first["work"]
    digest, p, secs = build(registry.host, first["ctx"], f"{registry.host}/supply/app:v2", work, "--sbom",
                            "--sbom-format", "cyclonedx", "--provenance",
                            "--sbom-path", str(work / "sbom.cdx.json"), "--provenance-path", str(work / "prov2.json"))
    assert digest == first["digest"]  # same image from the cache; its referrers tag now holds 4 artifacts
    cdx = (work / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(cdx) is None
    comps = {c["name"]: c for c in json.loads(cdx)["components"]}
    assert comps["stdlib"]["version"].startswith("go1.")
    assert {n: c.get("version") for n, c in comps.items()} == {
        "libfake1": "1.2.3-4", "fake-tool": "2.0-1+deb12u1", "fake_py": "0.9.1", "leftpad": "1.3.0",
        "stdlib": comps["stdlib"]["version"], "github.com/opencontainers/umoci/cmd/umoci": None}
    steps = json.loads((work / "prov2.json").read_text())["predicate"]["buildDefinition"]["internalParameters"]["steps"]
    assert [s["cache"] for s in steps if s["instruction"].startswith(("COPY", "RUN"))] == ["hit"] * 6
    docs = referrers(registry.host, "supply/app", digest)
    assert "application/vnd.cyclonedx+json" in docs
    for data in docs.values():
        assert NPM_TOKEN.encode() not in data and SECRET.encode() not in data
    # timings for the report: the same build without the documents
    _, _, plain = build(registry.host, first["ctx"], f"{registry.host}/supply/app:v3", work)
    print(f"\nfirst build {first['seconds']:.2f}s, cached with sbom+provenance {secs:.2f}s, cached plain {plain:.2f}s")
    print([line for line in p.stderr.splitlines() if "sbom" in line or "provenance:" in line or "attached" in line])


def test_no_push_writes_the_files(registry, busybox, tmp_path):
    ctx = make_context(tmp_path / "ctx", busybox)
    p = run_executor(["--context", str(ctx), "--no-push", "--insecure-registry", registry.host,
                      "--build-arg", f"NPM_TOKEN={NPM_TOKEN}", "--secret", "id=mysecret,env=MYSECRET",
                      "--sbom-path", str(tmp_path / "s.json"), "--provenance-path", str(tmp_path / "p.json")],
                     env={"MYSECRET": SECRET})
    assert json.loads((tmp_path / "s.json").read_text())["spdxVersion"] == "SPDX-2.3"
    assert json.loads((tmp_path / "p.json").read_text())["subject"][0]["name"] == "unnamed"
    assert p.returncode == 0


def test_several_platforms_one_sbom_each_provenance_on_the_index(registry, tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "node_modules/x").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY node_modules /node_modules\n")
    (ctx / "node_modules/x/package.json").write_text('{"name":"x","version":"1.0.0"}')
    run_executor(["--context", str(ctx), "--destination", f"{registry.host}/supply/mp:v1", "--insecure-registry",
                  registry.host, "--custom-platform", "linux/amd64,linux/arm64", "--sbom", "--provenance",
                  "--sbom-path", str(tmp_path / "s.json"), "--digest-file", str(tmp_path / "d")])
    index_digest = (tmp_path / "d").read_text()
    assert set(referrers(registry.host, "supply/mp", index_digest)) == {"application/vnd.in-toto+json"}
    index = registry_get(registry.host, "supply/mp", "manifests", index_digest,
                         "application/vnd.oci.image.index.v1+json").json()
    for m in index["manifests"]:
        docs = referrers(registry.host, "supply/mp", m["digest"])
        assert json.loads(docs["application/spdx+json"])["packages"][1]["name"] == "x"
    assert {p.name for p in tmp_path.glob("s-*.json")} == {"s-linux-amd64.json", "s-linux-arm64.json"}


def test_provenance_lists_add_urls_with_their_digests_and_no_credentials(registry, busybox, tmp_path, http_files):
    """ADD <url>: the URL (user:password removed) and the sha256 of the bytes fetched are in
    resolvedDependencies; with --checksum and a cache hit, the checksum that keyed the step."""
    import hashlib
    www, url = http_files
    (www / "tool.txt").write_text("downloaded tool\n")
    (www / "pinned.txt").write_text("pinned file\n")
    pinned = hashlib.sha256(b"pinned file\n").hexdigest()
    base = url.removeprefix("http://")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox}\nADD http://deploy:s3cr3t-t0ken@{base}/tool.txt /tool.txt\n"
                                    f"ADD --checksum=sha256:{pinned} http://{base}/pinned.txt /pinned.txt\n"
                                    f"ADD --checksum=sha256:{pinned} http://deploy:s3cr3t-t0ken@{base}/pinned.txt /p2\n")
    for n in (1, 2):
        p = run_executor(["--context", str(ctx), "--no-push", "--insecure-registry", registry.host, "--cache",
                          "--cache-repo", f"oci:{tmp_path / 'cache'}", "--provenance-path", str(tmp_path / f"p{n}.json"),
                          "--oci-layout-path", str(tmp_path / f"out{n}")])
        # the URL's credentials are used for the download and shown nowhere: not in the log,
        # the image (history), the cache entries (created-by, miss-explanation records)
        assert "s3cr3t" not in p.stdout + p.stderr and "http://***@" in p.stderr
        leaks = subprocess.run(["grep", "-rl", "s3cr3t", str(tmp_path / f"out{n}"), str(tmp_path / "cache")],
                               capture_output=True, text=True)
        assert leaks.returncode == 1 and leaks.stdout == "", leaks.stdout
    for n in (1, 2):
        text = (tmp_path / f"p{n}.json").read_text()
        assert "s3cr3t" not in text and "deploy" not in text
        deps = {d["name"]: d for d in json.loads(text)["predicate"]["buildDefinition"]["resolvedDependencies"]}
        assert deps[f"add:http://{base}/pinned.txt"]["digest"] == {"sha256": pinned}
        assert deps[f"add:http://{base}/pinned.txt"]["uri"] == f"http://{base}/pinned.txt"
    first = {d["name"]: d for d in json.loads((tmp_path / "p1.json").read_text())
             ["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert first[f"add:http://{base}/tool.txt"]["digest"] == {"sha256": hashlib.sha256(b"downloaded tool\n").hexdigest()}
    steps = json.loads((tmp_path / "p2.json").read_text())["predicate"]["buildDefinition"]["internalParameters"]["steps"]
    assert [s["cache"] for s in steps if "pinned" in s["instruction"]] == ["hit", "hit"]


def test_attaching_leaves_skopeo_inspect_unchanged(first, registry, tmp_path):
    """The image pushed without the documents, then rebuilt (all cache hits) with --sbom and
    --provenance to the same tag: `skopeo inspect` and the raw manifest are the same before and
    after, except that the tag list gains the referrers tag (sha256-<hex>)."""
    dest = f"{registry.host}/supply/plain:v1"
    digest, _, _ = build(registry.host, first["ctx"], dest, first["work"])
    before, raw_before = skopeo_inspect(dest), run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                                                    f"docker://{dest}"]).stdout
    again, _, _ = build(registry.host, first["ctx"], dest, first["work"], "--sbom", "--provenance")
    after, raw_after = skopeo_inspect(dest), run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                                                  f"docker://{dest}"]).stdout
    tag = "sha256-" + digest.split(":")[1]
    assert digest == again == before["Digest"] == after["Digest"] and raw_before == raw_after
    assert before.pop("RepoTags") == ["v1"] and sorted(after.pop("RepoTags")) == sorted(["v1", tag])
    assert before == after
    assert set(referrers(registry.host, "supply/plain", digest)) == {"application/spdx+json",
                                                                      "application/vnd.in-toto+json"}


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "PATH": "/usr/bin:/bin"}
    return run(["git", *args], cwd=cwd, env=env).stdout.strip()


def test_git_checkout_context_and_a_second_build_with_one_cache_hit(registry, busybox, tmp_path):
    """A context directory that is a git checkout (as git-clone leaves it: detached HEAD, origin
    with a token in its URL): the provenance names its commit and URL (no token) beside the
    context's tree digest. After one file changes and is committed, the second build's one
    cache hit (the first COPY) and its miss are recorded, with the new commit; a git+file://
    context the executor clones itself names its commit the same way."""
    repo = tmp_path / "repo"
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "Dockerfile").write_text(f"FROM {busybox}\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n")
    (repo / "app" / "a.txt").write_text("a\n")
    (repo / "app" / "b.txt").write_text("b1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    _git(repo, "remote", "add", "origin", "https://ci-bot:ghp_t0kenvalue@git.example/team/app.git")
    _git(repo, "checkout", "-q", "--detach")
    docs = []
    for n in (1, 2):
        if n == 2:
            (repo / "app" / "b.txt").write_text("b2\n")
            _git(repo, "commit", "-qam", "two")
        p = run_executor(["--context", str(repo / "app"), "--destination", f"{registry.host}/supply/git:v{n}",
                          "--insecure-registry", registry.host, "--cache", "--cache-repo", f"oci:{tmp_path / 'cache'}",
                          "--provenance", "--provenance-path", str(tmp_path / f"p{n}.json")])
        text = (tmp_path / f"p{n}.json").read_text()
        assert "t0kenvalue" not in text and "ci-bot" not in text
        assert f"git commit {_git(repo, 'rev-parse', 'HEAD')[:12]}" in p.stderr
        docs.append(json.loads(text)["predicate"])
    for n, pred in enumerate(docs):
        deps = {d["name"]: d for d in pred["buildDefinition"]["resolvedDependencies"]}
        assert deps["source"] == {"name": "source", "uri": "git+https://git.example/team/app.git",
                                  "digest": {"gitCommit": _git(repo, "rev-parse", f"HEAD~{1 - n}")}}
    ctx_digest = [{d["name"]: d for d in p["buildDefinition"]["resolvedDependencies"]}["context"]["digest"]
                  for p in docs]
    assert ctx_digest[0] != ctx_digest[1]
    steps = [[(s["instruction"], s["cache"]) for s in p["buildDefinition"]["internalParameters"]["steps"]
              if s["instruction"].startswith("COPY")] for p in docs]
    assert steps == [[("COPY a.txt /a.txt", "miss"), ("COPY b.txt /b.txt", "miss")],
                     [("COPY a.txt /a.txt", "hit"), ("COPY b.txt /b.txt", "miss")]]
    # a git context cloned by the executor: the commit it checked out
    run_executor(["--context", f"git+file://{repo}#HEAD:app", "--no-push", "--insecure-registry", registry.host,
                  "--provenance-path", str(tmp_path / "pg.json")])
    deps = {d["name"]: d for d in json.loads((tmp_path / "pg.json").read_text())
            ["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["source"]["digest"] == {"gitCommit": _git(repo, "rev-parse", "HEAD")}
    assert deps["source"]["uri"].startswith(f"git+file://{repo}")
