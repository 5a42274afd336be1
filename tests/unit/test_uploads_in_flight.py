"""One upload of a blob per registry (executor/registry/blob_upload.UploadsInFlight): a second
claim waits for the first and learns where the blob now is (to mount it from there), or nothing
when the first failed; a claim after a completed one learns it at once; other digests and
registries do not wait."""

from __future__ import annotations

import threading
import time

import pytest

from executor.reference import parse_reference
from executor.registry.blob_upload import UploadsInFlight
from executor.registry.cancel import Cancelled, CancelToken

D = "sha256:" + "ab" * 32


def _second_claim(flight: UploadsInFlight, ref: str, out: list, token: CancelToken | None = None) -> threading.Thread:
    def run():
        try:
            with flight.claim(parse_reference(ref), D, token or CancelToken()) as holder:
                out.append(("got", holder, time.monotonic()))
        except Cancelled as e:
            out.append(("cancelled", str(e), time.monotonic()))
    t = threading.Thread(target=run)
    t.start()
    return t


def test_second_claim_waits_then_names_the_first_repository():
    flight, out = UploadsInFlight(), []
    with flight.claim(parse_reference("127.0.0.1:5000/app/dest:v1"), D, CancelToken()) as holder:
        assert holder is None
        t = _second_claim(flight, "127.0.0.1:5000/app/cache:k", out)
        time.sleep(0.3)
        assert out == []  # still waiting while the first holds it
        released = time.monotonic()
    t.join(5)
    assert out and out[0][:2] == ("got", "app/dest") and out[0][2] >= released


def test_after_a_failed_first_claim_the_second_uploads_itself():
    flight, out = UploadsInFlight(), []
    with pytest.raises(RuntimeError):
        with flight.claim(parse_reference("127.0.0.1:5000/app/dest:v1"), D, CancelToken()):
            t = _second_claim(flight, "127.0.0.1:5000/app/cache:k", out)
            time.sleep(0.1)
            raise RuntimeError("upload failed")
    t.join(5)
    assert out and out[0][:2] == ("got", None)


def test_other_registries_do_not_wait_and_a_cancelled_wait_ends():
    flight, out, token = UploadsInFlight(), [], CancelToken()
    with flight.claim(parse_reference("127.0.0.1:5000/app/dest:v1"), D, CancelToken()):
        other = _second_claim(flight, "127.0.0.1:6000/app/dest:v1", out)
        other.join(5)
        assert out and out[0][:2] == ("got", None)
        waiting = _second_claim(flight, "127.0.0.1:5000/app/cache:k", out, token)
        time.sleep(0.1)
        token.cancel()
        waiting.join(5)
        assert not waiting.is_alive() and out[1][0] == "cancelled"


def test_a_stopped_wait_ends_without_cancelling_the_client():
    flight, out, stop, token = UploadsInFlight(), [], threading.Event(), CancelToken()

    def run():
        try:
            with flight.claim(parse_reference("127.0.0.1:5000/app/dest:v1"), D, token, stop):
                out.append("got")
        except Cancelled as e:
            out.append(str(e))

    with flight.claim(parse_reference("127.0.0.1:5000/app/cache:k"), D, CancelToken()):
        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.1)
        stop.set()
        t.join(5)
    assert out and out[0].endswith("stopped") and not token.cancelled


def test_a_claim_after_a_completed_one_names_its_repository_without_waiting():
    """The first upload completed before the second one started (a small layer the cache writer
    sent before the push-while-building pool asked): the second still learns where the blob is,
    to mount it from there instead of uploading it again."""
    flight = UploadsInFlight()
    with flight.claim(parse_reference("127.0.0.1:5000/x/cache:k"), D, CancelToken()) as holder:
        assert holder is None
    t0 = time.monotonic()
    with flight.claim(parse_reference("127.0.0.1:5000/x/app:v1"), D, CancelToken()) as holder:
        assert holder == "x/cache"
    assert time.monotonic() - t0 < 0.05
    with flight.claim(parse_reference("127.0.0.1:5000/x/other:v1"), D, CancelToken()) as holder:
        assert holder == "x/cache"  # the first repository that holds it
    with flight.claim(parse_reference("127.0.0.1:6000/x/app:v1"), D, CancelToken()) as holder:
        assert holder is None  # another registry: nothing to mount from


def test_a_failed_claim_is_no_source_for_later_ones():
    flight = UploadsInFlight()
    with pytest.raises(RuntimeError):
        with flight.claim(parse_reference("127.0.0.1:5000/x/cache:k"), D, CancelToken()):
            raise RuntimeError("upload failed")
    with flight.claim(parse_reference("127.0.0.1:5000/x/app:v1"), D, CancelToken()) as holder:
        assert holder is None
