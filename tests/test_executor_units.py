"""The executor's parts without a cluster: [executor] settings and their errors, per-stage memory
needs, and the admission of concurrent local stages (memory, one per core, longest chain first)."""
import threading
import time

import pytest

from conftest import NO_AARCH64, write_profile
from pipeline.cluster import executor
from pipeline.core import resources
from pipeline.core.config import load_profile
from pipeline.core.errors import InputError

SOURCE = '[source]\nkind = "synthetic"\n'
SYNTHETIC = SOURCE + NO_AARCH64


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("SAO_LITERT_SCHEDULER", "SAO_LITERT_CACHE", "SAO_LITERT_CACHE_MODE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("body, field", [
    ('[executor]\nkind = "dask"\n', "executor.scheduler"),
    ('[executor]\nkind = "dask"\nscheduler = "tcp://127.0.0.1:8786"\n', "cache.url"),
    ('[executor]\nkind = "dask"\nscheduler = "tcp://127.0.0.1:8786"\n[cache]\nurl = "file:///tmp/c"\nmode = "read"\n',
     "cache.mode"),
])
def test_dask_executor_needs_a_scheduler_and_a_writable_cache(tmp_path, body, field):
    p = write_profile(tmp_path, "x", SYNTHETIC + body)
    with pytest.raises(InputError) as e:
        executor.settings(load_profile(p))
    assert (e.value.file, e.value.field) == (str(p), field)


def test_environment_selects_the_dask_executor(tmp_path, monkeypatch):
    p = write_profile(tmp_path, "x", SYNTHETIC)
    assert executor.settings(load_profile(p)).kind == "local"
    monkeypatch.setenv("SAO_LITERT_SCHEDULER", "tcp://10.0.0.5:8786")
    monkeypatch.setenv("SAO_LITERT_CACHE", "s3://bucket/prefix")
    s = executor.settings(load_profile(p))
    assert (s.kind, s.scheduler) == ("dask", "tcp://10.0.0.5:8786")


def test_memory_needs_follow_the_model_size(tmp_path):
    from pipeline.core.dag import stages
    from pipeline.core.stage import Stage
    tiny = load_profile(write_profile(tmp_path, "tiny", SYNTHETIC))
    real = load_profile(write_profile(tmp_path, "real", SOURCE + 'preset = "real"\n' + NO_AARCH64))
    s = {st.name: st for st in stages(real)}
    assert resources.need(s["dit_convert"], real) > 7.0e9  # measured 7049 MB peak at real size
    assert resources.need(s["dit_convert"], tiny) < 1.0e9
    assert resources.need(s["collect"], real) < resources.need(s["dit_quantize"], real) < resources.need(s["dit_convert"], real)
    # a quantize stage has the figures of the model it quantizes, whatever its name
    quantize = [Stage(f"q{i}", "", "quantize", {}, {}, {"role": m}) for i, m in enumerate(("decoder", "dit"))]
    assert resources.need(quantize[0], real) < resources.need(quantize[1], real) == resources.need(s["dit_quantize"], real)
    new = Stage("a_new_stage", "", "a_new_stage", {}, {})
    assert resources.need(new, tiny) == max(resources.need(st, tiny) for st in stages(tiny))


def _concurrency(budget: float, needs: list[float], slots=8) -> int:
    """The most stages the admission let run at once, each stage holding its memory for 0.3 s."""
    adm, running, peak, lock = resources.Admission(int(budget), slots), [0], [0], threading.Lock()

    def stage(i, need):
        with adm.admit(f"s{i}", int(need)):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.3)
            with lock:
                running[0] -= 1
    threads = [threading.Thread(target=stage, args=(i, n)) for i, n in enumerate(needs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "admission deadlocked"
    return peak[0]


def test_admission_keeps_big_stages_apart():
    gb = 1e9
    assert _concurrency(16 * gb, [8.1 * gb] * 3) == 1   # a 16 GB laptop: one 7 GB conversion at a time
    assert _concurrency(16 * gb, [5 * gb] * 3) == 3
    assert _concurrency(16 * gb, [8.1 * gb, 0.5 * gb, 0.5 * gb]) == 3
    assert _concurrency(4 * gb, [8.1 * gb, 8.1 * gb]) == 1  # larger than the budget: runs alone
    assert _concurrency(64 * gb, [1 * gb] * 5, slots=2) == 2    # one stage process per core


def test_admission_starts_the_longest_remaining_chain_first():
    adm, started = resources.Admission(int(64e9), slots=1), []
    hold = threading.Event()

    def first():
        with adm.admit("first", 1):
            hold.wait(10)
    threads = [threading.Thread(target=first)]
    threads[0].start()
    time.sleep(0.2)  # "first" runs; the others queue behind it in arrival order 1, 2, 3

    def stage(name, prio):
        with adm.admit(name, 1, prio):
            started.append(name)
    for name, prio in (("short", 10.0), ("long", 300.0), ("middle", 50.0)):
        threads.append(threading.Thread(target=stage, args=(name, prio)))
        threads[-1].start()
        time.sleep(0.1)
    hold.set()
    for t in threads:
        t.join(timeout=10)
    assert started == ["long", "middle", "short"]


def test_a_quick_stage_takes_no_core(tmp_path):
    """collect writes the bundle while the checks hold every core; it still waits for memory."""
    from pipeline.core.dag import stages
    quick = {s.name for s in stages(load_profile(write_profile(tmp_path, "q", SOURCE))) if resources.quick(s)}
    assert {"collect", "attest", "web_conditioners"} <= quick
    assert not quick & {"select_app", "verify_web", "verify_aarch64", "verify_dit", "conditioners_tflite"}
    adm, hold, started = resources.Admission(100, slots=1), threading.Event(), []

    def run(name, nbytes, core):
        with adm.admit(name, nbytes, core=core):
            started.append(name)
            hold.wait(10)
    threads = [threading.Thread(target=run, args=a) for a in (("check", 60, True), ("collect", 30, False),
                                                               ("other", 1, True), ("big", 30, False))]
    for t in threads:
        t.start()
        time.sleep(0.2)
    assert started == ["check", "collect"]  # "other" waits for the core, "big" for memory
    hold.set()
    for t in threads:
        t.join(timeout=10)
    assert sorted(started[2:]) == ["big", "other"]


def test_remaining_chain_follows_the_dag(tmp_path):
    from pipeline.core.dag import stages
    rest = resources.remaining_seconds(stages(load_profile(write_profile(tmp_path, "x", SYNTHETIC))))
    m = {k: v[2] for k, v in resources.MEASURED.items()}
    assert rest["attest"] == m["attest"] and rest["collect"] == m["collect"] + m["attest"]
    assert rest["autoencoder_convert"] == pytest.approx(m["autoencoder_convert"] + m["verify_autoencoder"] + m["select_app"]
                                                        + m["collect"] + m["attest"])
    assert rest["synth"] == max(rest.values())


def test_build_many_refuses_two_profiles_of_one_name(tmp_path, caplog):
    from pipeline.cluster import many
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        write_profile(d, "same", SYNTHETIC)
    assert many.main([a / "same.toml", b / "same.toml"]) == 2
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("error:")]
    assert "same name (same)" in line
