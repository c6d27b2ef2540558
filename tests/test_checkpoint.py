from pathlib import Path

import pytest
import torch

from pipeline.core.errors import InputError
from stages import checkpoint, synth
from stages.models import layout
from pipeline.core.model_config import ModelConfig


@pytest.fixture(scope="module")
def tiny():
    cfg = ModelConfig.model_validate(synth.model_config("tiny"))
    return cfg, synth._state_dict(cfg, seed=1)


def _validate(cfg, sd, tmp_path):
    layout.check_keys({k: tuple(v.shape) for k, v in sd.items()}, layout.checkpoint_layout(cfg), tmp_path / "model.ckpt")


def test_complete_checkpoint_passes(tiny, tmp_path):
    _validate(*tiny, tmp_path)


def test_encoder_keys_are_optional(tiny, tmp_path):
    cfg, sd = tiny
    _validate(cfg, {k: v for k, v in sd.items() if "encoder" not in k}, tmp_path)


def test_missing_key_named(tiny, tmp_path):
    cfg, sd = tiny
    sd = dict(sd)
    del sd["model.model.transformer.layers.1.ff.ff.2.bias"]
    with pytest.raises(InputError, match=r"missing keys: model.model.transformer.layers.1.ff.ff.2.bias") as e:
        _validate(cfg, sd, tmp_path)
    assert e.value.file.endswith("model.ckpt")


def test_unexpected_key_named(tiny, tmp_path):
    cfg, sd = tiny
    sd = {**sd, "model.model.extra.weight": torch.zeros(2)}
    with pytest.raises(InputError, match="unexpected keys: model.model.extra.weight"):
        _validate(cfg, sd, tmp_path)


def test_misshaped_key_named(tiny, tmp_path):
    cfg, sd = tiny
    k = "pretransform.model.decoder.layers.1.layers.1.weight_v"
    sd = {**sd, k: torch.zeros(3, 3, 3)}
    with pytest.raises(InputError, match=rf"mis-shaped keys: {k} \(3, 3, 3\) != ") as e:
        _validate(cfg, sd, tmp_path)
    assert e.value.field == k


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_with_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "payload_ran"
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "hook": _Payload(str(marker))}, bad)
    with pytest.raises(InputError, match="refused") as e:
        checkpoint.load_checkpoint(bad)
    assert not marker.exists()
    assert e.value.file == str(bad)


def test_truncated_checkpoint(tiny, tmp_path):
    p = tmp_path / "model.ckpt"
    torch.save({"state_dict": tiny[1]}, p)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(InputError, match="unreadable checkpoint"):
        checkpoint.load_checkpoint(p)


def test_safetensors_checkpoint_loads_flat(tiny, tmp_path):
    from safetensors.torch import save_file
    p = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in tiny[1].items()}, p)
    sd = checkpoint.load_checkpoint(p)
    assert set(sd) == set(tiny[1])
