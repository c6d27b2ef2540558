"""Stage `dit_quantize`: dit_float32.tflite → dit_model.tflite with ai-edge-quantizer.

Quantizing the float file (not inside litert-torch) keeps the recipe a separate cacheable step:
a recipe change re-runs 0.1 s of quantization, not the conversion; for dynamic int8 the bytes
are identical to litert-torch's in-conversion recipe (toolchain.md)."""
import logging

log = logging.getLogger("sao.dit_quantize")


def run(inputs, outputs, config):
    from ai_edge_quantizer import quantizer, recipe
    q = quantizer.Quantizer(str(inputs["tflite"]))
    q.load_quantization_recipe(getattr(recipe, config["quant_recipe"])())
    q.quantize().export_model(str(outputs["tflite"]), overwrite=True)
    log.info("%s: %.2f MB → %.2f MB", config["quant_recipe"], inputs["tflite"].stat().st_size / 1e6,
             outputs["tflite"].stat().st_size / 1e6)
