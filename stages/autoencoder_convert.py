"""Stage `autoencoder_convert`: decoder.pt2 → autoencoder_model.tflite (float32). Input latent
[1,C,T], output audio [1,2,2048·T]; inside, channels-last CONV_2D ops only (stages/models/decoder.py)."""
import logging

log = logging.getLogger("sao.autoencoder_convert")


def run(inputs, outputs, config):
    from pipeline.convert import pt2_to_tflite
    pt2_to_tflite(inputs["pt2"], outputs["tflite"], log)
