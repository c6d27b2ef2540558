"""Stage `verify_dit`: the float DiT and every quantized variant (.tflite) vs the PyTorch module,
on seeded inputs over the real value ranges (t across the sampler schedule, unit-variance
latents). The float file by relative error (it fails the stage); each variant by SNR against its
own threshold (config `variants`), reported for select_app. A file's figures are kept in the
stage's memo (pipeline/core/memo.py): a DiT edit checks the files it changed (record: "ran")."""
import logging

import numpy as np
import torch

from pipeline.core import memo
from pipeline.core.log import measure
from pipeline.core.parity import gate
from runtime.files import xxh3_128
from runtime.parity import metrics, worst
from runtime import ping_pong
from runtime.litert import Model
from stages.models.dit import from_shard

log = logging.getLogger("sao.verify_dit")


def run(inputs, outputs, config):
    model, example = from_shard(inputs["shard"])
    ts = ping_pong.schedule(8)[:-1]
    g = np.random.default_rng(1234)
    feeds, refs, ran = [], [], []
    for i in range(config["verify_cases"]):
        feed = {k: g.standard_normal(v.shape).astype(np.float32) for k, v in example.items()}
        feed["t"] = np.array([ts[i * (len(ts) - 1) // max(1, config["verify_cases"] - 1)]], np.float32)
        feeds.append(feed)
    asked = {"shard": xxh3_128(inputs["shard"]), "cases": [{k: memo.array_key(v) for k, v in f.items()} for f in feeds]}

    def cases(name):  # one model in memory at a time (1.4 GB at real size); PyTorch's outputs once, if needed
        if not refs:
            with torch.no_grad():
                refs.extend(model(**{k: torch.from_numpy(v) for k, v in feed.items()}).numpy() for feed in feeds)
        ran.append(name)
        lite = Model(inputs["variants"][name])
        return [metrics(ref, next(iter(lite(**feed).values()))) for ref, feed in zip(refs, feeds)]
    report = {}
    for name in ("float32", *config["variants"]):  # a file's cases recalled from the memo when it holds them
        got = memo.value({**asked, "file": xxh3_128(inputs["variants"][name])}, lambda: cases(name))
        report[name] = {"worst": worst(got), "cases": got}
    measure("ran", ran)
    gate(report, [
        ("float32 rel. max-abs error", report["float32"]["worst"]["rel"], "<=", config["max_rel_fp32"]),
        *[(f"{v} SNR dB", report[v]["worst"]["snr_db"], ">=", limit, v) for v, limit in config["variants"].items()],
    ], outputs["report"], log)
