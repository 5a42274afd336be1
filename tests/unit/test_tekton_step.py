"""tests/support/tekton_step.py: Tekton's variable substitution and script placement for one step."""

from __future__ import annotations

import re
import stat

import pytest
import yaml

from tests.support.tekton_step import DEFAULT_SHEBANG, render_step, write_scripts
from tests.support.tools import REPO

TASK_PATH = REPO / "tekton/tasks/kaniko-build/0.1/kaniko-build.yaml"


def task(steps, params=None, workspaces=None, results=None, template=None) -> dict:
    spec = {"params": params or [], "workspaces": workspaces or [], "results": results or [], "steps": steps}
    if template:
        spec["stepTemplate"] = template
    return {"apiVersion": "tekton.dev/v1", "kind": "Task", "metadata": {"name": "t"}, "spec": spec}


PARAMS = [
    {"name": "IMAGE", "type": "string"},
    {"name": "FLAGS", "type": "array", "default": ["--a", "--b=c d"]},
    {"name": "EMPTY", "type": "array", "default": []},
    {"name": "OBJ", "type": "object", "default": {"key": "v"}},
    {"name": "with.dot", "type": "string", "default": "dotted"},
]
WORKSPACES = [{"name": "source"}, {"name": "cfg", "optional": True}, {"name": "custom", "mountPath": "/mnt/c"}]
RESULTS = [{"name": "DIGEST"}]


def render(step, params=None, bound=("source", "custom"), **kw):
    t = task([{"name": "s", **step}], PARAMS, WORKSPACES, RESULTS, kw.pop("template", None))
    return render_step(t, "s", {"IMAGE": "reg/app:1", **(params or {})}, set(bound), **kw)


def test_args_arrays_expand_as_elements_strings_inline():
    s = render({"image": "img", "command": ["run"],
                "args": ["$(params.FLAGS[*])", "--", "$(params.EMPTY[*])", "--image=$(params.IMAGE)",
                         "$(params.FLAGS[1])", "$(params.OBJ.key)", "$(params['with.dot'])", '$(params["IMAGE"])']})
    assert s.command == ["run"]
    assert s.args == ["--a", "--b=c d", "--", "--image=reg/app:1", "--b=c d", "v", "dotted", "reg/app:1"]


def test_given_array_value_replaces_default():
    s = render({"image": "i", "args": ["$(params.FLAGS[*])"]}, {"FLAGS": ["x", "", "y z"]})
    assert s.args == ["x", "", "y z"]


def test_workspaces_results_context_and_shell_substitutions():
    s = render({"image": "i", "workingDir": "$(workspaces.source.path)", "env": [
        {"name": "SRC", "value": "$(workspaces.source.path)/sub"},
        {"name": "C", "value": "$(workspaces.custom.path)"},
        {"name": "CFG", "value": "$(workspaces.cfg.path)"},
        {"name": "CFG_BOUND", "value": "$(workspaces.cfg.bound)"},
        {"name": "SRC_BOUND", "value": "$(workspaces.source.bound)"},
        {"name": "OUT", "value": "$(results.DIGEST.path)"},
        {"name": "RUN", "value": "$(context.taskRun.name)/$(context.task.name)"},
        {"name": "SHELL", "value": "$(cat /etc/hostname) $(date)"},
    ]}, taskrun_name="tr-1")
    assert s.working_dir == "/workspace/source"
    assert s.env == {"SRC": "/workspace/source/sub", "C": "/mnt/c", "CFG": "", "CFG_BOUND": "false",
                     "SRC_BOUND": "true", "OUT": "/tekton/results/DIGEST", "RUN": "tr-1/t",
                     "SHELL": "$(cat /etc/hostname) $(date)"}


def test_bound_optional_workspace():
    s = render({"image": "i", "env": [{"name": "P", "value": "$(workspaces.cfg.path):$(workspaces.cfg.bound)"}]},
               bound=("source", "custom", "cfg"))
    assert s.env["P"] == "/workspace/cfg:true"


