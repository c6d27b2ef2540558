"""Stage `select_app`: which variant of each model the app loads.

Every variant that passed its own gate (reports/parity_*.json) is measured here, one at a time,
with the runtime's own code: its bytes, load, first and warm invoke (median of `timing_runs`).
Then every combination of the candidates (a model the profile pins has one) runs end to end on
fixed requests — the first prompts of [conditioners], seeded noise, [generate] steps — against
the PyTorch modules with the same noise: the final latent's and the audio's SNR (the worst
request). A combination meets the constraints with its bytes ≤ max_bytes and both SNRs at their
minimums; of those, `objective` picks the smallest (bytes) or the fastest (warm generation:
conditioners + steps × DiT + decoder warm invokes). The chosen files are copied to app/, the set
to app/chosen.json (what the client checks read). The report (reports/app.json, read by collect)
holds facts only: every variant's and every combination's bytes, gate verdicts and SNRs (to
0.01 dB), and the choice, so a re-run with the same inputs writes the same bytes and stops the
chain there. The timings, each gate check's value and the Pareto front over bytes and warm
seconds among the sets meeting the SNR constraints are measurements: they go to the stage's
record (logs/select_app.json, "measured"), which no stage reads.

Combinations run as the layout's client runs them (runtime/client.py): the Arm app addresses
tensors by position and runs the decoder with XNNPACK's FORCE_FP16, so a set that holds its
gates by name in float32 but not as that client runs it is never chosen.

A variant the profile pins that failed its gate fails the build here; no combination meeting
the constraints fails it with the closest ones found."""
import logging
import shutil
import statistics
import time
from itertools import product
from pathlib import Path

from pipeline.core import memo
from pipeline.core.atomic import write_json
from pipeline.core.log import measure
from pipeline.core.parity import ParityError
from runtime import client, ping_pong
from runtime.files import read_json, xxh3_128
from runtime.litert import Model
from runtime.parity import metrics
from runtime.vocab import FORCE_FP16, LAYOUTS, ROLES as MODELS
from stages.models.reference import Reference

log = logging.getLogger("sao.select_app")
SECTION = {"conditioners": "conditioners", "dit": "dit", "decoder": "autoencoder"}


def run(inputs, outputs, config):
    files = {m: {v: Path(f) for v, f in inputs["variants"][m].items()} for m in MODELS}
    # Every gate check's value, for people (the record): two builds need not agree on a
    # float32 file's 1e-6 error, and what collect reads must be the same bytes for the same inputs.
    timings = {m: {v: {} for v in vs} for m, vs in files.items()}
    variants, candidates = _verdicts(inputs, files, timings, config["pins"])
    e2e = _end_to_end(inputs, files, variants, timings, candidates, config)
    ranked = _ranked(variants, timings, candidates, e2e, config)
    meeting = [(x, tx) for x, tx in ranked if x["meets"]]
    if not meeting:
        order = _order(config)
        closest = sorted(ranked, key=lambda p: (_shortfall(p[0], config), order(*p)))[:3]
        raise ParityError(
            f"no app set meets [app] max_bytes = {config['max_bytes']}, min_latent_snr_db = "
            f"{config['min_latent_snr_db']}, min_audio_snr_db = {config['min_audio_snr_db']} as "
            f"{_client(config['layout'])}; closest: " + "; ".join(
                f"{_name(x)}: {x['bytes'] / 1e6:.1f} MB, latent {x['latent_snr_db']:.2f} dB, "
                f"audio {x['audio_snr_db']:.2f} dB" for x, _ in closest))
    chosen, chosen_times = meeting[0]
    chosen["chosen"] = True
    for m in MODELS:
        shutil.copyfile(files[m][chosen["models"][m]], outputs[m])
    write_json(outputs["chosen"], chosen["models"])  # what the checks after this read: the set alone
    log.info("app set (%s): %s, %.1f MB", config["objective"], _name(chosen), chosen["bytes"] / 1e6)
    write_json(outputs["report"], {
        "objective": config["objective"],
        "constraints": {k: config[k] for k in ("max_bytes", "min_latent_snr_db", "min_audio_snr_db")},
        "pins": config["pins"], "layout": config["layout"],
        "requests": [{"prompt": p, "seconds_total": s, "seed": i} for i, (p, s) in
                     enumerate(zip(config["prompts"], config["seconds"]))],
        "steps": config["steps"], "threads": config["threads"], "chosen": chosen["models"],
        "figures": {k: chosen[k] for k in ("bytes", "latent_snr_db", "audio_snr_db")},
        "variants": variants, "combinations": [x for x, _ in ranked]})
    measure("app", {"figures": {k: chosen_times[k] for k in ("warm_s", "first_s")},
                    "variants": timings, "combinations": [tx for _, tx in ranked], "ran": e2e["ran"]})


