"""Stage `conditioners_onnx`: T5 (local folder) + seconds_total embedder (shard) → conditioners.onnx,
legacy torch.onnx exporter at the profile's opset, fixed shapes, named inputs and outputs."""
import logging

import torch

from stages.models.conditioners import from_shard

log = logging.getLogger("sao.conditioners_onnx")
INPUTS = ["input_ids", "attention_mask", "seconds_total"]
OUTPUTS = ["cross_attention_input", "cross_attention_mask", "global_cond"]


def run(inputs, outputs, config):
    model, example = from_shard(inputs["shard"], inputs["t5_config"])
    with torch.no_grad():
        torch.onnx.export(model, example, str(outputs["onnx"]), opset_version=config["opset"],
                          dynamo=False, input_names=INPUTS, output_names=OUTPUTS)
    import onnx
    m = onnx.load(str(outputs["onnx"]))
    log.info("opset %d, %d nodes, %.2f MB", m.opset_import[0].version, len(m.graph.node),
             outputs["onnx"].stat().st_size / 1e6)
