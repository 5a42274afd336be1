"""``RUN --security=insecure`` and ``RUN --device`` are refused with a clear line (the executor
never gives a step extra privileges or host devices) instead of being silently ignored."""

from __future__ import annotations

import pytest

from executor.errors import DockerfileError


@pytest.mark.parametrize("flag, words", [
    ("--security=insecure", "RUN --security=insecure is not supported"),
    ("--device=/dev/fuse", "RUN --device is not supported"),
])
def test_privileged_run_flags_fail_naming_the_line(build, flag, words):
    b = build.start(f"FROM scratch\nCOPY a.txt /a\nRUN {flag} true\n", {"a.txt": "A\n"})
    with pytest.raises(DockerfileError) as e:
        b.build()
    assert str(e.value).startswith("Dockerfile:3: ") and words in str(e.value)


def test_security_sandbox_is_the_default_and_accepted(root_build):
    built = root_build("FROM scratch AS base\nCOPY rootfs/ /\nFROM base\nRUN --security=sandbox echo ok > /ok\n")
    assert built.read("ok") == b"ok\n"
