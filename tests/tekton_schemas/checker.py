"""Validate Tekton YAML: schema (strict), declared references, catalog layout and policy."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).with_name("schemas")
REPO = Path(__file__).resolve().parents[2]
CATALOG_ROOT = REPO / "tekton"

# (apiVersion, kind) -> (schema $id, $defs entry)
KINDS: dict[tuple[str, str], tuple[str, str]] = {
    ("tekton.dev/v1", "Task"): ("urn:executor:schema:tekton-v1", "Task"),
    ("tekton.dev/v1", "Pipeline"): ("urn:executor:schema:tekton-v1", "Pipeline"),
    ("tekton.dev/v1", "TaskRun"): ("urn:executor:schema:tekton-v1", "TaskRun"),
    ("tekton.dev/v1", "PipelineRun"): ("urn:executor:schema:tekton-v1", "PipelineRun"),
    ("tekton.dev/v1beta1", "StepAction"): ("urn:executor:schema:tekton-v1beta1", "StepAction"),
    ("triggers.tekton.dev/v1beta1", "EventListener"): ("urn:executor:schema:triggers-v1beta1", "EventListener"),
    ("triggers.tekton.dev/v1beta1", "TriggerBinding"): ("urn:executor:schema:triggers-v1beta1", "TriggerBinding"),
    ("triggers.tekton.dev/v1beta1", "ClusterTriggerBinding"): ("urn:executor:schema:triggers-v1beta1", "TriggerBinding"),
    ("triggers.tekton.dev/v1beta1", "TriggerTemplate"): ("urn:executor:schema:triggers-v1beta1", "TriggerTemplate"),
    ("v1", "ServiceAccount"): ("urn:executor:schema:k8s", "ServiceAccount"),
    ("v1", "Secret"): ("urn:executor:schema:k8s", "Secret"),
    ("v1", "ConfigMap"): ("urn:executor:schema:k8s", "ConfigMap"),
    ("rbac.authorization.k8s.io/v1", "Role"): ("urn:executor:schema:k8s", "Role"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("urn:executor:schema:k8s", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("urn:executor:schema:k8s", "RoleBinding"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("urn:executor:schema:k8s", "ClusterRoleBinding"),
}
# Kinds whose single-document file must be named after metadata.name.
NAMED_KINDS = {"Task", "Pipeline", "StepAction", "TriggerBinding", "TriggerTemplate", "EventListener"}
# Kinds that are catalog resources: they carry the version label and the catalog annotations.
CATALOG_KINDS = {"Task", "Pipeline", "StepAction"}
REQUIRED_ANNOTATIONS = ("tekton.dev/pipelines.minVersion", "tekton.dev/categories", "tekton.dev/tags",
                        "tekton.dev/displayName", "tekton.dev/platforms", "artifacthub.io/category",
                        "artifacthub.io/license", "artifacthub.io/links", "artifacthub.io/maintainers",
                        "artifacthub.io/provider", "artifacthub.io/changes")
# Artifact Hub's Tekton annotations (artifacthub.io/docs/topics/annotations/tekton): one category
# of this list; links, maintainers and changes are YAML lists in a string.
ARTIFACTHUB_CATEGORIES = {"ai-machine-learning", "database", "integration-delivery", "monitoring-logging",
                          "networking", "security", "storage", "streaming-messaging", "skip-prediction"}
ARTIFACTHUB_CHANGE_KINDS = {"added", "changed", "deprecated", "removed", "fixed", "security"}
VERSION_DIR = re.compile(r"^[0-9]+\.[0-9]+$")

VAR = re.compile(r"\$\((?P<body>[^()]*)\)")
PARAM_REF = re.compile(r"""^params(?:\.(?P<dot>[A-Za-z_][A-Za-z0-9_-]*)|\[['"](?P<br>[^'"]+)['"]\])(?P<rest>.*)$""")


@dataclass(frozen=True)
class Problem:
    path: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.where}: {self.message}"


@lru_cache(maxsize=1)
def _registry() -> Registry:
    resources = []
    for f in sorted(SCHEMA_DIR.glob("*.schema.json")):
        schema = json.loads(f.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@lru_cache(maxsize=None)
def validator(api_version: str, kind: str) -> Draft202012Validator | None:
    """The strict validator for one (apiVersion, kind), or None if the project has no schema."""
    target = KINDS.get((api_version, kind))
    if target is None:
        return None
    schema_id, name = target
    return Draft202012Validator({"$ref": f"{schema_id}#/$defs/{name}"}, registry=_registry())


def load_yaml_docs(path: Path) -> list[dict]:
    """Every non-empty YAML document in ``path``."""
    with open(path) as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


# ---------------------------------------------------------------- string walking
def walk_strings(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Yield (json-path, string) for every string value under ``node``."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_strings(v, f"{where}[{i}]")


def variables(text: str) -> list[str]:
    """The bodies of the $(...) Tekton variables in ``text`` (shell $(cmd) bodies come along and
    are ignored by the checks, which look only at known prefixes)."""
    return [m.group("body") for m in VAR.finditer(text)]


def param_ref(body: str) -> tuple[str, str] | None:
    """``params.X[*]`` -> ("X", "[*]"); ``params["a.b"].key`` -> ("a.b", ".key"); else None."""
    m = PARAM_REF.match(body)
    if not m:
        return None
    return (m.group("dot") or m.group("br")), m.group("rest")


# ---------------------------------------------------------------- catalog index
@dataclass
class Catalog:
    """Tekton resources by kind and name, for resolving taskRef / pipelineRef / binding refs."""
    tasks: dict[str, dict] = field(default_factory=dict)
    pipelines: dict[str, dict] = field(default_factory=dict)
    bindings: dict[str, dict] = field(default_factory=dict)
    templates: dict[str, dict] = field(default_factory=dict)
    stepactions: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_paths(cls, paths: Iterable[Path]) -> "Catalog":
        cat = cls()
        for p in paths:
            try:
                docs = load_yaml_docs(p)
            except yaml.YAMLError:
                continue
            for d in docs:
                cat.add(d)
        return cat

    def add(self, doc: dict) -> None:
        if not isinstance(doc, dict):
            return
        name = (doc.get("metadata") or {}).get("name")
        if not name:
            return
        table = {"Task": self.tasks, "Pipeline": self.pipelines, "TriggerBinding": self.bindings,
                 "TriggerTemplate": self.templates, "StepAction": self.stepactions}.get(doc.get("kind"))
        if table is not None:
            table[name] = doc


def yaml_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                  and p.name not in (".tektonlintrc.yaml", "artifacthub-repo.yml"))


# ---------------------------------------------------------------- reference checks
def _names(items: list | None) -> dict[str, dict]:
    return {i["name"]: i for i in (items or []) if isinstance(i, dict) and "name" in i}


def check_task_spec(spec: dict, where: str, report, *, script_policy: bool = True) -> None:
    """$(params.*), $(workspaces.*), $(results.*.path) in a Task spec are declared; arrays are
    expanded only as isolated args/command elements; scripts never interpolate params."""
    params = _names(spec.get("params"))
    workspaces = _names(spec.get("workspaces"))
    results = _names(spec.get("results"))
    for key in ("steps", "stepTemplate", "sidecars", "volumes"):
        for path, text in walk_strings(spec.get(key), f"{where}.spec.{key}"):
            in_script = path.endswith(".script")
            isolated = re.search(r"\.(args|command)\[\d+\]$|\.params\[\d+\]\.value\[\d+\]$", path) is not None
            for body in variables(text):
                pr = param_ref(body)
                if pr:
                    name, rest = pr
                    if name not in params:
                        report(path, f"$({body}) refers to an undeclared param '{name}'")
                        continue
                    if in_script and script_policy:
                        report(path, f"param '{name}' is interpolated into a script; pass it through env")
                    ptype = params[name].get("type", "string")
                    if rest == "[*]":
                        if ptype != "array":
                            report(path, f"$({body}): '{name}' is not an array param")
                        elif not (isolated and text == f"$({body})"):
                            report(path, f"$({body}) must be a whole element of args or command")
                    elif ptype == "array" and not re.fullmatch(r"\[\d+\]", rest):
                        report(path, f"array param '{name}' used as a string; use $(params.{name}[*]) in args")
                    continue
                m = re.fullmatch(r"workspaces\.([^.]+)\.(path|bound|claim|volume)", body)
                if m:
                    if m.group(1) not in workspaces:
                        report(path, f"$({body}) refers to an undeclared workspace '{m.group(1)}'")
                    continue
                if body.startswith("workspaces."):
                    report(path, f"$({body}) is not a workspace variable (path, bound, claim, volume)")
                    continue
                m = re.fullmatch(r"results\.([^.]+)\.path", body)
                if m:
                    if m.group(1) not in results:
                        report(path, f"$({body}) refers to an undeclared result '{m.group(1)}'")
                    continue
                if body.startswith("results."):
                    report(path, f"$({body}) is not a result variable (results.NAME.path)")
    for i, p in enumerate(spec.get("params") or []):
        if "type" not in p:
            report(f"{where}.spec.params[{i}]", f"param '{p.get('name')}' has no type (tkn task start -f rejects it)")
        if not p.get("description"):
            report(f"{where}.spec.params[{i}]", f"param '{p.get('name')}' has no description")


def check_security(spec: dict, where: str, report) -> None:
    """No privileged step and no added capabilities, in steps or in the stepTemplate."""
    containers = [("stepTemplate", spec.get("stepTemplate") or {})]
    containers += [(f"steps[{i}]", s) for i, s in enumerate(spec.get("steps") or [])]
    containers += [(f"sidecars[{i}]", s) for i, s in enumerate(spec.get("sidecars") or [])]
    for name, c in containers:
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            report(f"{where}.spec.{name}.securityContext", "privileged is not allowed")
        if (sc.get("capabilities") or {}).get("add"):
            report(f"{where}.spec.{name}.securityContext", "added capabilities are not allowed")


def _task_interface(ptask: dict, catalog: Catalog) -> dict | None:
    """The Task spec a PipelineTask runs, if it can be known offline."""
    if "taskSpec" in ptask:
        return ptask["taskSpec"]
    ref = ptask.get("taskRef") or {}
    if ref.get("name") and ref.get("kind", "Task") == "Task" and ref["name"] in catalog.tasks:
        return catalog.tasks[ref["name"]].get("spec") or {}
    return None


def check_bindings(task_spec: dict, given_params: list, given_ws: list, where: str, report,
                   what: str) -> None:
    """Params passed exist and required ones are passed; workspaces likewise."""
    declared = _names(task_spec.get("params"))
    given = _names(given_params)
    for n in given:
        if n not in declared:
            report(where, f"{what} passes param '{n}' that it does not declare")
    for n, spec in declared.items():
        if "default" not in spec and n not in given:
            report(where, f"{what} does not pass required param '{n}'")
    wdecl = _names(task_spec.get("workspaces"))
    wgiven = _names(given_ws)
    for n in wgiven:
        if n not in wdecl:
            report(where, f"{what} binds workspace '{n}' that it does not declare")
    for n, spec in wdecl.items():
        if not spec.get("optional") and n not in wgiven:
            report(where, f"{what} does not bind required workspace '{n}'")


def check_pipeline_spec(spec: dict, where: str, report, catalog: Catalog) -> None:
    params = _names(spec.get("params"))
    workspaces = _names(spec.get("workspaces"))
    ptasks = (spec.get("tasks") or []) + (spec.get("finally") or [])
    by_name = {t["name"]: t for t in ptasks if "name" in t}
    finally_names = {t.get("name") for t in spec.get("finally") or []}
    # Embedded taskSpecs are checked against their own declarations (check_task_spec).
    scope = {k: [{f: v for f, v in t.items() if f != "taskSpec"} for t in spec.get(k) or []]
             for k in ("tasks", "finally")}
    scope["results"] = spec.get("results")
    for path, text in walk_strings(scope, f"{where}.spec"):
        for body in variables(text):
            pr = param_ref(body)
            if pr:
                if pr[0] not in params:
                    report(path, f"$({body}) refers to an undeclared pipeline param '{pr[0]}'")
                continue
            m = re.fullmatch(r"tasks\.([^.]+)\.results\.([^.\[]+).*", body)
            if m:
                tname, rname = m.groups()
                if tname not in by_name:
                    report(path, f"$({body}) refers to an unknown pipeline task '{tname}'")
                    continue
                iface = _task_interface(by_name[tname], catalog)
                if iface is not None and rname not in _names(iface.get("results")):
                    report(path, f"$({body}): task '{tname}' declares no result '{rname}'")
                continue
            m = re.fullmatch(r"workspaces\.([^.]+)\.bound", body)
            if m and m.group(1) not in workspaces:
                report(path, f"$({body}) refers to an undeclared pipeline workspace '{m.group(1)}'")
    for i, t in enumerate(ptasks):
        tw = f"{where}.spec.tasks[{t.get('name')}]"
        for a in t.get("runAfter") or []:
            if a not in by_name or a in finally_names:
                report(tw, f"runAfter names an unknown task '{a}'")
        for wb in t.get("workspaces") or []:
            target = wb.get("workspace", wb.get("name"))
            if target not in workspaces:
                report(tw, f"workspace '{target}' is not declared by the pipeline")
        iface = _task_interface(t, catalog)
        if iface is None:
            ref = t.get("taskRef") or {}
            if ref.get("name") and not ref.get("resolver"):
                report(tw, f"taskRef '{ref.get('name')}' is not a Task of this catalog")
            continue
        if "taskSpec" in t:
            check_task_spec(iface, f"{tw}.taskSpec", report)
            check_security(iface, f"{tw}.taskSpec", report)
        check_bindings(iface, t.get("params"), t.get("workspaces"), tw, report, f"pipeline task '{t.get('name')}'")
        # a required Task workspace must not be fed from an optional pipeline workspace
        tws = _names(iface.get("workspaces"))
        for wb in t.get("workspaces") or []:
            target = wb.get("workspace", wb.get("name"))
            decl = tws.get(wb.get("name"), {})
            if workspaces.get(target, {}).get("optional") and not decl.get("optional", False) and decl:
                report(tw, f"optional pipeline workspace '{target}' feeds required workspace '{wb.get('name')}'")


def check_run(doc: dict, where: str, report, catalog: Catalog) -> None:
    spec = doc.get("spec") or {}
    if doc["kind"] == "TaskRun":
        iface = spec.get("taskSpec")
        ref = spec.get("taskRef") or {}
        if iface is None and ref.get("name") and not ref.get("resolver"):
            if ref["name"] not in catalog.tasks:
                report(where, f"taskRef '{ref['name']}' is not a Task of this catalog")
                return
            iface = catalog.tasks[ref["name"]].get("spec") or {}
        if iface is not None:
            check_bindings(iface, spec.get("params"), spec.get("workspaces"), where, report, "TaskRun")
    else:
        iface = spec.get("pipelineSpec")
        ref = spec.get("pipelineRef") or {}
        if iface is None and ref.get("name") and not ref.get("resolver"):
            if ref["name"] not in catalog.pipelines:
                report(where, f"pipelineRef '{ref['name']}' is not a Pipeline of this catalog")
                return
            iface = catalog.pipelines[ref["name"]].get("spec") or {}
        elif iface is not None:
            check_pipeline_spec(iface, where, report, catalog)
        if iface is not None:
            check_bindings(iface, spec.get("params"), spec.get("workspaces"), where, report, "PipelineRun")


def check_trigger_template(doc: dict, where: str, report, catalog: Catalog) -> None:
    spec = doc.get("spec") or {}
    declared = _names(spec.get("params"))
    for path, text in walk_strings(spec.get("resourcetemplates"), f"{where}.spec.resourcetemplates"):
        for body in variables(text):
            m = re.fullmatch(r"tt\.params\.(.+)", body)
            if m and m.group(1) not in declared:
                report(path, f"$({body}) refers to an undeclared TriggerTemplate param '{m.group(1)}'")
            elif body.startswith("params."):
                report(path, f"$({body}): a TriggerTemplate reads its params as $(tt.params.X)")
    for i, res in enumerate(spec.get("resourcetemplates") or []):
        rwhere = f"{where}.spec.resourcetemplates[{i}]"
        v = validator(res.get("apiVersion", ""), res.get("kind", ""))
        if v is None:
            report(rwhere, f"no schema for {res.get('apiVersion')}/{res.get('kind')}")
            continue
        for err in v.iter_errors(res):
            report(f"{rwhere}{_err_path(err)}", f"schema: {err.message}")
        if res.get("kind") in ("TaskRun", "PipelineRun"):
            check_run(res, rwhere, report, catalog)


def check_event_listener(doc: dict, where: str, report, catalog: Catalog) -> None:
    for i, trig in enumerate((doc.get("spec") or {}).get("triggers") or []):
        tw = f"{where}.spec.triggers[{i}]"
        bound: set[str] = set()
        for b in trig.get("bindings") or []:
            if "ref" in b:
                if b["ref"] not in catalog.bindings:
                    report(tw, f"binding ref '{b['ref']}' is not a TriggerBinding of this catalog")
                    continue
                bound |= set(_names((catalog.bindings[b["ref"]].get("spec") or {}).get("params")))
            else:
                bound.add(b["name"])
        tmpl = trig.get("template") or {}
        tspec = tmpl.get("spec")
        if "ref" in tmpl:
            if tmpl["ref"] not in catalog.templates:
                report(tw, f"template ref '{tmpl['ref']}' is not a TriggerTemplate of this catalog")
                continue
            tspec = catalog.templates[tmpl["ref"]].get("spec")
        for n, p in _names((tspec or {}).get("params")).items():
            if "default" not in p and n not in bound:
                report(tw, f"TriggerTemplate param '{n}' has no default and no binding gives it")
        for n in bound:
            if n not in _names((tspec or {}).get("params")):
                report(tw, f"binding gives '{n}' but the TriggerTemplate does not declare it")


def _err_path(err) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)


# ---------------------------------------------------------------- layout
def check_artifacthub(ann: dict, where: str, report) -> None:
    """Artifact Hub's Tekton annotations, when present, in the shape it parses: a known category,
    links [{name, url}], maintainers [{name[, email]}], changes [{kind, description}] (YAML in a
    string) and an SPDX-style license id."""
    cat = ann.get("artifacthub.io/category")
    if cat is not None and cat not in ARTIFACTHUB_CATEGORIES:
        report(where, f"artifacthub.io/category '{cat}' is not one of {sorted(ARTIFACTHUB_CATEGORIES)}")
    shapes = {"artifacthub.io/links": ({"name", "url"}, set()), "artifacthub.io/maintainers": ({"name"}, {"email"}),
              "artifacthub.io/changes": ({"kind", "description"}, {"links"})}
    for key, (required, optional) in shapes.items():
        if key not in ann:
            continue
        try:
            items = yaml.safe_load(ann[key]) if isinstance(ann[key], str) else None
        except yaml.YAMLError:
            items = None
        if not isinstance(items, list) or not items or not all(
                isinstance(x, dict) and required <= set(x) <= required | optional for x in items):
            report(where, f"{key} must be a YAML list of {sorted(required)} maps in a string")
            continue
        if key == "artifacthub.io/changes":
            bad = [x["kind"] for x in items if x["kind"] not in ARTIFACTHUB_CHANGE_KINDS]
            if bad:
                report(where, f"artifacthub.io/changes kinds {bad} not in {sorted(ARTIFACTHUB_CHANGE_KINDS)}")
    lic = ann.get("artifacthub.io/license")
    if lic is not None and not re.fullmatch(r"[A-Za-z0-9.+-]+", str(lic)):
        report(where, f"artifacthub.io/license '{lic}' is not an SPDX license id")


def check_layout(path: Path, docs: list[dict], report) -> None:
    parts = path.parts
    version = next((p for p in reversed(parts[:-1]) if VERSION_DIR.match(p)), None)
    for i, d in enumerate(docs):
        meta = d.get("metadata") or {}
        label = (meta.get("labels") or {}).get("app.kubernetes.io/version")
        if d.get("kind") in CATALOG_KINDS and "samples" not in parts and "tests" not in parts:
            if label is None:
                report(f"doc[{i}].metadata.labels", "catalog resource has no app.kubernetes.io/version label")
            for a in REQUIRED_ANNOTATIONS:
                if a not in (meta.get("annotations") or {}):
                    report(f"doc[{i}].metadata.annotations", f"missing annotation {a}")
            check_artifacthub(meta.get("annotations") or {}, f"doc[{i}].metadata.annotations", report)
            if not (d.get("spec") or {}).get("description"):
                report(f"doc[{i}].spec", "missing description")
            if version is None:
                report(f"doc[{i}]", "catalog resource is not inside a <name>/<X.Y>/ directory")
            elif path.parent.name != version or path.parent.parent.name != path.stem:
                report(f"doc[{i}]", f"expected path .../{path.stem}/{version}/{path.stem}.yaml")
        if label is not None and version is not None and label != version:
            report(f"doc[{i}].metadata.labels", f"app.kubernetes.io/version '{label}' does not match directory '{version}'")
    if len(docs) == 1 and docs[0].get("kind") in NAMED_KINDS and "tests" not in parts:
        name = (docs[0].get("metadata") or {}).get("name")
        if name != path.stem:
            report("doc[0].metadata.name", f"'{name}' does not match the file name '{path.stem}'")


# ---------------------------------------------------------------- entry points
def check_docs(path: Path, docs: list[dict], catalog: Catalog, rel: str) -> list[Problem]:
    from tests.tekton_schemas.stepaction import check_step_refs, check_stepaction
    problems: list[Problem] = []

    def reporter(prefix: str):
        def report(where: str, msg: str) -> None:
            problems.append(Problem(rel, f"{prefix}{where}", msg))
        return report

    check_layout(path, docs, reporter(""))
    for i, d in enumerate(docs):
        report = reporter(f"doc[{i}]")
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            report("", "not a Kubernetes object (no apiVersion/kind)")
            continue
        v = validator(d["apiVersion"], d["kind"])
        if v is None:
            report("", f"no schema for {d['apiVersion']} {d['kind']}")
            continue
        errors = list(v.iter_errors(d))
        for err in errors:
            report(_err_path(err), f"schema: {err.message}")
        if errors:
            continue
        kind = d["kind"]
        if kind == "Task":
            check_task_spec(d["spec"], "", report)
            check_security(d["spec"], "", report)
            check_step_refs(d["spec"], "", report, catalog.stepactions)
        elif kind == "StepAction":
            check_stepaction(d["spec"], report)
        elif kind == "Pipeline":
            check_pipeline_spec(d["spec"], "", report, catalog)
        elif kind in ("TaskRun", "PipelineRun"):
            if kind == "TaskRun" and "taskSpec" in d["spec"]:
                check_task_spec(d["spec"]["taskSpec"], ".spec.taskSpec", report)
                check_step_refs(d["spec"]["taskSpec"], ".spec.taskSpec", report, catalog.stepactions)
            check_run(d, "", report, catalog)
        elif kind == "TriggerTemplate":
            check_trigger_template(d, "", report, catalog)
        elif kind == "EventListener":
            check_event_listener(d, "", report, catalog)
    return problems


def check_paths(paths: Iterable[Path], catalog: Catalog | None = None, root: Path = REPO) -> list[Problem]:
    """Check every YAML file in ``paths``; references resolve against ``catalog`` (default: built
    from the same files)."""
    paths = list(paths)
    if catalog is None:
        catalog = Catalog.from_paths(paths)
    problems: list[Problem] = []
    for p in paths:
        try:
            rel = str(p.resolve().relative_to(root.resolve()))
        except ValueError:
            rel = str(p)
        try:
            docs = load_yaml_docs(p)
        except yaml.YAMLError as e:
            problems.append(Problem(rel, "", f"YAML error: {e}"))
            continue
        if not docs:
            problems.append(Problem(rel, "", "no YAML documents"))
            continue
        problems.extend(check_docs(p, docs, catalog, rel))
    return problems
