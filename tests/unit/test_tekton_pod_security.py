"""Pod Security levels of the catalog's steps (project issue 15, item 5): git-clone and the
Pipeline's digest check meet "restricted"; the build step needs root and meets "baseline"; the
README states each level (tekton/README.md "Pod Security")."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.tekton_schemas.checker import CATALOG_ROOT, Catalog, yaml_files
from tests.tekton_schemas.pod_security import level, restricted_violations, step_security_context

CATALOG = Catalog.from_paths(yaml_files(CATALOG_ROOT))
README = (CATALOG_ROOT / "README.md").read_text()


def verify_digest_task() -> dict:
    pl = CATALOG.pipelines["build-and-push"]
    return next(t for t in pl["spec"]["tasks"] if t["name"] == "verify-digest")["taskSpec"]


def env(task: dict, step: str) -> dict:
    s = next(s for s in task["spec"]["steps"] if s["name"] == step) if "spec" in task else \
        next(s for s in task["steps"] if s["name"] == step)
    return {e["name"]: e.get("value") for e in s.get("env", [])}


@pytest.mark.parametrize("what,task,step,expected", [
    ("git-clone", lambda: CATALOG.tasks["git-clone"], "clone", "restricted"),
    ("verify-digest", lambda: {"spec": verify_digest_task()}, "check", "restricted"),
    ("kaniko-build", lambda: CATALOG.tasks["kaniko-build"], "build-and-push", "baseline"),
])
def test_step_levels(what, task, step, expected):
    sc = step_security_context(task(), step)
    assert level(sc) == expected, (what, sc, restricted_violations(sc))


@pytest.mark.parametrize("task,step", [
    (lambda: CATALOG.tasks["git-clone"], "clone"),
    (lambda: {"spec": verify_digest_task()}, "check"),
])
def test_non_root_steps_have_exactly_the_issue_fields(task, step):
    sc = step_security_context(task(), step)
    assert sc["runAsNonRoot"] is True
    # no fixed uid or gid: OpenShift's restricted-v2 (MustRunAsRange) refuses any it did not pick
    assert "runAsUser" not in sc and "runAsGroup" not in sc, sc
    assert set(sc) == {"runAsNonRoot", "capabilities", "allowPrivilegeEscalation", "seccompProfile"}
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # a uid without a home directory gets Tekton's writable home, where creds-init copies credentials
    assert env(task(), step)["HOME"] == "/tekton/home"


def test_build_step_is_root_but_never_privileged():
    sc = step_security_context(CATALOG.tasks["kaniko-build"], "build-and-push")
    assert sc.get("runAsUser") == 0 and not sc.get("privileged")
    assert not (sc.get("capabilities") or {}).get("add")


def test_readme_states_each_level_and_why_root():
    rows = {}
    for line in README.splitlines():
        m = re.match(r"\|\s*(Task|Pipeline|StepAction) `([^`]+)`\s*\|[^|]*\|\s*(restricted|baseline|privileged)\s*\|", line)
        if m:
            rows[m.group(2)] = m.group(3)
    assert rows == {"git-clone": "restricted", "build-and-push": "restricted", "kaniko-build": "baseline"}
    assert "Why the build step runs as root, and what rootless builds change" in README
    for rootless in ("hostUsers: false", "uid 1000", "kaniko-build-rootless.yaml"):
        assert rootless in README, rootless
    # OpenShift's default SCC refuses fixed uids; the README names the SCCs each step needs
    for scc in ("restricted-v2", "nonroot-v2", "anyuid"):
        assert scc in README, scc
    assert "under `restricted-v2` **unchanged**" in README
    assert "set-security-context" in README          # Tekton's init containers and "restricted"


def test_checker_rejects_weaker_contexts():
    good = step_security_context(CATALOG.tasks["git-clone"], "clone")
    assert level(good) == "restricted"
    for key, value in [("allowPrivilegeEscalation", True), ("runAsNonRoot", False), ("runAsUser", 0),
                       ("seccompProfile", {"type": "Unconfined"}), ("capabilities", {"drop": ["NET_RAW"]})]:
        assert level(dict(good, **{key: value})) != "restricted", key
    assert level({"privileged": True}) == "privileged"
    assert level({"capabilities": {"add": ["SYS_ADMIN"]}}) == "privileged"
    assert level({"runAsUser": 0, "capabilities": {"add": ["CHOWN"]}}) == "baseline"


def test_hostusers_false_and_the_no_run_restricted_mode_are_documented():
    """Issue 16: a run sample for the kaniko-build Task (and one for the Pipeline) sets
    ``hostUsers: false`` in its podTemplate (a Task cannot set pod fields); the Task README names
    both and states that a Dockerfile without RUN builds as uid 1000 under "restricted"."""
    from tests.tekton_schemas.checker import load_yaml_docs
    task_dir = CATALOG_ROOT / "tasks/kaniko-build/0.1"
    for path, kind, ref in ((task_dir / "samples/taskrun-hostusers.yaml", "TaskRun", ("taskRef", "kaniko-build")),
                            (CATALOG_ROOT / "pipelines/build-and-push/0.1/samples/pipelinerun-hostusers.yaml",
                             "PipelineRun", ("pipelineRef", "build-and-push"))):
        doc, = load_yaml_docs(path)
        spec = doc["spec"]
        template = spec["podTemplate"] if kind == "TaskRun" else spec["taskRunTemplate"]["podTemplate"]
        assert doc["kind"] == kind and spec[ref[0]]["name"] == ref[1] and template["hostUsers"] is False, path
    readme = (task_dir / "README.md").read_text()
    assert "samples/taskrun-hostusers.yaml" in readme and "samples/pipelinerun-hostusers.yaml" in readme
    section = readme.split("## Rootless builds and `hostUsers: false`", 1)[1].split("\n## ", 1)[0]
    assert "**restricted**" in section and "**without `RUN`**" in section and "uid 1000" in section


def _security_contexts(node, where=()):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "securityContext" and isinstance(v, dict):
                yield where, v
            yield from _security_contexts(v, where + (k,))
    elif isinstance(node, list):
        for item in node:
            yield from _security_contexts(item, where)


def test_no_non_root_context_in_the_catalog_pins_a_uid():
    """Every runAsNonRoot context in tekton/ leaves the uid to the image or OpenShift, except the
    rootless build sample, whose uid 1000 is the executor image's build user (README: nonroot-v2)."""
    pinned, seen = [], 0
    for path in sorted(CATALOG_ROOT.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for where, sc in _security_contexts(doc):
                if sc.get("runAsNonRoot"):
                    seen += 1
                    if "runAsUser" in sc or "runAsGroup" in sc:
                        pinned.append((path.relative_to(CATALOG_ROOT).as_posix(), sc.get("runAsUser")))
    assert seen >= 3
    assert pinned == [("stepactions/kaniko-build/0.1/samples/kaniko-build-rootless.yaml", 1000)]


def test_readme_plain_kubernetes_uid_snippet_fits_the_pipeline():
    """The README's taskRunSpecs for root third-party images on plain Kubernetes names real
    pipeline tasks, a non-root uid, and only pods whose steps set no uid of their own."""
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", README, re.S) if "taskRunSpecs:" in b)
    [spec] = yaml.safe_load(block)["taskRunSpecs"]
    tasks = {t["name"]: t for t in CATALOG.pipelines["build-and-push"]["spec"]["tasks"]}
    assert spec["pipelineTaskName"] == "fetch-source" and "verify-digest" in tasks
    assert spec["podTemplate"]["securityContext"]["runAsUser"] == 65534
    assert "runAsUser" not in step_security_context(CATALOG.tasks["git-clone"], "clone")
    assert "runAsUser" not in step_security_context({"spec": verify_digest_task()}, "check")