def _verdicts(inputs, files, timings, pins) -> tuple[dict, dict]:
    """Every variant's bytes and gate verdict (its checks into `timings`), and the candidates:
    model → the variants that passed their gate (only the pinned one, where one is)."""
    variants = {}
    for m in MODELS:
        report = read_json(inputs["parity"][m])
        variants[m] = {}
        for v, f in files[m].items():
            verdict = report["variants"].get(v, {"pass": report["pass"]})
            checks = [c for c in report["checks"] if c.get("variant", c["check"].split()[0]) == v]
            variants[m][v] = {"file": f.name, "bytes": f.stat().st_size, "gate": verdict["pass"]}
            timings[m][v]["gate_checks"] = [{k: c[k] for k in ("check", "value", "op", "limit")} for c in checks]
        if pins[m] != "auto" and not variants[m][pins[m]]["gate"]:
            failed = [f"{c['check']} = {c['value']:.4g} (limit {c['op']} {c['limit']:.4g})"
                      for c in timings[m][pins[m]]["gate_checks"]]
            raise ParityError(f"{m}: the app's pinned variant {pins[m]} failed its gate: {'; '.join(failed)} "
                              f"(set [{SECTION[m]}] app to another variant or \"auto\")")
    candidates = {m: [v for v, fig in variants[m].items() if fig["gate"] and pins[m] in ("auto", v)] for m in MODELS}
    for m in MODELS:
        for v, fig in variants[m].items():
            fig["candidate"] = v in candidates[m]
            if not fig["gate"]:
                log.warning("%s %s failed its gate: left out of the choice", m, v)
        if not candidates[m]:
            raise ParityError(f"{m}: no variant passed its gate ({', '.join(variants[m])}; "
                              f"see reports/{inputs['parity'][m].name})")
    return variants, candidates


def _ranked(variants, timings, candidates, e2e, config) -> list[tuple[dict, dict]]:
    """Every candidate combination, best first by the objective: (its facts for app.json, its
    measurements for the record), whether it meets the constraints and is on the front."""
    steps = config["steps"]
    combos, times = [], []
    for c, d, a in product(*(candidates[m] for m in MODELS)):
        models = dict(zip(MODELS, (c, d, a)))
        figs = [timings[m][v] for m, v in models.items()]
        combo = {"models": models, "bytes": sum(variants[m][v]["bytes"] for m, v in models.items()),
                 "latent_snr_db": _fact(e2e["latent"][c, d]), "audio_snr_db": _fact(e2e["audio"][c, d, a])}
        combo["snr_ok"] = (combo["latent_snr_db"] >= config["min_latent_snr_db"]
                           and combo["audio_snr_db"] >= config["min_audio_snr_db"])
        combo["meets"] = combo["snr_ok"] and (config["max_bytes"] is None or combo["bytes"] <= config["max_bytes"])
        combos.append(combo)
        times.append({"models": models, "warm_s": figs[0]["warm_s"] + steps * figs[1]["warm_s"] + figs[2]["warm_s"],
                      "first_s": sum(f["load_s"] + f["first_s"] for f in figs) + (steps - 1) * figs[1]["warm_s"]})
    for x, tx in zip(combos, times):  # the front: no other SNR-passing set is at least as small and as fast, and better in one
        tx["front"] = x["snr_ok"] and not any(
            y["snr_ok"] and y["bytes"] <= x["bytes"] and ty["warm_s"] <= tx["warm_s"]
            and (y["bytes"], ty["warm_s"]) != (x["bytes"], tx["warm_s"]) for y, ty in zip(combos, times))
    order = _order(config)
    ranked = sorted(zip(combos, times), key=lambda p: order(*p))
    for x, tx in ranked:
        log.info("%-58s %8.1f MB %7.2f s  latent %6.2f dB  audio %6.2f dB%s%s", _name(x), x["bytes"] / 1e6,
                 tx["warm_s"], x["latent_snr_db"], x["audio_snr_db"], "  front" if tx["front"] else "",
                 "" if x["meets"] else "  (fails the constraints)")
    return ranked


