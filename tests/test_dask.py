"""Stages on a Dask cluster (the executor issue): a real scheduler and two workers in separate
processes (distributed.LocalCluster), files moving only through a real S3 cache (SeaweedFS on
loopback). The client is doit in a copy of the repository; the workers run this checkout's code
in their own scratch folders and never see the copy's artifacts/. Tests share state, in order."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import psutil
import pytest

from conftest import ARTIFACTS, DOIT, NO_AARCH64, doit, executed, files_source, in_checkout
from pipeline.tools.bench import checkout
from pipeline.tools.seaweed import BUCKET, SeaweedS3, free_port
from pipeline.cluster.worker import EVENT_TOPIC

STAGES = {"synth", "checkpoint", "conditioners_onnx", "conditioners_tflite", "verify_conditioners", "dit_reauthor",
          "dit_convert", "dit_quantize", "verify_dit", "autoencoder_reauthor", "autoencoder_convert",
          "verify_autoencoder", "select_app", "collect", "attest"}
RESTORED = {"synth", "checkpoint", "conditioners_onnx", "conditioners_tflite", "verify_conditioners"}  # test c
SYNTHETIC = '[source]\nkind = "synthetic"\nseed = 0\n' + NO_AARCH64


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from distributed import Client, LocalCluster
    tmp = tmp_path_factory.mktemp("dask")
    server = SeaweedS3(tmp / "s3").start()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, resources={"MEM": 4e9}, env=server.env(),
                           local_directory=str(tmp / "workers"))
    client = Client(cluster)
    clone = checkout(tmp / "client" / "sao-litert")
    yield {"server": server, "cluster": cluster, "client": client, "clone": clone, "tmp": tmp}
    client.close()
    cluster.close()
    server.stop()


def profile(world, name: str, body: str = SYNTHETIC) -> str:
    (world["clone"] / "profiles" / f"{name}.toml").write_text(body)
    return f"profiles/{name}.toml"


def cluster_env(world, prefix: str) -> dict:
    return {**world["server"].env(), "SAO_LITERT_CACHE": f"s3://{BUCKET}/{prefix}",
            "SAO_LITERT_SCHEDULER": world["cluster"].scheduler_address}


def executions(world, since: float, failed=False) -> Counter:
    """Stages the workers ran to success (or failure) since `since`: the workers' events."""
    return Counter(msg["stage"] for t, msg in world["client"].get_events(EVENT_TOPIC)
                   if t >= since and bool(msg.get("failed")) == failed)


def manifest_files(out) -> dict:
    """The bundle's files but the web client's (the default profile checks it; these profiles do not)."""
    files = json.loads((out / "bundle" / "manifest.json").read_text())["files"]
    return {k: v for k, v in files.items() if k != "conditioners_int32.tflite"}


def test_a_cluster_build_equals_local_build(world, default_bundle):
    since = time.time()
    out = doit(profile=profile(world, "clustered"), env=cluster_env(world, "a"), cwd=world["clone"]).stdout
    assert executed(out) == STAGES
    built = world["clone"] / "artifacts" / "clustered"
    stats = json.loads((built / "logs" / "last_build.json").read_text())
    assert all(v.startswith("ran on tcp://127.0.0.1:") for v in stats["stages"].values()), stats["stages"]
    assert executions(world, since) == Counter(STAGES)
    assert manifest_files(built) == manifest_files(default_bundle)
    assert (built / "logs" / "dit_convert.log").read_text().count("done in") == 1  # the worker's log came back
    assert not (ARTIFACTS / "clustered").exists()  # the workers' checkout holds no client artifacts
    assert executed(doit(profile=profile(world, "clustered"), env=cluster_env(world, "a"),
                         cwd=world["clone"]).stdout) == set()


