"""Stage `verify_aarch64`: the app's models on aarch64 LiteRT kernels (NEON, dot-product, i8mm:
the phone's, not x86's AVX-512 ones), run by the runtime's own code (`python -m runtime.check`)
on an Arm worker of the build's Dask cluster, else in an aarch64 userland under qemu user-mode
emulation (`./dev aarch64` sets it up in .aarch64/) of the CPU `targets.aarch64_cpu` names (its
features decide which kernels XNNPACK picks): pipeline/core/aarch64.py.

The same inputs as the x86 verify stages go in; the outputs come back and are gated against the
PyTorch modules with the same thresholds: the app set select_app chose (its conditioners, DiT and
decoder variants), the float32 and float16 conditioners, every decoder variant
(`targets.aarch64_decoders = "all"`; the float32 one by its audio SNR, as other kernels make
other rounding); the app's decoder with the Arm reference app's XNNPACK flags, FORCE_FP16 among
them (`targets.min_snr_fp16_db`); and, with `targets.aarch64_steps` > 0, a whole generation as the
layout's client runs it (runtime/client.py: tensors by position, its flags), gated against
PyTorch with select_app's thresholds ([app] min_latent_snr_db, min_audio_snr_db: precision) and
against the same flow on x86 (`targets.min_*_snr_vs_x86_db`: kernel drift). It runs beside
`collect` on the files the bundle holds: a failing gate fails the build, and stage `attest` does
not write the bundle's verified.json."""
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from pipeline.core import aarch64, memo, toolchain
from pipeline.core.errors import InputError
from pipeline.core.atomic import write_json
from pipeline.core.log import measure
from pipeline.core.parity import ParityError
from runtime import client, ping_pong
from runtime.files import xxh3_128
from runtime.litert import Model
from runtime.parity import metrics, worst
from runtime.vocab import CONTRACTS, LAYOUTS, SPIECE
from stages.models.reference import Reference

log = logging.getLogger("sao.verify_aarch64")
COND_OUT = [t.name for t in CONTRACTS["conditioners"].outputs]  # the PyTorch module's order too
APP_FILES = LAYOUTS["roles"].files  # the app set's files in the checked folder


def run(inputs, outputs, config):
    userland = toolchain.aarch64_userland()
    if toolchain.aarch64_versions() is None:
        raise InputError(None, "targets.aarch64", f"the aarch64 userland is not set up ({userland} is missing): "
                         "run `./dev aarch64`, or set [targets] aarch64 = false to build without this check")
    source = json.loads(inputs["source"].read_text())
    chosen = json.loads(inputs["chosen"].read_text())
    for m, path in inputs["app"].items():  # the app set by position first: a broken order is one line, not a crash
        client.require_contract(Model(path), m, path, LAYOUTS[config["layout"]].client)
    ref = Reference.of(inputs["reference"])
    plan = _Plan()
    cond_files = _conditioners(plan, ref, inputs.get("conditioners", {}), chosen, config)
    _dit(plan, ref, config)
    _decoders(plan, ref, config)
    steps, generation = config["steps"], None
    with tempfile.TemporaryDirectory() as tmp:
        work, bundle = Path(tmp), Path(tmp) / "bundle"
        _bundle(inputs, bundle, config, cond_files)
        request = {"bundle": str(bundle), "threads": config["threads"], "invokes": plan.invokes, "generate": None}
        if steps:
            noise = ping_pong.noises(0, [1, source["latent_channels"], source["latent_frames"]], steps)
            plan.feeds.update({f"noise/{i}": n for i, n in enumerate(noise)})
            prompt, seconds = config["prompts"][0], config["seconds"][0]
            request["generate"] = {"files": APP_FILES, "layout": config["layout"], "prompt": prompt,
                                   "seconds": seconds, "steps": steps, "noise": [f"noise/{i}" for i in range(len(noise))]}
            generation = {"x86": client.generate({r: bundle / f for r, f in APP_FILES.items()}, bundle / SPIECE, prompt,
                                                 seconds, noise, steps, config["threads"], config["layout"]),
                          "PyTorch": ref.generate(prompt, seconds, noise, steps)}
        result, got = _recalled(work, request, plan.feeds, config)
    rows = [{"model": m, "check": c, "value": v, "op": op, "threshold": t, "ok": bool(v <= t if op == "<=" else v >= t)}
            for m, c, v, op, t in _checks(plan.refs, got, cond_files, chosen, generation, config)]
    report = {"machine": result["machine"], "runtime": {"python": result["python"], **result["versions"],
                                                        **(result["emulated"] or {"emulator": None, "cpu": None})},
              "checks": rows}
    for r in rows:
        log.info("%-12s %-46s %12.4g %s %-10.4g %s", r["model"], r["check"], r["value"], r["op"], r["threshold"],
                 "ok" if r["ok"] else "FAIL")
    write_json(outputs["report"], report)
    if failed := [r for r in rows if not r["ok"]]:
        raise ParityError("aarch64 parity failed: " + "; ".join(
            f"{r['model']}: {r['check']} = {r['value']:.4g} (threshold {r['op']} {r['threshold']:.4g})" for r in failed))


