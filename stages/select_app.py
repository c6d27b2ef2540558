"""Stage `select_app`: which variant of each model the app loads.

Every variant that passed its own gate (reports/parity_*.json) is measured here, one at a time,
with the runtime's own code: its bytes, load, first and warm invoke (median of `timing_runs`).
Then every combination of the candidates (a model the profile pins has one) runs end to end on
fixed requests — the first prompts of [conditioners], seeded noise, [generate] steps — against
the PyTorch modules with the same noise: the final latent's and the audio's SNR (the worst
request). A combination meets the constraints with its bytes ≤ max_bytes and both SNRs at their
minimums; of those, `objective` picks the smallest (bytes) or the fastest (warm generation:
conditioners + steps × DiT + decoder warm invokes). The chosen files are copied to app/; the
report (reports/app.json) holds every variant's and every combination's figures, the Pareto
front over bytes and warm seconds among those meeting the SNR constraints, and the choice.

A variant the profile pins that failed its gate fails the build here; no combination meeting
the constraints fails it with the closest ones found."""
import json
import logging
import shutil
import statistics
import time
from itertools import product
from pathlib import Path

import numpy as np
import torch

from pipeline.core.atomic import write_json
from pipeline.core.parity import ParityError
from runtime import ping_pong
from runtime.litert import Model
from runtime.parity import metrics
from runtime.tokenizer import Tokenizer
from stages.models import conditioners, decoder, dit

log = logging.getLogger("sao.select_app")
MODELS = ("conditioners", "dit", "decoder")
REPORT = {"conditioners": "parity_conditioners", "dit": "parity_dit", "decoder": "parity_autoencoder"}
SECTION = {"conditioners": "conditioners", "dit": "dit", "decoder": "autoencoder"}


