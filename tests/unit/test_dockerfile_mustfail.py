"""Table-driven must-fail vectors: invalid Dockerfiles raise DockerfileError
with the expected line range and a message containing the expected text
(BuildKit Dockerfile frontend parser + instructions validation)."""

from __future__ import annotations

import pytest

from executor.dockerfile.parser import parse_dockerfile
from executor.errors import DockerfileError

F = "FROM alpine\n"

# (id, dockerfile, start_line, end_line, message fragment)
CASES = [
    ("empty-file", "", 0, 0, "file with no instructions"),
    ("only-comments", "# just a comment\n\n   # another\n", 0, 0, "file with no instructions"),
    ("only-args-no-from", "ARG A=1\nARG B\n", 2, 2, "no FROM"),
    ("unknown-instruction", F + "FOO bar\n", 2, 2, "unknown instruction: FOO"),
    ("unknown-instruction-continued", F + "RUNN a \\\n b\n", 2, 3, "unknown instruction: RUNN"),
    ("run-before-from", "RUN echo hi\nFROM a\n", 1, 1, "no build stage"),
    ("env-before-from", "ARG X\nENV A=1\nFROM a\n", 2, 2, "no build stage"),
    ("duplicate-escape-directive", "# escape=`\n# escape=\\\nFROM a\n", 2, 2, "only one escape parser directive"),
    ("duplicate-syntax-directive", "# syntax=a\n# SYNTAX=b\nFROM a\n", 2, 2, "only one syntax parser directive"),
    ("invalid-escape-token", "# escape=x\nFROM a\n", 1, 1, "invalid escape token"),
    ("run-unknown-flag", F + "RUN --foo=bar make\n", 2, 2, "unknown flag: foo"),
    ("copy-platform-flag", F + "COPY --platform=linux/amd64 a b\n", 2, 2, "unknown flag: platform"),
    ("env-with-flag", F + "ENV --x=1 A=b\n", 2, 2, "unknown flag: x"),
    ("cmd-with-flag", F + "CMD --help\n", 2, 2, "unknown flag: help"),
    ("bool-flag-bad-value", F + "COPY --link=maybe a b\n", 3 - 1, 2, "expecting boolean value for flag link"),
    ("bool-flag-empty-value", F + "COPY --link= a b\n", 2, 2, "missing a value on flag: link"),
    ("string-flag-no-value", F + "COPY --from a b\n", 2, 2, "missing a value on flag: from"),
    ("duplicate-string-flag", F + "COPY --from=a --from=b x y\n", 2, 2, "duplicate flag specified: from"),
    ("copy-one-arg", F + "COPY onlysource\n", 2, 2, "COPY requires at least two arguments"),
    ("add-no-args", F + "ADD\n", 2, 2, "ADD requires at least two arguments"),
    ("copy-heredoc-destination", F + "COPY a <<EOF\nx\nEOF\n", 2, 4, "heredoc as a destination"),
    ("shell-not-json", F + "SHELL /bin/sh -c\n", 2, 2, "SHELL requires the arguments to be in JSON form"),
    ("shell-empty-json", F + "SHELL []\n", 2, 2, "SHELL requires at least one argument"),
    ("cmd-json-non-string", F + "CMD [1, 2]\n", 2, 2, "arrays must be comprised of strings only"),
    ("copy-json-non-string", F + 'COPY ["a", {"b": 1}]\n', 2, 2, "arrays must be comprised of strings only"),
    ("env-no-value", F + "ENV FOO\n", 2, 2, "ENV must have two arguments"),
    ("env-empty", F + "ENV\n", 2, 2, "ENV requires at least one argument"),
    ("env-mixed-forms", F + "ENV a=b c\n", 2, 2, "can't find = in \"c\""),
    ("env-blank-name", F + "ENV =x\n", 2, 2, "ENV names can not be blank"),
    ("label-no-value", F + "LABEL foo\n", 2, 2, "LABEL must have two arguments"),
    ("arg-empty", F + "ARG\n", 2, 2, "ARG requires at least one argument"),
    ("from-bad-as", "FROM a BS b\n", 1, 1, "second argument must be AS"),
    ("from-two-args", "FROM a b\n", 1, 1, "FROM requires either one or three arguments"),
    ("from-no-args", "FROM\n", 1, 1, "FROM requires either one or three arguments"),
    ("from-four-args", "FROM a AS b c\n", 1, 1, "FROM requires either one or three arguments"),
    ("from-invalid-stage-name", "FROM a AS 1abc\n", 1, 1, "invalid name for build stage"),
    ("from-stage-name-symbol", "FROM a AS b@c\n", 1, 1, "invalid name for build stage"),
    ("duplicate-stage-name", "FROM a AS x\nRUN y\nFROM b AS X\n", 3, 3, "duplicate stage name \"x\""),
    ("from-unknown-flag", "FROM --arch=arm a\n", 1, 1, "unknown flag: arch"),
    ("onbuild-onbuild", F + "ONBUILD ONBUILD RUN x\n", 2, 2, "Chaining ONBUILD"),
    ("onbuild-from", F + "ONBUILD FROM x\n", 2, 2, "FROM isn't allowed as an ONBUILD trigger"),
    ("onbuild-maintainer", F + "onbuild maintainer me\n", 2, 2, "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("onbuild-empty", F + "ONBUILD\n", 2, 2, "ONBUILD requires at least one argument"),
    ("onbuild-bad-trigger-flag", F + "ONBUILD RUN --nope x\n", 2, 2, "unknown flag: nope"),
    ("unterminated-heredoc", F + "RUN <<EOF\necho hi\nEOFX\n", 2, 4, "unterminated heredoc"),
    ("unterminated-second-heredoc", F + "COPY <<A <<B /d\na\nA\nb\n", 2, 5, "unterminated heredoc"),
    ("healthcheck-none-args", F + "HEALTHCHECK NONE now\n", 2, 2, "HEALTHCHECK NONE takes no arguments"),
    ("healthcheck-unknown-type", F + "HEALTHCHECK CHECK x\n", 2, 2, "Unknown type"),
    ("healthcheck-missing-cmd", F + "HEALTHCHECK CMD\n", 2, 2, "Missing command after HEALTHCHECK CMD"),
    ("healthcheck-empty", F + "HEALTHCHECK\n", 2, 2, "HEALTHCHECK requires at least one argument"),
    ("healthcheck-bad-interval", F + "HEALTHCHECK --interval=5 CMD true\n", 2, 2, "invalid duration"),
    ("healthcheck-tiny-interval", F + "HEALTHCHECK --interval=10us CMD true\n", 2, 2, "cannot be less than 1ms"),
    ("healthcheck-negative-retries", F + "HEALTHCHECK --retries=-1 CMD true\n", 2, 2, "--retries cannot be negative"),
    ("healthcheck-bad-flag", F + "HEALTHCHECK --every=5s CMD true\n", 2, 2, "unknown flag: every"),
    ("workdir-empty", F + "WORKDIR\n", 2, 2, "WORKDIR requires exactly one argument"),
    ("user-empty", F + "USER\n", 2, 2, "USER requires exactly one argument"),
    ("expose-empty", F + "EXPOSE\n", 2, 2, "EXPOSE requires at least one argument"),
    ("volume-empty-string", F + 'VOLUME [""]\n', 2, 2, "VOLUME specified can not be an empty string"),
    ("volume-empty", F + "VOLUME\n", 2, 2, "VOLUME requires at least one argument"),
    # an unbalanced quote makes the line lex fail, so BuildKit sees no heredoc: the body is an instruction
    ("heredoc-unbalanced-quote-not-heredoc", F + "RUN <<'EOF\nx\n", 3, 3, "unknown instruction: x"),
    ("error-after-continuation-lines", F + "RUN ok\nCOPY \\\n  onlyone\n", 3, 4, "COPY requires at least two arguments"),
]


@pytest.mark.parametrize("text,start,end,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_must_fail(text, start, end, fragment):
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(text, filename="Dockerfile.bad")
    err = info.value
    assert (err.start, err.end) == (start, end), str(err)
    assert fragment in err.detail, str(err)
    assert err.filename == "Dockerfile.bad"
    assert str(err).startswith("Dockerfile.bad")