class _Plan:
    """What the emulated process runs: its invokes, their inputs (feeds) and the PyTorch outputs
    they are checked against (refs), by case."""
    def __init__(self):
        self.feeds, self.refs, self.invokes = {}, {}, []

    def invoke(self, case, model, feed, flags=None):
        names = {}
        for name, value in feed.items():
            names[name] = f"{case}/{name}"
            self.feeds[names[name]] = np.asarray(value)
        self.invokes.append({"id": case, "model": model, "inputs": names, "xnnpack_flags": flags})


def _conditioners(plan: _Plan, ref: Reference, files: dict, chosen: dict, config) -> dict[str, str]:
    """The profile's prompts and seconds through float32, float16 and the app's conditioners:
    precision → the file's name in the checked folder."""
    cond_files = {q: f"cond_{q}.tflite" for q in files}
    if chosen["conditioners"] not in cond_files:
        cond_files[chosen["conditioners"]] = APP_FILES["conditioners"]
    cond_feeds = []
    for i, (prompt, seconds) in enumerate(zip(config["prompts"], config["seconds"])):
        ids, mask = ref.tokenizer(prompt)
        plan.refs[f"cond{i}"] = [t.numpy() for t in ref.condition(prompt, seconds)]
        cond_feeds.append({"input_ids": ids, "attention_mask": mask, "seconds_total": np.array([seconds], np.float32)})
    for q, name in cond_files.items():  # one model's invokes together: the emulated process loads it once
        for i, feed in enumerate(cond_feeds):
            plan.invoke(f"cond{i}_{q}", name, feed)
    return cond_files


