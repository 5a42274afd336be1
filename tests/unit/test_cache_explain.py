"""The pure parts of cache-miss explanations (executor.cache.explain): what an entry records of
its key (short, secret-free), the trail name and document, and the sentence for each kind of
changed component."""

from __future__ import annotations

import json

from executor.cache import explain as ex
from executor.engine.cached import secret_name


def _rec(components: dict[str, str], prev: str = "p" * 64) -> dict:
    return ex.record(prev, components, secret_name)["components"]


def test_secret_names_follow_the_build_warning_rule():
    assert secret_name("API_TOKEN") and secret_name("DB_PASSWORD") and secret_name("AWS_SECRET_ACCESS_KEY")
    assert not secret_name("PUBLIC_KEY") and not secret_name("VERSION") and not secret_name("TOKENIZER")


def test_a_record_holds_no_secret_value_no_command_text_and_short_digests():
    comps = {"instruction": "RUN", "command": '["/bin/sh","-c","curl -u me:pw x"]', "script": "",
             "env API_TOKEN": "s3cr3t", "env VERSION": "1.2", "source 0 a.txt": "a.txt:" + "ab" * 32,
             "from": "stage:" + "cd" * 32, "env LONG": "x" * 500}
    doc = ex.record("9" * 64, comps, secret_name)
    text = ex.encode(doc)
    assert "s3cr3t" not in text and "curl" not in text and "x" * 100 not in text
    rec = doc["components"]
    assert doc["prev"] == "9" * 64
    assert rec["env API_TOKEN"] == ex.HIDDEN and rec["env VERSION"] == "1.2" and rec["script"] == ""
    assert rec["command"].startswith("#") and len(rec["command"]) == 17
    assert rec["source 0 a.txt"] == "a.txt:" + "ab" * 8 and rec["from"] == "stage:" + "cd" * 8
    assert rec["env LONG"].startswith("x" * 40 + "…#")
    assert ex.parse_record(text) == doc and ex.parse_record("not json") is None and ex.parse_record(None) is None


def test_a_huge_record_is_capped():
    comps = {f"source {i} f{i}": f"f{i}:" + "ab" * 32 for i in range(3000)}
    doc = ex.record("p" * 64, comps, secret_name)
    assert len(ex.encode(doc)) <= ex.MAX_RECORD and doc == {"prev": "p" * 64, "truncated": True}


def test_trail_name_and_document():
    a = ex.trail_name("reg/app", "", "linux/amd64")
    assert a.startswith("trail-") and len(a) == 6 + 32
    assert len({a, ex.trail_name("reg/app", "test", "linux/amd64"), ex.trail_name("reg/other", "", "linux/amd64"),
                ex.trail_name("reg/app", "", "linux/arm64")}) == 4
    assert ex.position("build", 3, "run") == "build/3 RUN"
    doc = ex.trail_document("reg/app", "", "linux/amd64", {"0": "r" * 64}, [("0/0 COPY", "k" * 64)])
    assert ex.parse_trail(json.dumps(doc)) == doc
    assert ex.parse_trail(json.dumps({**doc, "v": 99})) is None and ex.parse_trail("[") is None


def test_build_arg_and_env_changes_show_values_but_never_secret_ones():
    old, new = _rec({"env VERSION": "1.2", "env API_TOKEN": "a"}), _rec({"env VERSION": "1.3", "env API_TOKEN": "b"})
    assert ex.explain_components(old, new, secret=secret_name) == "build arg VERSION changed (1.2 -> 1.3)"
    assert ex.render_change("env VERSION", "1.2", "1.3", env_names=frozenset({"VERSION"})) == \
        "ENV VERSION changed (1.2 -> 1.3)"
    assert ex.render_change("env VERSION", None, "") == 'build arg VERSION changed (unset -> "")'
    # the values of a secret-looking name are never shown, even if they were recorded
    assert ex.render_change("env API_TOKEN", "old", "new", secret=secret_name) == "build arg API_TOKEN changed"
    assert ex.render_change("env API_TOKEN", ex.HIDDEN, None) == "build arg API_TOKEN changed"
    assert ex.hidden_names(old, new) == ["API_TOKEN"]
    assert ex.explain_hidden(["API_TOKEN"]) == "build arg API_TOKEN changed"
    assert ex.explain_hidden(["A_KEY", "B_TOKEN"], frozenset({"B_TOKEN"})) == "build arg A_KEY or ENV B_TOKEN changed"
    long_old, long_new = _rec({"env V": "a" * 300}), _rec({"env V": "a" * 299 + "b"})
    assert ex.explain_components(long_old, long_new) == f"build arg V changed ({'a' * 40}… -> {'a' * 40}…)"


def test_sources_name_the_path_never_the_digest():
    d1, d2 = "1" * 64, "2" * 64
    c1, c2, a1, a2 = f"{d1}/{d1}", f"{d2}/{d1}", f"{d1}/{d1}", f"{d1}/{d2}"  # <content>/<mode and owner>
    old = _rec({"source 0 requirements.txt": f"requirements.txt:{c1}"})
    new = _rec({"source 0 requirements.txt": f"requirements.txt:{c2}"})
    assert ex.explain_components(old, new) == "requirements.txt content changed"
    new = _rec({"source 0 requirements.txt": f"requirements.txt:{a2}"})
    assert ex.explain_components(old, new) == "requirements.txt mode or owner changed"
    new = _rec({"source 0 requirements.txt": f"requirements.txt:{d2}/{d2}"})
    assert ex.explain_components(old, new) == "requirements.txt content and mode or owner changed"
    old = _rec({"source 0 app/": f"app:{c1}"})
    new = _rec({"source 0 app/": f"app:{c2}"})
    assert ex.explain_components(old, new) == "app content changed"
    old = _rec({"source 0 *.txt": f"a.txt:{c1} b.txt:{c1} d.txt:{a1}"})
    new = _rec({"source 0 *.txt": f"a.txt:{c1} b.txt:{c2} c.txt:{c1}"})
    assert ex.explain_components(old, new) == "*.txt: b.txt content changed, c.txt added, d.txt removed"
    # an entry recorded before the digests were split: the path, without what changed
    old = _rec({"source 0 requirements.txt": f"requirements.txt:{d1}"})
    new = _rec({"source 0 requirements.txt": f"requirements.txt:{c2}"})
    assert ex.explain_components(old, new) == "requirements.txt changed"
    assert "1111" not in ex.explain_components(old, new)
    assert ex.render_change("source 1 <<EOF", "heredoc:1", "heredoc:2") == "source 1 <<EOF changed"
    assert ex.render_change("source 1 x", None, "x:1") == "source 1 x added"
    assert ex.render_change("mount 0 source", "context::1", "context::2") == "mount 0 source files changed"
    assert ex.render_change("from", "stage:1", "stage:2") == "the --from stage or image changed"


def test_instruction_first_then_others_capped():
    old = _rec({"instruction": "RUN", "command": "a", "user": "root", "workdir": "/", "env A": "1", "env B": "1",
                "env C": "1"})
    new = _rec({"instruction": "RUN", "command": "b", "user": "app", "workdir": "/src", "env A": "2", "env B": "2",
                "env C": "2"})
    assert ex.explain_components(old, new) == ("instruction changed; USER changed (root -> app); "
                                               "WORKDIR changed (/ -> /src); and 3 more")
    assert ex.explain_components(old, old) == ""
