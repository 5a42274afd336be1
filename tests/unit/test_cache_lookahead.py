"""Cache lookups ahead (executor.engine.cached): the previous build's trail names the entries a
rebuild will ask for; they are looked up concurrently at the start, taken by the steps, and a
trail with unusable keys (registry data) is ignored, never a failure. A real on-disk store."""

from __future__ import annotations

from executor.cache import explain as ex
from executor.cache.layout_store import LayoutLayerCache
from executor.engine.cached import StepCache, image_config_key

K1, K2, K3, KCMD = "1" * 64, "2" * 64, "3" * 64, "4" * 64


def _store_with_trail(tmp_path, steps: dict, roots: dict) -> LayoutLayerCache:
    store = LayoutLayerCache(tmp_path / "layout", ttl_seconds=3600)
    store.store(K1, None, "RUN one")
    store.store(image_config_key(KCMD, {"a": "b"}), None, "image config", config={"os": "linux"})
    doc = ex.trail_document("r/app", "", "linux/amd64", roots, steps.items())
    store.write_trail(ex.trail_name("r/app", "", "linux/amd64"), ex.encode(doc))
    assert store.wait() == (3, 0)
    return store


def test_entries_named_by_the_trail_are_looked_up_ahead_and_taken_once(tmp_path):
    steps = {"0/0 RUN": K1, "0/1 COPY": K2, "0/2 ENV": K3, "0/3 CMD": KCMD}
    cache = StepCache(_store_with_trail(tmp_path, steps, {"0": "9" * 64}))
    cache.read_trails("r/app", "", ["linux/amd64"], {"a": "b"}, {"linux/amd64": "0"})
    cache._await_trails()
    assert cache.trails["linux/amd64"]["steps"] == steps
    # RUN and COPY keys (ENV/CMD steps are never stored) and the final config of the target stage
    assert set(cache._ahead) == {("entry", K1), ("entry", K2), ("config", image_config_key(KCMD, {"a": "b"}))}
    assert cache._lookup("entry", K1).created_by == "RUN one"
    assert cache._lookup("entry", K2) is None
    assert cache._lookup("config", image_config_key(KCMD, {"a": "b"})) == {"os": "linux"}
    assert not cache._ahead  # each taken once; a later lookup asks the store again
    assert cache._lookup("entry", K1).created_by == "RUN one"
    cache.close()


def test_run_layers_off_and_a_malformed_trail_are_not_looked_up(tmp_path):
    steps = {"0/0 RUN": K1, "0/1 COPY": "../../etc", "0/2 WORKDIR": K3, "0/3 RUN": "x" * 64}
    cache = StepCache(_store_with_trail(tmp_path, steps, {"0": "not a key"}), run_layers=False)
    cache.read_trails("r/app", "", ["linux/amd64"], {}, {"linux/amd64": "0"})
    cache._await_trails()
    assert set(cache._ahead) == {("entry", K3)}
    cache.close()