def _dit(plan: _Plan, ref: Reference, config):
    """The app's DiT on seeded inputs across the sampler's schedule (as verify_dit)."""
    ts, g = ping_pong.schedule(8)[:-1], np.random.default_rng(1234)
    for i in range(config["dit_cases"]):
        feed = {k: g.standard_normal(v.shape).astype(np.float32) for k, v in ref.dit_example.items()}
        feed["t"] = np.array([ts[i * (len(ts) - 1) // max(1, config["dit_cases"] - 1)]], np.float32)
        plan.refs[f"dit{i}"] = ref.velocity(feed)
        plan.invoke(f"dit{i}", APP_FILES["dit"], feed)


def _decoders(plan: _Plan, ref: Reference, config):
    """Unit-variance latents (as verify_autoencoder) through every decoder asked for, and the app's
    again as the Arm app runs it (FORCE_FP16)."""
    g = np.random.default_rng(4321)
    latents = [g.standard_normal(ref.decoder_example["latent"].shape).astype(np.float32) for _ in range(config["latents"])]
    for i, z in enumerate(latents):
        plan.refs[f"dec{i}"] = ref.decode(z)
    for q in config["decoders"]:  # one model's invokes together, as the conditioners'
        for i, z in enumerate(latents):
            plan.invoke(f"dec{i}_{q}", f"decoder_{q}.tflite", {"latent": z})
    for i, z in enumerate(latents):
        plan.invoke(f"dec{i}_fp16", APP_FILES["decoder"], {"latent": z}, LAYOUTS["arm"].xnnpack_flags["decoder"])


def _checks(refs, got, cond_files, chosen, generation, config) -> list[tuple]:
    """(model, check, value, op, threshold) for every output the emulated process returned."""
    checks, gates = [], config["gates"]
    for q in cond_files:
        for o in COND_OUT:
            w = worst([metrics(refs[f"cond{i}"][COND_OUT.index(o)], got[f"cond{i}_{q}/{o}"])
                       for i in range(len(config["prompts"]))])
            checks.append(("conditioners", f"{q} {o} rel. error", w["rel"], "<=", config["max_rel_cond_fp32"])
                          if q == "float32" else
                          ("conditioners", f"{q} {o} SNR dB", w["snr_db"], ">=", gates["conditioners"][q]))
    w = worst([metrics(refs[f"dit{i}"], _only(got, f"dit{i}")) for i in range(config["dit_cases"])])
    checks.append(("dit", f"{chosen['dit']} SNR dB", w["snr_db"], ">=", gates["dit"][chosen["dit"]]))
    for q in config["decoders"]:
        w = worst([metrics(refs[f"dec{i}"], _only(got, f"dec{i}_{q}")) for i in range(config["latents"])])
        checks.append(("decoder", f"{q} audio SNR dB", w["snr_db"], ">=", gates["decoder"][q]))
    w = worst([metrics(refs[f"dec{i}"], _only(got, f"dec{i}_fp16")) for i in range(config["latents"])])
    checks.append(("decoder", f"{chosen['decoder']} with FORCE_FP16 audio SNR dB", w["snr_db"], ">=",
                   config["min_snr_fp16_db"]))
    if generation:
        steps = config["steps"]
        (ref_audio, ref_latent), (x86_audio, x86_latent) = generation["PyTorch"], generation["x86"]
        for what, ref, x86, arm, limit, limit_x86 in (
                ("latent", ref_latent, x86_latent, got["generate/latent"], config["min_latent_snr_db"],
                 config["min_latent_snr_vs_x86_db"]),
                ("audio", ref_audio, x86_audio, got["generate/audio"], config["min_audio_snr_db"],
                 config["min_audio_snr_vs_x86_db"])):
            checks.append(("generation", f"{steps}-step {what} SNR dB vs PyTorch", metrics(ref, arm)["snr_db"], ">=", limit))
            checks.append(("generation", f"{steps}-step {what} SNR dB vs x86", metrics(x86, arm)["snr_db"], ">=", limit_x86))
    return checks


def _only(got: dict, case: str) -> np.ndarray:
    (value,) = (v for k, v in got.items() if k.startswith(f"{case}/"))
    return value


def _bundle(inputs, bundle: Path, config, cond_files):
    """The files to check, linked into one folder: the app set under role names."""
    bundle.mkdir()
    files = {**{name: inputs["app"][m] for m, name in APP_FILES.items()}, SPIECE: inputs["reference"]["spiece"],
             **{name: inputs["conditioners"][q] for q, name in cond_files.items() if name not in APP_FILES.values()},
             **{f"decoder_{q}.tflite": inputs["decoders"][q] for q in config["decoders"]}}
    for name, path in files.items():
        os.symlink(Path(path).resolve(), bundle / name)


def _recalled(work: Path, request: dict, feeds: dict, config) -> tuple[dict, dict]:
    """The aarch64 process (on an Arm worker of the build's cluster when it has one, else emulated
    here: pipeline/core/aarch64.py) for the invokes and the generation the stage's memo does not
    hold for the same file, inputs, XNNPACK flags, CPU and userland (pipeline/core/memo.py); the
    rest recalled: an edit of one model re-runs its invokes and the generation, not the others'.
    (the runtime as the aarch64 process reported it, every output by "<id>/<name>")."""
    bundle, digests = Path(request["bundle"]), {}

    def file(name):
        return digests.setdefault(name, xxh3_128(bundle / name))
    base = {"cpu": config["cpu"], "threads": config["threads"], "userland": config["toolchain"]}
    keys = {inv["id"]: {**base, "model": file(inv["model"]), "flags": inv["xnnpack_flags"],
                        "inputs": {k: memo.array_key(feeds[v]) for k, v in inv["inputs"].items()}}
            for inv in request["invokes"]}
    if g := request["generate"]:
        keys["generate"] = {**base, "files": {r: file(f) for r, f in g["files"].items()}, "spiece": file(SPIECE),
                            **{k: g[k] for k in ("layout", "prompt", "seconds", "steps")},
                            "noise": [memo.array_key(feeds[k]) for k in g["noise"]]}
    got, todo = {}, []
    for case, key in keys.items():
        if (hit := memo.recall_arrays(key)) is None:
            todo.append(case)
        got.update({f"{case}/{name}": a for name, a in (hit or {}).items()})
    runtime_key = {**base, "what": "runtime"}
    runtime = memo.recall(runtime_key)
    measure("ran", todo)
    if not todo and runtime is not None:
        return runtime, got
    np.savez(work / "inputs.npz", **feeds)
    (work / "request.json").write_text(json.dumps({
        **request, "invokes": [inv for inv in request["invokes"] if inv["id"] in todo],
        "generate": g if "generate" in todo else None}))
    result, out, where = aarch64.run_check(work, config["cpu"], config["toolchain"]["wheels"])
    measure("ran_on", where)
    if result["machine"] != "aarch64":
        raise RuntimeError(f"the aarch64 process reports machine {result['machine']!r}, not aarch64")
    measure("seconds", {k: round(v, 3) for k, v in result["seconds"].items()})
    runtime = {k: result[k] for k in ("machine", "python", "versions", "emulated")}
    if (result["emulated"] or {}).get("cpu") == config["cpu"]:  # what a native Arm worker ran is not the key's CPU
        memo.keep(runtime_key, runtime)
        for case in todo:
            memo.keep_arrays(keys[case], {n.split("/", 1)[1]: a for n, a in out.items() if n.startswith(f"{case}/")})
    return runtime, {**got, **out}
