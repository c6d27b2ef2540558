"""Stages `dit_convert` and `autoencoder_convert`: a torch.export'ed .pt2 → float32 .tflite with
litert-torch (in its own process: the converter's memory and global side effects stay here).
The decoder's graph is channels-last CONV_2D ops only (stages/models/decoder.py). litert-torch
keeps the forward's argument order; the file is then put in its role's client order
(runtime/vocab.py)."""
import logging
import time

from pipeline.core.contract import conform
from runtime.vocab import CONTRACTS

log = logging.getLogger("sao.litert_convert")


def run(inputs, outputs, config):
    import torch
    t0 = time.perf_counter()
    ep = torch.export.load(str(inputs["pt2"]))
    import litert_torch
    log.info("loaded %s in %.1f s; converting", inputs["pt2"].name, time.perf_counter() - t0)
    # ep.module() cannot be put in eval mode; the re-authored modules have no train-only paths.
    edge = litert_torch.convert(ep.module(), (), sample_kwargs=ep.example_inputs[1])
    edge.export(str(outputs["tflite"]))
    conform(outputs["tflite"], CONTRACTS[config["role"]])
    log.info("converted in %.1f s: %.2f MB", time.perf_counter() - t0, outputs["tflite"].stat().st_size / 1e6)
