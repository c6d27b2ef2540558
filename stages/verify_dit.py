"""Stage `verify_dit`: the float and quantized DiT .tflite files vs the PyTorch module, on seeded
inputs over the real value ranges (t across the sampler schedule, unit-variance latents)."""
import logging

import numpy as np
import torch

from pipeline.core.parity import gate
from runtime.parity import metrics, worst
from runtime import ping_pong
from runtime.litert import Model
from stages.models.dit import from_shard

log = logging.getLogger("sao.verify_dit")


def run(inputs, outputs, config):
    model, example = from_shard(inputs["shard"])
    lite = {"float32": Model(inputs["float32"]), "quantized": Model(inputs["quantized"])}
    ts = ping_pong.schedule(8)[:-1]
    g = np.random.default_rng(1234)
    cases = {k: [] for k in lite}
    for i in range(config["verify_cases"]):
        feed = {k: g.standard_normal(v.shape).astype(np.float32) for k, v in example.items()}
        feed["t"] = np.array([ts[i * (len(ts) - 1) // max(1, config["verify_cases"] - 1)]], np.float32)
        with torch.no_grad():
            ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).numpy()
        for name, m in lite.items():
            (got,) = m(**feed).values()
            cases[name].append(metrics(ref, got))
    report = {name: {"worst": worst(c), "cases": c} for name, c in cases.items()}
    report["quant_recipe"] = config["quant_recipe"]
    gate(report, [
        ("float32 rel. max-abs error", report["float32"]["worst"]["rel"], "<=", config["max_rel_fp32"]),
        (f"{config['quant_recipe']} SNR dB", report["quantized"]["worst"]["snr_db"], ">=", config["min_snr_quant_db"]),
    ], outputs["report"], log)
