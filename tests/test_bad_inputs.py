"""The bad-input catalogue, each case through `doit` on a fully built profile: one error line that
names the file and the field or key, a non-zero exit, and every artifact byte-identical."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import ARTIFACTS, doit, executed, files_source, shared
from pipeline.core.hashing import file_digest

DIT_KEY = "model.model.transformer.layers.1.ff.ff.2.bias"
DECODER_KEY = "pretransform.model.decoder.layers.1.layers.1.weight_v"


@pytest.fixture(scope="module")
def built(tmp_path_factory, default_build):
    """A files profile over a copy of the default inputs, built end to end; `pristine` restores it."""
    root = tmp_path_factory.mktemp("badin")
    keep, model = root / "pristine", root / "model"
    shutil.copytree(default_build / "inputs", keep)
    profile = root / "badin.toml"
    text = files_source(model)

    def pristine():
        shutil.rmtree(model, ignore_errors=True)
        shutil.copytree(keep, model)
        profile.write_text(text)
    pristine()
    doit(profile=profile, env=shared())  # the default's stages: restored from the run's cache
    out = ARTIFACTS / "badin"
    yield {"profile": profile, "model": model, "pristine": pristine, "out": out, "built": _artifacts(out)}
    shutil.rmtree(ARTIFACTS / "badin", ignore_errors=True)


def _artifacts(out: Path) -> dict:
    # work/: onnx2tf's scratch; .jobs/: the last attempt of each stage, as logs/; memo/: what stages ran (pipeline/core/memo.py)
    skip = {"logs", ".jobs", "work", ".doit.db", ".lock", "memo"}
    return {str(p.relative_to(out)): file_digest(p) for p in sorted(out.rglob("*"))
            if p.is_file() and not skip & set(p.relative_to(out).parts)}


def _edit_json(path, edit):
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


def _edit_ckpt(path, edit):
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt["state_dict"])
    torch.save(ckpt, path)


class _Payload:
    """Unpickling this runs Path.touch(marker): a stand-in for any code a pickle can carry."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


CASES = {}


def case(edit):
    """edit(model dir, profile) breaks one input and returns (file, field or key) the error must name."""
    CASES[edit.__name__] = edit
    return edit


@case
def profile_missing(m, p):
    p.unlink()
    return p, "file not found"


@case
def profile_malformed_toml(m, p):
    p.write_text("[source\nkind = 1\n")
    return p, "malformed TOML"


@case
def profile_wrong_type(m, p):
    p.write_text(p.read_text() + '[dit]\nmax_rel_fp32 = "tight"\n')
    return p, "dit.max_rel_fp32"


@case
def profile_unknown_onnx2tf_option(m, p):
    p.write_text(p.read_text() + '[conditioners]\nonnx2tf = { keep_shape_absolutly_input_names = [] }\n')
    return p, "conditioners.onnx2tf: not an onnx2tf.convert argument"


@case
def config_malformed_json(m, p):
    (m / "model_config.json").write_text('{"model_type": "x",,}')
    return m / "model_config.json", "line 1 col 20"


@case
def config_missing_field(m, p):
    _edit_json(m / "model_config.json", lambda r: r["model"]["diffusion"]["config"].pop("depth"))
    return m / "model_config.json", "model.diffusion.config.depth"


@case
def config_wrong_type(m, p):
    _edit_json(m / "model_config.json", lambda r: r.update(sample_rate="fast"))
    return m / "model_config.json", "sample_rate"


@case
def checkpoint_missing(m, p):
    (m / "model.ckpt").unlink()
    return p, "source.checkpoint"


@case
def checkpoint_truncated(m, p):
    (m / "model.ckpt").write_bytes((m / "model.ckpt").read_bytes()[:100_000])
    return m / "model.ckpt", "unreadable checkpoint"


@case
def checkpoint_missing_key(m, p):
    _edit_ckpt(m / "model.ckpt", lambda sd: sd.pop(DIT_KEY))
    return m / "model.ckpt", f"missing keys: {DIT_KEY}"


