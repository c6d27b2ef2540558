"""Stage `dit_reauthor`: DiT shard → re-authored module → torch.export (strict) → dit.pt2."""
import logging

import torch

from stages.models import layout, shards
from stages.models.dit import DiT
from pipeline.config import DiTConfig

log = logging.getLogger("sao.dit_reauthor")


def build(shard_path):
    """The loaded PyTorch DiT and example inputs for its fixed shapes."""
    tensors, config = shards.read(shard_path)
    cfg = DiTConfig.model_validate(config["dit"])
    model = DiT(cfg, config["latent_frames"]).eval()
    shards.load_strict(model, tensors, layout.dit(cfg), shard_path)
    g = torch.Generator().manual_seed(0)
    example = {"x": torch.randn(1, cfg.io_channels, config["latent_frames"], generator=g),
               "t": torch.tensor([0.5]),
               "cross_attn_cond": torch.randn(1, config["cond_tokens"], cfg.cond_token_dim, generator=g),
               "global_cond": torch.randn(1, cfg.global_cond_dim, generator=g)}
    return model, example


def run(inputs, outputs, config):
    from pipeline.convert import export_pt2
    export_pt2(*build(inputs["shard"]), outputs["pt2"], log)
