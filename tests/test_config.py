import json
import shutil

import pytest

from pipeline.core.config import REPO, load_profile
from pipeline.core.model_config import load_model_config
from pipeline.core.errors import InputError

REFERENCE = REPO.parent / "shared" / "reference" / "sao_small_model_config.json"
SHIPPED = REPO / "stages" / "data" / "sao_small_model_config.json"


def _edit(tmp_path, fn):
    raw = json.loads(SHIPPED.read_text())
    fn(raw)
    p = tmp_path / "model_config.json"
    p.write_text(json.dumps(raw))
    return p


def test_reference_config_validates():
    src = REFERENCE if REFERENCE.exists() else SHIPPED
    cfg = load_model_config(src)
    assert cfg.dit.embed_dim == 1024 and cfg.latent_frames == 256
    assert cfg.conditioning.t5.config.max_length == 64


def test_shipped_copy_equals_reference():
    if not REFERENCE.exists():
        pytest.skip("../shared/reference not beside this checkout")
    assert json.loads(SHIPPED.read_text()) == json.loads(REFERENCE.read_text())


def test_extra_fields_allowed(tmp_path):
    p = _edit(tmp_path, lambda r: r["model"]["diffusion"]["config"].update(something_new=3))
    assert load_model_config(p).dit.depth == 16


def test_wrong_type_names_file_and_field(tmp_path):
    p = _edit(tmp_path, lambda r: r["model"]["diffusion"]["config"].update(depth="sixteen"))
    with pytest.raises(InputError) as e:
        load_model_config(p)
    assert e.value.file == str(p)
    assert e.value.field == "model.diffusion.config.depth"


def test_missing_field_names_field(tmp_path):
    p = _edit(tmp_path, lambda r: r["model"]["pretransform"]["config"]["decoder"]["config"].pop("strides"))
    with pytest.raises(InputError) as e:
        load_model_config(p)
    assert e.value.field == "model.pretransform.config.decoder.config.strides"
    assert "Field required" in str(e.value)


def test_inconsistent_strides_rejected(tmp_path):
    p = _edit(tmp_path, lambda r: r["model"]["pretransform"]["config"]["decoder"]["config"].update(strides=[2, 4, 4, 8, 4]))
    with pytest.raises(InputError, match="downsampling_ratio"):
        load_model_config(p)


def test_malformed_json_gives_position(tmp_path):
    p = tmp_path / "model_config.json"
    p.write_text('{"model_type": "diffusion_cond",,}')
    with pytest.raises(InputError) as e:
        load_model_config(p)
    assert e.value.field == "line 1 col 33" and "malformed JSON" in str(e.value)


def test_profile_unknown_key_and_bad_toml(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text('[source]\nkind = "synthetic"\n[dit]\nrecipe = "int3"\n')
    with pytest.raises(InputError) as e:
        load_profile(p)
    assert e.value.field == "dit.recipe"
    p.write_text('[source\nkind = 1')
    with pytest.raises(InputError, match="malformed TOML"):
        load_profile(p)


def test_profile_file_source_paths_relative_to_profile(tmp_path):
    shutil.copy(SHIPPED, tmp_path / "mc.json")
    (tmp_path / "t5").mkdir()
    p = tmp_path / "real.toml"
    p.write_text('[source]\nkind = "files"\nmodel_config_json = "mc.json"\ncheckpoint = "nope.ckpt"\nt5_dir = "t5"\n')
    with pytest.raises(InputError) as e:
        load_profile(p)
    assert e.value.field == "source.checkpoint"
