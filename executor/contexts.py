"""Build-context sources: where ``--context`` points, fetched into a local directory.

The engine always builds from a local directory (:class:`executor.context.Context`, with
``.dockerignore`` applied exactly as for a directory the user passed). This module turns every
``--context`` form Kaniko accepts (README "Kaniko Build Contexts"; ``pkg/buildcontext``) into
such a directory:

==================================================  ==============================================
``PATH`` or ``dir://PATH``                          the directory itself (nothing copied)
``tar://PATH`` (``.tar.gz``; gzip, zstd or plain)   unpacked from the file, streamed
``tar://stdin``                                     unpacked from standard input, streamed (how
                                                    GitLab and scripts feed Kaniko: ``docker run -i``)
``http://`` / ``https://HOST/ctx.tar.gz``           downloaded and unpacked in one stream
``git://HOST/REPO[.git][#REF[:SUBDIR]]``            cloned with the ``git`` binary over https
                                                    (``GIT_PULL_METHOD=http``: plain http), as Kaniko
``https://HOST/REPO.git[#REF[:SUBDIR]]``            cloned (http:// too); any URL ending in ``.git``
``git+SCHEME://...`` (``git+ssh``, ``git+file``,    cloned with that exact URL (the ``git`` protocol
``git+git``, ``git+https``)                         itself is ``git+git://``)
``s3://``, ``gs://``, ``az://``, Azure blob URLs    refused: :class:`UnsupportedContext`
==================================================  ==============================================

Archives are never held in memory: the tar stream goes through
:func:`executor.layers.extract.apply_layer` (sniffed gzip/zstd/plain, read in stream mode,
1 MiB chunks) into a fresh directory. Tar entries are untrusted: a name or link escaping the
directory fails the build (``LayerError`` "escapes the root"), parent symlinks are resolved
inside it, numeric owners and modes are kept as for a base layer. (Whiteout names, ``.wh.*``,
are applied as whiteouts, not copied: a context holding such files should be a directory.)

Git (``git`` on PATH; Kaniko uses go-git): the ref after ``#`` is a branch, tag, full ref
(``refs/heads/x``, ``refs/pull/1/head``) or commit SHA; ``#REF:SUBDIR`` builds from a
sub-directory (Docker's form); ``#REF#COMMIT`` fetches REF and checks out COMMIT (Kaniko's
form). ``--git branch=X`` names the ref when the URL has none; ``depth=N`` (default 1, a
shallow fetch of just that ref; 0 = full history), ``recurse-submodules=true``,
``insecure-skip-tls=true`` and ``single-branch`` (accepted: only the built ref is fetched
anyway). Credentials come from ``GIT_TOKEN`` or ``GIT_USERNAME``/``GIT_PASSWORD`` (Kaniko's
variables) or the URL's user info; they are passed to git as an HTTP header through git's
``GIT_CONFIG_*`` environment, never on a command line, and never written into the clone's
``.git/config`` (which stays in the context, as with Kaniko: ``.dockerignore`` it with
``.git``). The checked-out commit is logged and returned (:attr:`PreparedContext.commit`) for
provenance.

Errors are :class:`executor.errors.UserError` with one line naming the context (credentials
redacted): unreachable host, HTTP status, not an archive, unknown ref, missing sub-directory.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import subprocess

from .errors import UserError
from .redaction import redact_userinfo

log = logging.getLogger("executor.context")

#: What ``--context`` accepts, for error messages.
SUPPORTED = ("a local directory (PATH or dir://PATH), tar://PATH (a .tar.gz), tar://stdin, "
             "http(s)://HOST/PATH (a .tar.gz), git://HOST/REPO[#REF[:SUBDIR]], "
             "https://HOST/REPO.git[#REF[:SUBDIR]], git+ssh:// / git+file:// URLs")
_CLOUD = {"s3": "S3", "gs": "Google Cloud Storage", "gcs": "Google Cloud Storage", "az": "Azure Blob Storage",
          "azure": "Azure Blob Storage", "abfs": "Azure Blob Storage", "abfss": "Azure Blob Storage",
          "wasb": "Azure Blob Storage", "wasbs": "Azure Blob Storage"}
_AZURE_HOSTS = (".blob.core.windows.net", ".blob.core.chinacloudapi.cn", ".blob.core.cloudapi.de",
                ".blob.core.usgovcloudapi.net")
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
_HTTP_TIMEOUT = 60.0


class UnsupportedContext(UserError):
    """A ``--context`` form this executor does not fetch (cloud buckets, unknown schemes)."""


@dataclass
class GitOptions:
    """Kaniko's ``--git key=value[,key=value]`` (KanikoGitOptions), plus ``depth``.

    ``branch``: ref used when the URL has no ``#REF``. ``depth``: commits fetched (1 = shallow,
    0 = all). ``recurse_submodules``: also fetch submodules. ``insecure_skip_tls``: no TLS
    verification. ``single_branch``: accepted; the executor fetches only the ref it builds."""

    branch: str | None = None
    single_branch: bool = False
    recurse_submodules: bool = False
    insecure_skip_tls: bool = False
    depth: int = 1


def _bool(flag: str, key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes", ""):
        return True
    if v in ("false", "0", "no"):
        return False
    raise UserError(f"{flag} {key}={value}: expected true or false")


def parse_git_options(items: list[str]) -> GitOptions:
    """``--git branch=main,single-branch=true`` (each item may hold several comma-separated
    pairs; the flag may repeat). Keys: branch, single-branch, recurse-submodules,
    insecure-skip-tls, depth. Raises UserError for an unknown key or a bad value."""
    opts = GitOptions()
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            key, eq, value = part.partition("=")
            key = key.strip().lower().replace("_", "-")
            if not eq:
                raise UserError(f"--git {part!r}: expected KEY=VALUE (branch=, single-branch=, "
                                "recurse-submodules=, insecure-skip-tls=, depth=)")
            if key == "branch":
                opts.branch = value.strip() or None
            elif key == "single-branch":
                opts.single_branch = _bool("--git", key, value)
            elif key == "recurse-submodules":
                opts.recurse_submodules = _bool("--git", key, value)
            elif key == "insecure-skip-tls":
                opts.insecure_skip_tls = _bool("--git", key, value)
            elif key == "depth":
                try:
                    opts.depth = int(value)
                except ValueError:
                    opts.depth = -1
                if opts.depth < 0:
                    raise UserError(f"--git depth={value}: expected a number of commits (0 = full history)")
            else:
                raise UserError(f"--git {key}=...: unknown key; use branch, single-branch, recurse-submodules, "
                                "insecure-skip-tls or depth")
    return opts


@dataclass
class PreparedContext:
    """A build context ready on disk.

    ``root``: the directory to build from. ``kind``: dir | tar | http | git. ``source``: what
    was given, credentials redacted. ``commit``: the git commit checked out (git only).
    ``work``: the directory this module created (removed by :meth:`cleanup`), None for ``dir``.
    """

    root: Path
    kind: str
    source: str
    commit: str | None = None
    ref: str | None = None
    work: Path | None = field(default=None, repr=False)

    def cleanup(self, keep: bool = False) -> None:
        """Remove the fetched copy (``keep``: leave it, only release the housekeeping lock)."""
        if self.work is None:
            return
        from .workdir import release_work_dir
        if not keep:
            shutil.rmtree(self.work, ignore_errors=True)
        release_work_dir(self.work)
        self.work = None


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (for logs and errors)."""
    return redact_userinfo(url)


