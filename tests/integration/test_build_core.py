"""The core job end to end: real Dockerfiles built by `executor`, pushed to a real
docker-registry, checked with skopeo, umoci and runc (independent tools)."""

from __future__ import annotations

import json
import os
import stat
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.support.tools import run, run_executor, runc_run, skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration


def make_context(tmp: Path, dockerfile: str, files: dict[str, str | bytes] | None = None) -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for name, content in (files or {}).items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    return ctx


def build(registry, ctx: Path, repo: str, *extra: str, check: bool = True):
    dest = f"{registry.host}/{repo}:{uuid.uuid4().hex[:8]}"
    p = run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", registry.host,
                      "--digest-file", str(ctx.parent / "digest"), "--log-format", "text", *extra], check=check)
    return dest, p


def last_layer_names(dest: str, layout: Path) -> list[str]:
    """Entry names of the pushed image's top layer, listed by GNU tar (not our reader)."""
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{layout}:x"])
    idx = json.loads((layout / "index.json").read_text())
    man = json.loads((layout / "blobs" / "sha256" / idx["manifests"][0]["digest"][7:]).read_text())
    last = layout / "blobs" / "sha256" / man["layers"][-1]["digest"][7:]
    return run(["tar", "-tzf", str(last)]).stdout.split()


def unpack(dest: str, tmp: Path) -> Path:
    return umoci_unpack(dest, tmp / "unpacked")


def test_multistage_copy_from_user_workdir_cmd(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""
        FROM {busybox} AS build
        RUN mkdir -p /out && echo built > /out/artifact && ln -s artifact /out/link
        FROM {busybox}
        COPY --from=build /out/ /app/
        COPY --chown=app:app hello.txt /app/hello.txt
        USER app
        WORKDIR /app/work
        RUN echo "$(id -u):$(pwd)" > /app/work/whoami
        CMD ["cat", "/app/artifact", "/app/hello.txt", "/app/work/whoami"]
        """, {"hello.txt": "hello from context\n"})
    dest, _ = build(registry, ctx, "core/multistage")
    digest = (tmp_path / "digest").read_text()
    info = skopeo_inspect(dest)
    assert info["Digest"] == digest
    cfg = skopeo_inspect(dest, config=True)
    assert cfg["config"]["User"] == "app"
    assert cfg["config"]["WorkingDir"] == "/app/work"
    assert cfg["config"]["Cmd"] == ["cat", "/app/artifact", "/app/hello.txt", "/app/work/whoami"]
    assert len(cfg["rootfs"]["diff_ids"]) == len(info["Layers"])
    bundle = unpack(dest, tmp_path)
    rootfs = bundle / "rootfs"
    hello = rootfs / "app" / "hello.txt"
    assert hello.stat().st_uid == 1000 and hello.stat().st_gid == 1000
    assert (rootfs / "app" / "artifact").stat().st_uid == 0
    assert os.readlink(rootfs / "app" / "link") == "artifact"
    assert (rootfs / "app" / "work").stat().st_uid == 1000  # WORKDIR made as the USER
    r = runc_run(bundle, f"t-{uuid.uuid4().hex[:8]}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "built\nhello from context\n1000:/app/work\n"


def test_deletions_symlink_to_dir_hardlinks(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""
        FROM {busybox}
        RUN mkdir -p /data/sub && echo a > /data/a && echo b > /data/sub/b && ln -s /data /lnk \
            && echo x > /data/h1 && ln /data/h1 /data/h2
        RUN rm /data/a && rm -rf /data/sub && rm /lnk && mkdir /lnk && echo inside > /lnk/f \
            && rm /bin/vi
        """)
    dest, _ = build(registry, ctx, "core/deletions")
    rootfs = unpack(dest, tmp_path) / "rootfs"
    assert not (rootfs / "data" / "a").exists()
    assert not (rootfs / "data" / "sub").exists()
    assert not (rootfs / "bin" / "vi").exists() and not (rootfs / "bin" / "vi").is_symlink()
    assert (rootfs / "bin" / "sh").is_symlink()
    lnk = rootfs / "lnk"
    assert lnk.is_dir() and not lnk.is_symlink()
    assert (lnk / "f").read_text() == "inside\n"
    h1, h2 = (rootfs / "data" / "h1").stat(), (rootfs / "data" / "h2").stat()
    assert h1.st_ino == h2.st_ino and h1.st_nlink == 2
    # the deleting layer carries whiteouts (checked on the raw layer with tar)
    names = last_layer_names(dest, tmp_path / "raw")
    assert "data/.wh.a" in names and "data/.wh.sub" in names and "bin/.wh.vi" in names
    # nothing the executor adds for running (mount points, resolv.conf, hosts) reaches a layer,
    # not even their parent directory /etc (busybox has neither file)
    assert not any(n.startswith(("proc", "dev", "sys", "etc")) for n in names), names


