"""The shared build cache through doit, as machines would use it: copies of the repository in
different folders, each with its own copy of the model, sharing a real S3 server (SeaweedFS on
loopback). Scenarios a–g of the cache issue; the tests share state and run in file order.
Restores keep what only other stages read in the store (`download = "toplevel"`, the default)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import DIT_CHAIN, DOIT, NO_AARCH64, doit, doit_shared, edit_dit_tensor, executed, in_checkout
from pipeline.core.hashing import file_digest
from pipeline.tools.bench import checkout
from pipeline.tools.seaweed import BUCKET, SECRET_KEY, SeaweedS3

PROFILE = "cached"


@pytest.fixture(scope="module")
def world(tmp_path_factory, default_build):
    tmp = tmp_path_factory.mktemp("cache")
    server = SeaweedS3(tmp / "s3").start()
    machines = {}
    for name in ("one", "two", "three"):
        model = tmp / f"model_{name}"
        shutil.copytree(default_build / "inputs", model)
        clone = checkout(tmp / name / "sao-litert")
        (clone / "profiles" / f"{PROFILE}.toml").write_text(
            f'[source]\nkind = "files"\nmodel_config_json = "{model}/model_config.json"\n'
            f'checkpoint = "{model}/model.ckpt"\nt5_dir = "{model}/t5"\n' + NO_AARCH64)
        machines[name] = {"clone": clone, "model": model, "out": clone / "artifacts" / PROFILE}
    yield {"server": server, "tmp": tmp, **machines}
    server.stop()
    assert server.proc.poll() is not None


def build(world, machine, *args, url=f"s3://{BUCKET}/shared", env=None, check=True, secret=SECRET_KEY):
    m = world[machine]
    e = {**world["server"].env(secret), "SAO_LITERT_CACHE": url, **(env or {})}
    return doit(*args, f"profile=profiles/{PROFILE}.toml", env=e, check=check, cwd=m["clone"])


def stats(world, machine) -> dict:
    return json.loads((world[machine]["out"] / "logs" / "last_build.json").read_text())


def manifest_files(world, machine) -> dict:
    return json.loads((world[machine]["out"] / "bundle" / "manifest.json").read_text())["files"]


def warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning:")]


def kept(world, machine) -> dict:
    """Files a restore left in the store: path under the profile's folder → digest, size."""
    return json.loads((world[machine]["out"] / ".remote.json").read_text())


