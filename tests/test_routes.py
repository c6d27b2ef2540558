"""The conversion routes on the default profile: verify stages pass, and fail on wrong input."""
import json
import shutil

import numpy as np
import pytest

from conftest import doit, executed
from pipeline.core.parity import ParityError
from runtime.litert import Model
from stages import conditioners_tflite, verify_conditioners, verify_dit, verify_autoencoder
from pipeline.core.config import ConditionersSettings, load_profile
from pipeline.core.dag import stages


def _config(stage: str, **changes) -> dict:
    """The stage's config slice of the default profile (as pipeline/core/dag.py builds it), changed."""
    return {**{s.name: s for s in stages(load_profile(None))}[stage].config, **changes}


def _cond_inputs(a, **variants):
    """verify_conditioners' inputs, as the stage table groups them; `variants` replace files."""
    return {"shard": a / "shards/conditioners.safetensors", "t5_config": a / "inputs/t5/config.json",
            "spiece": a / "inputs/t5/spiece.model",
            "variants": {"float32": a / "conditioners/conditioners_float32.tflite",
                         "float16": a / "conditioners/conditioners_float16.tflite", **variants}}


def test_reports_written_and_passing(default_bundle):
    for name in ("conditioners", "dit", "autoencoder"):
        report = json.loads((default_bundle / f"reports/parity_{name}.json").read_text())
        assert report["pass"] is True and all(c["pass"] for c in report["checks"]), name
    dit = json.loads((default_bundle / "reports/parity_dit.json").read_text())
    assert dit["dynamic_wi8_afp32"]["worst"]["snr_db"] >= 28 and dit["variants"]["dynamic_wi8_afp32"]["pass"]
    assert (default_bundle / "conditioners/conditioners.onnx").stat().st_size > 0
    assert not list((default_bundle / "conditioners").glob("*.pb")), "onnx2tf work files belong in work/"


def test_conditioners_onnx_is_opset_15_with_names(default_bundle):
    import onnx
    m = onnx.load(str(default_bundle / "conditioners/conditioners.onnx"))
    assert {o.domain: o.version for o in m.opset_import}[""] == 15
    assert [i.name for i in m.graph.input] == ["input_ids", "attention_mask", "seconds_total"]
    assert [o.name for o in m.graph.output] == ["cross_attention_input", "cross_attention_mask", "global_cond"]


def _zero_a_block(src, dst):
    data = bytearray(src.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)  # zero a block of weights
    dst.write_bytes(bytes(data))
    return dst


def test_verify_conditioners_fails_a_corrupt_variant_and_stops_on_a_corrupt_float32(default_bundle, tmp_path):
    inputs = _cond_inputs(default_bundle)
    bad = _zero_a_block(inputs["variants"]["float16"], tmp_path / "conditioners_float16.tflite")
    verify_conditioners.run(_cond_inputs(default_bundle, float16=bad), {"report": tmp_path / "r.json"},
                            _config("verify_conditioners"))
    report = json.loads((tmp_path / "r.json").read_text())  # a variant's failure: reported, left to select_app
    assert report["pass"] is True and report["variants"]["float16"]["pass"] is False
    assert not all(c["pass"] for c in report["checks"] if c.get("variant") == "float16")
    with pytest.raises(ParityError, match="float32 cross_attention_input rel. error"):  # the float16 file posing as float32
        verify_conditioners.run(_cond_inputs(default_bundle, float32=inputs["variants"]["float16"]),
                                {"report": tmp_path / "r.json"}, _config("verify_conditioners"))


def test_verify_conditioners_fails_on_impossible_tolerance(default_bundle, tmp_path):
    cfg = _config("verify_conditioners", max_rel_fp32=1e-12)
    with pytest.raises(ParityError, match="float32 cross_attention_input"):
        verify_conditioners.run(_cond_inputs(default_bundle), {"report": tmp_path / "r.json"}, cfg)
    assert json.loads((tmp_path / "r.json").read_text())["pass"] is False


