"""Stage `conditioners_onnx`: T5 (local folder) + seconds_total embedder (shard) → conditioners.onnx,
legacy torch.onnx exporter at the profile's opset, fixed shapes, named inputs and outputs."""
import logging

import torch

from pipeline.config import ConditioningConfig
from stages.models import layout, shards
from stages.models.conditioners import Conditioners, load_t5

log = logging.getLogger("sao.conditioners_onnx")
INPUTS = ["input_ids", "attention_mask", "seconds_total"]
OUTPUTS = ["cross_attention_input", "cross_attention_mask", "global_cond"]


def build(shard_path, t5_config_path):
    """The PyTorch conditioners and example inputs of the exported shapes."""
    tensors, config = shards.read(shard_path)
    cond = ConditioningConfig.model_validate({"configs": [config["t5"], config["number"]],
                                              "cond_dim": config["cond_dim"]})
    model = Conditioners(config, load_t5(t5_config_path.parent, cond.cond_dim)).eval()
    shards.load_strict(model.conditioners, tensors, layout.conditioners(cond), shard_path)
    length = cond.t5.config.max_length
    example = (torch.ones(1, length, dtype=torch.int64), torch.ones(1, length, dtype=torch.int64),
               torch.tensor([10.0]))
    return model, example


def run(inputs, outputs, config):
    model, example = build(inputs["shard"], inputs["t5_config"])
    with torch.no_grad():
        torch.onnx.export(model, example, str(outputs["onnx"]), opset_version=config["opset"],
                          dynamo=False, input_names=INPUTS, output_names=OUTPUTS)
    import onnx
    m = onnx.load(str(outputs["onnx"]))
    log.info("opset %d, %d nodes, %.2f MB", m.opset_import[0].version, len(m.graph.node),
             outputs["onnx"].stat().st_size / 1e6)
