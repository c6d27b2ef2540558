"""Stage `autoencoder_reauthor`: decoder shard → re-authored decoder → torch.export → decoder.pt2
(its channels-last form, `ExportDecoder`; `build` returns the faithful module, the reference)."""
import logging

import torch

from pipeline.config import OobleckDecoderConfig
from stages.models import layout, shards
from stages.models.decoder import Decoder, ExportDecoder

log = logging.getLogger("sao.autoencoder_reauthor")


def build(shard_path):
    tensors, config = shards.read(shard_path)
    cfg = OobleckDecoderConfig.model_validate(config["decoder"])
    model = Decoder(cfg, config["scale"]).eval()
    shards.load_strict(model, tensors, layout.decoder(cfg), shard_path)
    g = torch.Generator().manual_seed(0)
    return model, {"latent": torch.randn(1, cfg.latent_dim, config["latent_frames"], generator=g)}


def run(inputs, outputs, config):
    from pipeline.convert import export_pt2
    model, example = build(inputs["shard"])
    export_pt2(ExportDecoder(model), example, outputs["pt2"], log)