def test_missing_float16_fails_the_step(default_build, tmp_path, monkeypatch):
    # What onnx2tf's own CLI did at T5-base size: float16 never written, exit status 0.
    real_child = conditioners_tflite._child
    monkeypatch.setattr(conditioners_tflite, "_child",
                        lambda *a: None if a[0] == "tflite" and a[2] == "float16" else real_child(*a))
    onnx = tmp_path / "conditioners.onnx"
    shutil.copyfile(default_build / "conditioners/conditioners.onnx", onnx)
    outputs = {p: tmp_path / f"conditioners_{p}.tflite" for p in ("float32", "float16")}
    with pytest.raises(RuntimeError, match="wrote no conditioners_float16.tflite"):
        conditioners_tflite.run({"onnx": onnx}, outputs, {"onnx2tf": ConditionersSettings().onnx2tf})
    assert outputs["float32"].stat().st_size > 0 and not outputs["float16"].exists()


def test_verify_dit_fails_on_wrong_artifact(default_bundle, tmp_path):
    a = default_bundle / "dit"
    inputs = {"shard": default_bundle / "shards/dit.safetensors",
              "variants": {"float32": a / "dit_model.tflite",  # the int8 file posing as float32
                           "dynamic_wi8_afp32": a / "dit_model.tflite"}}
    with pytest.raises(ParityError, match="float32 rel. max-abs error"):
        verify_dit.run(inputs, {"report": tmp_path / "r.json"}, _config("verify_dit"))


def test_verify_autoencoder_fails_on_wrong_artifact(default_bundle, tmp_path):
    from stages import quantize
    from pipeline.core.recipes import RECIPES
    bad = tmp_path / "autoencoder_model.tflite"  # an int8 decoder posing as the float32 one
    quantize.run({"tflite": default_bundle / "autoencoder/autoencoder_model.tflite"}, {"tflite": bad},
                 {"recipe": "dynamic_int8", "entries": RECIPES["dynamic_int8"], "role": "decoder"})
    with pytest.raises(ParityError, match="float32 rel. max-abs error"):
        verify_autoencoder.run({"shard": default_bundle / "shards/decoder.safetensors", "variants": {"float32": bad}},
                               {"report": tmp_path / "r.json"}, _config("verify_autoencoder"))


def test_verify_autoencoder_falls_back_to_snr_vs_fp64_below_fp32_noise(default_bundle, tmp_path):
    # A tolerance under the fp32-vs-fp64 floor of the PyTorch decoder itself: gated by SNR vs fp64.
    inputs = {"shard": default_bundle / "shards/decoder.safetensors",
              "variants": {"float32": default_bundle / "autoencoder/autoencoder_model.tflite"}}
    cfg = _config("verify_autoencoder", max_rel_fp32=1e-12)
    verify_autoencoder.run(inputs, {"report": tmp_path / "r.json"}, cfg)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["gated_by"].startswith("SNR vs fp64") and report["pass"] is True
    assert report["fp32_vs_fp64_floor"]["rel"] > 1e-12
    with pytest.raises(ParityError, match="SNR dB vs fp64 decoder"):
        verify_autoencoder.run(inputs, {"report": tmp_path / "r.json"}, {**cfg, "min_snr_db": 400.0})


def test_dit_tflite_output_depends_on_global_cond(default_bundle):
    m = Model(default_bundle / "dit/dit_model.tflite")
    g = np.random.default_rng(0)
    feed = {n: g.standard_normal(d["shape"]).astype(np.float32) for n, d in m.inputs.items()}
    feed["t"] = np.array([0.5], np.float32)
    (a,) = m(**feed).values()
    (b,) = m(**{**feed, "global_cond": feed["global_cond"] + 1.0}).values()
    assert np.abs(a - b).max() > 1e-2


def test_dit_tflite_alias_is_up_to_date_after_build(default_bundle):
    assert executed(doit("dit_tflite").stdout) == set()
