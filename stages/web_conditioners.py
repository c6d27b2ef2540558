"""Stage `web_conditioners`: the app's conditioners for the web client. LiteRT.js holds no int64
tensors ("Element type INT64 is not supported"), so this file takes the token ids and the mask as
int32 and casts them to int64 inside the graph (pipeline/core/contract.py): same positions, same
signature names, same outputs bit for bit. The DiT and the decoder need no change."""
import logging

from pipeline.core.contract import cast_inputs
from runtime.vocab import WEB_CONTRACTS

log = logging.getLogger("sao.web_conditioners")


def run(inputs, outputs, config):
    cast_inputs(inputs["tflite"], outputs["tflite"], WEB_CONTRACTS["conditioners"])
    log.info("int32 ids and mask: %.2f MB", outputs["tflite"].stat().st_size / 1e6)
