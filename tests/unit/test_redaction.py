"""URL credentials are redacted wherever an instruction's text is shown or recorded."""

from executor.engine.step import shorten
from executor.redaction import redact_userinfo


def test_every_url_in_a_text_loses_its_userinfo():
    text = "ADD https://u:tok@h.example/a git://x@h2/r.git /dst"
    assert redact_userinfo(text) == "ADD https://***@h.example/a git://***@h2/r.git /dst"


def test_text_without_userinfo_is_unchanged():
    for text in ("COPY a@b /c", "RUN echo https://h/p?x=a@b", "ADD https://h/f#a@b /f", "mail@example.com"):
        assert redact_userinfo(text) == text


def test_shorten_redacts_for_logs_and_records():
    assert shorten("ADD http://deploy:s3cr3t@127.0.0.1:1/f /f\nmore") == "ADD http://***@127.0.0.1:1/f /f"
