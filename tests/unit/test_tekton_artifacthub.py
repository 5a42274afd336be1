"""What Artifact Hub reads from the catalog (project issue 15, Artifact Hub item).

The catalog is three Artifact Hub repositories ("Tekton tasks", "Tekton pipelines", "Tekton
stepactions"), each registered with the URL of its directory (https://github.com/ORG/REPO/tekton/
tasks, .../pipelines, .../stepactions). Artifact Hub's tracker (artifacthub/hub,
internal/repo/manager.go ``locateMetadataFile``; internal/tracker/source/tekton/tekton.go) then:

* reads ``artifacthub-repo.yml`` from that directory -- the repository URL's path, not the git
  root -- for the owners (ownership claim) and repositoryID (verified publisher);
* takes every ``<name>/<X.Y>/<name>.yaml`` there (directory-based versioning) and refuses a
  version whose manifest has no name, no ``app.kubernetes.io/version`` label equal to the
  directory, or (Task, Pipeline) no description;
* lists the steps' container images after putting the param defaults in (a Task's defaults; for a
  Pipeline, its defaults into the pipeline tasks' params and, for an embedded taskSpec, those
  params -- or same-named Pipeline params -- into its steps, as Tekton's propagated params do),
  and refuses the whole version when one is not a valid image reference, e.g. an unresolved
  ``$(params.X)``.

The ``artifacthub.io/*`` annotations themselves are checked by tests/tekton_schemas/checker.py
(``check_artifacthub``; tests/unit/test_tekton_stepaction.py shows it failing). Nothing here talks
to Artifact Hub: this is the tracker's rules applied offline.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "tekton"
KINDS = {"tasks": "Task", "pipelines": "Pipeline", "stepactions": "StepAction"}
VAR = re.compile(r"\$\(params(?:\.([A-Za-z0-9_-]+)|\[['\"]([A-Za-z0-9_-]+)['\"]\])\)")
# go-containerregistry name.ParseReference, roughly: [host[:port]/]path[:tag][@sha256:hex]
REFERENCE = re.compile(r"^(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
                       r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")


def _subst(text: str, values: dict[str, str]) -> str:
    return VAR.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def _defaults(params: list | None) -> dict[str, str]:
    return {p["name"]: p["default"] for p in params or [] if isinstance(p.get("default"), str)}


def step_images(doc: dict) -> list[str]:
    """The step images Artifact Hub lists for a Task or Pipeline manifest."""
    spec = doc["spec"]
    if doc["kind"] == "Task":
        values = _defaults(spec.get("params"))
        return [_subst(s.get("image", ""), values) for s in spec.get("steps") or []]
    images = []
    pipeline_values = _defaults(spec.get("params"))
    for task in (spec.get("tasks") or []) + (spec.get("finally") or []):
        if "taskSpec" not in task:
            continue
        values = dict(pipeline_values)
        for p in task.get("params") or []:   # a task param only shadows a same-named Pipeline param
            if isinstance(p.get("value"), str) and p["name"] in pipeline_values:
                values[p["name"]] = _subst(p["value"], pipeline_values)
        images += [_subst(s.get("image", ""), values) for s in task["taskSpec"].get("steps") or []]
    return images


def packages(kind_dir: str) -> list[Path]:
    return sorted(d for d in (CATALOG / kind_dir).glob("*/*") if d.is_dir())


@pytest.mark.parametrize("kind_dir", sorted(KINDS))
def test_each_artifact_hub_repository_path_holds_its_metadata_file(kind_dir):
    f = CATALOG / kind_dir / "artifacthub-repo.yml"
    meta = yaml.safe_load(f.read_text())
    assert set(meta) <= {"repositoryID", "owners", "ignore"}
    assert meta["owners"] and all(set(o) <= {"name", "email"} and o.get("name") for o in meta["owners"])
    if "repositoryID" in meta:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", meta["repositoryID"])


def test_no_metadata_file_where_artifact_hub_does_not_look():
    """A copy at the git root (or anywhere but the three repository paths) is never read."""
    found = {p.relative_to(REPO) for p in REPO.rglob("artifacthub-repo.y*ml")
             if not {".git", "node_modules", ".venv"} & set(p.relative_to(REPO).parts)}
    assert found == {Path("tekton", d, "artifacthub-repo.yml") for d in KINDS}


@pytest.mark.parametrize("kind_dir", sorted(KINDS))
def test_every_package_version_is_one_artifact_hub_accepts(kind_dir):
    dirs = packages(kind_dir)
    assert dirs, kind_dir
    for d in dirs:
        name, version = d.parent.name, d.name
        doc = yaml.safe_load((d / f"{name}.yaml").read_text())
        assert doc["kind"] == KINDS[kind_dir] and doc["metadata"]["name"] == name, d
        assert doc["metadata"]["labels"]["app.kubernetes.io/version"] == version, d
        if doc["kind"] != "StepAction":
            assert doc["spec"].get("description", "").strip(), f"{d}: no spec.description"
            images = step_images(doc)
            assert images, d
            bad = [i for i in images if not REFERENCE.match(i)]
            assert not bad, f"{d}: step images Artifact Hub cannot parse after param defaults: {bad}"


def test_the_image_rule_fails_on_an_unresolved_param():
    """The check above can fail: a taskSpec step image naming a param that neither the pipeline
    task passes under that name nor the Pipeline declares stays ``$(params.X)``."""
    pipeline = {"kind": "Pipeline", "spec": {
        "params": [{"name": "tool-image", "default": "registry.example/tools:1"}],
        "tasks": [{"name": "t", "params": [{"name": "TOOL_IMAGE", "value": "$(params.tool-image)"}],
                   "taskSpec": {"steps": [{"image": "$(params.TOOL_IMAGE)"}, {"image": "$(params.tool-image)"}]}}]}}
    assert step_images(pipeline) == ["$(params.TOOL_IMAGE)", "registry.example/tools:1"]
    assert not REFERENCE.match("$(params.TOOL_IMAGE)")
    task = {"kind": "Task", "spec": {"params": [{"name": "IMG", "default": "ghcr.io/o/x:0.1.0@sha256:" + "a" * 64}],
                                     "steps": [{"image": "$(params.IMG)"}]}}
    assert [REFERENCE.match(i) is not None for i in step_images(task)] == [True]
