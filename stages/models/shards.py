"""Reading a submodule shard (tensors + its config slice) and loading it strictly."""
import json
from pathlib import Path

import torch
from safetensors import safe_open

from pipeline.errors import InputError


def read(path) -> tuple[dict, dict]:
    """(tensors as float32, config slice) of a shard written by the checkpoint stage."""
    with safe_open(str(path), framework="pt") as f:
        config = json.loads(f.metadata()["config"])
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    return tensors, config


def load_strict(module: torch.nn.Module, tensors: dict, expected: dict, source="shard"):
    """Check names and shapes against the layout (original key names), then load with
    strict=True. Every offending key is named in one error."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    misshaped = sorted(f"{k} {tuple(tensors[k].shape)} != {tuple(expected[k])}"
                       for k in set(tensors) & set(expected) if tuple(tensors[k].shape) != tuple(expected[k]))
    problems = [f"{what}: {', '.join(keys)}" for what, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", misshaped)) if keys]
    if problems:
        first = (missing or unexpected or [misshaped[0].split(" ")[0]])[0]
        raise InputError(Path(str(source)), first, "; ".join(problems))
    module.load_state_dict(tensors, strict=True)
    return module
