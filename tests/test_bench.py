"""`./dev bench`'s fresh-checkout path (pipeline/tools/bench.py `cache_restore`) on the default
profile, so that it cannot silently break again: a copy of this tree as a clone after `./dev env`
holds it (the aarch64 userland and LiteRT.js linked in, nothing else of the ignored files)
restores every stage of the default from the run's cache and holds the same bundle."""
from conftest import RUN_CACHE, doit_shared, run_cache_locked
from pipeline.core.config import DEFAULT_PROFILE, load_profile
from pipeline.core.dag import stages
from pipeline.tools import bench


def test_the_bench_fresh_checkout_restores_every_stage_of_the_default(default_bundle, monkeypatch):
    monkeypatch.delenv("SAO_LITERT_ARTIFACTS")  # as the bench runs: the copy builds into its own artifacts/
    with run_cache_locked():
        got = bench.cache_restore(DEFAULT_PROFILE, default_bundle,
                                  {"SAO_LITERT_CACHE": RUN_CACHE.as_uri(), "SAO_LITERT_CACHE_MODE": "read"}, "toplevel")
    assert got["bundle_equal"] is True
    assert got["misses"] == 0 and got["hits"] == len(stages(load_profile(DEFAULT_PROFILE)))


def test_an_edit_that_fails_its_build_is_measured_and_undone(scratch_profile, monkeypatch):
    """The bench's edit scenarios report an edit whose build fails (at real size, LiteRT.js fails
    the swapped DiT) — its exit status and failed stage — and undo it: a figure, not the bench's end."""
    path = scratch_profile()
    doit_shared(profile=path)
    original = path.read_text()
    monkeypatch.setattr(bench, "_edited",
                        lambda settings, variants: {"unmeetable": {**settings, "app": {"max_bytes": 1}}})
    got = bench.edit_scenarios(load_profile(path))["unmeetable"]
    assert got["exit"] != 0 and got["failed"] == ["select_app"]
    assert got["undone"]["exit"] == 0 and got["undone"]["ran"] == ["select_app"]  # the same bytes: no further
    assert path.read_text() == original
    assert "FAILED (exit" in bench._edit_line(got) and "FAILED" not in bench._edit_line(got["undone"])
