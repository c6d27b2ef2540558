"""Concurrent runs, interrupted builds, bad inputs through doit."""
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time

from conftest import DOIT, REPO, doit, executed
from pipeline.hashing import file_digest


def _files_profile(tmp_path, default_build, scratch_profile, extra=""):
    d = tmp_path / "model"
    shutil.copytree(default_build / "inputs", d)
    return scratch_profile(f'[source]\nkind = "files"\nmodel_config_json = "{d}/model_config.json"\n'
                           f'checkpoint = "{d}/model.ckpt"\nt5_dir = "{d}/t5"\n' + extra), d


def test_second_doit_on_same_profile_exits_clearly(default_build):
    lock = default_build / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, b"4242      ", 0)
        r = doit(check=False)
    finally:
        os.close(fd)
    assert r.returncode == 3
    assert "another doit is building profile 'default' (pid 4242" in r.stdout
    assert executed(doit().stdout) <= {"collect"}  # the state file is intact


def test_kill_during_conversion_then_resume(tmp_path, default_build, scratch_profile):
    profile, _ = _files_profile(tmp_path, default_build, scratch_profile)
    out = REPO / "artifacts" / profile.stem
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    proc = subprocess.Popen([*DOIT, "dit_tflite", f"profile={profile}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    log = out / "logs" / "dit_convert.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "converting" in log.read_text()):
        time.sleep(0.2)
    assert log.exists(), "dit_convert never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "dit" / "dit_float32.tflite").exists()  # only a .tmp name can be left
    # doit records task state when the run ends, so the killed run's finished tasks re-run
    # too (their outputs come out byte-identical and are not even rewritten).
    ran = executed(doit("dit_tflite", profile=profile).stdout)
    assert "dit_convert" in ran
    assert executed(doit("dit_tflite", profile=profile).stdout) == set()
    assert (out / "dit" / "dit_model.tflite").stat().st_size > 0
    assert not list((out / "dit").glob(".tmp*"))


def test_bad_checkpoint_keeps_existing_artifacts(tmp_path, default_build, scratch_profile):
    profile, model = _files_profile(tmp_path, default_build, scratch_profile)
    doit("checkpoint", profile=profile)
    shards = REPO / "artifacts" / profile.stem / "shards"
    before = {p.name: file_digest(p) for p in shards.iterdir()}
    ckpt = model / "model.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    r = doit("checkpoint", profile=profile, check=False)
    assert r.returncode != 0
    assert f"error: {ckpt}: unreadable checkpoint" in r.stdout
    assert {p.name: file_digest(p) for p in shards.iterdir()} == before


def test_t5_width_mismatch_named(tmp_path, default_build, scratch_profile):
    import json
    profile, model = _files_profile(tmp_path, default_build, scratch_profile)
    conf = model / "t5" / "config.json"
    raw = json.loads(conf.read_text())
    raw["d_model"] = raw["d_model"] * 2
    conf.write_text(json.dumps(raw))
    r = doit("conditioners_onnx", profile=profile, check=False)
    assert r.returncode != 0
    assert f"error: {conf}: d_model: T5 width" in r.stdout


def test_t5_folder_without_spiece(tmp_path, default_build, scratch_profile):
    profile, model = _files_profile(tmp_path, default_build, scratch_profile)
    (model / "t5" / "spiece.model").unlink()
    r = doit("verify_conditioners", profile=profile, check=False)
    assert r.returncode != 0
    assert "spiece.model" in r.stdout and "verify_conditioners" in r.stdout


def test_parallel_clean_build_equals_serial_build(default_bundle, scratch_profile):
    """`doit -n 2` on a clean synthetic profile (same seed) gives the serial build's bytes."""
    profile = scratch_profile('[source]\nkind = "synthetic"\nseed = 0\n')
    doit("-n", "2", profile=profile)
    import json
    ours = json.loads((REPO / "artifacts" / profile.stem / "bundle" / "manifest.json").read_text())
    serial = json.loads((default_bundle / "bundle" / "manifest.json").read_text())
    assert ours["files"] == serial["files"]
    assert ours["source"] == serial["source"]