def _order(config):
    """"smallest" is decided by facts alone; "fastest" by this machine's timings (the README says so)."""
    if config["objective"] == "smallest":
        return lambda x, tx: (x["bytes"], tx["warm_s"])
    return lambda x, tx: (tx["warm_s"], x["bytes"])


def _fact(snr_db: float) -> float:
    """An SNR as app.json records it: to 0.01 dB. Multi-threaded XNNPACK is not bit-reproducible
    from run to run (the default decoder with FORCE_FP16 on x86: 50.698326 vs 50.698321 dB in two
    builds), and what later stages read must be the same bytes for the same inputs."""
    return round(snr_db, 2)


def _client(layout: str) -> str:
    """How the layout's client runs a set, naming the profile setting that chose it."""
    flags = LAYOUTS[layout].xnnpack_flags["decoder"]
    fp16 = ", the decoder with XNNPACK's FORCE_FP16" if flags is not None and flags & FORCE_FP16 else ""
    return f"{LAYOUTS[layout].client} runs it ([app] layout = \"{layout}\"{fp16})"


def _name(combo) -> str:
    return " + ".join(f"{m} {v}" for m, v in combo["models"].items())


def _shortfall(x, config) -> float:
    """How far a combination is from the constraints (dB short, plus 10 per 100 MB over)."""
    over = 0.0 if config["max_bytes"] is None else max(0.0, x["bytes"] - config["max_bytes"]) / 1e7
    return (over + max(0.0, config["min_latent_snr_db"] - x["latent_snr_db"])
            + max(0.0, config["min_audio_snr_db"] - x["audio_snr_db"]))


def _timed(fig: dict, call, args: list[tuple], runs: int) -> list:
    """Call `call` on each of `args`, recording its first and warm (median) call in `fig`; warm
    calls repeat the args until there are `runs` of them."""
    outs, times = [], []
    for a in args:
        t0 = time.perf_counter()
        outs.append(call(*a))
        times.append(time.perf_counter() - t0)
    while len(times) < runs + 1:
        t0 = time.perf_counter()
        call(*args[len(times) % len(args)])
        times.append(time.perf_counter() - t0)
    fig["first_s"], fig["warm_s"] = times[0], statistics.median(times[1:])
    return outs


def _load(fig: dict, path: Path, role: str, config) -> Model:
    t0 = time.perf_counter()
    model = client.load(path, role, config["layout"], config["threads"])
    fig["load_s"] = time.perf_counter() - t0
    return model


