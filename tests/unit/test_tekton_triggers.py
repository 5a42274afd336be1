"""The push EventListener (tekton/triggers/build-and-push/0.1), issue 15 item 4: a push that deletes
a branch starts nothing, and the executor image reaches the Task from the TriggerTemplate.

The CEL filters are evaluated with cel-python (a CEL implementation independent of the cel-go the
Triggers cel ClusterInterceptor runs) on push payloads shaped like GitHub's and GitLab's."""

from __future__ import annotations

import pytest
import yaml

from tests.tekton_schemas.checker import CATALOG_ROOT

TRIGGERS = CATALOG_ROOT / "triggers/build-and-push/0.1"
LISTENER = yaml.safe_load((TRIGGERS / "build-and-push-listener.yaml").read_text())
TEMPLATE = yaml.safe_load((TRIGGERS / "build-and-push-run.yaml").read_text())
PIPELINE = yaml.safe_load((CATALOG_ROOT / "pipelines/build-and-push/0.1/build-and-push.yaml").read_text())
TASK = yaml.safe_load((CATALOG_ROOT / "tasks/kaniko-build/0.1/kaniko-build.yaml").read_text())

SHA = "4f1a3b2c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"
ZERO = "0" * 40


def trigger(name: str) -> dict:
    return next(t for t in LISTENER["spec"]["triggers"] if t["name"] == name)


def cel_filter(name: str) -> str:
    cels = [i for i in trigger(name)["interceptors"] if i["ref"]["name"] == "cel"]
    assert len(cels) == 1, f"trigger {name}: one cel interceptor expected"
    assert cels[0]["ref"].get("kind") == "ClusterInterceptor"
    params = {p["name"]: p["value"] for p in cels[0]["params"]}
    return params["filter"]


def github(**over) -> dict:
    body = {"ref": "refs/heads/main", "before": "a" * 40, "after": SHA, "created": False, "deleted": False,
            "forced": False, "repository": {"clone_url": "https://github.com/o/app.git"},
            "head_commit": {"id": SHA}}
    body.update(over)
    return body


def gitlab(**over) -> dict:
    body = {"object_kind": "push", "event_name": "push", "ref": "refs/heads/main", "before": "a" * 40,
            "after": SHA, "checkout_sha": SHA, "repository": {"git_http_url": "https://gitlab.com/o/app.git"}}
    body.update(over)
    return body


GITHUB_CASES = [
    ("push", github(), True),
    ("new branch", github(before=ZERO, created=True), True),
    ("force push", github(forced=True), True),
    ("branch deleted", github(after=ZERO, deleted=True, head_commit=None), False),
    ("deleted flag only", github(deleted=True), False),
    ("all-zero after only", github(after=ZERO), False),
]
GITLAB_CASES = [
    ("push", gitlab(), True),
    ("new branch", gitlab(before=ZERO), True),
    ("branch deleted", gitlab(after=ZERO, checkout_sha=None), False),
    ("checkout_sha null only", gitlab(checkout_sha=None), False),
    ("sha256 repository deletion", gitlab(after="0" * 64, checkout_sha=None), False),
]


def test_both_triggers_verify_the_webhook_before_filtering():
    """The provider interceptor (signature/token, event type) runs first, then the cel filter."""
    for name, provider in (("github-push", "github"), ("gitlab-push", "gitlab")):
        refs = [i["ref"]["name"] for i in trigger(name)["interceptors"]]
        assert refs == [provider, "cel"], refs


def test_filters_reject_deletions_by_their_markers():
    """Offline structural check (runs without cel-python): the fields the issue names are tested."""
    gh, gl = cel_filter("github-push"), cel_filter("gitlab-push")
    assert "body.deleted" in gh and "body.after" in gh and "^0+$" in gh
    assert "body.after" in gl and "body.checkout_sha" in gl and "^0+$" in gl
    # and the bindings build exactly the revision the filter looked at
    bindings = {d["metadata"]["name"]: {p["name"]: p["value"] for p in d["spec"]["params"]}
                for d in (yaml.safe_load((TRIGGERS / f).read_text()) for f in ("github-push.yaml", "gitlab-push.yaml"))}
    assert bindings["github-push"]["git-revision"] == "$(body.after)"
    assert bindings["gitlab-push"]["git-revision"] == "$(body.checkout_sha)"


def _evaluate(expr: str, body: dict) -> bool:
    celpy = pytest.importorskip("celpy", reason="cel-python not installed (pip install -e '.[test]')")
    env = celpy.Environment()
    result = env.program(env.compile(expr)).evaluate({"body": celpy.json_to_cel(body)})
    return bool(result)


@pytest.mark.parametrize("case,body,runs", GITHUB_CASES, ids=[c[0] for c in GITHUB_CASES])
def test_github_filter(case, body, runs):
    assert _evaluate(cel_filter("github-push"), body) is runs


@pytest.mark.parametrize("case,body,runs", GITLAB_CASES, ids=[c[0] for c in GITLAB_CASES])
def test_gitlab_filter(case, body, runs):
    assert _evaluate(cel_filter("gitlab-push"), body) is runs


def test_builder_image_threads_from_template_to_task():
    tt_params = {p["name"]: p for p in TEMPLATE["spec"]["params"]}
    pl_params = {p["name"]: p for p in PIPELINE["spec"]["params"]}
    task_params = {p["name"]: p for p in TASK["spec"]["params"]}
    # one value everywhere (scripts/pin-builder-image.sh pins all three in one pass)
    assert tt_params["builder-image"]["default"] == pl_params["builder-image"]["default"] \
        == task_params["BUILDER_IMAGE"]["default"]
    run = TEMPLATE["spec"]["resourcetemplates"][0]
    assert {"name": "builder-image", "value": "$(tt.params.builder-image)"} in run["spec"]["params"]
    build = next(t for t in PIPELINE["spec"]["tasks"] if t["taskRef"]["name"] == "kaniko-build")
    assert {"name": "BUILDER_IMAGE", "value": "$(params.builder-image)"} in build["params"]