def test_b_worker_killed_mid_conversion_build_completes(world, default_bundle):
    """Test a's store without the decoder conversion's entry: that stage runs on the cluster (the
    rest restores), its worker is killed mid-conversion, the scheduler gives it to the other."""
    fs = world["server"].fs()
    fs.invalidate_cache()
    for entry in fs.find(f"{BUCKET}/a/ac"):
        if json.loads(fs.cat_file(entry))["stage"] == "autoencoder_convert":
            fs.rm(entry)
    since = time.time()
    env = {**os.environ, **in_checkout(world["clone"]), **cluster_env(world, "a")}
    proc = subprocess.Popen([*DOIT, f"profile={profile(world, 'killed')}"], cwd=world["clone"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runner = _wait_for_runner("autoencoder_convert", proc)
    worker = runner.parent()
    os.kill(worker.pid, signal.SIGKILL)
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output[-3000:]
    assert not runner.is_running() or runner.status() == psutil.STATUS_ZOMBIE  # died with its worker
    assert executions(world, since)["autoencoder_convert"] == 1  # the second try, on a live worker
    built = world["clone"] / "artifacts" / "killed"
    assert manifest_files(built) == manifest_files(default_bundle)
    fs.invalidate_cache()  # nothing partial reached the cache: every entry's blobs are whole
    for entry in fs.find(f"{BUCKET}/a/ac"):
        e = json.loads(fs.cat_file(entry))
        for blob in [*e["outputs"].values(), e["log"]]:
            assert fs.size(f"{BUCKET}/a/cas/{blob['digest']}") == blob["size"]


def _wait_for_runner(stage: str, doit_proc, timeout=300) -> psutil.Process:
    """The worker-side stage process of `stage` (its scratch folder is named after the stage)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and doit_proc.poll() is None:
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if "pipeline.core.runner" in cmd and "--job" in cmd and f"/{stage}-" in cmd[-1]:
                time.sleep(2)  # well into the conversion
                return p
        time.sleep(0.2)
    raise AssertionError(f"no worker ran {stage}")


def test_c_two_recipes_at_once_share_every_common_stage(world):
    """Test a's store without the entries of the DiT and decoder chains and after them (the
    source and conditioners' stages restore): the two recipes run those at once, every stage
    they share once."""
    fs = world["server"].fs()
    fs.invalidate_cache()
    for entry in fs.find(f"{BUCKET}/a/ac"):
        if json.loads(fs.cat_file(entry))["stage"] not in RESTORED:
            fs.rm(entry)
    since = time.time()
    a = profile(world, "recipe_a")
    b = profile(world, "recipe_b", SYNTHETIC + '[dit]\nvariants = ["weight_only_wi8_afp32"]\n')
    env = {**os.environ, **in_checkout(world["clone"]), **cluster_env(world, "a"),
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    r = subprocess.run([sys.executable, "-m", "pipeline.tools.cli", "build-many", a, b], cwd=world["clone"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "at once on the Dask cluster" in r.stdout
    per_recipe = {"dit_quantize", "verify_dit", "select_app", "collect", "attest"}
    assert executions(world, since) == Counter({s: 2 if s in per_recipe else 1 for s in STAGES - RESTORED})
    fa, fb = (manifest_files(world["clone"] / "artifacts" / n) for n in ("recipe_a", "recipe_b"))
    assert {f for f in fa.keys() | fb.keys() if fa.get(f) != fb.get(f)} == {
        "dit_model.tflite", "variants/dit_dynamic_wi8_afp32.tflite", "variants/dit_weight_only_wi8_afp32.tflite"}


def test_d_key_mismatch_is_refused_by_the_worker(world):
    """The client's copy of a stage's code differs from the workers': they refuse, naming the file."""
    path = world["clone"] / "stages" / "quantize.py"  # the module of dit_quantize and autoencoder_quantize
    original = path.read_text()
    path.write_text(original + "# a local edit the workers do not have\n")
    try:
        r = doit(profile=profile(world, "clustered"), env=cluster_env(world, "a"), cwd=world["clone"], check=False)
    finally:
        path.write_text(original)
    assert r.returncode != 0
    errors = [line for line in r.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refuses stage 'dit_quantize'" in errors[0], r.stdout[-3000:]
    assert "code.stages/quantize.py" in errors[0]


def test_e_stage_failing_on_a_worker_fails_once_with_its_error_line(world, default_build):
    model = world["tmp"] / "bad_model"
    shutil.copytree(default_build / "inputs", model)
    config = json.loads((model / "model_config.json").read_text())
    (model / "model_config.json").write_text(json.dumps({**config, "sample_rate": "fast"}))
    since = time.time()
    r = doit(profile=profile(world, "bad", files_source(model)), env=cluster_env(world, "e"), cwd=world["clone"],
             check=False)
    assert r.returncode != 0
    errors = [line for line in r.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stdout[-3000:]
    assert f"{model}/model_config.json: sample_rate:" in errors[0]  # the client's path, the field
    assert executions(world, since, failed=True) == Counter({"checkpoint": 1})  # not retried
    assert "sample_rate" in (world["clone"] / "artifacts" / "bad" / "logs" / "checkpoint.log").read_text()


def test_f_bad_setup_fails_before_any_work(world):
    name = profile(world, "clustered")
    out = world["clone"] / "artifacts" / "clustered"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    dead = f"tcp://127.0.0.1:{free_port()}"
    for env, says in [({"SAO_LITERT_SCHEDULER": world["cluster"].scheduler_address}, "cache.url"),
                      ({**cluster_env(world, "a"), "SAO_LITERT_SCHEDULER": dead}, "cannot reach the Dask scheduler")]:
        t0 = time.monotonic()
        r = doit(profile=name, env=env, cwd=world["clone"], check=False)
        assert r.returncode != 0
        errors = [line for line in r.stdout.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and says in errors[0], r.stdout
        assert time.monotonic() - t0 < 60
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
