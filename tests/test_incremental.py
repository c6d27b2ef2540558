"""Scripted edits on a built profile; doit's own output says which tasks ran (scenarios a–i).
The tests share one built profile and run in file order."""
import json
import os
import shutil

import pytest

from conftest import ARTIFACTS, DIT_CHAIN, doit, edit_dit_tensor, executed, files_source, shared
from pipeline.core.hashing import file_digest

@pytest.fixture(scope="module")
def built(tmp_path_factory, default_build):
    tmp = tmp_path_factory.mktemp("incr")
    model = tmp / "model"
    shutil.copytree(default_build / "inputs", model)
    name = "t_incremental"
    profile = tmp / f"{name}.toml"
    head = files_source(model)
    profile.write_text(head)
    shutil.rmtree(ARTIFACTS / name, ignore_errors=True)
    out = doit(profile=profile, env=shared()).stdout  # the default's stages: restored from the run's cache
    assert "collect" in executed(out)
    yield {"profile": profile, "head": head, "model": model, "out": ARTIFACTS / name}
    shutil.rmtree(ARTIFACTS / name, ignore_errors=True)


def run(built, *args, env=None):
    return executed(doit(*args, profile=built["profile"], env=env).stdout)


def test_a_nothing_changed(built):
    assert run(built) == set()


def test_b_checkpoint_touched(built):
    os.utime(built["model"] / "model.ckpt")
    assert run(built) == set()


def test_c_one_dit_tensor(built):
    edit_dit_tensor(built["model"] / "model.ckpt")
    assert run(built) == {"checkpoint", *DIT_CHAIN, "collect", "attest"}


def test_d_dit_only_profile_field(built):
    built["profile"].write_text(built["head"] + "[dit]\nmin_snr_quant_db = 20.0\n")
    # no model bytes change and the verdict holds: select_app writes the same app.json (the gate's
    # values go to its record, which no stage reads), so the chain stops there
    assert run(built) == {"verify_dit", "select_app"}


def test_e_dit_recipe(built):
    built["profile"].write_text(built["head"] + '[dit]\nmin_snr_quant_db = 20.0\nvariants = ["weight_only_wi8_afp32"]\n')
    assert run(built) == {"dit_quantize", "verify_dit", "select_app", "collect", "attest"}


def test_g_onnx2tf_options(built):
    body = built["profile"].read_text()
    built["profile"].write_text(body + '[conditioners]\nonnx2tf = { keep_shape_absolutely_input_names = ["input_ids", "attention_mask", "seconds_total"], verbosity = "error" }\n')
    ran = run(built)
    assert "conditioners_tflite" in ran
    assert ran <= {"conditioners_tflite", "verify_conditioners", "select_app", "collect", "attest"}


def test_h_one_target_deleted(built):
    f = built["out"] / "dit" / "dit_float32.tflite"
    before = file_digest(f)
    f.unlink()
    ran = run(built)
    if file_digest(f) == before:  # conversion is deterministic: nothing downstream is stale
        assert ran == {"dit_convert"}
    else:
        assert ran == {"dit_convert", "dit_quantize", "verify_dit", "select_app", "collect", "attest"}


def test_i_toolchain_version(built):
    env = {"SAO_LITERT_TOOLCHAIN_OVERRIDE": json.dumps({"onnx2tf": "9.9.9"})}
    ran = run(built, env=env)
    assert "conditioners_tflite" in ran
    assert ran <= {"conditioners_tflite", "verify_conditioners", "select_app", "collect", "attest"}
    assert run(built, env=env) == set()