def test_entrypoint_resets_inherited_cmd_and_metadata(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""
        FROM {busybox}
        ENV A=1 B="two words"
        LABEL org.example.k="v" other=x
        EXPOSE 8080 53/udp
        VOLUME /data
        STOPSIGNAL SIGINT
        HEALTHCHECK --interval=30s --retries=3 CMD true
        ENTRYPOINT ["/bin/echo", "entry"]
        """)
    dest, _ = build(registry, ctx, "core/meta")
    cfg = skopeo_inspect(dest, config=True)["config"]
    assert cfg.get("Cmd") is None  # busybox's inherited CMD ["/bin/sh"] is reset
    assert cfg["Entrypoint"] == ["/bin/echo", "entry"]
    assert "A=1" in cfg["Env"] and "B=two words" in cfg["Env"]
    assert cfg["Labels"] == {"org.example.k": "v", "other": "x"}
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert set(cfg["Volumes"]) == {"/data"}
    assert cfg["StopSignal"] == "SIGINT"
    assert cfg["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert cfg["Healthcheck"]["Interval"] == 30_000_000_000 and cfg["Healthcheck"]["Retries"] == 3
    bundle = unpack(dest, tmp_path)
    r = runc_run(bundle, f"t-{uuid.uuid4().hex[:8]}")
    assert r.stdout == "entry\n"


def test_dockerignore_with_exceptions(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""
        FROM {busybox}
        COPY . /ctx/
        """, {
        ".dockerignore": "*.log\n!keep.log\nsecret/\nDockerfile\n",
        "a.txt": "a", "x.log": "x", "keep.log": "k", "secret/key": "s", "dir/b.txt": "b",
    })
    dest, _ = build(registry, ctx, "core/ignore")
    rootfs = unpack(dest, tmp_path) / "rootfs"
    names = sorted(str(p.relative_to(rootfs / "ctx")) for p in (rootfs / "ctx").rglob("*"))
    assert names == [".dockerignore", "a.txt", "dir", "dir/b.txt", "keep.log"]
    assert (rootfs / "ctx" / "a.txt").stat().st_uid == 0


def test_copy_rules_and_chmod(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""
        FROM {busybox}
        COPY f1.txt f2.txt /multi/
        COPY f1.txt /renamed
        COPY *.txt /glob/
        COPY --chmod=0750 tree /tree
        ADD arch.tar.gz /unpacked/
        """, {"f1.txt": "1", "f2.txt": "2", "tree/sub/x": "x"})
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = b"from archive\n"
        info = tarfile.TarInfo("inner/file")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    (ctx / "arch.tar.gz").write_bytes(buf.getvalue())
    dest, _ = build(registry, ctx, "core/copyrules")
    rootfs = unpack(dest, tmp_path) / "rootfs"
    assert (rootfs / "multi" / "f1.txt").read_text() == "1" and (rootfs / "multi" / "f2.txt").read_text() == "2"
    assert (rootfs / "renamed").read_text() == "1"
    assert sorted(p.name for p in (rootfs / "glob").iterdir()) == ["f1.txt", "f2.txt"]
    assert stat.S_IMODE((rootfs / "tree" / "sub" / "x").stat().st_mode) == 0o750
    assert (rootfs / "unpacked" / "inner" / "file").read_text() == "from archive\n"


def test_run_exit_code_propagates_and_nothing_pushed(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN echo before
        RUN exit 3
        """)
    dest, p = build(registry, ctx, "core/fails", check=False)
    assert p.returncode == 3
    assert "Dockerfile:3" in p.stderr and "non-zero code: 3" in p.stderr
    assert "Traceback" not in p.stderr
    r = run(["skopeo", "inspect", "--tls-verify=false", f"docker://{dest}"], check=False)
    assert r.returncode != 0  # nothing was tagged


