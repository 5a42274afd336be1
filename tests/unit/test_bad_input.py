"""Bad input through the real CLI (``python -m executor``), no registry needed: each case ends
with one clear ``error:`` line (naming the Dockerfile line when there is one), exit status 1,
no traceback, and output checks happen before anything is built.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

NESTED = "x"
for _ in range(500):
    NESTED = "${A:-" + NESTED + "}"


def _executor(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "executor", *args], capture_output=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _setup(tmp: Path, dockerfile: bytes, extra_files: dict[str, bytes] | None = None,
           links: dict[str, str] | None = None) -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_bytes(dockerfile)
    for name, data in (extra_files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_bytes(data)
    for name, target in (links or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, ctx / name)
    (tmp / "a-file").write_text("x")
    (tmp / "a-dir").mkdir()
    return ctx


SCRATCH = b"FROM scratch\nLABEL a=b\n"

# case: (Dockerfile bytes, extra CLI args ({tmp} is replaced), substrings of the error line,
#        {files}, {links})
CASES = {
    "binary-garbage": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, [], ["Dockerfile:1: Dockerfile is not UTF-8 text"], {}, {}),
    "latin1-byte": (b"FROM scratch\nLABEL caf\xe9=1\n", [], ["Dockerfile:2: Dockerfile is not UTF-8 text"], {}, {}),
    "nested-substitution-500": (f"FROM scratch\nLABEL a={NESTED}\n".encode(), [],
                                ["Dockerfile:2:", "nested too deeply"], {}, {}),
    "nested-substitution-in-env": (f"FROM scratch\nENV B={NESTED}\n".encode(), [],
                                   ["Dockerfile:2:", "nested too deeply"], {}, {}),
    "nul-in-run": (b"FROM scratch\nRUN echo a\0b\n", [], ["Dockerfile:2: RUN contains a NUL byte"], {}, {}),
    "nul-in-label": (b"FROM scratch\nLABEL a=b\nLABEL c=\0\n", [], ["Dockerfile:3: LABEL contains a NUL byte"], {}, {}),
    "dockerfile-is-dir": (SCRATCH, ["--dockerfile", "{tmp}/a-dir"], ["--dockerfile", "is a directory"], {}, {}),
    "kaniko-dir-is-file": (SCRATCH, ["--kaniko-dir", "{tmp}/a-file"], ["--kaniko-dir", "not a directory"], {}, {}),
    "workdir-dangling-abs-symlink": (b"FROM scratch\nCOPY rootfs/ /\nWORKDIR /etc/x\n", [],
                                     ["Dockerfile:3: WORKDIR: No such file or directory: /a/b/c"],
                                     {"rootfs/keep": b""}, {"rootfs/etc": "/a/b/c"}),
    "build-arg-empty-name": (SCRATCH, ["--build-arg", "=x"], ["--build-arg", "invalid name"], {}, {}),
    "build-arg-name-with-space": (SCRATCH, ["--build-arg", "A B=1"], ["--build-arg", "invalid name"], {}, {}),
    "push-retry-negative": (SCRATCH, ["--push-retry", "-5"], ["--push-retry=-5"], {}, {}),
    "download-retry-negative": (SCRATCH, ["--image-download-retry=-1"], ["--image-download-retry=-1"], {}, {}),
    # output paths: checked before the build starts
    "digest-file-is-dir": (SCRATCH, ["--digest-file", "{tmp}/a-dir"], ["--digest-file", "is a directory"], {}, {}),
    "name-digest-file-is-dir": (SCRATCH, ["--image-name-with-digest-file", "{tmp}/a-dir"],
                                ["--image-name-with-digest-file", "is a directory"], {}, {}),
    "name-tag-digest-file-is-dir": (SCRATCH, ["--image-name-tag-with-digest-file", "{tmp}/a-dir"],
                                    ["--image-name-tag-with-digest-file", "is a directory"], {}, {}),
    "tar-path-is-dir": (SCRATCH, ["--tar-path", "{tmp}/a-dir"], ["--tar-path", "is a directory"], {}, {}),
    "digest-file-parent-is-file": (SCRATCH, ["--digest-file", "{tmp}/a-file/sub/digest"],
                                   ["--digest-file", "a-file is not a directory"], {}, {}),
    "oci-layout-is-file": (SCRATCH, ["--oci-layout-path", "{tmp}/a-file"], ["--oci-layout-path", "not a directory"],
                           {}, {}),
    "oci-layout-parent-is-file": (SCRATCH, ["--oci-layout-path", "{tmp}/a-file/layout"],
                                  ["--oci-layout-path", "a-file is not a directory"], {}, {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_cleanly(tmp_path, case):
    dockerfile, extra, needles, files, links = CASES[case]
    ctx = _setup(tmp_path, dockerfile, files, links)
    args = ["--context", str(ctx), "--no-push", "--log-format", "text"]
    args += [a.replace("{tmp}", str(tmp_path)) for a in extra]
    if "--kaniko-dir" not in extra:
        args += ["--kaniko-dir", str(tmp_path / "work")]
    p = _executor(args)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err[-3000:]
    for n in needles:
        assert n in last, (n, last)
    if any(a.startswith("--") and ("file" in a or "path" in a) for a in extra):
        assert "stage 0" not in err, "output paths must be checked before the build starts"
        assert not (tmp_path / "a-dir").exists() or not any((tmp_path / "a-dir").iterdir())


def test_huge_run_line_is_not_echoed(tmp_path):
    """A 2 MB RUN line: errors and logs show at most ~200 characters of it."""
    big = "x" * 2_000_000
    ctx = _setup(tmp_path, f"FROM scratch\nRUN echo {big}\n".encode())
    p = _executor(["--context", str(ctx), "--no-push", "--log-format", "text", "--kaniko-dir", str(tmp_path / "w")])
    err = p.stderr.decode(errors="replace")
    out = p.stdout.decode(errors="replace")
    assert p.returncode != 0 and "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: Dockerfile:2: RUN echo xxx"), last[:300]
    assert len(last) < 400, len(last)
    assert len(err) + len(out) < 20_000, (len(err), len(out))


def test_unreachable_destination_fails_before_the_build(tmp_path):
    ctx = _setup(tmp_path, b"FROM scratch\nRUN sleep 1000\n")
    reg = f"127.0.0.1:{_closed_port()}"
    t0 = time.monotonic()
    p = _executor(["--context", str(ctx), "--destination", f"{reg}/x/y:1", "--insecure-registry", reg,
                   "--log-format", "text", "--kaniko-dir", str(tmp_path / "w"), "--digest-file",
                   str(tmp_path / "digest")], timeout=60)
    took = time.monotonic() - t0
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert f"--destination {reg}/x/y:1" in last and "cannot reach registry" in last, last
    assert "stage 0" not in err  # the build never started
    assert took < 30, took
    assert not (tmp_path / "digest").exists()


@pytest.mark.parametrize("flags, env, needles", [
    (["--registry-certificate", "{reg}={tmp}/missing-ca.pem"], {}, ["--registry-certificate", "missing-ca.pem"]),
    (["--registry-certificate", "{reg}={tmp}/a-dir"], {}, ["--registry-certificate", "a-dir"]),
    (["--registry-client-cert", "{reg}={tmp}/a-file,{tmp}/a-file"], {}, ["--registry-client-cert", "a-file"]),
    ([], {"SSL_CERT_FILE": "{tmp}/missing-bundle.pem"}, ["SSL_CERT_FILE", "missing-bundle.pem"]),
])
def test_unloadable_tls_files_fail_cleanly(tmp_path, flags, env, needles):
    """A CA bundle or client certificate that cannot be loaded (missing, a directory, not PEM)
    is one error line naming the file and where it was given, not a traceback."""
    ctx = _setup(tmp_path, SCRATCH)
    reg = f"127.0.0.1:{_closed_port()}"
    sub = {"{reg}": reg, "{tmp}": str(tmp_path)}

    def fill(a: str) -> str:
        for k, v in sub.items():
            a = a.replace(k, v)
        return a
    p = subprocess.run([sys.executable, "-m", "executor", "--context", str(ctx), "--destination", f"{reg}/x/y:1",
                        "--log-format", "text", "--kaniko-dir", str(tmp_path / "w"), *map(fill, flags)],
                       capture_output=True, timeout=60, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO), **{k: fill(v) for k, v in env.items()}})
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1 and "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "stage 0" not in err, err[-3000:]
    for n in needles:
        assert n in last, (n, last)


@pytest.mark.parametrize("flags", [[], ["--registry-mirror", "{long}.example:5000", "--no-push"]])
def test_host_name_with_a_label_over_63_characters_fails_cleanly(tmp_path, flags):
    """A registry (or mirror) host name that cannot be looked up at all (a label longer than DNS
    allows: the IDNA codec refuses it before any lookup) is one error line, not a traceback."""
    long = "a" * 70
    ctx = _setup(tmp_path, b"FROM busybox:latest\nLABEL a=b\n" if flags else SCRATCH)
    dest = [] if flags else ["--destination", f"{long}.example:5000/x/y:1"]
    p = _executor(["--context", str(ctx), *dest, *(f.replace("{long}", long) for f in flags), "--log-format",
                   "text", "--kaniko-dir", str(tmp_path / "w"), "--skip-default-registry-fallback"], timeout=60)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1 and "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"{long}.example:5000" in last, last


def test_skip_push_permission_check_skips_the_preflight(tmp_path):
    ctx = _setup(tmp_path, SCRATCH)
    reg = f"127.0.0.1:{_closed_port()}"
    p = _executor(["--context", str(ctx), "--destination", f"{reg}/x/y:1", "--insecure-registry", reg,
                   "--log-format", "text", "--kaniko-dir", str(tmp_path / "w"), "--skip-push-permission-check"],
                  timeout=60)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 1 and "Traceback" not in err, err
    assert "stage 0" in err  # built first, failed at the push
    assert "checked before building" not in err


def test_valid_output_paths_are_accepted(tmp_path):
    """The checks do not reject what works: new nested files, an existing file, an empty layout dir."""
    ctx = _setup(tmp_path, SCRATCH)
    (tmp_path / "layout").mkdir()
    p = _executor(["--context", str(ctx), "--no-push", "--log-format", "text", "--kaniko-dir", str(tmp_path / "w"),
                   "--digest-file", str(tmp_path / "new" / "deeper" / "digest"),
                   "--image-name-with-digest-file", str(tmp_path / "a-file"),
                   "--tar-path", str(tmp_path / "out" / "image.tar"),
                   "--oci-layout-path", str(tmp_path / "layout")])
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    assert (tmp_path / "new" / "deeper" / "digest").read_text().startswith("sha256:")
    assert (tmp_path / "out" / "image.tar").is_file()
    assert (tmp_path / "layout" / "index.json").is_file()


def test_secret_like_build_args_warn_once_and_point_to_secret(tmp_path):
    ctx = _setup(tmp_path, b"ARG NPM_TOKEN\nFROM scratch\nARG NPM_TOKEN\nARG VERSION=1\nLABEL v=$VERSION\n")
    p = _executor(["--context", str(ctx), "--no-push", "--build-arg", "NPM_TOKEN=abc", "--log-format", "text",
                   "--kaniko-dir", str(tmp_path / "w")])
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, err
    warnings = [line for line in err.splitlines() if "look like secrets" in line]
    assert len(warnings) == 1 and "NPM_TOKEN" in warnings[0] and "--secret" in warnings[0], err
    assert "VERSION" not in warnings[0]
