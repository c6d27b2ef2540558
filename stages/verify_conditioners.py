"""Stage `verify_conditioners`: every conditioners variant (.tflite) vs the PyTorch module on the
profile's prompts (tokenised with spiece.model) and seconds values, out-of-range ones included.
float32 by relative error (it fails the stage); every other variant by SNR against its own
threshold (config `variants`), reported for select_app."""
import logging

import numpy as np
import torch

from pipeline.core.parity import gate
from runtime.parity import metrics, worst
from runtime.litert import Model
from runtime.tokenizer import Tokenizer
from stages.models.conditioners import from_shard

log = logging.getLogger("sao.verify_conditioners")
OUTPUTS = ["cross_attention_input", "cross_attention_mask", "global_cond"]


def run(inputs, outputs, config):
    model, example = from_shard(inputs["shard"], inputs["t5_config"])
    tok = Tokenizer(inputs["spiece"], example[0].shape[1])
    lite = {v: Model(inputs["variants"][v]) for v in ("float32", *config["variants"])}
    cases = {p: {o: [] for o in OUTPUTS} for p in lite}
    for prompt, seconds in zip(config["prompts"], config["seconds"]):
        ids, mask = tok(prompt)
        secs = np.array([seconds], np.float32)
        with torch.no_grad():
            ref = dict(zip(OUTPUTS, (t.numpy() for t in model(torch.from_numpy(ids), torch.from_numpy(mask),
                                                               torch.from_numpy(secs)))))
        for precision, m in lite.items():
            got = m(input_ids=ids, attention_mask=mask, seconds_total=secs)
            for o in OUTPUTS:
                cases[precision][o].append(metrics(ref[o], got[o]))
    report = {p: {o: {"worst": worst(c), "cases": c} for o, c in outs.items()} for p, outs in cases.items()}
    report["cases"] = [{"prompt": p, "seconds_total": s} for p, s in zip(config["prompts"], config["seconds"])]
    checks = [(f"float32 {o} rel. error", report["float32"][o]["worst"]["rel"], "<=", config["max_rel_fp32"])
              for o in OUTPUTS]
    checks += [(f"{v} {o} SNR dB", report[v][o]["worst"]["snr_db"], ">=", limit, v)
               for v, limit in config["variants"].items() for o in OUTPUTS]
    gate(report, checks, outputs["report"], log)
