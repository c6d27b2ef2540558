"""The bundle verified on aarch64 LiteRT kernels, emulated (stages/verify_aarch64.py): the default
build's report, the Arm app's FORCE_FP16 decoder failing on a decoder whose activations overflow
float16 (on aarch64, and already in select_app for the Arm layout), a machine without the
userland, a userland whose pins changed, and an Arm worker in the cluster."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ARTIFACTS, doit, doit_shared, executed, files_source, shared
from pipeline.core.config import DEFAULT_PROFILE, load_profile
from pipeline.core.dag import stages
from pipeline.core.hashing import file_digest
from pipeline.core.log import read_records
from pipeline.core.toolchain import aarch64_userland

DECODER_IN = "pretransform.model.decoder.layers.0.weight_g"  # the first conv's weight-norm gain
# The default model with the smallest aarch64 check (its other stages restore from the run's cache).
SMALLEST_CHECK = ('[source]\nkind = "synthetic"\nseed = 0\n[targets]\nweb = false\naarch64_prompts = 1\n'
                  'aarch64_dit_cases = 1\naarch64_latents = 1\naarch64_decoders = "app"\naarch64_steps = 0\n')


def test_default_build_is_verified_on_aarch64(default_bundle):
    report = json.loads((default_bundle / "reports" / "parity_aarch64.json").read_text())
    assert report["machine"] == "aarch64"  # as the emulated process itself saw it
    assert report["runtime"]["ai-edge-litert"] == "2.3.0" and report["runtime"]["emulator"].startswith("qemu-user 1:10.")
    assert report["runtime"]["cpu"] == "cortex-a710"  # the profile's default: an Armv9 phone core
    checks = {(c["model"], c["check"]) for c in report["checks"]}
    assert {m for m, _ in checks} == {"conditioners", "dit", "decoder", "generation"}
    assert ("decoder", "float32 with FORCE_FP16 audio SNR dB") in checks
    assert any(m == "conditioners" and c.startswith("float16") for m, c in checks)
    assert ("generation", "8-step audio SNR dB vs x86") in checks
    assert all(c["ok"] and set(c) >= {"model", "check", "value", "threshold", "ok"} for c in report["checks"])
    verified = json.loads((default_bundle / "bundle" / "verified.json").read_text())
    assert verified["verified_on"] == ["x86_64", "aarch64"]
    assert verified["manifest_xxh3_128"] == file_digest(default_bundle / "bundle" / "manifest.json")
    assert verified["checks"]["verify_aarch64"] == {
        "report": "parity_aarch64.json", "xxh3_128": file_digest(default_bundle / "reports" / "parity_aarch64.json")}
    assert set(verified["checks"]) == {"verify_aarch64", "verify_web"}


def test_the_bundle_does_not_wait_for_the_client_checks():
    """The plan: collect (the bundle) reads nothing a client check writes, not even through the
    stages before it; the attestation reads every check's report and the bundle's manifest."""
    table = {s.name: s for s in stages(load_profile(DEFAULT_PROFILE))}
    made_by = {path: s.name for s in table.values() for path in s.outputs.values()}

    def before(name: str) -> set[str]:
        direct = {made_by[p] for p in table[name].inputs.values() if p in made_by}
        return direct.union(*(before(d) for d in direct))
    checks = {"verify_aarch64", "verify_web"}
    assert checks <= set(table) and not checks & before("collect")
    assert {"collect", *checks} <= before("attest")


def _bundle(out):
    return {p.name: file_digest(p) for p in sorted((out / "bundle").iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory, default_build):
    """A model whose decoder's first conv is 1e5 times louder: fine in float32, past float16's
    65504 inside the decoder. Built without the aarch64 check: its bundle is the one to keep."""
    tmp = tmp_path_factory.mktemp("fp16")
    model = tmp / "model"
    shutil.copytree(default_build / "inputs", model)
    ckpt = torch.load(model / "model.ckpt", weights_only=True)
    ckpt["state_dict"][DECODER_IN] = ckpt["state_dict"][DECODER_IN] * 1e5
    torch.save(ckpt, model / "model.ckpt")
    # The roles layout: this runtime's client, which runs the decoder without FORCE_FP16.
    head = files_source(model, targets="") + "[autoencoder]\nmin_snr_db = 0.0\n[app]\nlayout = \"roles\"\n"
    profile = tmp / "t_fp16.toml"
    profile.write_text(head + "[targets]\naarch64 = false\nweb = false\n")
    # Through the run's cache: the conditioners' and the DiT's stages are the default's and restore.
    assert "verify_aarch64" not in executed(doit_shared(profile=profile).stdout)
    out = ARTIFACTS / "t_fp16"
    assert json.loads((out / "bundle" / "verified.json").read_text())["verified_on"] == ["x86_64"]
    # The aarch64 check as small as shows the overflow: one prompt, one DiT case, the app's decoder on one latent.
    profile.write_text(head + "[targets]\naarch64_steps = 0\nweb = false\naarch64_prompts = 1\naarch64_dit_cases = 1\n"
                              "aarch64_latents = 1\naarch64_decoders = \"app\"\n")
    return {"profile": profile, "out": out, "bundle": _bundle(out), "head": head}


def test_the_arm_layout_never_chooses_a_decoder_that_fails_under_force_fp16(overflowing, tmp_path):
    """The same model for the Arm app: select_app runs every set as that app does (FORCE_FP16 on
    the decoder, x86 XNNPACK rounding to fp16), so no set holds: one error line naming the setting."""
    profile = tmp_path / "t_fp16.toml"  # same name: same artifacts folder, its bundle must stay
    profile.write_text(overflowing["head"].replace('layout = "roles"', 'layout = "arm"') + "[targets]\naarch64 = false\nweb = false\n")
    r = doit(profile=profile, check=False)
    assert r.returncode != 0
    [line] = [x for x in r.stdout.splitlines() if "error:" in x]
    assert "no app set meets" in line and '[app] layout = "arm"' in line and "FORCE_FP16" in line
    assert _bundle(overflowing["out"]) == overflowing["bundle"]


def test_without_the_userland_one_error_line(overflowing):
    r = doit(profile=overflowing["profile"], env={"SAO_LITERT_AARCH64": "/nonexistent/aarch64"}, check=False)
    assert r.returncode != 0 and "Traceback" not in r.stdout
    [line] = [x for x in r.stdout.splitlines() if "error:" in x]
    assert "targets.aarch64" in line and "./dev aarch64" in line and "/nonexistent/aarch64" in line
    assert _bundle(overflowing["out"]) == overflowing["bundle"]


def test_force_fp16_overflow_fails_its_gate(overflowing):
    r = doit(profile=overflowing["profile"], check=False)
    assert r.returncode != 0
    [line] = [x for x in r.stdout.splitlines() if "error:" in x]
    assert "decoder: float32 with FORCE_FP16 audio SNR dB" in line and "threshold >= 30" in line
    assert "conditioners" not in line and "dit" not in line  # the float32 files hold on aarch64
    assert _bundle(overflowing["out"]) == overflowing["bundle"]
    assert not (overflowing["out"] / "reports" / "parity_aarch64.json").exists()


def test_changed_aarch64_pins_rerun_verify_aarch64_alone(default_bundle, scratch_profile, tmp_path):
    """The default model with the smallest aarch64 check (its other stages restored from the run's
    cache): the same userland elsewhere restores every stage; a userland whose pins changed
    re-keys verify_aarch64 and nothing else; back on the real userland, its first key answers."""
    profile = scratch_profile(SMALLEST_CHECK)
    assert executed(doit_shared(profile=profile).stdout) >= {"verify_aarch64", "collect"}
    real = aarch64_userland()
    # The same userland in another folder (SAO_LITERT_AARCH64), from a clean folder: every stage
    # restores, verify_aarch64 included (its key holds the userland's pins, not where it lives).
    moved = tmp_path / "moved"
    moved.mkdir()
    for part in ("root", "site", "versions.json"):
        os.symlink(real / part, moved / part)
    doit("clean", profile=profile)
    ran = executed(doit_shared(profile=profile, env={"SAO_LITERT_AARCH64": str(moved)}).stdout)
    assert "verify_aarch64" in ran and set(_stats(profile)["stages"]) == ran
    assert set(_stats(profile)["stages"].values()) == {"restored"}
    fake = tmp_path / "aarch64"
    fake.mkdir()
    for part in ("root", "site"):
        os.symlink(real / part, fake / part)
    versions = json.loads((real / "versions.json").read_text())
    versions["wheels"] = [w.replace("numpy==", "numpy===") for w in versions["wheels"]]  # as if re-pinned
    (fake / "versions.json").write_text(json.dumps(versions))
    assert executed(doit(profile=profile, env={"SAO_LITERT_AARCH64": str(fake)}).stdout) == {"verify_aarch64"}
    # Back to the real userland: the first run's key, so its entry in the run's cache answers.
    assert executed(doit_shared(profile=profile).stdout) == {"verify_aarch64"}
    assert _stats(profile)["stages"] == {"verify_aarch64": "restored"}


def _stats(profile) -> dict:
    return json.loads((ARTIFACTS / profile.stem / "logs" / "last_build.json").read_text())


def test_an_arm_worker_in_the_cluster_runs_the_check(default_bundle, scratch_profile, tmp_path):
    """Issue 30 test c: an Arm Dask worker — emulated, `sao-litert arm-worker`: qemu-aarch64 running
    `dask worker` in the userland — joins a loopback cluster; the check's aarch64 process runs there
    (its record says where) and its report is the one emulated here byte for byte; with the worker
    gone the same build emulates the check here."""
    from distributed import Client, LocalCluster
    profile = scratch_profile(SMALLEST_CHECK)
    out, report = ARTIFACTS / profile.stem, ARTIFACTS / profile.stem / "reports" / "parity_aarch64.json"

    def check_again(store: str) -> dict:
        """verify_aarch64 run again (not from a cache or the memo) through the cluster: its record."""
        doit("forget", "verify_aarch64", profile=profile)
        shutil.rmtree(out / "memo", ignore_errors=True)
        env = {**shared(), "SAO_LITERT_SCHEDULER": cluster.scheduler_address,
               "SAO_LITERT_CACHE": (tmp_path / store).as_uri()}
        assert executed(doit(profile=profile, env=env).stdout) == {"verify_aarch64"}
        return read_records(out)["verify_aarch64"]["measured"]
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None, processes=True) as cluster, \
            Client(cluster) as client:
        arm = subprocess.Popen([sys.executable, "-m", "pipeline.tools.cli", "arm-worker", cluster.scheduler_address],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            doit_shared(profile=profile)  # while the worker starts: the profile, emulated here (or its cache entry)
            emulated_here = report.read_bytes()
            client.wait_for_workers(1, timeout=180)
            (address,) = client.scheduler_info()["workers"]
            measured = check_again("store-a")
            assert measured["ran_on"] == address and measured["ran"]
            assert report.read_bytes() == emulated_here
        finally:
            arm.terminate()
            arm.wait(60)
        assert check_again("store-b")["ran_on"] == "emulated here"  # no Arm worker: the fallback
    assert report.read_bytes() == emulated_here and json.loads(emulated_here)["machine"] == "aarch64"
