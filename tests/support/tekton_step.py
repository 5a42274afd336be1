"""Turn one step of a Tekton v1 Task into the container Tekton's controller would create.

Deliberately independent of ``tests/tekton_schemas/substitute.py`` (another implementation of the
same rules), so one mistake is not mirrored in both. Sources, Tekton Pipelines docs:

* ``docs/variables.md``: ``$(params.X)``, ``$(params["X"])``, ``$(params['X'])``, array
  ``$(params.X[*])`` (only as a whole element of ``command``/``args``, where it expands into one
  element per item), ``$(params.X[i])``, object ``$(params.X.key)``; ``$(workspaces.X.path)``
  (``/workspace/X`` or the declared ``mountPath``; "" when an optional workspace is unbound),
  ``$(workspaces.X.bound)``, ``$(results.X.path)`` (``/tekton/results/X``), ``$(context.taskRun.name)``,
  ``$(context.taskRun.namespace)``, ``$(context.taskRun.uid)``, ``$(context.task.name)``.
  Substituted in ``image``, ``command``, ``args``, ``env[].value``, ``workingDir`` and ``script``.
* ``docs/tasks.md`` "Running scripts within Steps": the script goes to
  ``/tekton/scripts/script-<step index>-<suffix>``; without a ``#!`` line Tekton prepends
  ``#!/bin/sh\\nset -e\\n``; that file becomes the command and ``args`` are passed to it; a step with
  ``script`` may not have ``command``.
* ``docs/tasks.md`` "Specifying a Step template": stepTemplate fields are defaults for every step;
  ``env`` is merged by name with the step's entries winning.

A ``$(...)`` whose body is not one of those namespaces (e.g. shell ``$(cat f)``) is left alone;
a reference into params/workspaces/results/context that is not declared raises ``KeyError``,
as Tekton's validation would reject it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

VAR = re.compile(r"\$\(([^()]*)\)")
PARAM = re.compile(r"""^params(?:\.([A-Za-z_][A-Za-z0-9_-]*)|\[(?:'([^']+)'|"([^"]+)")\])(.*)$""")
RESULTS_DIR = "/tekton/results"
SCRIPTS_DIR = "/tekton/scripts"
DEFAULT_SHEBANG = "#!/bin/sh\nset -e\n"


@dataclass
class StepContainer:
    """The step as a pod container: fields after substitution and stepTemplate merge.

    ``script`` is the file content Tekton writes (shebang added when missing) and ``script_path``
    its in-container path; then ``command`` is ``[script_path]``. ``security_context`` and
    ``compute_resources`` are passed through unchanged.
    """

    name: str
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    working_dir: str | None
    script: str | None = None
    script_path: str | None = None
    security_context: dict = field(default_factory=dict)
    compute_resources: dict = field(default_factory=dict)


def param_values(task: dict, params: dict) -> dict:
    """Declared params with the given values or their defaults (Tekton ``docs/tasks.md``
    "Specifying Parameters"). Raises KeyError for a missing required or an undeclared param,
    TypeError when a value's type does not match the declared ``type`` (string|array|object)."""
    out = {}
    for p in task["spec"].get("params") or []:
        name, typ = p["name"], p.get("type", "string")
        if name in params:
            v = params[name]
        elif "default" in p:
            v = p["default"]
        else:
            raise KeyError(f"param {name} is required (no default) and was not given")
        want = {"string": str, "array": list, "object": dict}[typ]
        if not isinstance(v, want):
            raise TypeError(f"param {name} is declared {typ} but got {type(v).__name__}")
        out[name] = v
    unknown = sorted(set(params) - set(out))
    if unknown:
        raise KeyError(f"params not declared by the Task: {unknown}")
    return out


def workspace_paths(task: dict, bound: set[str] | dict) -> dict[str, str | None]:
    """Map each declared workspace to its in-container path (``mountPath`` or ``/workspace/NAME``),
    or None when it is optional and not in ``bound``. Raises KeyError for a required workspace
    that is not bound or a bound one that is not declared."""
    declared = {w["name"]: w for w in task["spec"].get("workspaces") or []}
    extra = sorted(set(bound) - set(declared))
    if extra:
        raise KeyError(f"workspaces not declared by the Task: {extra}")
    out: dict[str, str | None] = {}
    for name, w in declared.items():
        if name in bound:
            out[name] = w.get("mountPath") or f"/workspace/{name}"
        elif w.get("optional"):
            out[name] = None
        else:
            raise KeyError(f"workspace {name} is required and not bound")
    return out


def render_step(task: dict, step_name: str, params: dict, bound_workspaces: set[str] | dict, *,
                taskrun_name: str = "kaniko-build-run", namespace: str = "default",
                taskrun_uid: str = "00000000-0000-0000-0000-000000000000") -> StepContainer:
    """The container for ``step_name`` of ``task`` (a parsed Task YAML document) in a TaskRun with
    ``params`` (name -> str | list | dict) and ``bound_workspaces`` (names)."""
    values = param_values(task, params)
    ws = workspace_paths(task, bound_workspaces)
    results = {r["name"] for r in task["spec"].get("results") or []}
    context = {"context.taskRun.name": taskrun_name, "context.taskRun.namespace": namespace,
               "context.taskRun.uid": taskrun_uid, "context.task.name": task["metadata"]["name"]}

    def param(body: str) -> tuple[str, str] | None:
        m = PARAM.match(body)
        if not m:
            return None
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            raise KeyError(f"$({body}): param {name} is not declared")
        return name, m.group(4)

    def scalar(body: str) -> str | None:
        pr = param(body)
        if pr is not None:
            name, rest = pr
            v = values[name]
            if rest == "":
                if not isinstance(v, str):
                    raise TypeError(f"$({body}): {type(v).__name__} param used where a string is needed")
                return v
            m = re.fullmatch(r"\[(\d+)\]", rest)
            if m and isinstance(v, list):
                return v[int(m.group(1))]
            m = re.fullmatch(r"\.([A-Za-z_][A-Za-z0-9_-]*)", rest)
            if m and isinstance(v, dict):
                return v[m.group(1)]
            raise TypeError(f"$({body}): not valid for a {type(v).__name__} param here")
        if body.startswith("workspaces."):
            m = re.fullmatch(r"workspaces\.([^.]+)\.(path|bound|claim|volume)", body)
            if not m or m.group(1) not in ws:
                raise KeyError(f"$({body}): no such workspace variable")
            name, what = m.groups()
            if what == "bound":
                return "true" if ws[name] is not None else "false"
            if what == "path":
                return ws[name] or ""
            return "" if what == "claim" else (f"ws-{name}" if ws[name] is not None else "")
        if body.startswith("results."):
            m = re.fullmatch(r"results\.([^.]+)\.path", body)
            if not m or m.group(1) not in results:
                raise KeyError(f"$({body}): no such result")
            return f"{RESULTS_DIR}/{m.group(1)}"
        if body.startswith("context."):
            if body not in context:
                raise KeyError(f"$({body}): context variable not supported here")
            return context[body]
        return None

    def sub(text: str) -> str:
        def repl(m: re.Match) -> str:
            v = scalar(m.group(1))
            return m.group(0) if v is None else v
        return VAR.sub(repl, text)

    def sub_list(items: list[str]) -> list[str]:
        out: list[str] = []
        for item in items:
            m = VAR.fullmatch(item)
            pr = param(m.group(1)) if m else None
            if pr is not None and pr[1] == "[*]":
                v = values[pr[0]]
                if not isinstance(v, list):
                    raise TypeError(f"{item}: [*] on a {type(v).__name__} param")
                out.extend(v)
            else:
                out.append(sub(item))  # [*] inside a longer string raises in scalar()
        return out

    steps = task["spec"]["steps"]
    index = next((i for i, s in enumerate(steps) if s.get("name") == step_name), None)
    if index is None:
        raise KeyError(f"no step named {step_name}")
    step = steps[index]
    template = copy.deepcopy(task["spec"].get("stepTemplate") or {})
    merged = {**template, **copy.deepcopy(step)}
    env: dict[str, str] = {}
    for e in (template.get("env") or []) + (step.get("env") or []):
        if "valueFrom" in e:
            raise NotImplementedError(f"env {e['name']}: valueFrom is not emulated")
        env[e["name"]] = sub(e.get("value", ""))
    if merged.get("script") and merged.get("command"):
        raise ValueError(f"step {step_name}: script and command are mutually exclusive")

    script = script_path = None
    command = sub_list(merged.get("command") or [])
    if merged.get("script"):
        script = sub(merged["script"])
        if not script.startswith("#!"):
            script = DEFAULT_SHEBANG + script
        script_path = f"{SCRIPTS_DIR}/script-{index}-tst01"
        command = [script_path]
    return StepContainer(
        name=step_name, image=sub(merged.get("image", "")), command=command,
        args=sub_list(merged.get("args") or []), env=env,
        working_dir=sub(merged["workingDir"]) if merged.get("workingDir") else None,
        script=script, script_path=script_path,
        security_context=merged.get("securityContext") or {},
        compute_resources=merged.get("computeResources") or {},
    )


def write_scripts(step: StepContainer, scripts_dir: Path) -> None:
    """Write the step's script (if any) into ``scripts_dir`` (the host side of /tekton/scripts),
    mode 0755, as Tekton's place-scripts init container does."""
    scripts_dir.mkdir(parents=True, exist_ok=True)
    if step.script is not None and step.script_path is not None:
        p = scripts_dir / Path(step.script_path).name
        p.write_text(step.script)
        p.chmod(0o755)
