"""The foundation promises: fresh build, no-op rebuild, touch is free, a DiT-only edit leaves the
other shards byte-identical."""

import torch

from conftest import files_profile, doit, executed
from pipeline.core.hashing import file_digest


def test_default_build_outputs(default_build):
    for f in ["inputs/model_config.json", "inputs/model.ckpt", "inputs/t5/config.json",
              "inputs/t5/model.safetensors", "inputs/t5/spiece.model",
              "shards/conditioners.safetensors", "shards/dit.safetensors", "shards/decoder.safetensors"]:
        assert (default_build / f).stat().st_size > 0, f
    assert executed(doit("checkpoint").stdout) == set()


def test_touch_and_dit_edit(tmp_path, default_build, scratch_profile):
    profile, model = files_profile(tmp_path, default_build, scratch_profile)
    out = doit("checkpoint", profile=profile).stdout
    assert executed(out) == {"checkpoint"}
    name = profile.stem
    shard_dir = default_build.parent / name / "shards"
    before = {p.name: (file_digest(p), p.stat().st_mtime_ns) for p in shard_dir.iterdir()}

    ckpt = model / "model.ckpt"
    ckpt.touch()
    assert executed(doit("checkpoint", profile=profile).stdout) == set()

    sd = torch.load(ckpt, weights_only=True)
    key = "model.model.transformer.layers.0.self_attn.to_out.weight"
    sd["state_dict"][key] = sd["state_dict"][key] * 1.5
    torch.save(sd, ckpt)
    assert executed(doit("checkpoint", profile=profile).stdout) == {"checkpoint"}
    after = {p.name: (file_digest(p), p.stat().st_mtime_ns) for p in shard_dir.iterdir()}
    assert after["dit.safetensors"][0] != before["dit.safetensors"][0]
    for s in ("decoder.safetensors", "conditioners.safetensors"):
        assert after[s] == before[s], s  # same bytes, and not even rewritten


def test_missing_profile_is_one_clear_error(tmp_path):
    r = doit(profile=tmp_path / "nope.toml", check=False)
    assert r.returncode == 2
    assert r.stdout.strip() == f"error: {tmp_path / 'nope.toml'}: file not found"


def test_clean_removes_profile_artifacts_only(tmp_path, default_build, scratch_profile):
    profile, model = files_profile(tmp_path, default_build, scratch_profile)
    doit("checkpoint", profile=profile)
    shards = default_build.parent / profile.stem / "shards"
    assert (shards / "dit.safetensors").exists()
    doit("clean", profile=profile)
    assert not (shards / "dit.safetensors").exists()
    assert (model / "model.ckpt").exists()                     # the user's inputs stay
    assert (default_build / "shards" / "dit.safetensors").exists()  # other profiles stay
    assert executed(doit("checkpoint", profile=profile).stdout) == {"checkpoint"}