def classify(spec: str) -> tuple[str, str]:
    """``(kind, location)`` of a ``--context`` value: kind is dir | tar | http | git.

    For git the location is the URL handed to ``git`` (fragment kept). Raises
    :class:`UnsupportedContext` (one line listing what is supported) for ``s3://``, ``gs://``,
    ``az://``, Azure blob URLs and unknown schemes."""
    if spec.startswith("dir://"):
        return "dir", spec[len("dir://"):]
    if "://" not in spec:
        return "dir", spec
    scheme, _, rest = spec.partition("://")
    s = scheme.lower()
    if s == "tar":
        return "tar", rest
    if s == "git":
        method = os.environ.get("GIT_PULL_METHOD", "https").lower()
        if method not in ("http", "https"):
            raise UserError(f"GIT_PULL_METHOD={method}: use http or https")
        return "git", f"{method}://{rest}"
    if s.startswith("git+"):
        return "git", f"{s[4:]}://{rest}"
    if s in ("http", "https"):
        host = urllib.parse.urlsplit(spec).hostname or ""
        if host.endswith(_AZURE_HOSTS):
            raise _unsupported(spec, "Azure Blob Storage")
        path = urllib.parse.urlsplit(spec.split("#", 1)[0]).path
        if path.rstrip("/").endswith(".git"):
            return "git", spec
        return "http", spec
    raise _unsupported(spec, _CLOUD.get(s, f"{scheme}://"))


def _unsupported(spec: str, what: str) -> UnsupportedContext:
    return UnsupportedContext(
        f"--context {redact(spec)}: {what} contexts are not supported; supported: {SUPPORTED} "
        "(copy the archive locally and use tar://PATH, or pass a pre-signed https:// URL)")


