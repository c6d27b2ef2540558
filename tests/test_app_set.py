"""Precision variants of every model, each built by its own stage and gated against PyTorch; the
app set chosen end to end by the profile's objective under its constraints (stages/select_app.py);
the bundle's layout, `generate --variant` / `--decoder-precision`; the decoder's channels-last export."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import ARTIFACTS, NO_AARCH64, REPO, doit, executed, shared, write_profile
from pipeline.core.config import load_profile
from pipeline.core.errors import InputError
from runtime.files import xxh3_128
from runtime.parity import metrics

SECTIONS = {
    "conditioners": 'variants = ["float32", "float16", "dynamic_wi8_afp32"]\napp = "auto"\n',
    "dit": 'variants = ["dynamic_wi8_afp32", "dynamic_wi4ff_wi8_afp32"]\napp = "auto"\n',
    "autoencoder": 'variants = ["float32", "dynamic_int8", "float16"]\napp = "auto"\n',
    "app": 'objective = "smallest"\n',
}
INT8, INT4 = 9, 17  # TFLite TensorType


def body(mixed_gate=10.0, **extra) -> str:
    """The test profile; `extra` adds lines to a section. The mixed int4/int8 DiT's gate: on these
    tiny dims int4 weights leave it ~18 dB from PyTorch, below its 18 dB default."""
    text = '[source]\nkind = "synthetic"\nseed = 0\n' + NO_AARCH64
    extra["dit"] = f"variant_min_snr_db = {{dynamic_wi4ff_wi8_afp32 = {mixed_gate}}}\n" + extra.get("dit", "")
    for section, lines in SECTIONS.items():
        text += f"[{section}]\n{lines}{extra.get(section, '')}"
    return text


@pytest.fixture(scope="module")
def world(tmp_path_factory, default_bundle):
    profile = write_profile(tmp_path_factory.mktemp("app"), "appset", body())
    first = doit(profile=profile, env=shared())  # what it shares with the default: restored from the run's cache
    out = ARTIFACTS / "appset"
    yield {"profile": profile, "out": out, "first": first.stdout, "tmp": tmp_path_factory.mktemp("wav")}
    shutil.rmtree(out, ignore_errors=True)


def app_report(world) -> dict:
    return json.loads((world["out"] / "reports" / "app.json").read_text())


def app_timings(world) -> dict:
    """select_app's measurements: in its record (logs/select_app.json), which no stage reads."""
    return json.loads((world["out"] / "logs" / "select_app.json").read_text())["measured"]["app"]


def manifest(world) -> dict:
    return json.loads((world["out"] / "bundle" / "manifest.json").read_text())


def fc_weight_types(path) -> dict:
    """(TFLite type of a FULLY_CONNECTED's weights, inside a FeedForward?) → how many."""
    from collections import Counter
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fu
    m = fu.read_model(str(path))
    sg = m.subgraphs[0]
    names = {i: fu.TFL_OP_CODE_TO_NAME.get(c.builtinCode) for i, c in enumerate(m.operatorCodes)}
    return Counter((sg.tensors[op.inputs[1]].type, "FeedForward" in sg.tensors[op.outputs[0]].name.decode())
                   for op in sg.operators if names[op.opcodeIndex] == "FULLY_CONNECTED")