@case
def checkpoint_unexpected_key(m, p):
    _edit_ckpt(m / "model.ckpt", lambda sd: sd.update({"model.model.extra.weight": torch.zeros(2)}))
    return m / "model.ckpt", "unexpected keys: model.model.extra.weight"


@case
def checkpoint_misshaped_tensor(m, p):
    _edit_ckpt(m / "model.ckpt", lambda sd: sd.update({DECODER_KEY: torch.zeros(3, 3, 3)}))
    return m / "model.ckpt", f"{DECODER_KEY}: mis-shaped keys"


@case
def t5_without_spiece(m, p):
    (m / "t5" / "spiece.model").unlink()
    return p, "source.t5_dir"


@case
def t5_width_mismatch(m, p):
    _edit_json(m / "t5" / "config.json", lambda r: r.update(d_model=r["d_model"] * 2))
    return m / "t5" / "config.json", "d_model: T5 width"


@pytest.mark.parametrize("case", CASES)
def test_bad_input(built, case):
    before = _artifacts(built["out"])
    try:
        file, field = CASES[case](built["model"], built["profile"])
        r = doit(profile=built["profile"], check=False)
    finally:
        built["pristine"]()
    assert r.returncode != 0
    errors = [line for line in r.stdout.splitlines() if "error:" in line]
    assert len(errors) == 1, r.stdout[-3000:]
    assert f"{file}: " in errors[0] and field in errors[0], errors[0]
    assert _artifacts(built["out"]) == before


def test_pickle_carrying_code_is_refused_without_running(built, tmp_path):
    before = _artifacts(built["out"])
    marker = tmp_path / "payload_ran"
    ckpt = built["model"] / "model.ckpt"
    try:
        torch.save({"state_dict": torch.load(ckpt, weights_only=True)["state_dict"],
                    "callbacks": _Payload(marker)}, ckpt)
        r = doit(profile=built["profile"], check=False)
    finally:
        built["pristine"]()
    assert r.returncode != 0
    assert not marker.exists(), "the checkpoint's pickled code ran"
    errors = [line for line in r.stdout.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"{ckpt}: " in errors[0] and "refused" in errors[0], r.stdout[-3000:]
    assert _artifacts(built["out"]) == before


def test_impossible_tolerance_fails_the_build(built):
    before = _artifacts(built["out"])
    try:
        built["profile"].write_text(built["profile"].read_text() + "[conditioners]\nmax_rel_fp32 = 1e-12\n")
        r = doit(profile=built["profile"], check=False)
    finally:
        built["pristine"]()
    assert r.returncode != 0
    assert "parity failed: float32 cross_attention_input rel. error" in r.stdout
    assert _artifacts(built["out"]) == before  # the passing report and the bundle stay


def test_corrupted_tflite_fails_the_build(built):
    f = built["out"] / "conditioners" / "conditioners_float32.tflite"  # the reference variant: always gated
    before, data = _artifacts(built["out"]), f.read_bytes()
    bad = bytearray(data)
    bad[len(bad) // 2: len(bad) // 2 + 4096] = bytes(4096)  # zero a block of weights
    try:
        f.write_bytes(bytes(bad))
        r = doit(profile=built["profile"], check=False)
    finally:
        f.write_bytes(data)
    assert r.returncode != 0
    assert "stage 'verify_conditioners' failed" in r.stdout and "collect" not in executed(r.stdout)
    assert _artifacts(built["out"]) == before  # the bundle still holds the good file


def test_state_intact_after_the_catalogue(built):
    """Run last in this module: with the inputs restored, only the tasks that failed above run
    again (doit forgets a failed task's state) and they rebuild the same bytes."""
    ran = executed(doit(profile=built["profile"]).stdout)
    assert ran <= {"checkpoint", "conditioners_onnx", "conditioners_tflite", "verify_conditioners"}, ran
    assert _artifacts(built["out"]) == built["built"]
    assert executed(doit(profile=built["profile"]).stdout) == set()
