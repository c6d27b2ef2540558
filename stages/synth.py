"""Stage `synth`: the embedded default model, seeded and written in the real file formats.

model_config.json (SAOS structure), model.ckpt ({"state_dict": …}, every key of the real layout,
encoder included) and a T5 folder (config.json, model.safetensors, spiece.model with T5's ids:
pad 0, eos 1, unk 2). Every parameter is random and non-zero: zero-initialised output layers
would make parity checks pass vacuously. Same seed → byte-identical files."""
import copy
import io
import json
import logging
import math
from pathlib import Path

import numpy as np

from pipeline.core.model_config import ModelConfig
from stages.models import layout

log = logging.getLogger("sao.synth")
DATA = Path(__file__).parent / "data"

# Small dims of the same architecture: head_dim 64 keeps the rotary embedding partial (32 of 64)
# as in the real model (64 of 128); five decoder strides still multiply to 2048.
TINY = {
    "sample_size": 16 * 2048,
    "cond_dim": 96, "t5_max_length": 64,
    "dit": {"io_channels": 16, "embed_dim": 128, "depth": 2, "num_heads": 2,
            "cond_token_dim": 96, "global_cond_dim": 96},
    "ae": {"channels": 8, "latent_dim": 16},
    "t5": {"d_model": 96, "d_kv": 24, "num_heads": 4, "d_ff": 192, "num_layers": 2},
    "spm_vocab": 384,
}
T5_BASE = {"d_model": 768, "d_kv": 64, "num_heads": 12, "d_ff": 3072, "num_layers": 12,
           "vocab_size": 32128}


def model_config(preset: str) -> dict:
    cfg = json.loads((DATA / "sao_small_model_config.json").read_text())
    if preset == "real":
        return cfg
    cfg = copy.deepcopy(cfg)
    cfg["sample_size"] = TINY["sample_size"]
    m = cfg["model"]
    m["conditioning"]["cond_dim"] = TINY["cond_dim"]
    m["conditioning"]["configs"][0]["config"]["max_length"] = TINY["t5_max_length"]
    m["diffusion"]["config"].update(TINY["dit"])
    m["io_channels"] = TINY["dit"]["io_channels"]
    ae = m["pretransform"]["config"]
    ae["latent_dim"] = TINY["ae"]["latent_dim"]
    ae["decoder"]["config"].update(TINY["ae"])
    ae["encoder"]["config"].update(channels=TINY["ae"]["channels"], latent_dim=2 * TINY["ae"]["latent_dim"])
    return cfg


def _init(key: str, shape: tuple, g) -> "np.ndarray":
    """Random, non-zero values at scales that keep activations O(1)."""
    leaf = key.rsplit(".", 1)[-1]
    n = g.standard_normal(shape).astype(np.float32)
    if leaf == "inv_freq":  # a fixed function of the width, as in the original
        dim = 2 * shape[0]
        return (1.0 / 10000 ** (np.arange(0, dim, 2, dtype=np.float32) / dim)).astype(np.float32)
    if leaf in ("gamma",) or (leaf == "weight" and len(shape) == 1):  # norm scales
        return 1 + 0.1 * n
    if leaf in ("beta", "bias", "alpha") or leaf == "weights":
        return n if leaf == "weights" else 0.1 * n
    if leaf == "weight_g":  # row norms ~0.5 keep the residual stacks from growing audio to ±100s
        return 0.5 + 0.05 * n
    if key.endswith("timestep_features.weight"):
        return n
    fan_in = math.prod(shape[1:])
    return n / math.sqrt(fan_in)


def _state_dict(cfg: ModelConfig, seed: int) -> dict:
    import torch
    g = np.random.default_rng(seed)
    return {k: torch.from_numpy(_init(k, s, g)) for k, s in layout.checkpoint_layout(cfg).items()}


def _spiece(vocab: int) -> bytes:
    import sentencepiece as spm
    out = io.BytesIO()
    # Read here, not by path: the stage runner records the project files a stage reads in Python.
    lines = (DATA / "spiece_corpus.txt").read_text().splitlines()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, vocab_size=vocab,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1,
        hard_vocab_limit=False, minloglevel=2)
    return out.getvalue()


def _t5(dims: dict, vocab: int, seed: int, folder: Path):
    import torch
    from transformers import T5Config, T5EncoderModel
    torch.manual_seed(seed)
    conf = T5Config(vocab_size=dims.get("vocab_size", vocab), d_model=dims["d_model"], d_kv=dims["d_kv"],
                    num_heads=dims["num_heads"], d_ff=dims["d_ff"], num_layers=dims["num_layers"],
                    feed_forward_proj="relu", is_encoder_decoder=False, use_cache=False)
    T5EncoderModel(conf).save_pretrained(folder, safe_serialization=True)


def run(inputs: dict, outputs: dict, config: dict):
    import torch
    seed, preset = config["seed"], config["preset"]
    raw = model_config(preset)
    cfg = ModelConfig.model_validate(raw)
    outputs["model_config"].write_text(json.dumps(raw, indent=4) + "\n")
    log.info("model_config.json written (preset %s)", preset)

    sd = _state_dict(cfg, seed)
    with open(outputs["checkpoint"], "wb") as f:  # a file object: torch names the zip root after
        torch.save({"state_dict": sd}, f)           # a path's stem, and ours is a temp name
    log.info("model.ckpt written: %d tensors, %.1f M parameters", len(sd), sum(t.numel() for t in sd.values()) / 1e6)

    spm_vocab = TINY["spm_vocab"] if preset == "tiny" else 2000
    outputs["spiece"].write_bytes(_spiece(spm_vocab))
    dims = TINY["t5"] if preset == "tiny" else T5_BASE
    import tempfile
    with tempfile.TemporaryDirectory(dir=outputs["t5_config"].parent) as d:
        _t5(dims, spm_vocab, seed, Path(d))
        (Path(d) / "config.json").replace(outputs["t5_config"])
        (Path(d) / "model.safetensors").replace(outputs["t5_weights"])
    log.info("T5 folder written (d_model %d, %d layers)", dims["d_model"], dims["num_layers"])
