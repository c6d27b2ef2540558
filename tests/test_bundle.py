"""The bundle: manifest vs the files themselves, and text → WAV matched against PyTorch."""
import ast
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import xxhash

from conftest import REPO


def test_manifest_matches_tflite_files(default_bundle):
    from ai_edge_litert.interpreter import Interpreter
    bundle = default_bundle / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["files"]) == {"conditioners_float32.tflite", "dit_model.tflite", "autoencoder_model.tflite",
                                      "spiece.model", "conditioners_int32.tflite", "variants/conditioners_float32.tflite",
                                      "variants/conditioners_float16.tflite", "variants/dit_dynamic_wi8_afp32.tflite",
                                      "variants/autoencoder_float32.tflite"}
    assert manifest["app"]["models"] == ["conditioners_float32.tflite", "dit_model.tflite", "autoencoder_model.tflite"]
    for name, entry in manifest["files"].items():
        data = (bundle / name).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["xxh3_128"] == xxhash.xxh3_128_hexdigest(data)
    for name, desc in manifest["models"].items():
        it = Interpreter(model_path=str(bundle / name))
        sig = it.get_signature_list()[desc["signature"]]
        assert sorted(sig["inputs"]) == sorted(i["name"] for i in desc["inputs"])
        assert sorted(sig["outputs"]) == sorted(o["name"] for o in desc["outputs"])
        # rows in position order: what a C++ client's interpreter->inputs()[i] is
        assert [r["index"] for r in desc["inputs"]] == [d["index"] for d in it.get_input_details()]
        assert [r["index"] for r in desc["outputs"]] == [d["index"] for d in it.get_output_details()]
        runner = it.get_signature_runner(desc["signature"])
        for kind, details in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details())):
            for row in desc[kind]:
                d = details[row["name"]]
                assert row["index"] == d["index"] and row["shape"] == list(d["shape"])
                assert row["dtype"] == np.dtype(d["dtype"]).name
    audio = manifest["models"]["autoencoder_model.tflite"]["outputs"][0]["shape"]
    assert audio == manifest["audio"]["decoder_output_shape"]


def _generate(bundle, *args, out=None):
    cmd = [sys.executable, "-m", "pipeline.tools.cli", "generate", "--bundle", str(bundle), *args]
    if out:
        cmd += ["--out", str(out)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def test_generate_wav_matches_pytorch(default_bundle, tmp_path):
    wav, report = tmp_path / "out.wav", tmp_path / "r.json"
    r = _generate(default_bundle / "bundle", "--prompt", "warm analog synth pad", "--seconds", "10",
                  "--seed", "3", "--reference", str(REPO / "profiles/default.toml"), "--report", str(report), out=wav)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((default_bundle / "bundle/manifest.json").read_text())
    info = sf.info(str(wav))
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, manifest["audio"]["samples"])
    snr = json.loads(report.read_text())["snr_db"]
    assert snr["latent"] >= 20, snr
    for stage in ("conditioners", "dit", "decoder"):
        assert f"{stage}:" in r.stdout


# What an app-side Python needs for `generate`: the runtime package and these (with what they
# load themselves: ml_dtypes for LiteRT, cffi for soundfile, Cython's runtime, the editable
# install's finder, setuptools' distutils hook).
APP_SIDE = {"runtime", "ai_edge_litert", "numpy", "sentencepiece", "soundfile", "xxhash", "ml_dtypes",
            "typing_extensions", "_cffi_backend", "_soundfile", "_soundfile_data", "cython_runtime",
            "__editable___sao_litert_0_1_0_finder", "_distutils_hack"}


