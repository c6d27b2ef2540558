"""The real model as a user downloads it: the synthetic model laid out as huggingface_hub lays out
its cache (blobs, snapshot symlinks, refs/main), `sao-litert init` by repo id, and builds from it.
The tests share one cache and one built profile and run in file order."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from conftest import ARTIFACTS, DIT_CHAIN, REPO, doit, doit_shared, executed, scale_dit_tensor

SAOS, T5 = "stabilityai/stable-audio-open-small", "google-t5/t5-base"
NAME = "t_hf"


def snapshot(cache, repo_id, commit, files: dict, ref="main"):
    """One revision of a repo in the cache: content-named blobs, relative symlinks, a ref."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / commit).mkdir(parents=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            blob.write_bytes(data)
        os.symlink(f"../../blobs/{blob.name}", repo / "snapshots" / commit / name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return repo


def safetensors_bytes(sd: dict, tmp) -> bytes:
    path = tmp / "model.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    return path.read_bytes()


PROFILES = ARTIFACTS / "profiles"  # init writes here (--dir), not into the checkout's profiles/


def init(env, *args):
    return subprocess.run([sys.executable, "-m", "pipeline.tools.cli", "init", *args, "--dir", str(PROFILES)], cwd=REPO,
                          env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def hub(tmp_path_factory, default_bundle):
    tmp = tmp_path_factory.mktemp("hf")
    cache, inputs = tmp / "hub", default_bundle / "inputs"
    sd = torch.load(inputs / "model.ckpt", weights_only=True)["state_dict"]
    model = {"model_config.json": (inputs / "model_config.json").read_bytes(),
             "model.ckpt": (inputs / "model.ckpt").read_bytes(), "model.safetensors": safetensors_bytes(sd, tmp)}
    snapshot(cache, SAOS, "a" * 40, model)
    snapshot(cache, T5, "b" * 40, {n: (inputs / "t5" / n).read_bytes()
                                   for n in ("config.json", "model.safetensors", "spiece.model")})
    env = {"HF_HUB_CACHE": str(cache)}
    yield {"cache": cache, "env": env, "model": model, "sd": sd, "tmp": tmp, "out": ARTIFACTS / NAME}
    for name in (NAME, f"{NAME}_bad"):
        (PROFILES / f"{name}.toml").unlink(missing_ok=True)
        shutil.rmtree(ARTIFACTS / name, ignore_errors=True)


def test_a_b_init_by_repo_id_builds_the_same_bundle_from_safetensors(hub, default_bundle):
    r = init(hub["env"], NAME, "--model", SAOS, "--t5", T5)
    assert r.returncode == 0, r.stdout
    profile = (PROFILES / f"{NAME}.toml").read_text()
    assert f'model = "{SAOS}"' in profile and "Checkpoint: model.safetensors" in profile
    assert f"./dev build profile={PROFILES / NAME}.toml" in r.stdout
    # Through the run's cache: the stages after the checkpoint restore the default's outputs only
    # if the shards it cut from model.safetensors are the default's bytes (else they build here).
    doit_shared(profile=PROFILES / f"{NAME}.toml", env=hub["env"])
    assert json.loads((hub["out"] / "logs" / "last_build.json").read_text())["stages"]["checkpoint"] == "ran"
    manifest = json.loads((hub["out"] / "bundle" / "manifest.json").read_text())
    explicit = json.loads((default_bundle / "bundle" / "manifest.json").read_text())
    assert manifest["files"] == explicit["files"]
    assert manifest["source"]["checkpoint"] == "model.safetensors"
    log = (hub["out"] / "logs" / "checkpoint.log").read_text()
    assert "model.safetensors (preferred over model.ckpt beside it: no pickle)" in log


def _bad(hub, *args, env=None):
    r = init({**hub["env"], **(env or {})}, f"{NAME}_bad", *args)
    assert r.returncode == 2
    [line] = [x for x in r.stdout.splitlines() if "error:" in x]
    assert not (PROFILES / f"{NAME}_bad.toml").exists()
    return line


def test_c_bad_downloads_one_error_line_each(hub):
    line = _bad(hub, "--model", "stabilityai/not-downloaded", "--t5", T5)
    assert "source.model" in line and "models--stabilityai--not-downloaded does not exist" in line

    files = {k: v for k, v in hub["model"].items() if k != "model_config.json"}
    snapshot(hub["cache"], SAOS, "c" * 40, files, ref="no-config")
    line = _bad(hub, "--model", SAOS, "--revision", "no-config", "--t5", T5)
    assert "source.model" in line and f"{'c' * 40} has no model_config.json" in line

    t5 = hub["cache"] / f"models--{T5.replace('/', '--')}" / "snapshots" / ("b" * 40)
    wide = hub["tmp"] / "wide_t5"
    shutil.copytree(t5, wide)
    conf = json.loads((wide / "config.json").read_text())
    (wide / "config.json").unlink()
    (wide / "config.json").write_text(json.dumps({**conf, "d_model": conf["d_model"] * 2}))
    line = _bad(hub, "--model", SAOS, "--t5", str(wide))
    assert f"{wide}/config.json: d_model: T5 width" in line


def test_d_new_revision_rebuilds_only_what_it_changes(hub):
    profile = PROFILES / f"{NAME}.toml"
    for blob in (hub["cache"] / f"models--{SAOS.replace('/', '--')}" / "blobs").iterdir():
        blob.write_bytes(blob.read_bytes())  # re-downloaded: new mtimes, same bytes
    assert executed(doit(profile=profile, env=hub["env"]).stdout) == set()

    edited = safetensors_bytes(scale_dit_tensor(hub["sd"]), hub["tmp"])
    snapshot(hub["cache"], SAOS, "d" * 40, {**hub["model"], "model.safetensors": edited})
    assert executed(doit(profile=profile, env=hub["env"]).stdout) == {"checkpoint", *DIT_CHAIN, "verify_aarch64",
                                                                      "verify_web", "collect", "attest"}  # init's profile: checks on


def _sparse_safetensors(path, shapes: dict):
    """A safetensors file of these float32 shapes whose data is a hole: real size, no bytes used."""
    header, offset = {}, 0
    for key, shape in shapes.items():
        n = 4 * int(torch.tensor(shape).prod()) if shape else 4
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        f.truncate(8 + len(text) + offset)


def test_init_sizes_the_aarch64_check_to_a_real_size_model(tmp_path):
    """`sao-litert init` on a real-size model (the real config and key shapes, its weights holes in
    sparse files) writes a profile whose aarch64 check plans to fit the budget (900 emulated
    seconds), where every default would plan hours; a tiny model keeps every default."""
    from pipeline.core import resources
    from pipeline.core.config import TargetsSettings, load_profile
    from pipeline.core.model_config import load_model_config
    from stages.models.layout import checkpoint_layout
    from stages.synth import model_config
    model, t5 = tmp_path / "saos", tmp_path / "t5"
    model.mkdir()
    t5.mkdir()
    (model / "model_config.json").write_text(json.dumps(model_config("real")))
    layout = checkpoint_layout(load_model_config(model / "model_config.json"))
    _sparse_safetensors(model / "model.safetensors", {k: v for k, v in layout.items() if ".encoder." not in k})
    (t5 / "config.json").write_text(json.dumps({"d_model": 768}))  # t5-base's width: the model's cond_dim
    _sparse_safetensors(t5 / "model.safetensors", {"shared.weight": (32128, 768), "encoder.rest": (104_000_000,)})
    (t5 / "spiece.model").write_bytes(b"")  # init checks it is there
    r = init({}, "t_realsize", "--model", str(model), "--t5", str(t5))
    assert r.returncode == 0, r.stdout
    profile = load_profile(PROFILES / "t_realsize.toml")
    assert resources.model_scale(profile) > 0.85  # real size, less the encoder the checkpoint may omit
    plan = resources.plan_aarch64(profile)
    assert plan["seconds"] <= 900 and plan["generation"] == 0 and plan["decoder_force_fp16"] > 0  # FORCE_FP16 kept
    assert profile.targets.aarch64 and profile.targets.aarch64_decoders == "app"
    assert resources.plan_aarch64(profile.model_copy(update={"targets": TargetsSettings()}))["seconds"] > 3600
    assert "planned" in (PROFILES / "t_realsize.toml").read_text()
    # A budget that fits nothing turns the check off, saying so.
    r = init({}, "t_realsize", "--model", str(model), "--t5", str(t5), "--force", "--aarch64-budget-s", "60")
    assert r.returncode == 0 and not load_profile(PROFILES / "t_realsize.toml").targets.aarch64
    assert "aarch64 = false" in (PROFILES / "t_realsize.toml").read_text()
