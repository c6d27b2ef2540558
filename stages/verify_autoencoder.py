"""Stage `verify_autoencoder`: autoencoder_model.tflite vs the PyTorch decoder on unit-variance
latents. Gated by relative max-abs error, unless the fp32 reference itself differs from an fp64
run by more than that tolerance: then by SNR against the fp64 run (reported as such); either
fails the stage. Every other decoder variant (config `variants`) is gated by its audio SNR
against the same PyTorch outputs, on its own threshold, and reported for select_app."""
import copy
import logging

import numpy as np
import torch

from pipeline.core.parity import gate
from runtime.parity import metrics, worst
from runtime.litert import Model
from stages.models.decoder import from_shard

log = logging.getLogger("sao.verify_autoencoder")


def run(inputs, outputs, config):
    model, example = from_shard(inputs["shard"])
    lite = Model(inputs["variants"]["float32"])
    g = np.random.default_rng(4321)
    latents = [g.standard_normal(example["latent"].shape).astype(np.float32) for _ in range(2)]
    with torch.no_grad():
        refs = [model(torch.from_numpy(z)).numpy() for z in latents]
    outs = [next(iter(lite(latent=z).values())) for z in latents]
    vs32 = [metrics(r, y) for r, y in zip(refs, outs)]
    report = {"float32": {"worst": worst(vs32), "cases": vs32}}
    rel = ("float32 rel. max-abs error", report["float32"]["worst"]["rel"], "<=", config["max_rel_fp32"])
    report["gated_by"] = "relative max-abs error vs the fp32 PyTorch decoder"
    checks = [rel]
    if rel[1] > rel[3]:  # only then can the fp32 reference itself be the problem: measure its floor
        model64 = copy.deepcopy(model).double()
        with torch.no_grad():
            refs64 = [model64(torch.from_numpy(z).double()).numpy() for z in latents]
        vs64 = [metrics(r, y) for r, y in zip(refs64, outs)]
        report["vs_float64"] = {"worst": worst(vs64), "cases": vs64}
        report["fp32_vs_fp64_floor"] = worst([metrics(a, b) for a, b in zip(refs64, refs)])
        if report["fp32_vs_fp64_floor"]["rel"] > config["max_rel_fp32"]:
            report["gated_by"] = "SNR vs fp64: the fp32 reference itself is above the relative tolerance"
            checks = [("SNR dB vs fp64 decoder", report["vs_float64"]["worst"]["snr_db"], ">=", config["min_snr_db"])]
    for v, limit in config["variants"].items():  # gated against the PyTorch decoder like the float file
        q = Model(inputs["variants"][v])
        vs = [metrics(r, next(iter(q(latent=z).values()))) for r, z in zip(refs, latents)]
        report[v] = {"worst": worst(vs), "cases": vs}
        checks.append((f"{v} audio SNR dB", report[v]["worst"]["snr_db"], ">=", limit, v))
    gate(report, checks, outputs["report"], log)