def test_generate_imports_only_the_app_side(default_bundle, tmp_path):
    code = ("import sys; from runtime.cli import main; "
            f"rc = main(['generate', '--bundle', {str(default_bundle / 'bundle')!r}, '--prompt', 'rain', "
            f"'--seconds', '5', '--steps', '2', '--out', {str(tmp_path / 'x.wav')!r}]); "
            "print(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names) - {'__main__'})); "
            "sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    imported = set(ast.literal_eval(r.stdout.strip().splitlines()[-1]))
    assert not imported & {"torch", "pipeline", "stages", "tensorflow"}, imported
    assert imported <= APP_SIDE | {m for m in imported if m.startswith("_cython_")}, imported - APP_SIDE


@pytest.mark.parametrize("args, message", [
    (["--prompt", ""], "--prompt: empty prompt"),
    (["--prompt", "loop " * 200], "tokens; the model takes at most 63"),
    (["--prompt", "x", "--seconds", "ten"], "argument --seconds: invalid float value"),
    (["--prompt", "x", "--steps", "0"], "--steps: must be >= 1"),
])
def test_generate_bad_arguments(default_bundle, tmp_path, args, message):
    wav = tmp_path / "out.wav"
    r = _generate(default_bundle / "bundle", *args, out=wav)
    assert r.returncode == 2 and message in r.stderr
    assert not wav.exists() and not list(tmp_path.iterdir())


def test_generate_bad_bundle(default_bundle, tmp_path):
    import shutil
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle / "bundle", bundle)
    (bundle / "dit_model.tflite").write_bytes((bundle / "dit_model.tflite").read_bytes()[:-1] + b"\0")
    r = _generate(bundle, "--prompt", "x", out=tmp_path / "a.wav")
    assert r.returncode == 2 and "dit_model.tflite: xxh3_128 does not match" in r.stderr
    shutil.copyfile(default_bundle / "bundle/dit_model.tflite", bundle / "dit_model.tflite")
    (bundle / "spiece.model").unlink()
    r = _generate(bundle, "--prompt", "x", out=tmp_path / "a.wav")
    assert r.returncode == 2 and "spiece.model: missing bundle file" in r.stderr
    assert not (tmp_path / "a.wav").exists()


def test_xnnpack_weight_cache_beside_the_bundle(default_bundle, tmp_path):
    """generate packs the DiT's and decoder's weights into per-model XNNPACK cache files beside the
    models (named by the manifest digest, outside the manifest), maps them on the next start, and
    survives a garbage cache file and a cache folder it cannot create; the audio never changes."""
    import shutil
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle / "bundle", bundle, ignore=shutil.ignore_patterns(".xnnpack_cache"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    cache = bundle / ".xnnpack_cache"
    args = ("--prompt", "warm pad", "--seconds", "3", "--seed", "1", "--steps", "2")
    r = _generate(bundle, *args, out=tmp_path / "1.wav")
    assert r.returncode == 0, r.stderr
    assert "INFO: [" not in r.stderr  # LiteRT's runtime chatter is kept off the console
    want = {f"{n}.{manifest['files'][n]['xxh3_128'][:16]}.xnnpack" for n in ("dit_model.tflite", "autoencoder_model.tflite")}
    assert {p.name for p in cache.iterdir()} == want | {"verified.json"}  # conditioners: Interpreter, no cache
    assert set(manifest["files"]) | {"manifest.json", "verified.json"} == {
        str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file() and p.parent.name != ".xnnpack_cache"}
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.suffix == ".xnnpack"}
    r = _generate(bundle, *args, out=tmp_path / "2.wav")
    assert r.returncode == 0, r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir() if p.suffix == ".xnnpack"} == stamps  # mapped
    dit_cache = next(cache.glob("dit_model.tflite.*"))
    dit_cache.write_bytes(b"garbage")
    r = _generate(bundle, *args, out=tmp_path / "3.wav")
    assert r.returncode == 0, r.stderr
    assert dit_cache.stat().st_size > 1000  # re-packed
    shutil.rmtree(cache)
    cache.write_text("not a folder")
    r = _generate(bundle, *args, out=tmp_path / "4.wav")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("runs without a weight cache") == 2
    first, *others = (sf.read(str(tmp_path / f"{i}.wav"))[0] for i in range(1, 5))
    assert np.abs(first).max() > 1e-3 and all(np.array_equal(first, o) for o in others)


def test_start_up_remembers_verified_files(default_bundle, tmp_path):
    """A start hash-checks every bundle file, remembering (inode, size, mtime) of those that
    matched: an unchanged file is not read again, a file written since is checked again."""
    import os
    import shutil
    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle / "bundle", bundle, ignore=shutil.ignore_patterns(".xnnpack_cache"))
    args = ("--prompt", "rain", "--seconds", "2", "--steps", "1")
    assert _generate(bundle, *args, out=tmp_path / "1.wav").returncode == 0
    memo = json.loads((bundle / ".xnnpack_cache" / "verified.json").read_text())
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {n: d for n, (_, _, _, d) in memo.items()} == {n: f["xxh3_128"] for n, f in manifest["files"].items()}
    f16 = bundle / "variants" / "conditioners_float16.tflite"  # bundled, checked, not loaded by generate
    st, data = f16.stat(), bytearray(f16.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with open(f16, "r+b") as f:  # same inode and size; the old mtime put back: the memo trusts it
        f.write(data)
    os.utime(f16, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _generate(bundle, *args, out=tmp_path / "2.wav").returncode == 0
    os.utime(f16)  # now it looks written: checked again, and caught
    r = _generate(bundle, *args, out=tmp_path / "3.wav")
    assert r.returncode == 2 and "conditioners_float16.tflite: xxh3_128 does not match" in r.stderr
