"""`./dev bench`'s fresh-checkout path (pipeline/tools/bench.py `cache_restore`) on the default
profile, so that it cannot silently break again: a copy of this tree as a clone after `./dev env`
holds it (the aarch64 userland and LiteRT.js linked in, nothing else of the ignored files)
restores every stage of the default from the run's cache and holds the same bundle."""
from conftest import RUN_CACHE, run_cache_locked
from pipeline.core.config import DEFAULT_PROFILE, load_profile
from pipeline.core.dag import stages
from pipeline.tools.bench import cache_restore


def test_the_bench_fresh_checkout_restores_every_stage_of_the_default(default_bundle, monkeypatch):
    monkeypatch.delenv("SAO_LITERT_ARTIFACTS")  # as the bench runs: the copy builds into its own artifacts/
    with run_cache_locked():
        got = cache_restore(DEFAULT_PROFILE, default_bundle,
                            {"SAO_LITERT_CACHE": RUN_CACHE.as_uri(), "SAO_LITERT_CACHE_MODE": "read"}, "toplevel")
    assert got["bundle_equal"] is True
    assert got["misses"] == 0 and got["hits"] == len(stages(load_profile(DEFAULT_PROFILE)))
