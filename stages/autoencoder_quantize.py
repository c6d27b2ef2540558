"""Stage `autoencoder_quantize`: autoencoder_model.tflite (float32) → autoencoder_dynamic_int8.tflite
with ai-edge-quantizer's dynamic_wi8_afp32 recipe: int8 weights and int8 compute on every conv
(float activations quantized per call). The re-authored graph has only CONV_2D convs (no
TRANSPOSE_CONV, which the recipe cannot quantize at real size); the Snake activations stay float32."""
import logging

log = logging.getLogger("sao.autoencoder_quantize")


def run(inputs, outputs, config):
    from ai_edge_quantizer import quantizer, recipe
    q = quantizer.Quantizer(str(inputs["tflite"]))
    q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    q.quantize().export_model(str(outputs["tflite"]), overwrite=True)
    log.info("dynamic int8: %.2f MB → %.2f MB", inputs["tflite"].stat().st_size / 1e6,
             outputs["tflite"].stat().st_size / 1e6)
