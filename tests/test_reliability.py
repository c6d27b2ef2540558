"""Concurrent runs, interrupted builds, bad inputs through doit."""
import fcntl
import os
import signal
import subprocess
import sys
import time

from conftest import ARTIFACTS, NO_AARCH64, files_profile, DOIT, REPO, doit, executed


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
    out = ARTIFACTS / profile.stem
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
    assert ran == {"collect", "attest"}, ran  # everything before the last kill was kept
    assert not list(out.rglob(".tmp*"))
    from runtime.generate import load_manifest
    assert set(load_manifest(out / "bundle")["files"]) >= {"dit_model.tflite", "autoencoder_model.tflite"}
    assert executed(doit(profile=profile).stdout) == set()


def test_stages_run_in_parallel_by_default_and_memory_admission_serializes(scratch_profile, tmp_path):
    """Plain `doit` runs independent stages at once; with room for one stage only
    ($SAO_LITERT_MEMORY=1 byte) the same stages (the three exports after the checkpoint) run one at
    a time. Same bytes either way. (That a parallel clean build gives the bundle of another, byte
    for byte, is tests/test_layers.py test_0: two checkouts.)"""
    import json
    from pipeline.core.hashing import file_digest
    body = '[source]\nkind = "synthetic"\nseed = 0\n' + NO_AARCH64
    fan_out = ("conditioners_onnx", "dit_reauthor", "autoencoder_reauthor")
    runs = {}
    for tag, env in (("par", {}), ("one", {"SAO_LITERT_MEMORY": "1"})):
        profile = scratch_profile(body, name=f"t_{tmp_path.name}_{tag}"[:60])
        doit(*fan_out, profile=profile, env=env)
        out = ARTIFACTS / profile.stem
        times = json.loads((out / "logs" / "last_build.json").read_text())["times"]
        assert set(times) == {"synth", "checkpoint", *fan_out}
        files = {str(f.relative_to(out)): file_digest(f) for d in ("conditioners", "dit", "autoencoder")
                 for f in (out / d).rglob("*") if f.is_file()}
        runs[tag] = (_overlaps(times), files)
    assert runs["par"][0], "no two stages ran at once"
    assert runs["one"][0] == []
    assert runs["one"][1] and runs["one"][1] == runs["par"][1]


def _overlaps(times: dict) -> list[tuple[str, str]]:
    """Pairs of stages whose actions were running at the same moment (by more than 0.2 s)."""
    spans = sorted(times.items(), key=lambda kv: kv[1][0])
    return [(a, b) for i, (a, (s1, e1)) in enumerate(spans) for b, (s2, e2) in spans[i + 1:]
            if min(e1, e2) - max(s1, s2) > 0.2]