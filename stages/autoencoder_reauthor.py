"""Stage `autoencoder_reauthor`: decoder shard → re-authored decoder → torch.export → decoder.pt2
(its channels-last form, `ExportDecoder`; `from_shard` gives the faithful module, the reference)."""
import logging

from stages.models.decoder import ExportDecoder, from_shard
from stages.models.export import export_pt2

log = logging.getLogger("sao.autoencoder_reauthor")


def run(inputs, outputs, config):
    model, example = from_shard(inputs["shard"])
    export_pt2(ExportDecoder(model), example, outputs["pt2"], log)