def run(inputs, outputs, config):
    files = {m: {k.split("/", 1)[1]: Path(f) for k, f in inputs.items() if k.startswith(f"{m}/")} for m in MODELS}
    variants, pins = {}, config["pins"]
    for m in MODELS:
        report = json.loads(Path(inputs[REPORT[m]]).read_text())
        variants[m] = {}
        for v, f in files[m].items():
            verdict = report["variants"].get(v, {"pass": report["pass"]})
            checks = [c for c in report["checks"] if c.get("variant", c["check"].split()[0]) == v]
            variants[m][v] = {"file": f.name, "bytes": f.stat().st_size, "gate": verdict["pass"],
                              "gate_checks": [{k: c[k] for k in ("check", "value", "op", "limit")} for c in checks]}
        if pins[m] != "auto" and not variants[m][pins[m]]["gate"]:
            failed = [f"{c['check']} = {c['value']:.4g} (limit {c['op']} {c['limit']:.4g})"
                      for c in variants[m][pins[m]]["gate_checks"]]
            raise ParityError(f"{m}: the app's pinned variant {pins[m]} failed its gate: {'; '.join(failed)} "
                              f"(set [{SECTION[m]}] app to another variant or \"auto\")")
    candidates = {m: [v for v, fig in variants[m].items() if fig["gate"] and pins[m] in ("auto", v)] for m in MODELS}
    for m in MODELS:
        for v, fig in variants[m].items():
            fig["candidate"] = v in candidates[m]
            if not fig["gate"]:
                log.warning("%s %s failed its gate: left out of the choice", m, v)
        if not candidates[m]:
            raise ParityError(f"{m}: no variant passed its gate ({', '.join(variants[m])}; see reports/{REPORT[m]}.json)")

    e2e = _end_to_end(inputs, files, variants, candidates, config)
    steps = config["steps"]
    combos = []
    for c, d, a in product(*(candidates[m] for m in MODELS)):
        figs = [variants[m][v] for m, v in zip(MODELS, (c, d, a))]
        combo = {"models": dict(zip(MODELS, (c, d, a))), "bytes": sum(f["bytes"] for f in figs),
                 "warm_s": figs[0]["warm_s"] + steps * figs[1]["warm_s"] + figs[2]["warm_s"],
                 "first_s": sum(f["load_s"] + f["first_s"] for f in figs) + (steps - 1) * figs[1]["warm_s"],
                 "latent_snr_db": e2e["latent"][c, d], "audio_snr_db": e2e["audio"][c, d, a]}
        combo["snr_ok"] = (combo["latent_snr_db"] >= config["min_latent_snr_db"]
                           and combo["audio_snr_db"] >= config["min_audio_snr_db"])
        combo["meets"] = combo["snr_ok"] and (config["max_bytes"] is None or combo["bytes"] <= config["max_bytes"])
        combos.append(combo)
    for x in combos:  # the front: no other SNR-passing set is at least as small and as fast, and better in one
        x["front"] = x["snr_ok"] and not any(
            y["snr_ok"] and y["bytes"] <= x["bytes"] and y["warm_s"] <= x["warm_s"]
            and (y["bytes"], y["warm_s"]) != (x["bytes"], x["warm_s"]) for y in combos)
    order = (lambda x: (x["bytes"], x["warm_s"])) if config["objective"] == "smallest" else \
        (lambda x: (x["warm_s"], x["bytes"]))
    combos.sort(key=order)
    for x in combos:
        log.info("%-58s %8.1f MB %7.2f s  latent %6.2f dB  audio %6.2f dB%s%s", _name(x), x["bytes"] / 1e6,
                 x["warm_s"], x["latent_snr_db"], x["audio_snr_db"], "  front" if x["front"] else "",
                 "" if x["meets"] else "  (fails the constraints)")
    constraints = {k: config[k] for k in ("max_bytes", "min_latent_snr_db", "min_audio_snr_db")}
    meeting = [x for x in combos if x["meets"]]
    if not meeting:
        closest = sorted(combos, key=lambda x: (_shortfall(x, config), order(x)))[:3]
        raise ParityError(
            f"no app set meets [app] max_bytes = {config['max_bytes']}, min_latent_snr_db = "
            f"{config['min_latent_snr_db']}, min_audio_snr_db = {config['min_audio_snr_db']}; closest: " + "; ".join(
                f"{_name(x)}: {x['bytes'] / 1e6:.1f} MB, latent {x['latent_snr_db']:.2f} dB, "
                f"audio {x['audio_snr_db']:.2f} dB" for x in closest))
    chosen = meeting[0]
    chosen["chosen"] = True
    for m in MODELS:
        shutil.copyfile(files[m][chosen["models"][m]], outputs[m])
    log.info("app set (%s): %s, %.1f MB", config["objective"], _name(chosen), chosen["bytes"] / 1e6)
    write_json(outputs["report"], {
        "objective": config["objective"], "constraints": constraints, "pins": pins,
        "requests": [{"prompt": p, "seconds_total": s, "seed": i} for i, (p, s) in
                     enumerate(zip(config["prompts"], config["seconds"]))],
        "steps": steps, "threads": config["threads"], "chosen": chosen["models"],
        "figures": {k: chosen[k] for k in ("bytes", "warm_s", "first_s", "latent_snr_db", "audio_snr_db")},
        "variants": variants, "combinations": combos})


def _name(combo) -> str:
    return " + ".join(f"{m} {v}" for m, v in combo["models"].items())


def _shortfall(x, config) -> float:
    """How far a combination is from the constraints (dB short, plus 10 per 100 MB over)."""
    over = 0.0 if config["max_bytes"] is None else max(0.0, x["bytes"] - config["max_bytes"]) / 1e7
    return (over + max(0.0, config["min_latent_snr_db"] - x["latent_snr_db"])
            + max(0.0, config["min_audio_snr_db"] - x["audio_snr_db"]))


def _timed(fig: dict, model: Model, feeds: list[dict], runs: int) -> list[dict]:
    """Run `feeds` through a loaded model, recording its first and warm (median) invoke in `fig`;
    warm runs repeat the feeds until there are `runs` of them."""
    outs, times = [], []
    for feed in feeds:
        t0 = time.perf_counter()
        outs.append(model(**feed))
        times.append(time.perf_counter() - t0)
    while len(times) < runs + 1:
        t0 = time.perf_counter()
        model(**feeds[len(times) % len(feeds)])
        times.append(time.perf_counter() - t0)
    fig["first_s"], fig["warm_s"] = times[0], statistics.median(times[1:])
    return outs


