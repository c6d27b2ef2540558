"""Concurrent runs, interrupted builds, bad inputs through doit."""
import fcntl
import os
import signal
import subprocess
import sys
import time

from conftest import files_profile, DOIT, REPO, doit, executed


def test_second_doit_on_same_profile_exits_clearly(default_bundle):
    lock = default_bundle / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, b"4242      ", 0)
        r = doit(check=False)
    finally:
        os.close(fd)
    assert r.returncode == 3
    assert "another doit is building profile 'default' (pid 4242" in r.stdout
    assert executed(doit().stdout) == set()  # the state file is intact


def _log_has(out, stage, text=""):
    log = out / "logs" / f"{stage}.log"
    return lambda: log.exists() and text in log.read_text()


def test_sigkill_at_four_points_then_resume(tmp_path, default_build, scratch_profile):
    """SIGKILL a full build during the checkpoint split, a litert-torch conversion, onnx2tf and
    collect. After each kill the stage's targets are absent (only .tmp names can be left), tasks
    finished before the kill stay done, and the last run completes with a bundle that verifies."""
    profile, _ = files_profile(tmp_path, default_build, scratch_profile)
    out = REPO / "artifacts" / profile.stem
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    points = [("checkpoint", _log_has(out, "checkpoint"), ["shards/dit.safetensors", "shards/source.json"]),
              ("dit_convert", _log_has(out, "dit_convert", "converting"), ["dit/dit_float32.tflite"]),
              ("conditioners_tflite", _log_has(out, "conditioners_tflite", "saved_model"),
               ["conditioners/conditioners_float32.tflite", "conditioners/conditioners_float16.tflite"]),
              # collect takes ~0.1 s: kill it as soon as its process has opened its log
              ("collect", _log_has(out, "collect"), ["bundle/manifest.json", "bundle/dit_model.tflite"])]
    for stage, started, targets in points:
        (out / "logs" / f"{stage}.log").unlink(missing_ok=True)
        task = [] if stage == "collect" else [stage]  # the last one is a plain full `doit`
        proc = subprocess.Popen([*DOIT, *task, f"profile={profile}"], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline and not started() and proc.poll() is None:
            time.sleep(0.01)
        assert proc.poll() is None, f"the build ended before {stage}:\n{proc.stdout.read().decode()[-3000:]}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert started(), f"{stage} never started"
        for t in targets:
            assert not (out / t).exists(), f"killed in {stage}: {t} looks finished"
    ran = executed(doit(profile=profile).stdout)
    assert ran == {"collect"}, ran  # everything before the last kill was kept
    assert not list(out.rglob(".tmp*"))
    from runtime.generate import load_manifest
    assert set(load_manifest(out / "bundle")["files"]) >= {"dit_model.tflite", "autoencoder_model.tflite"}
    assert executed(doit(profile=profile).stdout) == set()


def test_parallel_clean_build_equals_serial_build(default_bundle, scratch_profile):
    """`doit -n 2` on a clean synthetic profile (same seed) gives the serial build's bytes."""
    profile = scratch_profile('[source]\nkind = "synthetic"\nseed = 0\n')
    doit("-n", "2", profile=profile)
    import json
    ours = json.loads((REPO / "artifacts" / profile.stem / "bundle" / "manifest.json").read_text())
    serial = json.loads((default_bundle / "bundle" / "manifest.json").read_text())
    assert ours["files"] == serial["files"]
    assert ours["source"] == serial["source"]
