"""Apply Tekton's variable substitution to one step of a Task, the way the controller does
before the pod starts: params (with defaults, arrays expanded as whole args elements),
workspaces (path, bound) and result paths. Lets tests run a step's script for real."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.tekton_schemas.checker import param_ref

VAR = re.compile(r"\$\(([^()]*)\)")


@dataclass
class RenderedStep:
    image: str
    script: str | None
    command: list[str]
    args: list[str]
    env: dict[str, str]
    working_dir: str | None


def _values(task: dict, params: dict) -> dict:
    out = {}
    for p in task["spec"].get("params") or []:
        if p["name"] in params:
            out[p["name"]] = params[p["name"]]
        elif "default" in p:
            out[p["name"]] = p["default"]
        else:
            raise KeyError(f"param {p['name']} has no default and was not given")
    unknown = set(params) - set(out)
    if unknown:
        raise KeyError(f"unknown params: {sorted(unknown)}")
    return out


def stepaction_as_task(action: dict, step_name: str) -> dict:
    """A StepAction as a one-step Task, so render_step can substitute it: its params become the
    Task's, its container fields the step ``step_name`` (Tekton's docs/stepactions.md: the
    referring Step's params fill the StepAction's ``$(params.X)``; ``$(step.results.R.path)`` is
    that step's own result directory, /tekton/steps/step-<name>/results/R)."""
    spec = action["spec"]
    step = {k: v for k, v in spec.items() if k not in ("params", "results", "description")}
    return {"metadata": action["metadata"], "spec": {"params": spec.get("params") or [], "steps": [
        {"name": step_name, **step}], "step_results": [r["name"] for r in spec.get("results") or []]}}


def render_step(task: dict, step_name: str, params: dict, workspaces: dict[str, str | None],
                results_dir: str = "/tekton/results", step_results_dir: str | None = None) -> RenderedStep:
    """``workspaces`` maps each declared workspace to its mount path, or None when unbound;
    ``$(step.results.R.path)`` becomes ``step_results_dir/R`` (default: Tekton's
    /tekton/steps/step-<name>/results)."""
    step_results_dir = step_results_dir or f"/tekton/steps/step-{step_name}/results"
    values = _values(task, params)
    declared_ws = {w["name"]: w for w in task["spec"].get("workspaces") or []}
    for name, w in declared_ws.items():
        if name not in workspaces and not w.get("optional"):
            raise KeyError(f"required workspace {name} not bound")

    def lookup(body: str) -> str | None:
        pr = param_ref(body)
        if pr and pr[1] == "":
            v = values[pr[0]]
            if not isinstance(v, str):
                raise ValueError(f"array param {pr[0]} used as a string")
            return v
        m = re.fullmatch(r"workspaces\.([^.]+)\.(path|bound)", body)
        if m:
            path = workspaces.get(m.group(1))
            if m.group(2) == "bound":
                return "true" if path is not None else "false"
            return path or ""
        m = re.fullmatch(r"results\.([^.]+)\.path", body)
        if m:
            return f"{results_dir}/{m.group(1)}"
        m = re.fullmatch(r"step\.results\.([^.]+)\.path", body)
        if m:
            if m.group(1) not in task["spec"].get("step_results", []):
                raise KeyError(f"$({body}): the step declares no result {m.group(1)}")
            return f"{step_results_dir}/{m.group(1)}"
        return None  # not a Tekton variable we know: left alone (like shell $(cmd))

    def sub(text: str) -> str:
        return VAR.sub(lambda m: lookup(m.group(1)) if lookup(m.group(1)) is not None else m.group(0), text)

    def sub_list(items: list[str]) -> list[str]:
        out: list[str] = []
        for item in items:
            m = VAR.fullmatch(item)
            pr = param_ref(m.group(1)) if m else None
            if pr and pr[1] == "[*]":
                out.extend(values[pr[0]])
            else:
                out.append(sub(item))
        return out

    template = task["spec"].get("stepTemplate") or {}
    step = next(s for s in task["spec"]["steps"] if s.get("name") == step_name)
    env = {e["name"]: sub(e.get("value", "")) for e in template.get("env") or []}
    env.update({e["name"]: sub(e.get("value", "")) for e in step.get("env") or []})
    return RenderedStep(
        image=sub(step.get("image") or template.get("image", "")),
        script=sub(step["script"]) if step.get("script") else None,
        command=sub_list(step.get("command") or []),
        args=sub_list(step.get("args") or []),
        env=env,
        working_dir=sub(step["workingDir"]) if step.get("workingDir") else None,
    )


def write_script(rendered: RenderedStep, path: Path) -> Path:
    path.write_text(rendered.script or "")
    path.chmod(0o755)
    return path
