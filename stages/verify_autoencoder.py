"""Stage `verify_autoencoder`: autoencoder_model.tflite vs the PyTorch decoder on unit-variance
latents. Gated by relative max-abs error, unless the fp32 reference itself differs from an fp64
run by more than that tolerance: then by SNR against the fp64 run (reported as such)."""
import copy
import logging

import numpy as np
import torch

from pipeline import parity
from runtime.litert import Model

log = logging.getLogger("sao.verify_autoencoder")


def run(inputs, outputs, config):
    from stages.autoencoder_reauthor import build
    model, example = build(inputs["shard"])
    model64 = copy.deepcopy(model).double()
    lite = Model(inputs["tflite"])
    g = np.random.default_rng(4321)
    vs32, vs64, floor = [], [], []
    for _ in range(2):
        z = g.standard_normal(example["latent"].shape).astype(np.float32)
        with torch.no_grad():
            ref32 = model(torch.from_numpy(z)).numpy()
            ref64 = model64(torch.from_numpy(z).double()).numpy()
        (got,) = lite(latent=z).values()
        vs32.append(parity.metrics(ref32, got))
        vs64.append(parity.metrics(ref64, got))
        floor.append(parity.metrics(ref64, ref32))
    report = {"float32": {"worst": parity.worst(vs32), "cases": vs32},
              "vs_float64": {"worst": parity.worst(vs64), "cases": vs64},
              "fp32_vs_fp64_floor": parity.worst(floor)}
    if report["fp32_vs_fp64_floor"]["rel"] <= config["max_rel_fp32"]:
        report["gated_by"] = "relative max-abs error vs the fp32 PyTorch decoder"
        checks = [("float32 rel. max-abs error", report["float32"]["worst"]["rel"], "<=", config["max_rel_fp32"])]
    else:
        report["gated_by"] = "SNR vs fp64: the fp32 reference itself is above the relative tolerance"
        checks = [("SNR dB vs fp64 decoder", report["vs_float64"]["worst"]["snr_db"], ">=", config["min_snr_db"])]
    parity.gate(report, checks, outputs["report"], log)
