"""The git commit of a local context directory (a checkout made by git-clone, actions/checkout or
a developer), read from .git's files as `git rev-parse HEAD` would print it, and its place in
the provenance (resolvedDependencies "source", URL without credentials)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from executor.engine.step import BuildRecord
from executor.options import BuildOptions
from executor.provenance import provenance_statement
from executor.provenance.gitcheckout import local_checkout, source_uri

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    (r / "app").mkdir(parents=True)
    git(r, "init", "-q", "-b", "main")
    (r / "app" / "Dockerfile").write_text("FROM scratch\n")
    git(r, "add", ".")
    git(r, "commit", "-qm", "one")
    return r


def test_branch_head_from_a_subdirectory_loose_then_packed(repo: Path):
    head = git(repo, "rev-parse", "HEAD")
    co = local_checkout(repo / "app")
    assert co is not None and (co.commit, co.url, co.root) == (head, None, repo)
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git/refs/heads/main").exists()
    assert local_checkout(repo / "app").commit == head


def test_detached_head_and_remote_url(repo: Path):
    (repo / "b").write_text("b")
    git(repo, "add", "b")
    git(repo, "commit", "-qm", "two")
    first = git(repo, "rev-parse", "HEAD~1")
    git(repo, "checkout", "-q", "--detach", first)  # as git-clone leaves it (checkout FETCH_HEAD)
    git(repo, "remote", "add", "upstream", "https://other.example/x.git")
    git(repo, "remote", "add", "origin", "https://ci-bot:tok3n@git.example/team/app.git")
    co = local_checkout(repo)
    assert co.commit == first and co.url == "https://ci-bot:tok3n@git.example/team/app.git"


def test_worktree_and_unborn_branch_and_no_checkout(repo: Path, tmp_path: Path):
    git(repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "wt"))
    (tmp_path / "wt" / "c").write_text("c")
    git(tmp_path / "wt", "add", "c")
    git(tmp_path / "wt", "commit", "-qm", "side")
    assert (tmp_path / "wt" / ".git").is_file()  # gitdir: .../worktrees/wt, refs in the common dir
    assert local_checkout(tmp_path / "wt").commit == git(tmp_path / "wt", "rev-parse", "HEAD") != \
        git(repo, "rev-parse", "HEAD")
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    assert local_checkout(empty) is None  # no commit yet
    plain = tmp_path / "plain"
    plain.mkdir()
    assert local_checkout(plain) is None


@pytest.mark.parametrize("url,uri", [
    ("https://git.example/a.git", "git+https://git.example/a.git"),
    ("git@git.example:team/a.git", "git+ssh://git@git.example/team/a.git"),
    ("ssh://git@git.example/a.git", "git+ssh://git@git.example/a.git"),
    ("git://git.example/a.git", "git://git.example/a.git"),
    ("/srv/git/a.git", "git+file:///srv/git/a.git"),
])
def test_source_uri(url, uri):
    assert source_uri(url) == uri


def test_statement_names_the_checkout_without_credentials(repo: Path):
    git(repo, "remote", "add", "origin", "https://ci-bot:tok3n@git.example/team/app.git")
    opts = BuildOptions(context=repo / "app", dockerfile=repo / "app" / "Dockerfile")
    co = local_checkout(opts.context)
    st = provenance_statement(subjects=[("r.example/app", "sha256:" + "ab" * 32)], opts=opts,
                              record=BuildRecord(started=1.0, finished=2.0), bases={}, platforms=["linux/amd64"],
                              context_digest=None, checkout=co)
    deps = {d["name"]: d for d in st["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["source"] == {"name": "source", "uri": "git+https://git.example/team/app.git",
                              "digest": {"gitCommit": git(repo, "rev-parse", "HEAD")}}
    assert "tok3n" not in json.dumps(st) and "ci-bot" not in json.dumps(st)
