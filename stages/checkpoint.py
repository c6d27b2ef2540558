"""Stage `checkpoint`: load the checkpoint safely, validate it against model_config.json, and
split it into one safetensors shard per submodule (conditioners, dit, decoder).

A shard holds its submodule's tensors (keys relative to the submodule prefix) and, as metadata,
the model config; its bytes depend only on its own tensors, so a DiT-only fine-tune leaves the
decoder and conditioner shards byte-identical and their downstream tasks up to date."""
import json
import logging
import pickle
import zipfile
from pathlib import Path

from pipeline.core.model_config import CHECKPOINT_FILES, load_model_config
from pipeline.core.atomic import write_json
from pipeline.core.errors import InputError
from pipeline.core.hashing import file_digest
from runtime.vocab import ROLES
from stages.models import layout

log = logging.getLogger("sao.checkpoint")
SHARDED = ROLES


def load_checkpoint(path: Path) -> dict:
    """Flat {key: tensor}. .ckpt via torch.load(weights_only=True): a pickle carrying code is
    refused without being run. .safetensors is read as-is."""
    import torch
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(path, None, f"unreadable safetensors file: {e}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise InputError(path, None, f"refused: the pickle needs more than tensors ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise InputError(path, None, f"unreadable checkpoint (truncated or not a torch file): {e}") from None
    sd = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(path, "state_dict", "expected a dict of tensors (Lightning layout {'state_dict': …})")
    return sd


def run(inputs: dict, outputs: dict, config: dict):
    from safetensors.torch import save_file
    cfg = load_model_config(inputs["model_config"])
    ckpt = Path(inputs["checkpoint"])
    other = [n for n in CHECKPOINT_FILES if n != ckpt.name and (ckpt.parent / n).is_file()]
    log.info("reading %s%s", ckpt, f" (preferred over {other[0]} beside it: no pickle)"
             if ckpt.suffix == ".safetensors" and other else "")
    sd = load_checkpoint(ckpt)
    layout.check_keys({k: tuple(v.shape) for k, v in sd.items()}, layout.checkpoint_layout(cfg), ckpt)
    for name in SHARDED:
        meta = {"config": json.dumps(layout.shard_config(cfg, name), sort_keys=True)}
        prefix = layout.PREFIXES[name]
        shard = {k[len(prefix):]: sd[k].contiguous() for k in sorted(sd) if k.startswith(prefix)}
        save_file(shard, outputs[name], metadata=meta)
        log.info("%s shard: %d tensors, %.2f MB", name, len(shard),
                 sum(t.numel() * t.element_size() for t in shard.values()) / 1e6)
    write_json(outputs["source"], {
        "checkpoint": Path(inputs["checkpoint"]).name, "checkpoint_xxh3_128": file_digest(inputs["checkpoint"]),
        "sample_rate": cfg.sample_rate, "audio_channels": cfg.audio_channels,
        "latent_frames": cfg.latent_frames, "latent_channels": cfg.dit.io_channels,
        "samples": cfg.latent_frames * cfg.model.pretransform.config.downsampling_ratio,
        "prompt_tokens": cfg.conditioning.t5.config.max_length})
