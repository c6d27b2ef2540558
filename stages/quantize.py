"""Stages `dit_quantize` and `autoencoder_quantize`: a float32 .tflite → a quantized one with an
ai-edge-quantizer recipe (config `recipe`: the profile's `dit.quant_recipe`; `dynamic_wi8_afp32`
for the decoder: int8 weights and int8 compute on every conv, float activations quantized per
call, the Snake activations float32).

Quantizing the float file (not inside litert-torch) keeps the recipe a separate cacheable step:
a recipe change re-runs seconds of quantization, not the conversion; for dynamic int8 the bytes
are identical to litert-torch's in-conversion recipe (toolchain.md)."""
import logging

log = logging.getLogger("sao.quantize")


def run(inputs, outputs, config):
    from ai_edge_quantizer import quantizer, recipe
    q = quantizer.Quantizer(str(inputs["tflite"]))
    q.load_quantization_recipe(getattr(recipe, config["recipe"])())
    q.quantize().export_model(str(outputs["tflite"]), overwrite=True)
    log.info("%s: %.2f MB → %.2f MB", config["recipe"], inputs["tflite"].stat().st_size / 1e6,
             outputs["tflite"].stat().st_size / 1e6)