def ops(path):
    """(op name, dtype of its second input: a conv's filter) of every op in the file."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path))
    dtypes = {t["index"]: t["dtype"].__name__ for t in it.get_tensor_details()}
    return [(d["op_name"], dtypes.get(d["inputs"][1]) if len(d["inputs"]) > 1 else None)
            for d in it._get_ops_details()]


def generate(world, bundle, *args):
    report = world["tmp"] / "r.json"
    r = subprocess.run([sys.executable, "-m", "runtime.cli", "generate", "--bundle", str(bundle), "--prompt", "warm pad",
                        "--seconds", "3", "--steps", "2", "--out", str(world["tmp"] / "x.wav"), "--report", str(report),
                        *args], cwd=REPO, capture_output=True, text=True)
    return r, (json.loads(report.read_text()) if r.returncode == 0 else None)


def test_every_variant_has_its_own_stage_and_recipe(world):
    ran = executed(world["first"])
    assert {"conditioners_quantize_dynamic_wi8_afp32", "dit_quantize", "dit_quantize_dynamic_wi4ff_wi8_afp32",
            "autoencoder_quantize_dynamic_int8", "autoencoder_quantize_float16", "select_app"} <= ran
    dit = world["out"] / "dit"
    # the mixed recipe: int4 weights on every feed-forward layer, int8 on every other
    assert fc_weight_types(dit / "dit_dynamic_wi4ff_wi8_afp32.tflite").keys() == {(INT4, True), (INT8, False)}
    assert fc_weight_types(dit / "dit_model.tflite").keys() == {(INT8, True), (INT8, False)}
    sizes = {v: f.stat().st_size for v, f in (("int8", dit / "dit_model.tflite"),
                                              ("mixed", dit / "dit_dynamic_wi4ff_wi8_afp32.tflite"))}
    assert sizes["mixed"] < sizes["int8"]
    ae = world["out"] / "autoencoder"
    assert (ae / "autoencoder_float16.tflite").stat().st_size < 0.6 * (ae / "autoencoder_model.tflite").stat().st_size
    # the decoder's channels-last re-author: no TRANSPOSE_CONV, no transpose pair around each conv
    # (only the graph's input and output), and every conv quantized in the int8 file
    f32, i8 = ops(ae / "autoencoder_model.tflite"), ops(ae / "autoencoder_dynamic_int8.tflite")
    assert "TRANSPOSE_CONV" not in {o for o, _ in f32} and sum(o == "TRANSPOSE" for o, _ in f32) <= 2
    convs = [w for o, w in i8 if o == "CONV_2D"]
    assert len(convs) == sum(o == "CONV_2D" for o, _ in f32) > 30 and set(convs) == {"int8"}
    assert (ae / "autoencoder_dynamic_int8.tflite").stat().st_size < 0.5 * (ae / "autoencoder_model.tflite").stat().st_size


def test_the_smallest_set_meeting_the_constraints_is_chosen_and_bundled(world):
    app, m = app_report(world), manifest(world)
    constraints = app["constraints"]
    combos = app["combinations"]
    # every combination of the variants that passed their gates, run end to end
    passing = {model: [v for v, f in vs.items() if f["gate"]] for model, vs in app["variants"].items()}
    assert len(combos) == np.prod([len(v) for v in passing.values()]) == 3 * 2 * 3
    meeting = [c for c in combos if c["latent_snr_db"] >= constraints["min_latent_snr_db"]
               and c["audio_snr_db"] >= constraints["min_audio_snr_db"]]
    assert meeting and min(c["bytes"] for c in meeting) == app["figures"]["bytes"]
    # the bundle holds that set, under the Arm app's names, with its real precisions
    bundle = world["out"] / "bundle"
    assert m["app"]["models"] == ["conditioners_float32.tflite", "dit_model.tflite", "autoencoder_model.tflite"]
    for model, name in m["app"]["files"].items():
        chosen = app["chosen"][model]
        assert m["models"][name]["precision"] == chosen and m["models"][name]["app"]
        built = world["out"] / {"conditioners": "conditioners", "dit": "dit", "decoder": "autoencoder"}[model] / \
            app["variants"][model][chosen]["file"]
        assert xxh3_128(bundle / name) == xxh3_128(built)
    assert sum((bundle / n).stat().st_size for n in m["app"]["models"]) == app["figures"]["bytes"]
    # the front (select_app's record, which no stage reads): no set meeting the SNR constraints is both
    # at most as large and at most as slow
    timed = app_timings(world)
    warm = {tuple(t["models"].values()): t["warm_s"] for t in timed["combinations"]}
    front = {tuple(t["models"].values()): t["front"] for t in timed["combinations"]}
    for c in combos:
        k = tuple(c["models"].values())
        dominated = any(d is not c and d["bytes"] <= c["bytes"] and warm[tuple(d["models"].values())] <= warm[k]
                        and (d["bytes"], warm[tuple(d["models"].values())]) != (c["bytes"], warm[k]) for d in meeting)
        assert front[k] == (c in meeting and not dominated)
    # every passing variant measured: load, first and warm invoke; none of it in app.json or the manifest
    for model, vs in m["app"]["variants"].items():
        for v, f in vs.items():
            assert f["bytes"] > 0 and not {"warm_s", "load_s", "first_s"} & set(f), (model, v)
            if f["gate"]:
                t = timed["variants"][model][v]
                assert 0 < t["warm_s"] and t["load_s"] > 0 and t["first_s"] > 0, (model, v)


def test_generate_loads_the_app_set_or_the_variant_asked_for(world):
    bundle = world["out"] / "bundle"
    r, default = generate(world, bundle)
    assert r.returncode == 0, r.stderr
    assert default["models"] == manifest(world)["app"]["files"]
    audio = sf.read(str(world["tmp"] / "x.wav"))[0]
    other = next(v for v in ("dynamic_wi4ff_wi8_afp32", "dynamic_wi8_afp32") if v != app_report(world)["chosen"]["dit"])
    r, report = generate(world, bundle, "--variant", f"dit=variants/dit_{other}.tflite", "--variant", "decoder=float16")
    assert r.returncode == 0, r.stderr
    assert report["models"] == {**default["models"], "dit": f"variants/dit_{other}.tflite",
                                "decoder": "variants/autoencoder_float16.tflite"}
    assert not np.array_equal(audio, sf.read(str(world["tmp"] / "x.wav"))[0])
    r, _ = generate(world, bundle, "--variant", "dit=dynamic_wi4_afp32")
    assert r.returncode == 2 and "--variant dit=dynamic_wi4_afp32: the bundle has no such dit" in r.stderr
    wavs = {}
    for precision in ("dynamic_int8", "float32"):
        r, report = generate(world, bundle, "--decoder-precision", precision)
        assert r.returncode == 0 and report["models"]["decoder"] in (
            manifest(world)["app"]["files"]["decoder"], f"variants/autoencoder_{precision}.tflite"), r.stderr
        wavs[precision] = sf.read(str(world["tmp"] / "x.wav"))[0]
    assert 20.0 < metrics(wavs["float32"], wavs["dynamic_int8"])["snr_db"] < 200.0  # two decoders, the same music


def test_a_variant_failing_its_gate_is_left_out_and_fails_the_build_only_when_pinned(world):
    world["profile"].write_text(body(mixed_gate=99.0))
    r = doit(profile=world["profile"])
    assert executed(r.stdout) == {"verify_dit", "select_app", "collect", "attest"}
    assert "dit dynamic_wi4ff_wi8_afp32 failed its gate: left out of the choice" in r.stdout
    app, m = app_report(world), manifest(world)
    assert app["variants"]["dit"]["dynamic_wi4ff_wi8_afp32"]["gate"] is False
    assert all(c["models"]["dit"] == "dynamic_wi8_afp32" for c in app["combinations"])
    assert m["models"]["variants/dit_dynamic_wi4ff_wi8_afp32.tflite"]["gate"] is False
    r, _ = generate(world, world["out"] / "bundle", "--variant", "dit=dynamic_wi4ff_wi8_afp32")
    assert r.returncode == 2 and "failed its parity gate" in r.stderr

    before = (world["out"] / "bundle" / "manifest.json").read_bytes()
    world["profile"].write_text(body(mixed_gate=99.0).replace('"dynamic_wi4ff_wi8_afp32"]\napp = "auto"',
                                                              '"dynamic_wi4ff_wi8_afp32"]\napp = "dynamic_wi4ff_wi8_afp32"'))
    r = doit(profile=world["profile"], check=False)
    assert r.returncode != 0
    assert "dit: the app's pinned variant dynamic_wi4ff_wi8_afp32 failed its gate: dynamic_wi4ff_wi8_afp32 SNR dB" in r.stdout
    assert (world["out"] / "bundle" / "manifest.json").read_bytes() == before


def test_no_set_meeting_the_constraints_is_one_error_with_the_closest(world):
    before = (world["out"] / "bundle" / "manifest.json").read_bytes()
    world["profile"].write_text(body(app="max_bytes = 1000\n"))
    r = doit(profile=world["profile"], check=False)
    assert r.returncode != 0
    [line] = [x for x in r.stdout.splitlines() if "no app set meets" in x]
    assert "[app] max_bytes = 1000" in line and line.count(" MB, latent ") == 3  # the three closest sets
    assert (world["out"] / "bundle" / "manifest.json").read_bytes() == before


def test_fastest_objective_and_the_roles_layout(world):
    world["profile"].write_text(body(app='layout = "roles"\nbundle_variants = false\n').replace(
        'objective = "smallest"', 'objective = "fastest"'))
    r = doit(profile=world["profile"])
    assert executed(r.stdout) <= {"select_app", "collect", "attest"}
    app, timed = app_report(world), app_timings(world)
    meeting = {tuple(c["models"].values()) for c in app["combinations"] if c["meets"]}
    assert app["objective"] == "fastest" and timed["figures"]["warm_s"] == min(
        t["warm_s"] for t in timed["combinations"] if tuple(t["models"].values()) in meeting)
    bundle = world["out"] / "bundle"
    assert {str(p.relative_to(bundle)) for p in bundle.rglob("*") if ".xnnpack_cache" not in p.parts} == {
        "conditioners.tflite", "dit.tflite", "autoencoder.tflite", "spiece.model", "manifest.json", "verified.json"}
    r, report = generate(world, bundle)
    assert r.returncode == 0, r.stderr
    assert report["models"] == {"conditioners": "conditioners.tflite", "dit": "dit.tflite", "decoder": "autoencoder.tflite"}


def test_app_must_be_a_built_variant(tmp_path):
    p = write_profile(tmp_path, "x", '[source]\nkind = "synthetic"\n[autoencoder]\napp = "dynamic_int8"\n')
    with pytest.raises(InputError) as e:
        load_profile(p)
    assert e.value.field == "autoencoder" and "dynamic_int8" in str(e.value)
    p.write_text('[source]\nkind = "synthetic"\n[dit]\nvariants = ["dynamic_wi8_afp32", "dynamic_wi4_afp32"]\n'
                 'app = "weight_only_wi8_afp32"\n')
    with pytest.raises(InputError) as e:
        load_profile(p)
    assert e.value.field == "dit" and "weight_only_wi8_afp32" in str(e.value)


@pytest.mark.parametrize("section, old, now", [
    ("dit", 'quant_recipe = "weight_only_wi8_afp32"', 'variants = ["weight_only_wi8_afp32", ...]'),
    ("autoencoder", 'precisions = ["float32", "float16"]', 'variants = ["float32", "float16"]')])
def test_earlier_variant_spellings_say_the_one_shape(tmp_path, section, old, now):
    """One `variants`/`app` shape for the three models: the DiT's quant_recipe and the decoder's
    precisions are refused with one line saying how to write them now."""
    p = write_profile(tmp_path, "x", f'[source]\nkind = "synthetic"\n[{section}]\n{old}\n')
    with pytest.raises(InputError) as e:
        load_profile(p)
    assert e.value.field == section and f"{old.split()[0]} is gone" in str(e.value) and now in str(e.value)
    assert len(str(e.value).splitlines()) == 1
