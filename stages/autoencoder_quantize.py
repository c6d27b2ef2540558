"""Stage `autoencoder_quantize`: autoencoder_model.tflite (float32) → autoencoder_dynamic_int8.tflite
with ai-edge-quantizer: int8 weights and int8 compute (float activations quantized per call) on
the CONV_2D ops only. The full dynamic recipe fails on the real-size decoder's TRANSPOSE_CONV ops
("input operand has more dimensions than allowed by the axis remapping", toolchain.md); those,
the Snake activations and the layout transposes stay float32."""
import logging

log = logging.getLogger("sao.autoencoder_quantize")


def run(inputs, outputs, config):
    from ai_edge_quantizer import quantizer, recipe
    rules = recipe.dynamic_wi8_afp32()
    for rule in rules:
        rule["operation"] = "CONV_2D"
    q = quantizer.Quantizer(str(inputs["tflite"]))
    q.load_quantization_recipe(rules)
    q.quantize().export_model(str(outputs["tflite"]), overwrite=True)
    log.info("dynamic int8 (CONV_2D): %.2f MB → %.2f MB", inputs["tflite"].stat().st_size / 1e6,
             outputs["tflite"].stat().st_size / 1e6)