def _load(fig: dict, path: Path, threads: int) -> Model:
    t0 = time.perf_counter()
    model = Model(path, threads)
    fig["load_s"] = time.perf_counter() - t0
    return model


def _end_to_end(inputs, files, variants, candidates, config) -> dict:
    """Measure every passing variant and run every candidate combination on the requests:
    {"latent": {(c, d): SNR dB}, "audio": {(c, d, a): SNR dB}} (the worst request)."""
    threads, runs, steps = config["threads"], config["timing_runs"], config["steps"]
    requests = _references(inputs, config)

    conds = {}  # conditioners variant → its outputs per request
    for v, fig in variants["conditioners"].items():
        if fig["gate"]:
            outs = _timed(fig, _load(fig, files["conditioners"][v], threads), [r["feed"] for r in requests], runs)
            if v in candidates["conditioners"]:
                conds[v] = outs
    latents, snr_latent = {}, {}
    for v, fig in variants["dit"].items():
        if not fig["gate"]:
            continue
        model = _load(fig, files["dit"][v], threads)
        times = []

        def velocity(x, t, cond):
            t0 = time.perf_counter()
            (out,) = model(x=x, t=np.array([t], np.float32), cross_attn_cond=cond["cross_attention_input"],
                           global_cond=cond["global_cond"]).values()
            times.append(time.perf_counter() - t0)
            return out
        for c in (conds if v in candidates["dit"] else list(conds)[:1]):
            for i, r in enumerate(requests):
                latents[c, v, i] = ping_pong.sample(lambda x, t: velocity(x, t, conds[c][i]), r["noise"], steps)
            snr_latent[c, v] = min(metrics(r["latent"], latents[c, v, i])["snr_db"] for i, r in enumerate(requests))
        fig["first_s"], fig["warm_s"] = times[0], statistics.median(times[1:] or times)
        del model  # one model in memory at a time
        if v not in candidates["dit"]:
            latents = {k: x for k, x in latents.items() if k[1] != v}
    snr_audio = {}
    for v, fig in variants["decoder"].items():
        if not fig["gate"]:
            continue
        model = _load(fig, files["decoder"][v], threads)
        keys = sorted({k[:2] for k in latents}) if v in candidates["decoder"] else []
        feeds = [{"latent": latents[c, d, i]} for c, d in keys for i in range(len(requests))]
        outs = _timed(fig, model, feeds or [{"latent": requests[0]["latent"]}], runs)
        for j, (c, d) in enumerate(keys):
            snr_audio[c, d, v] = min(metrics(r["audio"], next(iter(outs[j * len(requests) + i].values())))["snr_db"]
                                     for i, r in enumerate(requests))
    return {"latent": snr_latent, "audio": snr_audio}


def _references(inputs, config) -> list[dict]:
    """The requests through the PyTorch modules (freed on return): feeds, noise, latent, audio."""
    steps = config["steps"]
    cond_pt, example = conditioners.from_shard(inputs["cond_shard"], inputs["t5_config"])
    dit_pt, _ = dit.from_shard(inputs["dit_shard"])
    dec_pt, dec_example = decoder.from_shard(inputs["decoder_shard"])
    tok = Tokenizer(inputs["spiece"], example[0].shape[1])
    requests = []
    for i, (prompt, seconds) in enumerate(zip(config["prompts"], config["seconds"])):
        ids, mask = tok(prompt)
        noise = ping_pong.noises(i, list(dec_example["latent"].shape), steps)
        with torch.no_grad():
            cross, _, glob = cond_pt(torch.from_numpy(ids), torch.from_numpy(mask), torch.tensor([seconds]))
            latent = ping_pong.sample(lambda x, t: dit_pt(x, torch.tensor([t]), cross, glob),
                                      [torch.from_numpy(n) for n in noise], steps)
            audio = dec_pt(latent)
        requests.append({"feed": {"input_ids": ids, "attention_mask": mask,
                                  "seconds_total": np.array([seconds], np.float32)},
                         "noise": noise, "latent": latent.numpy(), "audio": audio.numpy()})
    return requests