def _end_to_end(inputs, files, variants, timings, candidates, config) -> dict:
    """Measure every passing variant (into `timings`) and run every candidate combination on the
    requests as the layout's client runs it (runtime/client.py: by position, its XNNPACK flags):
    {"latent": {(c, d): SNR dB}, "audio": {(c, d, a): SNR dB}} (the worst request), "ran": what
    ran. A combination's SNRs and a variant's timings the stage's memo holds for the same files,
    requests and steps (pipeline/core/memo.py) are recalled, not run again: an edit re-runs the
    combinations and measurements of the files it changed, a constraint edit runs no model."""
    runs, steps = config["timing_runs"], config["steps"]
    passing = {m: [v for v, fig in variants[m].items() if fig["gate"]] for m in MODELS}
    digest = {m: {v: xxh3_128(files[m][v]) for v in passing[m]} for m in MODELS}
    asked = {"requests": [[p, s, i] for i, (p, s) in enumerate(zip(config["prompts"], config["seconds"]))],
             "steps": steps, "layout": config["layout"], "threads": config["threads"]}

    def key(what, models: dict) -> dict:
        return {"what": what, **asked, **({"timing_runs": runs} if what == "timing" else {}),
                "files": {m: digest[m][v] for m, v in models.items()}}
    snr_latent = {(c, d): memo.recall(key("latent", {"conditioners": c, "dit": d}))
                  for c, d in product(candidates["conditioners"], candidates["dit"])}
    snr_audio = {k: memo.recall(key("audio", dict(zip(MODELS, k)))) for k in product(*(candidates[m] for m in MODELS))}
    for m in MODELS:
        for v in passing[m]:
            timings[m][v].update(memo.recall(key("timing", {m: v})) or {})
    todo_audio = [k for k, snr in snr_audio.items() if snr is None]
    todo_latent = {k for k, snr in snr_latent.items() if snr is None} | {k[:2] for k in todo_audio}
    untimed = {m: [v for v in passing[m] if "warm_s" not in timings[m][v]] for m in MODELS}
    ran = {"variants": [], "combinations": [dict(zip(MODELS, k)) for k in todo_audio]}
    if not todo_latent and not any(untimed.values()):
        return {"latent": snr_latent, "audio": snr_audio, "ran": ran}
    requests = _references(inputs, config)

    def keep_timing(m, v, fig):
        memo.keep(key("timing", {m: v}), {k: fig[k] for k in ("load_s", "first_s", "warm_s")})
        ran["variants"].append(f"{m} {v}")
    need_c = {c for c, _ in todo_latent} or set(candidates["conditioners"][:1] if untimed["dit"] else ())
    conds = {}  # conditioners variant → its (cross, global) per request
    for v in passing["conditioners"]:
        if v not in need_c and v not in untimed["conditioners"]:
            continue
        fig = timings["conditioners"][v]
        model = _load(fig, files["conditioners"][v], "conditioners", config)
        outs = _timed(fig, lambda *a: client.condition(model, *a), [r["cond_args"] for r in requests], runs)
        keep_timing("conditioners", v, fig)
        if v in need_c:
            conds[v] = outs
    latents = {}
    for v in passing["dit"]:
        cs = [c for c in conds if (c, v) in todo_latent]
        if not cs and v not in untimed["dit"]:
            continue
        fig = timings["dit"][v]
        model = _load(fig, files["dit"][v], "dit", config)
        times = []  # every step: the first is the first invoke, the median of the rest the warm one

        def velocity(cross, glob, x, t):
            t0 = time.perf_counter()
            out = client.velocity(model, cross, glob, x, t)
            times.append(time.perf_counter() - t0)
            return out
        for c in cs or list(conds)[:1]:
            for i, r in enumerate(requests):
                latents[c, v, i] = ping_pong.sample(lambda x, t: velocity(*conds[c][i], x, t), r["noise"], steps)
            if (c, v) in snr_latent:
                snr_latent[c, v] = min(metrics(r["latent"], latents[c, v, i])["snr_db"] for i, r in enumerate(requests))
                memo.keep(key("latent", {"conditioners": c, "dit": v}), snr_latent[c, v])
        fig["first_s"], fig["warm_s"] = times[0], statistics.median(times[1:] or times)
        keep_timing("dit", v, fig)
        del model  # one model in memory at a time
    for v in passing["decoder"]:
        pairs = sorted({(c, d) for c, d, a in todo_audio if a == v})
        if not pairs and v not in untimed["decoder"]:
            continue
        fig = timings["decoder"][v]
        model = _load(fig, files["decoder"][v], "decoder", config)
        args = [(latents[c, d, i],) for c, d in pairs for i in range(len(requests))]
        outs = _timed(fig, lambda z: client.decode(model, z), args or [(requests[0]["latent"],)], runs)
        keep_timing("decoder", v, fig)
        for j, (c, d) in enumerate(pairs):
            snr_audio[c, d, v] = min(metrics(r["audio"], outs[j * len(requests) + i])["snr_db"]
                                     for i, r in enumerate(requests))
            memo.keep(key("audio", {"conditioners": c, "dit": d, "decoder": v}), snr_audio[c, d, v])
    return {"latent": snr_latent, "audio": snr_audio, "ran": ran}


def _references(inputs, config) -> list[dict]:
    """The requests through the PyTorch modules (freed on return): the conditioners' arguments,
    noise, latent, audio."""
    ref = Reference.of(inputs["reference"])
    requests = []
    for i, (prompt, seconds) in enumerate(zip(config["prompts"], config["seconds"])):
        noise = ping_pong.noises(i, ref.latent_shape, config["steps"])
        audio, latent = ref.generate(prompt, seconds, noise, config["steps"])
        requests.append({"cond_args": (*ref.tokenizer(prompt), seconds), "noise": noise, "latent": latent,
                         "audio": audio})
    return requests