def test_a_second_machine_restores_everything(world):
    # The first machine's build: the run's own build of this model (restored from the run's cache
    # but collect: another profile name), pushed to the team's store. (A build that uploads as it
    # goes: test b.)
    ran = executed(doit_shared(f"profile=profiles/{PROFILE}.toml", cwd=world["one"]["clone"]).stdout)
    build(world, "one", "cache_push")
    assert "collect" in ran and stats(world, "one")["bytes_up"] > 0

    second = build(world, "two").stdout
    assert executed(second) == ran  # doit ran every action, and each one restored:
    assert second.count("restored from cache") == len(ran)
    s = stats(world, "two")
    assert (s["hits"], s["misses"], s["bytes_up"]) == (len(ran), 0, 0)
    assert set(s["stages"].values()) == {"restored"}
    fs = world["server"].fs()  # a writer's restores mark the entries used (what `cache gc` goes by)
    assert len(fs.ls(f"{BUCKET}/shared/used")) == len(ran)
    log = "logs/collect.log"  # the stage's own log comes with it
    assert (world["two"]["out"] / log).read_bytes() == (world["one"]["out"] / log).read_bytes()
    assert manifest_files(world, "two") == manifest_files(world, "one")
    # Only what no stage reads came down: the bundle and the reports; the rest stays in the store.
    left = kept(world, "two")
    assert {"dit/dit.pt2", "dit/dit_float32.tflite", "shards/dit.safetensors", "conditioners/conditioners.onnx"} <= set(left)
    assert not any((world["two"]["out"] / f).exists() for f in left)
    assert all(left[f]["digest"] == file_digest(world["one"]["out"] / f) for f in left)
    assert s["bytes_left_in_cache"] == sum(v["size"] for v in left.values())
    assert executed(build(world, "two").stdout) == set()  # restored results are up to date

    wav = world["tmp"] / "two.wav"
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "generate", "--bundle", str(world["two"]["out"] / "bundle"),
                        "--prompt", "warm pad", "--seconds", "1", "--seed", "1", "--steps", "2", "--out", str(wav)],
                       cwd=world["two"]["clone"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout
    assert wav.stat().st_size > 44


def test_b_changed_tensor_built_once_restored_elsewhere(world):
    edit_dit_tensor(world["two"]["model"] / "model.ckpt")
    out = build(world, "two").stdout
    assert executed(out) == {"checkpoint", *DIT_CHAIN, "collect", "attest"}
    assert "restored from cache" not in out
    assert stats(world, "two")["bytes_up"] > 0

    shutil.copyfile(world["two"]["model"] / "model.ckpt", world["one"]["model"] / "model.ckpt")
    out = build(world, "one").stdout
    assert executed(out) == {"checkpoint", *DIT_CHAIN, "collect", "attest"}
    s = stats(world, "one")
    assert (s["hits"], s["misses"], s["bytes_up"]) == (8, 0, 0)
    assert manifest_files(world, "one") == manifest_files(world, "two")


def test_c_corrupt_blob_is_detected_rebuilt_and_replaced(world):
    """One blob, read twice: by collect's restore (the bundle's copy) and, when collect then builds
    here, as collect's input that b's restore left in the store. Both reads detect it by hash; the
    stage that made it runs here again, and its upload replaces the bad blob."""
    digest = kept(world, "one")["dit/dit_model.tflite"]["digest"]
    fs = world["server"].fs()
    blob = f"{BUCKET}/shared/cas/{digest}"
    fs.pipe_file(blob, b"not a tflite file")
    (world["one"]["out"] / "bundle" / "dit_model.tflite").unlink()
    out = build(world, "one").stdout
    assert executed(out) == {"collect"}
    [warning] = warnings(out)
    assert f"blob {digest}" in warning and "corrupt" in warning
    assert "dit_quantize: running it here again: dit_model.tflite is not available from the cache" in out
    assert file_digest(world["one"]["out"] / "dit" / "dit_model.tflite") == digest  # the same bytes …
    assert manifest_files(world, "one") == manifest_files(world, "two")
    local = world["tmp"] / "blob"
    fs.get_file(blob, str(local))
    assert file_digest(local) == digest  # … and the bad blob replaced


def test_fetch_and_clean_handle_files_left_in_the_store(world):
    first = build(world, "three").stdout
    assert first.count("restored from cache") == len(executed(first))
    left = kept(world, "three")
    assert left and not any((world["three"]["out"] / f).exists() for f in left)
    doit("clean", f"profile=profiles/{PROFILE}.toml", cwd=world["three"]["clone"])
    assert kept(world, "three") == {}  # clean forgets them too: the next build restores again
    assert build(world, "three").stdout.count("restored from cache") == len(executed(first))

    assert kept(world, "three") == left
    out = build(world, "three", "fetch").stdout
    assert executed(out) == {"fetch"}
    for f, rec in left.items():
        assert file_digest(world["three"]["out"] / f) == rec["digest"], f
    assert kept(world, "three") == {}
    assert executed(build(world, "three").stdout) == set()
    # A fetched file is known by the stat it was verified with: the no-op after the fetch does not
    # read it (bytes rewritten in place with that stat kept go unseen, as doit's own mtime check),
    # and a new mtime over the same bytes is hashed and found unchanged.
    f = world["three"]["out"] / sorted(left)[0]
    st, data = f.stat(), f.read_bytes()
    with open(f, "r+b") as fh:
        fh.write(bytes(b ^ 0xFF for b in data[:64]))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert executed(build(world, "three").stdout) == set()
    f.write_bytes(data)
    assert executed(build(world, "three").stdout) == set()

def test_d_kill_during_upload_leaves_no_entry(world):
    url, fs = f"s3://{BUCKET}/killed", world["server"].fs()
    doit("forget", "checkpoint", f"profile=profiles/{PROFILE}.toml", cwd=world["one"]["clone"])
    env = {**os.environ, **in_checkout(world["one"]["clone"]), **world["server"].env(), "SAO_LITERT_CACHE": url,
           "SAO_LITERT_CACHE_TEST_PAUSE_S": "120"}
    proc = subprocess.Popen([*DOIT, f"profile=profiles/{PROFILE}.toml"], cwd=world["one"]["clone"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while not fs.exists(f"{BUCKET}/killed/cas") and time.monotonic() < deadline:
        time.sleep(0.2)
        fs.invalidate_cache()
    time.sleep(1)  # the rest of the stage's blobs
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert fs.ls(f"{BUCKET}/killed/cas"), "no blob was uploaded before the kill"
    assert not fs.exists(f"{BUCKET}/killed/ac")
    # The stage itself had finished (uploads run beside the build): the next build succeeds with
    # nothing to do, and the next run of the stage writes the entry.
    assert executed(build(world, "one", url=url).stdout) == set()
    doit("forget", "checkpoint", f"profile=profiles/{PROFILE}.toml", cwd=world["one"]["clone"])
    assert executed(build(world, "one", url=url).stdout) == {"checkpoint"}
    fs.invalidate_cache()
    assert len(fs.ls(f"{BUCKET}/killed/ac")) == 1


def test_f_read_only_uploads_nothing_and_off_never_touches_the_store(world):
    fs = world["server"].fs()
    doit("forget", "checkpoint", f"profile=profiles/{PROFILE}.toml", cwd=world["one"]["clone"])
    out = build(world, "one", url=f"s3://{BUCKET}/readonly", env={"SAO_LITERT_CACHE_MODE": "read"}).stdout
    assert executed(out) == {"checkpoint"} and not warnings(out)
    s = stats(world, "one")
    assert (s["mode"], s["misses"], s["bytes_up"]) == ("read", 1, 0)
    assert not fs.exists(f"{BUCKET}/readonly")

    store = world["tmp"] / "never" / "store"
    doit("forget", "checkpoint", f"profile=profiles/{PROFILE}.toml", cwd=world["one"]["clone"])
    out = build(world, "one", url=store.as_uri(), env={"SAO_LITERT_CACHE_MODE": "off"}).stdout
    assert executed(out) == {"checkpoint"} and not warnings(out)
    assert not store.parent.exists()
    assert stats(world, "one")["mode"] == "off"


def test_g_edited_module_that_no_list_names_changes_the_key(world):
    module = world["two"]["clone"] / "runtime" / "ping_pong.py"
    users = {f.stem for f in (world["two"]["out"] / ".deps").glob("*.json")
             if "runtime/ping_pong.py" in json.loads(f.read_text())["files"]}
    assert users == {"verify_dit", "select_app", "collect"}  # discovered from the stage processes' imports
    module.write_text(module.read_text() + "\n# an edit\n")
    out = build(world, "two").stdout
    assert executed(out) == users
    s = stats(world, "two")
    assert (s["hits"], s["misses"]) == (0, 3)
    assert executed(build(world, "two").stdout) == set()


def test_h_cache_push_seeds_a_store_from_a_finished_build(world):
    url = f"s3://{BUCKET}/pushed"
    before = manifest_files(world, "one")
    assert "dit/dit.pt2" in kept(world, "one")  # left in the shared store by b's restore …
    r = build(world, "one", "cache_push", url=url, check=False)
    assert r.returncode != 0 and "not pushed: dit_reauthor" in r.stdout  # … so not pushable from here
    assert executed(build(world, "one", "fetch").stdout) == {"fetch"}
    out = build(world, "one", "cache_push", url=url).stdout
    assert executed(out) == {"cache_push"}  # every stage was up to date: nothing rebuilt
    assert stats(world, "one")["bytes_up"] > 0
    doit("clean", f"profile=profiles/{PROFILE}.toml", cwd=world["one"]["clone"])
    assert not (world["one"]["out"] / "bundle" / "manifest.json").exists()
    out = build(world, "one", url=url, env={"SAO_LITERT_CACHE_DOWNLOAD": "all"}).stdout
    assert out.count("restored from cache") == len(executed(out)) == 14
    assert manifest_files(world, "one") == before
    assert kept(world, "one") == {} and (world["one"]["out"] / "dit" / "dit.pt2").is_file()  # all downloaded


def test_bad_credentials_build_locally_with_one_warning(world):
    doit("forget", "collect", "verify_dit", f"profile=profiles/{PROFILE}.toml", cwd=world["one"]["clone"])
    out = build(world, "one", secret="wrong-secret").stdout
    assert executed(out) == {"verify_dit", "collect"}
    [warning] = warnings(out)
    assert "building locally" in warning and "wrong-secret" not in out


def test_no_credentials_in_any_written_file(world):
    fs = world["server"].fs()
    for m in ("one", "two"):
        for f in world[m]["out"].rglob("*"):
            if f.is_file() and f.stat().st_size < 50e6:
                assert SECRET_KEY.encode() not in f.read_bytes(), f
    for path in fs.find(f"{BUCKET}/shared"):
        assert SECRET_KEY.encode() not in fs.cat_file(path), path


def test_e_stopped_server_builds_locally_with_one_warning(world):
    world["server"].stop()
    doit("forget", "collect", "verify_dit", f"profile=profiles/{PROFILE}.toml", cwd=world["one"]["clone"])
    t0 = time.monotonic()
    r = build(world, "one")
    assert executed(r.stdout) == {"verify_dit", "collect"}
    [warning] = warnings(r.stdout)
    assert "unusable" in warning and "building locally" in warning
    assert time.monotonic() - t0 < 120

    # A stage whose input a restore left in the (now dead) store: that input's stage runs here.
    assert "conditioners/conditioners.onnx" in kept(world, "two")
    doit("forget", "conditioners_tflite", f"profile=profiles/{PROFILE}.toml", cwd=world["two"]["clone"])
    r = build(world, "two")
    assert executed(r.stdout) == {"conditioners_tflite"}  # same bytes: nothing after it re-runs
    [warning] = warnings(r.stdout)
    assert "unusable" in warning
    assert "conditioners_onnx: running it here again" in r.stdout
    assert (world["two"]["out"] / "conditioners" / "conditioners.onnx").is_file()
