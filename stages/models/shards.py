"""Reading a submodule shard (tensors + its config slice) and loading it strictly."""
import json
from pathlib import Path

import torch
from safetensors import safe_open

from . import layout


def read(path) -> tuple[dict, dict]:
    """(tensors as float32, config slice) of a shard written by the checkpoint stage."""
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["config"])
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    return tensors, config


def load_strict(module: torch.nn.Module, tensors: dict, expected: dict, source="shard"):
    """Check names and shapes against the layout (original key names; one error names every
    offending key), then load with strict=True."""
    layout.check_keys({k: tuple(t.shape) for k, t in tensors.items()}, expected, Path(str(source)))
    module.load_state_dict(tensors, strict=True)
    return module
