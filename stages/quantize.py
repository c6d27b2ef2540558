"""Stages `*_quantize*`: a float32 .tflite → a quantized one with an ai-edge-quantizer recipe
(config `recipe`, its name; `entries`, pipeline/core/recipes.py). The DiT's `dit.variants`, the
conditioners' and the decoder's quantized variants are all rows of this module.

Quantizing the float file (not inside litert-torch) keeps the recipe a separate cacheable step:
a recipe change re-runs seconds of quantization, not the conversion; for dynamic int8 the bytes
are identical to litert-torch's in-conversion recipe (toolchain.md). The quantizer keeps the
tensor order of its input; the output is put in its role's client order all the same
(runtime/vocab.py), whatever a quantizer version chooses."""
import logging

from pipeline.core.contract import conform
from runtime.vocab import CONTRACTS

log = logging.getLogger("sao.quantize")


def run(inputs, outputs, config):
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    every = qtyping.TFLOperationName.ALL_SUPPORTED
    rm = recipe_manager.RecipeManager()
    for e in config["entries"]:
        if e["kind"] == "dynamic":
            rm.add_dynamic_config(e["regex"], every, e["bits"])
        elif e["kind"] == "weight_only":
            rm.add_weight_only_config(e["regex"], every, e["bits"])
        elif e["kind"] == "float":
            rm.add_weight_only_config(e["regex"], every, e["bits"], algorithm_key=AlgorithmName.FLOAT_CASTING)
        elif e["kind"] == "none":
            rm.add_quantization_config(e["regex"], every, algorithm_key=AlgorithmName.NO_QUANTIZE)
        else:
            raise ValueError(f"recipe {config['recipe']}: unknown entry kind {e['kind']!r}")
    q = quantizer.Quantizer(str(inputs["tflite"]))
    q.load_quantization_recipe(rm.get_quantization_recipe())
    q.quantize().export_model(str(outputs["tflite"]), overwrite=True)
    conform(outputs["tflite"], CONTRACTS[config["role"]])
    log.info("%s: %.2f MB → %.2f MB", config["recipe"], inputs["tflite"].stat().st_size / 1e6,
             outputs["tflite"].stat().st_size / 1e6)
