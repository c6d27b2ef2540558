"""Decoder precisions: a profile builds float32 and dynamic_int8 decoders, each gated against the
PyTorch decoder, names the one that becomes the app's autoencoder_model.tflite, and `generate`
can pick either."""
import json
import subprocess
import sys

import pytest
import soundfile as sf

from conftest import ARTIFACTS, REPO, doit, executed, write_profile
from pipeline.core.config import load_profile
from pipeline.core.errors import InputError
from runtime.parity import metrics

BODY = '[source]\nkind = "synthetic"\nseed = 0\n[autoencoder]\nprecisions = ["float32", "dynamic_int8"]\n'


def _generate(bundle, out, *args):
    return subprocess.run([sys.executable, "-m", "pipeline.tools.cli", "generate", "--bundle", str(bundle), "--prompt",
                           "warm pad", "--seconds", "3", "--seed", "2", "--steps", "2", "--out", str(out), *args],
                          cwd=REPO, capture_output=True, text=True)


def _ops(path):
    """(op name, dtype of its second input: a conv's filter) of every op in the file."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path))
    dtypes = {t["index"]: t["dtype"].__name__ for t in it.get_tensor_details()}
    return [(d["op_name"], dtypes.get(d["inputs"][1]) if len(d["inputs"]) > 1 else None)
            for d in it._get_ops_details()]


def test_int8_decoder_is_built_gated_bundled_and_selectable(scratch_profile, tmp_path):
    profile = scratch_profile(BODY + 'app = "dynamic_int8"\n')
    doit(profile=profile)
    out = ARTIFACTS / profile.stem
    bundle = out / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {n: m["precision"] for n, m in manifest["models"].items()} == {
        "conditioners_float32.tflite": "float32", "conditioners_float16.tflite": "float16",
        "dit_model.tflite": "dynamic_wi8_afp32", "autoencoder_model.tflite": "dynamic_int8",
        "autoencoder_float32.tflite": "float32"}
    assert (bundle / "autoencoder_model.tflite").read_bytes() == (out / "autoencoder" / "autoencoder_dynamic_int8.tflite").read_bytes()
    assert (bundle / "autoencoder_float32.tflite").read_bytes() == (out / "autoencoder" / "autoencoder_model.tflite").read_bytes()
    assert manifest["files"]["autoencoder_model.tflite"]["bytes"] < 0.8 * manifest["files"]["autoencoder_float32.tflite"]["bytes"]
    ops = {q: _ops(out / "autoencoder" / f) for q, f in (("float32", "autoencoder_model.tflite"),
                                                          ("dynamic_int8", "autoencoder_dynamic_int8.tflite"))}
    # channels-last re-author: no TRANSPOSE_CONV, no transpose pair around each conv (only the
    # graph's input and output), and every conv quantized in the int8 file
    assert "TRANSPOSE_CONV" not in {o for o, _ in ops["float32"]}
    assert sum(o == "TRANSPOSE" for o, _ in ops["float32"]) <= 2
    convs = [w for o, w in ops["dynamic_int8"] if o == "CONV_2D"]
    assert len(convs) == sum(o == "CONV_2D" for o, _ in ops["float32"]) > 30 and set(convs) == {"int8"}
    report = json.loads((out / "reports" / "parity_autoencoder.json").read_text())
    [int8] = [c for c in report["checks"] if c["check"].startswith("dynamic_int8")]
    assert int8["pass"] and int8["value"] >= 25.0

    wavs = {}
    for precision in ("dynamic_int8", "float32"):
        wavs[precision] = tmp_path / f"{precision}.wav"
        r = _generate(bundle, wavs[precision], "--decoder-precision", precision)
        assert r.returncode == 0, r.stderr
    a, b = (sf.read(str(w))[0] for w in wavs.values())
    assert 20.0 < metrics(b, a)["snr_db"] < 200.0  # two different decoders, the same music
    r = _generate(bundle, tmp_path / "x.wav", "--decoder-precision", "float16")
    assert r.returncode == 2 and "no float16 decoder" in r.stderr

    profile.write_text(BODY + 'app = "float32"\n')  # a new app choice re-packs the bundle only
    assert executed(doit(profile=profile).stdout) == {"verify_aarch64", "collect"}  # the app's decoder: FORCE_FP16 again
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["models"]["autoencoder_model.tflite"]["precision"] == "float32"
    assert manifest["models"]["autoencoder_dynamic_int8.tflite"]["precision"] == "dynamic_int8"


def test_app_must_be_a_built_precision(tmp_path):
    p = write_profile(tmp_path, "x", '[source]\nkind = "synthetic"\n[autoencoder]\napp = "dynamic_int8"\n')
    with pytest.raises(InputError) as e:
        load_profile(p)
    assert e.value.field == "autoencoder" and "dynamic_int8" in str(e.value)
