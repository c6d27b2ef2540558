"""The conversion routes on the default profile: verify stages pass, and fail on wrong input."""
import json
import shutil

import numpy as np
import pytest

from conftest import doit, executed
from pipeline.core.parity import ParityError
from runtime.litert import Model
from stages import conditioners_tflite, verify_conditioners, verify_dit, verify_autoencoder
from pipeline.core.config import ConditionersSettings, DitSettings, AutoencoderSettings


def _cond_inputs(a):
    return {"shard": a / "shards/conditioners.safetensors", "t5_config": a / "inputs/t5/config.json",
            "spiece": a / "inputs/t5/spiece.model", "float32": a / "conditioners/conditioners_float32.tflite",
            "float16": a / "conditioners/conditioners_float16.tflite"}


def test_reports_written_and_passing(default_bundle):
    for name in ("conditioners", "dit", "autoencoder"):
        report = json.loads((default_bundle / f"reports/parity_{name}.json").read_text())
        assert report["pass"] is True and all(c["pass"] for c in report["checks"]), name
    dit = json.loads((default_bundle / "reports/parity_dit.json").read_text())
    assert dit["quantized"]["worst"]["snr_db"] >= 28
    assert (default_bundle / "conditioners/conditioners.onnx").stat().st_size > 0
    assert not list((default_bundle / "conditioners").glob("*.pb")), "onnx2tf work files belong in work/"


def test_conditioners_onnx_is_opset_15_with_names(default_bundle):
    import onnx
    m = onnx.load(str(default_bundle / "conditioners/conditioners.onnx"))
    assert {o.domain: o.version for o in m.opset_import}[""] == 15
    assert [i.name for i in m.graph.input] == ["input_ids", "attention_mask", "seconds_total"]
    assert [o.name for o in m.graph.output] == ["cross_attention_input", "cross_attention_mask", "global_cond"]


def test_verify_conditioners_fails_on_corrupt_tflite(default_bundle, tmp_path):
    inputs = _cond_inputs(default_bundle)
    bad = tmp_path / "conditioners_float16.tflite"
    data = bytearray(inputs["float16"].read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)  # zero a block of weights
    bad.write_bytes(bytes(data))
    cfg = ConditionersSettings().model_dump(exclude={"opset", "onnx2tf"})
    with pytest.raises(Exception):
        verify_conditioners.run({**inputs, "float16": bad}, {"report": tmp_path / "r.json"}, cfg)


def test_verify_conditioners_fails_on_impossible_tolerance(default_bundle, tmp_path):
    cfg = ConditionersSettings(max_rel_fp32=1e-12).model_dump(exclude={"opset", "onnx2tf"})
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
              "float32": a / "dit_model.tflite",  # the int8 file posing as float32
              "quantized": a / "dit_model.tflite"}
    with pytest.raises(ParityError, match="float32 rel. max-abs error"):
        verify_dit.run(inputs, {"report": tmp_path / "r.json"}, DitSettings().model_dump())


def test_verify_autoencoder_fails_on_wrong_artifact(default_bundle, tmp_path):
    bad = tmp_path / "autoencoder_model.tflite"
    data = bytearray((default_bundle / "autoencoder/autoencoder_model.tflite").read_bytes())
    data[-20000:-16000] = bytes(4000)
    bad.write_bytes(bytes(data))
    with pytest.raises(Exception):
        verify_autoencoder.run({"shard": default_bundle / "shards/decoder.safetensors", "tflite": bad},
                               {"report": tmp_path / "r.json"}, AutoencoderSettings().model_dump())


def test_verify_autoencoder_falls_back_to_snr_vs_fp64_below_fp32_noise(default_bundle, tmp_path):
    # A tolerance under the fp32-vs-fp64 floor of the PyTorch decoder itself: gated by SNR vs fp64.
    inputs = {"shard": default_bundle / "shards/decoder.safetensors",
              "tflite": default_bundle / "autoencoder/autoencoder_model.tflite"}
    cfg = AutoencoderSettings(max_rel_fp32=1e-12).model_dump()
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