def prepare_context(spec: str, *, sub_path: str | None = None, git: GitOptions | None = None,
                    work_parent: Path | None = None, keep: bool = False,
                    stdin: BinaryIO | None = None) -> PreparedContext:
    """Fetch ``--context`` ``spec`` into a local directory and return it.

    ``sub_path`` (``--context-sub-path``) is applied inside the context. ``work_parent``: where
    the fetched copy goes (``<work_parent>/executor-XXXXXXXX/context``; default the temp
    directory; a killed run's copy is removed by the next start, see :mod:`executor.workdir`).
    ``keep``: the copy is meant to survive (no housekeeping marker). ``stdin`` replaces
    ``sys.stdin.buffer`` for ``tar://stdin``. Raises UserError (one line) on any failure; the
    partial copy is removed then."""
    kind, where = classify(spec)
    if kind == "dir":
        root = Path(where).resolve()
        if not root.is_dir():
            raise UserError(f"--context {root}: not a directory")
        return PreparedContext(root=_sub(root, sub_path, "--context-sub-path"), kind="dir", source=str(root))
    from .workdir import new_work_dir
    try:
        work = new_work_dir(work_parent, keep=keep)
    except OSError as e:
        raise UserError(f"--context {redact(spec)}: cannot create a directory for it in "
                        f"{work_parent or 'the temp directory'}: {e.strerror or e}") from None
    root = work / "context"
    root.mkdir()
    ctx = PreparedContext(root=root, kind=kind, source=redact(spec), work=work)
    try:
        if kind == "tar":
            _unpack_tar(where, root, stdin)
        elif kind == "http":
            _unpack_http(where, root)
        else:
            ctx.commit, ctx.ref, subdir = _clone(where, root, git or GitOptions())
            ctx.root = _sub(root, subdir, f"--context {ctx.source}: sub-directory")
        ctx.root = _sub(ctx.root, sub_path, "--context-sub-path")
    except BaseException:
        ctx.cleanup()
        raise
    return ctx


def _sub(root: Path, sub: str | None, what: str) -> Path:
    """``root/sub``, which must be a directory inside ``root`` (symlinks resolved)."""
    if not sub or sub.strip("/") in ("", "."):
        return root
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(real_root, sub.lstrip("/")))
    if os.path.commonpath([real_root, target]) != real_root:
        raise UserError(f"{what} {sub!r}: leads outside the context")
    if not os.path.isdir(target):
        raise UserError(f"{what} {sub!r}: no such directory in the context")
    return Path(target)


# -- tar archives ------------------------------------------------------------------------------

def _apply(stream: BinaryIO, root: Path, what: str) -> None:
    from .errors import LayerError
    from .layers.extract import apply_layer
    try:
        stats = apply_layer(stream, root)
    except LayerError as e:
        raise UserError(f"--context {what}: not a usable tar archive: {e}") from None
    for s in stats.skipped:
        log.warning("--context %s: skipped %s", what, s)
    log.info("unpacked build context %s: %d entries", what, stats.entries)


def _unpack_tar(where: str, root: Path, stdin: BinaryIO | None) -> None:
    if where == "stdin":
        stream = stdin if stdin is not None else sys.stdin.buffer
        if stdin is None and sys.stdin.isatty():
            raise UserError("--context tar://stdin: standard input is a terminal; pipe a .tar.gz into it "
                            "(e.g. tar -czf - . | executor --context tar://stdin ...; docker run -i)")
        log.info("reading the build context from standard input")
        _apply(stream, root, "tar://stdin")
        return
    path = Path(where)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"--context tar://{where}: cannot open it: {e.strerror or e}") from None
    with f:
        _apply(f, root, f"tar://{where}")


def _split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user info, user, password)``."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or "")


