"""The destination check before a build (outputs.check_destinations): its error names the
destination, keeps the registry's status, and suggests --skip-push-permission-check only where
skipping can help (the check met a 401/403; some registries refuse GET /v2/ yet take a push).
A stand-in client: the registry answers themselves are covered by the integration tests."""

from __future__ import annotations

import pytest

from executor.errors import RegistryError
from executor.outputs import check_destinations


class _Client:
    def __init__(self, error: RegistryError):
        self.error = error

    def ping(self, registry: str) -> None:
        raise self.error


@pytest.mark.parametrize("status, skip", [(401, True), (403, True), (None, False), (404, False), (503, False)])
def test_skip_is_suggested_only_for_a_refusal(status, skip):
    # (a port such as 4010 in the message must not read as a 401)
    err = RegistryError("cannot reach registry reg.example:4010 (connection refused)", status=status)
    with pytest.raises(RegistryError) as e:
        check_destinations(_Client(err), ["reg.example:4010/app:1"])
    msg = str(e.value)
    assert msg.startswith("--destination reg.example:4010/app:1: cannot reach registry") and "checked before" in msg
    assert ("--skip-push-permission-check skips this check" in msg) is skip, msg
    assert e.value.status == status
