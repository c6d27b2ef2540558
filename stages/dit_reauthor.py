"""Stage `dit_reauthor`: DiT shard → re-authored module → torch.export (strict) → dit.pt2."""
import logging

from stages.models.dit import from_shard
from stages.models.export import export_pt2

log = logging.getLogger("sao.dit_reauthor")


def run(inputs, outputs, config):
    export_pt2(*from_shard(inputs["shard"]), outputs["pt2"], log)