def _unpack_http(url: str, root: Path) -> None:
    """Kaniko's https.go context (a tar.gz), streamed from the response into the directory."""
    clean, user, password = _split_userinfo(url.split("#", 1)[0])
    req = urllib.request.Request(clean, headers={"User-Agent": _user_agent()})
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    shown = redact(url)
    log.info("downloading the build context from %s", shown)
    try:
        resp = urllib.request.urlopen(req, timeout=_HTTP_TIMEOUT)
    except urllib.error.HTTPError as e:
        raise UserError(f"--context {shown}: the server answered {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"--context {shown}: cannot download it: {getattr(reason, 'strerror', None) or reason}") from None
    with resp:
        try:
            _apply(resp, root, shown)
        except OSError as e:  # connection reset or timeout mid-stream
            raise UserError(f"--context {shown}: download failed: {e.strerror or e}") from None


def _user_agent() -> str:
    from . import __version__
    return f"executor/{__version__}"


# -- git -----------------------------------------------------------------------------------------

def parse_git_url(url: str) -> tuple[str, str | None, str | None, str | None]:
    """``URL[#REF[:SUBDIR]]`` or Kaniko's ``URL#REF#COMMIT`` to ``(url, ref, subdir, commit)``."""
    base, _, frag = url.partition("#")
    if not frag:
        return base, None, None, None
    ref, _, commit = frag.partition("#")
    subdir = None
    if not commit and ":" in ref:
        ref, _, subdir = ref.partition(":")
    return base, ref or None, subdir or None, commit or None


def _git_env(url: str, opts: GitOptions) -> tuple[str, dict[str, str]]:
    """The credential-free URL and git's environment: no prompts, credentials as an HTTP header
    through ``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n`` (never in argv or ``.git/config``)."""
    clean, user, password = _split_userinfo(url)
    token = os.environ.get("GIT_TOKEN")
    if token:
        user, password = token, ""  # Kaniko: the token is the basic-auth user name
    elif os.environ.get("GIT_USERNAME") or os.environ.get("GIT_PASSWORD"):
        user, password = os.environ.get("GIT_USERNAME", ""), os.environ.get("GIT_PASSWORD", "")
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", LC_ALL="C")
    config: list[tuple[str, str]] = [("advice.detachedHead", "false"), ("init.defaultBranch", "main")]
    if user is not None and clean.startswith(("http://", "https://")):
        basic = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
        config.append(("http.extraHeader", f"Authorization: Basic {basic}"))
    if opts.insecure_skip_tls:
        config.append(("http.sslVerify", "false"))
    try:
        n = int(env.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        n = 0
    for key, value in config:
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
        n += 1
    env["GIT_CONFIG_COUNT"] = str(n)
    return clean, env


def _git(args: list[str], cwd: Path, env: dict[str, str], what: str, check: bool = True) -> subprocess.CompletedProcess:
    import subprocess  # (git contexts only: not imported at start-up)
    try:
        p = subprocess.run(["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, errors="replace")
    except FileNotFoundError:
        raise UserError(f"--context {what}: git contexts need the git binary on PATH") from None
    if check and p.returncode != 0:
        raise UserError(f"--context {what}: git {args[0]} failed: {_last_line(p.stderr)}")
    return p


def _last_line(text: str) -> str:
    lines = [redact(line.strip()) for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (fatal or lines or ["(no message)"])[-1]


def _clone(spec: str, root: Path, opts: GitOptions) -> tuple[str, str, str | None]:
    """Fetch ``spec`` into ``root``; returns (commit, ref, subdir)."""
    url, ref, subdir, commit = parse_git_url(spec)
    ref = ref or opts.branch
    clean, env = _git_env(url, opts)
    shown = redact(spec)
    depth = [f"--depth={opts.depth}"] if opts.depth else []
    log.info("fetching git context %s (%s%s)", shown, ref or "HEAD",
             f", depth {opts.depth}" if opts.depth else ", full history")
    _git(["init", "-q", "."], root, env, shown)
    _git(["remote", "add", "origin", clean], root, env, shown)
    fetch = ["fetch", "-q", "--no-tags", "--no-recurse-submodules", *depth, "origin"]
    want = ref or "HEAD"
    p = _git([*fetch, want], root, env, shown, check=False)
    if p.returncode != 0:
        if not (ref and _SHA.match(ref)):
            raise UserError(f"--context {shown}: cannot fetch {want}: {_last_line(p.stderr)}")
        # an abbreviated SHA, or a server refusing to serve a commit by id: fetch everything
        _git(["fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"], root, env, shown)
        target = ref
    else:
        target = "FETCH_HEAD"
    if commit:
        have = _git(["cat-file", "-e", f"{commit}^{{commit}}"], root, env, shown, check=False).returncode == 0
        if not have and _git([*fetch, commit], root, env, shown, check=False).returncode != 0:
            _git(["fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"], root, env, shown)
        target = commit
    p = _git(["checkout", "-q", "--detach", target], root, env, shown, check=False)
    if p.returncode != 0:
        raise UserError(f"--context {shown}: cannot check out {commit or ref}: {_last_line(p.stderr)}")
    if opts.recurse_submodules:
        sub = ["submodule", "update", "-q", "--init", "--recursive"]
        if opts.depth and _git([*sub, f"--depth={opts.depth}"], root, env, shown, check=False).returncode == 0:
            pass
        else:
            _git(sub, root, env, shown)
    head = _git(["rev-parse", "HEAD"], root, env, shown).stdout.strip()
    log.info("git context %s: commit %s", shown, head)
    return head, commit or ref or "HEAD", subdir
