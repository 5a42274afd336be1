"""Reference checks for StepActions (tekton.dev/v1beta1) and for Task steps that use one.

Rules from Tekton's docs/stepactions.md: a StepAction reads its own ``$(params.X)`` (arrays only
as whole ``args``/``command`` elements), writes ``$(step.results.R.path)`` for the results it
declares, and has no workspaces or Task results of its own (paths come in as params). A Step with
``ref`` takes nothing of a container (image, command, args, script, env, workingDir, volumeMounts
and results come from the StepAction); its ``params`` must be the StepAction's, required ones given. A Task
result ``value: $(steps.S.results.R)`` names a step S and a result R that step declares (its own
``results`` or its StepAction's).
"""

from __future__ import annotations

import re

from tests.tekton_schemas.checker import _names, param_ref, variables, walk_strings

REF_FORBIDS = ("image", "command", "args", "script", "env", "workingDir", "volumeMounts", "results")


def check_stepaction(spec: dict, report) -> None:
    params = _names(spec.get("params"))
    results = _names(spec.get("results"))
    for path, text in walk_strings(spec, ".spec"):
        if path.startswith((".spec.params", ".spec.results", ".spec.description")):
            continue
        isolated = re.search(r"\.(args|command)\[\d+\]$", path) is not None
        for body in variables(text):
            pr = param_ref(body)
            if pr:
                name, rest = pr
                if name not in params:
                    report(path, f"$({body}) refers to an undeclared StepAction param '{name}'")
                    continue
                if path.endswith(".script"):
                    report(path, f"param '{name}' is interpolated into a script; pass it through env")
                if rest == "[*]" and not (isolated and text == f"$({body})"):
                    report(path, f"$({body}) must be a whole element of args or command")
                elif params[name].get("type") == "array" and rest != "[*]":
                    report(path, f"array param '{name}' used as a string; use $(params.{name}[*]) in args")
                continue
            m = re.fullmatch(r"step\.results\.([^.]+)\.path", body)
            if m:
                if m.group(1) not in results:
                    report(path, f"$({body}) refers to an undeclared StepAction result '{m.group(1)}'")
                continue
            if body.startswith(("results.", "workspaces.")):
                report(path, f"$({body}): a StepAction has no Task results or workspaces; take a path param")
    for i, p in enumerate(spec.get("params") or []):
        if "type" not in p:
            report(f".spec.params[{i}]", f"param '{p.get('name')}' has no type")
        if not p.get("description"):
            report(f".spec.params[{i}]", f"param '{p.get('name')}' has no description")
    sc = spec.get("securityContext") or {}
    if sc.get("privileged"):
        report(".spec.securityContext", "privileged is not allowed")
    if (sc.get("capabilities") or {}).get("add"):
        report(".spec.securityContext", "added capabilities are not allowed")


def check_step_refs(spec: dict, where: str, report, stepactions: dict[str, dict]) -> None:
    """Steps with ``ref`` and Task results lifted from step results (see the module docstring)."""
    steps = {s.get("name"): s for s in spec.get("steps") or []}
    for i, step in enumerate(spec.get("steps") or []):
        ref = step.get("ref")
        sw = f"{where}.spec.steps[{i}]"
        if ref is None:
            continue
        for f in REF_FORBIDS:
            if f in step:
                report(sw, f"a step with ref cannot set {f} (it comes from the StepAction)")
        if ref.get("resolver") or not ref.get("name"):
            continue
        action = stepactions.get(ref["name"])
        if action is None:
            report(sw, f"ref '{ref['name']}' is not a StepAction of this catalog")
            continue
        declared = _names((action.get("spec") or {}).get("params"))
        given = _names(step.get("params"))
        for n in given:
            if n not in declared:
                report(sw, f"step passes param '{n}' that StepAction '{ref['name']}' does not declare")
        for n, p in declared.items():
            if "default" not in p and n not in given:
                report(sw, f"step does not pass required param '{n}' of StepAction '{ref['name']}'")
    for i, res in enumerate(spec.get("results") or []):
        value = res.get("value")
        if value is None:
            continue
        m = re.fullmatch(r"\$\(steps\.([^.]+)\.results\.([^.)]+)\)", value if isinstance(value, str) else "")
        rw = f"{where}.spec.results[{i}]"
        if not m:
            report(rw, f"result value {value!r} is not $(steps.STEP.results.RESULT)")
            continue
        sname, rname = m.groups()
        step = steps.get(sname)
        if step is None:
            report(rw, f"result value names an unknown step '{sname}'")
            continue
        declared_results = _names(step.get("results"))
        ref = step.get("ref") or {}
        if ref.get("name") in stepactions:
            declared_results |= _names((stepactions[ref["name"]].get("spec") or {}).get("results"))
        elif ref:
            continue
        if rname not in declared_results:
            report(rw, f"step '{sname}' declares no result '{rname}'")
        elif declared_results[rname].get("type", "string") != res.get("type", "string"):
            report(rw, f"result '{res.get('name')}' is {res.get('type', 'string')} but step result "
                       f"'{rname}' is {declared_results[rname].get('type', 'string')}")
