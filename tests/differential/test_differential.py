"""Differential corpus: every Dockerfile in ``corpus/`` is built by `executor` and by
`buildah bud --isolation chroot` (vfs storage) on the same busybox base from the session's local
registry; the unpacked root filesystems (type, mode, uid, gid, content hash, link target, hardlink
grouping) and the image configs (Env, Cmd, Entrypoint, WorkingDir, User, Labels, ExposedPorts,
Volumes, StopSignal, Shell, Healthcheck, OnBuild, author, os, architecture) must agree, except for
the differences listed in ``harness.GLOBAL_ALLOWED_*`` and each case's ``case.json``, each with its
reason. Where buildah departs from Docker's documentation the case's ``expected.json`` asserts the
documented result on the executor's image instead (README.md lists them).
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.differential.harness import (CORPUS, Buildah, Case, all_cases, check_expected, diff_trees, fetch,
                                        globally_allowed, normalise_config, prepare_context, scan_tree,
                                        start_executor)
from tests.support.tools import have

pytestmark = pytest.mark.integration

CASES = all_cases()
BUILD_TIMEOUT = 180
#: buildah (runc) output of its memfd self-copy failing transiently
RUNC_MEMFD_FLAKE = "sealing memfd copy: Device or resource busy"


def _param(case: Case):
    marks = [pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else []
    return pytest.param(case, id=case.name, marks=marks)


@pytest.fixture(scope="session")
def buildah(registry, busybox, tmp_path_factory) -> Buildah:
    """One buildah vfs storage for the session, with the busybox base pulled once (offline)."""
    if have("buildah"):
        pytest.skip("buildah is not installed (scripts/install-deps.sh installs it): no reference builder")
    b = Buildah(tmp_path_factory.mktemp("buildah"), registry.host)
    from tests.support.tools import run
    run(b.cmd("pull", "--signature-policy", str(b.policy), "--tls-verify=false", "-q", busybox), env=b.env())
    return b


def _log(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-6000:]


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_case(case: Case, buildah: Buildah, registry, busybox, tmp_path):
    ctx = prepare_context(case, tmp_path / "ctx")
    secrets = {}
    for sid, content in case.secrets.items():
        p = tmp_path / f"secret-{sid}"
        p.write_text(content)
        secrets[sid] = p
    build_args = {"BASE": busybox, **case.build_args}
    tag = uuid.uuid4().hex[:10]
    slug = re.sub(r"[^a-z0-9-]", "-", case.name.lower())
    ex_ref = f"{registry.host}/diff/{slug}-executor:{tag}"
    bu_ref = f"{registry.host}/diff/{slug}-buildah:{tag}"
    # Both builds at once: they share nothing but the registry.
    pb = None if case.no_buildah else buildah.bud(ctx, bu_ref, case.format, build_args, secrets)
    pe = start_executor(ctx, ex_ref, registry.host, build_args, secrets)
    try:
        rc_e = pe.wait(BUILD_TIMEOUT)
        rc_b = pb.wait(BUILD_TIMEOUT) if pb else None
    finally:  # on a timeout, stop both builds (only the processes this test started)
        for proc in (pe, pb):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    if case.expect_failure:
        assert rc_e != 0, f"executor accepted an invalid Dockerfile\n{_log(tmp_path / 'executor.log')}"
        assert "Traceback" not in _log(tmp_path / "executor.log")
        if case.buildah_accepts:  # buildah departs from Docker's documentation here (reason in case.json)
            assert rc_b == 0, f"buildah now rejects it too: drop buildah_accepts\n{_log(tmp_path / 'buildah.log')}"
        else:
            assert rc_b != 0, f"buildah accepted an invalid Dockerfile\n{_log(tmp_path / 'buildah.log')}"
        return
    assert rc_e == 0, f"executor failed ({rc_e}):\n{_log(tmp_path / 'executor.log')}"
    if case.no_buildah:
        ex_root, ex_cfg = fetch(ex_ref, tmp_path / "ex")
        problems = check_expected(case.expected or {}, ex_root, ex_cfg)
        assert not problems, f"{case.name}: executor vs Docker's documentation\n" + "\n".join(problems)
        return
    if rc_b != 0 and RUNC_MEMFD_FLAKE in _log(tmp_path / "buildah.log"):
        # runc copies itself into a sealed memfd before each RUN; the seal fails with EBUSY when
        # another process has the binary open at that moment (the executor builds beside it
        # here): runc's transient, not the case's. One more buildah build, alone.
        rc_b = buildah.bud(ctx, bu_ref, case.format, build_args, secrets).wait(BUILD_TIMEOUT)
    assert rc_b == 0, f"buildah failed ({rc_b}):\n{_log(tmp_path / 'buildah.log')}"
    buildah.push(bu_ref)
    with ThreadPoolExecutor(2) as pool:
        fe = pool.submit(fetch, ex_ref, tmp_path / "ex")
        fb = pool.submit(fetch, bu_ref, tmp_path / "bu")
        (ex_root, ex_cfg), (bu_root, bu_cfg) = fe.result(), fb.result()

    problems: list[str] = []
    # --- root filesystems
    allowed = {a["path"].lstrip("/"): a["reason"] for a in case.allowed}
    for path, a, b in diff_trees(scan_tree(ex_root), scan_tree(bu_root)):
        if globally_allowed(path, a, b, list((bu_cfg.get("config") or {}).get("Volumes") or {})) or path in allowed:
            continue
        problems.append(f"/{path}:\n    executor: {a}\n    buildah:  {b}")
    # --- configs
    ne, nb = normalise_config(ex_cfg), normalise_config(bu_cfg)
    for key in ne:
        if key in case.config_allowed:
            continue
        if ne[key] != nb[key]:
            problems.append(f"config {key}:\n    executor: {ne[key]!r}\n    buildah:  {nb[key]!r}")
    # --- direct expectations (where buildah departs from Docker's documentation)
    if case.expected:
        problems += check_expected(case.expected, ex_root, ex_cfg)
    assert not problems, f"{case.name}: {len(problems)} difference(s)\n" + "\n".join(problems)
    shutil.rmtree(tmp_path / "ex", ignore_errors=True)
    shutil.rmtree(tmp_path / "bu", ignore_errors=True)


def test_corpus_size_and_readme():
    """At least 40 cases; README.md names every case and every per-case allowed difference."""
    assert len(CASES) >= 40, [c.name for c in CASES]
    readme = (CORPUS.parent / "README.md").read_text()
    for case in CASES:
        assert f"`{case.name}`" in readme, f"README.md does not list {case.name}"
        for a in case.allowed:
            assert a["path"] in readme, f"README.md does not list the allowed difference {a['path']} of {case.name}"
        for k in case.config_allowed:
            assert k in readme, f"README.md does not list the allowed config difference {k} of {case.name}"
        assert (case.dir / "Dockerfile").exists()
        exp = case.expected or {}
        for k in case.config_allowed:
            assert k in (exp.get("config") or {}), \
                f"{case.name}: config field {k} is not compared, so expected.json must assert it"
        for a in case.allowed:
            assert a["path"] in (exp.get("paths") or {}) or a["path"] in (exp.get("absent") or []), \
                f"{case.name}: {a['path']} is not compared with buildah, so expected.json must assert it"
        if case.no_buildah:
            assert exp.get("paths") and exp.get("why"), f"{case.name}: without buildah, expected.json is the oracle"


def test_harness_detects_differences(tmp_path):
    """The comparison can fail: a changed mode, owner, content, link target or hardlink is reported."""
    a, b = tmp_path / "a", tmp_path / "b"
    for r in (a, b):
        (r / "d").mkdir(parents=True)
        (r / "d" / "f").write_text("x")
        (r / "l").symlink_to("d/f")
    (b / "d" / "f").chmod(0o600)
    (b / "l").unlink()
    (b / "l").symlink_to("d/g")
    (b / "h").write_text("y")
    (a / "h").write_text("y")
    import os
    os.link(b / "h", b / "h2")
    (a / "h2").write_text("y")
    diffs = {p for p, _, _ in diff_trees(scan_tree(a), scan_tree(b))}
    assert diffs == {"d/f", "l", "h", "h2"}
    assert normalise_config({"config": {"Entrypoint": [], "Labels": {"io.buildah.version": "1"}}}) == \
        normalise_config({"config": {}})
    assert json.dumps(normalise_config({"config": {"Cmd": ["a"]}})) != json.dumps(normalise_config({"config": {}}))