def test_kaniko_dir_is_kept_and_reused_after_a_kept_run(registry, busybox, tmp_path):
    """``--kaniko-dir DIR``: each run works in a fresh directory inside DIR; a run kept with
    ``--cleanup=false`` does not collide with the next one there, and a cleaning run removes its
    own directory, never DIR or what else is in it (DIR is the user's, e.g. a workspace)."""
    ctx = make_context(tmp_path, f"""\
        FROM {busybox} AS one
        RUN echo one > /one
        FROM {busybox}
        COPY --from=one /one /one
        RUN cat /one
        """)
    kdir = tmp_path / "kaniko"
    kdir.mkdir()
    (kdir / "mine.txt").write_text("the user's\n")
    build(registry, ctx, "core/kdir", "--kaniko-dir", str(kdir), "--cleanup=false")
    kept = [p.name for p in kdir.iterdir() if p.name != "mine.txt"]
    assert len(kept) == 1 and kept[0].startswith("executor-"), kept
    build(registry, ctx, "core/kdir", "--kaniko-dir", str(kdir))
    assert sorted(p.name for p in kdir.iterdir()) == sorted(kept + ["mine.txt"])
    assert (kdir / "mine.txt").read_text() == "the user's\n"


def test_malformed_dockerfile_names_line(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN true
        NOTANINSTRUCTION foo
        """)
    _, p = build(registry, ctx, "core/malformed", check=False)
    assert p.returncode == 1
    assert "Dockerfile:3" in p.stderr and "Traceback" not in p.stderr


def test_missing_copy_source_names_path(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""
        FROM {busybox}
        COPY does-not-exist.txt /x
        """)
    _, p = build(registry, ctx, "core/missing", check=False)
    assert p.returncode == 1
    assert "does-not-exist.txt" in p.stderr and "Traceback" not in p.stderr


def test_registry_down_names_registry(tmp_path, tools_present):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ctx = make_context(tmp_path, f"FROM 127.0.0.1:{port}/busybox:latest\nRUN true\n")
    p = run_executor(["--context", str(ctx), "--destination", f"127.0.0.1:{port}/x:y",
                      "--insecure-registry", f"127.0.0.1:{port}"], check=False)
    assert p.returncode == 1
    assert f"127.0.0.1:{port}" in p.stderr and "Traceback" not in p.stderr


def test_no_push_tar_and_oci_layout(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"FROM {busybox}\nRUN echo hi > /hi\n")
    tar = tmp_path / "image.tar"
    layout = tmp_path / "layout"
    p = run_executor(["--context", str(ctx), "--no-push", "--tar-path", str(tar), "--oci-layout-path", str(layout),
                      "--destination", f"{registry.host}/core/tar:v1", "--insecure-registry", registry.host,
                      "--digest-file", str(tmp_path / "d")])
    assert p.returncode == 0
    # skopeo reads both outputs on its own
    info = json.loads(run(["skopeo", "inspect", f"oci:{layout}"]).stdout)
    assert info["Digest"] == (tmp_path / "d").read_text()
    info2 = json.loads(run(["skopeo", "inspect", f"docker-archive:{tar}"]).stdout)
    assert len(info2["Layers"]) == 2
    bundle = tmp_path / "b"
    run(["umoci", "unpack", "--image", f"{layout}:v1", str(bundle)])
    assert (bundle / "rootfs" / "hi").read_text() == "hi\n"


def test_chroot_mode_leaves_nothing_in_layers(registry, busybox, tmp_path):
    """The pod fallback (no CAP_SYS_ADMIN): plain chroot with /dev nodes and resolv.conf placed
    for the command and removed before the snapshot."""
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN test -c /dev/null && echo ok > /dev/null && cat /etc/resolv.conf >/dev/null && echo run > /ran
        """)
    dest, p = build(registry, ctx, "core/chroot", "--run-isolation", "chroot")
    assert "RUN isolation: chroot (plain chroot" in p.stderr
    names = last_layer_names(dest, tmp_path / "raw")
    assert names == ["ran"], names
