"""Commands in the docs that would not do what they say (project issue 15, item 3).

`tkn task start NAME -f FILE` (and `tkn pipeline start NAME -f FILE`) runs the Task/Pipeline NAME
installed in the namespace and ignores FILE (tektoncd/cli pkg/cmd/task/start.go ``startTask``:
with a positional name it sets ``taskRef.name``; only without one does it parse ``--filename``).
The working form from a file has no name: `tkn task start -f FILE ...`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted([REPO / "README.md", *(REPO / "tekton").rglob("*.md"), *(REPO / "tests/e2e").rglob("*.md")])


def tkn_start_commands(text: str) -> list[str]:
    """Every `tkn task|pipeline start ...` command in ``text``: inline code spans and shell lines
    (backslash continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    cmds = []
    for m in re.finditer(r"tkn\s+(?:task|pipeline|t|p)\s+start\b[^`\n]*", joined):
        cmds.append(m.group(0))
    return cmds


def name_with_filename(cmd: str) -> bool:
    """True when ``cmd`` gives both a positional name and -f/--filename."""
    try:
        words = shlex.split(cmd)
    except ValueError:
        words = cmd.split()
    args = words[3:]
    has_file = any(a in ("-f", "--filename") or a.startswith(("--filename=", "-f=")) for a in args)
    takes_value = {"-f", "--filename", "-p", "--param", "-w", "--workspace", "-s", "--serviceaccount", "-l",
                   "--labels", "-t", "--timeout", "--prefix-name", "--output", "--pod-template", "-i", "--image",
                   "--use-taskrun", "--use-pipelinerun", "-n", "--namespace", "--task-timeout", "--pipeline-timeout"}
    positional, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in takes_value:
            skip = True
        elif not a.startswith("-") and a not in ("...", "…"):
            positional.append(a)
    return has_file and bool(positional)


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_no_tkn_start_with_a_name_and_a_file(doc):
    bad = [c for c in tkn_start_commands(doc.read_text()) if name_with_filename(c)]
    assert not bad, f"{doc.relative_to(REPO)}: tkn ignores -f when a name is given: {bad}"


def test_the_checker_catches_the_old_form():
    old = "tkn task start kaniko-build -f tekton/tasks/kaniko-build/0.1/kaniko-build.yaml \\\n  -p IMAGE=r/a:b"
    assert [name_with_filename(c) for c in tkn_start_commands(old)] == [True]
    assert name_with_filename("tkn task start kaniko-build -f ...")
    assert not name_with_filename("tkn task start -f tekton/tasks/kaniko-build/0.1/kaniko-build.yaml -p IMAGE=r/a:b")
    assert not name_with_filename("tkn task start kaniko-build -p IMAGE=r/a:b --showlog")
    assert not name_with_filename("tkn pipeline start build-and-push -p git-url=u -s build-bot")


def test_tekton_readme_documents_the_file_form():
    text = (REPO / "tekton/README.md").read_text()
    assert "tkn task start -f tekton/tasks/kaniko-build/0.1/kaniko-build.yaml" in text
