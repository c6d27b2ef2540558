"""Stage `dit_convert`: dit.pt2 → dit_float32.tflite with litert-torch (own process)."""
import logging

log = logging.getLogger("sao.dit_convert")


def run(inputs, outputs, config):
    from pipeline.convert import pt2_to_tflite
    pt2_to_tflite(inputs["pt2"], outputs["tflite"], log)