def test_script_gets_default_shebang_and_becomes_the_command(tmp_path):
    s = render({"image": "$(params.IMAGE)", "script": "echo $(params.IMAGE) > $(results.DIGEST.path)\n",
                "args": ["$(params.FLAGS[*])"]})
    assert s.image == "reg/app:1"
    assert s.script == DEFAULT_SHEBANG + "echo reg/app:1 > /tekton/results/DIGEST\n"
    assert s.command == [s.script_path] and s.script_path.startswith("/tekton/scripts/script-0-")
    assert s.args == ["--a", "--b=c d"]
    write_scripts(s, tmp_path)
    f = tmp_path / s.script_path.rsplit("/", 1)[1]
    assert f.read_text() == s.script and stat.S_IMODE(f.stat().st_mode) == 0o755


def test_script_with_shebang_is_kept():
    s = render({"image": "i", "script": "#!/usr/bin/env python3\nprint(1)\n"})
    assert s.script == "#!/usr/bin/env python3\nprint(1)\n"


def test_step_template_env_merged_step_wins_and_security_context_passed():
    s = render({"image": "i", "env": [{"name": "A", "value": "step"}]},
               template={"env": [{"name": "A", "value": "tmpl"}, {"name": "B", "value": "$(params.IMAGE)"}],
                         "securityContext": {"runAsUser": 0, "privileged": False}})
    assert s.env == {"A": "step", "B": "reg/app:1"}
    assert s.security_context == {"runAsUser": 0, "privileged": False}


@pytest.mark.parametrize("step,params,bound,exc", [
    ({"image": "i", "args": ["$(params.NOPE)"]}, {}, ("source", "custom"), KeyError),
    ({"image": "i", "args": ["x$(params.FLAGS[*])"]}, {}, ("source", "custom"), TypeError),
    ({"image": "i", "env": [{"name": "X", "value": "$(params.FLAGS)"}]}, {}, ("source", "custom"), TypeError),
    ({"image": "i", "args": ["$(workspaces.nope.path)"]}, {}, ("source", "custom"), KeyError),
    ({"image": "i", "args": ["$(results.NOPE.path)"]}, {}, ("source", "custom"), KeyError),
    ({"image": "i"}, {"UNDECLARED": "x"}, ("source", "custom"), KeyError),
    ({"image": "i"}, {"FLAGS": "not-a-list"}, ("source", "custom"), TypeError),
    ({"image": "i"}, {}, ("custom",), KeyError),                 # required workspace unbound
    ({"image": "i", "script": "x", "command": ["c"]}, {}, ("source", "custom"), ValueError),
])
def test_invalid_references_are_rejected(step, params, bound, exc):
    with pytest.raises(exc):
        render(step, params, bound)


def test_missing_required_param():
    t = task([{"name": "s", "image": "i"}], PARAMS, WORKSPACES)
    with pytest.raises(KeyError, match="IMAGE"):
        render_step(t, "s", {}, {"source", "custom"})


# ------------------------------------------------------------------ the catalog's kaniko-build Task
@pytest.fixture(scope="module")
def kaniko_task() -> dict:
    if not TASK_PATH.is_file():
        pytest.skip(f"{TASK_PATH.relative_to(REPO)} does not exist yet")
    return yaml.safe_load(TASK_PATH.read_text())


def test_kaniko_build_step_renders_fully(kaniko_task):
    """The shape the integration test relies on: the step runs BUILDER_IMAGE, and after
    substitution no Tekton variable is left in anything the container gets."""
    s = render_step(kaniko_task, "build-and-push",
                    {"IMAGE": "reg:5000/a/b:1", "BUILDER_IMAGE": "reg:5000/executor@sha256:" + "0" * 64,
                     "BUILD_ARGS": ["K=v w"], "EXTRA_ARGS": ["--insecure-registry=reg:5000"]}, {"source"})
    assert s.image == "reg:5000/executor@sha256:" + "0" * 64
    assert "K=v w" in s.args and "--insecure-registry=reg:5000" in s.args
    tekton_var = re.compile(r"\$\((params|workspaces|results|context)[.\[]")
    everything = [s.image, *s.command, *s.args, *s.env.values(), s.working_dir or "", s.script or ""]
    assert not [x for x in everything if tekton_var.search(x)]
    assert "reg:5000/a/b:1" not in (s.script or "")  # params reach the script through env only
    assert "/tekton/results/IMAGE_DIGEST" in s.env.values() and "/tekton/results/IMAGE_URL" in s.env.values()
    assert not s.security_context.get("privileged") and s.security_context.get("runAsUser", 0) == 0
