"""The whole build graph in one place: every stage with its inputs, outputs, config slice and
tools. doit infers the edges from matching output → input paths; each stage's code dependencies
are recorded when it runs (pipeline/core/keys.py), never listed here."""
from pathlib import Path

from runtime.vocab import LAYOUTS, MANIFEST, ROLES as MODELS, SPIECE, VERIFIED, WEB_CONDITIONERS

from .config import FileSource, Profile
from .recipes import RECIPES
from .stage import Stage
from .toolchain import aarch64_versions

TORCH = ("torch", "safetensors")


def source_files(p: Profile) -> dict[str, Path]:
    """The model's input files: the user's, or those the synth stage writes."""
    if isinstance(p.source, FileSource):
        s = p.source
        return {"model_config": s.model_config_json, "checkpoint": s.checkpoint,
                "t5_config": s.t5_dir / "config.json", "t5_weights": s.t5_dir / "model.safetensors",
                "spiece": s.t5_dir / SPIECE}
    d = p.out / "inputs"
    return {"model_config": d / "model_config.json", "checkpoint": d / "model.ckpt",
            "t5_config": d / "t5" / "config.json", "t5_weights": d / "t5" / "model.safetensors",
            "spiece": d / "t5" / SPIECE}


PREFIX = {"conditioners": "conditioners", "dit": "dit", "decoder": "autoencoder"}
QUANTIZER = ("ai-edge-quantizer", "ai-edge-litert")


def variant_files(p: Profile) -> dict[str, dict[str, Path]]:
    """model → variant → the file its stage builds."""
    o = p.out
    return {"conditioners": {v: o / "conditioners" / f"conditioners_{v}.tflite" for v in p.conditioners.variants},
            "dit": {v: o / "dit" / ("dit_model.tflite" if v == p.dit.main else f"dit_{v}.tflite")
                    for v in p.dit.variants},
            "decoder": {q: o / "autoencoder" / ("autoencoder_model.tflite" if q == "float32" else f"autoencoder_{q}.tflite")
                        for q in p.autoencoder.variants}}


class _Paths:
    """The artifacts the stages pass one another."""
    def __init__(self, p: Profile):
        o = p.out
        self.src = source_files(p)
        self.shards = {k: o / "shards" / f"{k}.safetensors" for k in MODELS}
        self.facts = o / "shards" / "source.json"  # checkpoint hash + audio facts, for the manifest
        self.variants = variant_files(p)
        # What the quantized variants are made from.
        self.floats = {"conditioners": self.variants["conditioners"]["float32"],
                       "dit": o / "dit" / "dit_float32.tflite", "decoder": self.variants["decoder"]["float32"]}
        self.app = {m: o / "app" / f"{m}.tflite" for m in MODELS}  # the chosen variants (select_app)
        self.chosen = o / "app" / "chosen.json"  # which they are: changes only when the set does
        self.reports = o / "reports"
        self.parity = {m: self.reports / f"parity_{PREFIX[m]}.json" for m in MODELS}
        self.web = o / "web" / WEB_CONDITIONERS
        self.bundle = o / "bundle"
        # What the PyTorch reference generation reads (stages/models/reference.py).
        self.reference = {"cond_shard": self.shards["conditioners"], "dit_shard": self.shards["dit"],
                          "decoder_shard": self.shards["decoder"],
                          **{k: self.src[k] for k in ("t5_config", "t5_weights", "spiece")}}


def stages(p: Profile) -> list[Stage]:
    """The table: the source, one chain per model (export → convert → variants → verify), the app
    set, the bundle, the client checks [targets] asks for beside it, and their attestation."""
    f = _Paths(p)
    table = [] if isinstance(p.source, FileSource) else [_synth(p, f)]
    table.append(Stage("checkpoint", "Validate the checkpoint against model_config.json; split it into shards",
                       "checkpoint", inputs={"model_config": f.src["model_config"], "checkpoint": f.src["checkpoint"]},
                       outputs={**f.shards, "source": f.facts}, tools=TORCH))
    for m, chain in CHAINS.items():
        made = chain(p, f)
        table += [*made, *_quantized(p, f, m, made), _verify(p, f, m)]
    table.append(_select_app(p, f))
    web = _web(p, f) if p.targets.web else []
    checks = [*web[1:], *([_aarch64(p, f)] if p.targets.aarch64 else [])]
    return [*table, *web[:1], _collect(p, f), *checks, _attest(p, f, checks)]


def _synth(p: Profile, f: _Paths) -> Stage:
    return Stage("synth", "Write the seeded synthetic SAOS (model_config.json, model.ckpt, T5 folder)",
                 "synth", inputs={}, outputs=f.src, config=p.source.model_dump(),
                 tools=(*TORCH, "transformers", "sentencepiece"))


def _conditioners(p: Profile, f: _Paths) -> list[Stage]:
    t5 = {"t5_config": f.src["t5_config"], "t5_weights": f.src["t5_weights"]}
    onnx = p.out / "conditioners" / "conditioners.onnx"
    return [Stage("conditioners_onnx", "Export T5 + seconds_total embedder to ONNX (legacy exporter, fixed shapes)",
                  "conditioners_onnx", inputs={"shard": f.shards["conditioners"], **t5},
                  outputs={"onnx": onnx}, config={"opset": p.conditioners.opset},
                  tools=(*TORCH, "transformers", "onnx")),
            Stage("conditioners_tflite", "onnx2tf: conditioners.onnx → float32 and float16 .tflite",
                  "conditioners_tflite", inputs={"onnx": onnx},
                  outputs={"float32": f.floats["conditioners"],
                           "float16": onnx.with_name("conditioners_float16.tflite")},
                  config={"onnx2tf": p.conditioners.onnx2tf},
                  tools=("onnx2tf", "tensorflow-cpu", "tf-keras", "onnx", "onnxsim", "onnxruntime"))]


def _dit(p: Profile, f: _Paths) -> list[Stage]:
    pt2 = p.out / "dit" / "dit.pt2"
    return [Stage("dit_reauthor", "Load the DiT shard into the re-authored DiT; torch.export it",
                  "dit_reauthor", inputs={"shard": f.shards["dit"]}, outputs={"pt2": pt2}, tools=TORCH),
            Stage("dit_convert", "Convert the exported DiT to float32 LiteRT (litert-torch)",
                  "litert_convert", inputs={"pt2": pt2}, outputs={"tflite": f.floats["dit"]}, config={"role": "dit"},
                  tools=(*TORCH, "litert-torch", "ai-edge-litert"))]


def _decoder(p: Profile, f: _Paths) -> list[Stage]:
    pt2 = p.out / "autoencoder" / "decoder.pt2"
    return [Stage("autoencoder_reauthor", "Load the decoder shard (weight norm folded); torch.export it",
                  "autoencoder_reauthor", inputs={"shard": f.shards["decoder"]}, outputs={"pt2": pt2}, tools=TORCH),
            Stage("autoencoder_convert", "Convert the exported decoder to float32 LiteRT (litert-torch)",
                  "litert_convert", inputs={"pt2": pt2}, outputs={"tflite": f.floats["decoder"]},
                  config={"role": "decoder"}, tools=(*TORCH, "litert-torch", "ai-edge-litert"))]


CHAINS = {"conditioners": _conditioners, "dit": _dit, "decoder": _decoder}  # a model's export and convert


def _quantized(p: Profile, f: _Paths, m: str, made: list[Stage]) -> list[Stage]:
    """A stage per variant the converter did not write, quantized from the float file by its
    recipe (pipeline/core/recipes.py); the DiT's main variant is stage dit_quantize."""
    made = {path for stage in made for path in stage.outputs.values()}
    return [Stage(f"{PREFIX[m]}_quantize" + ("" if m == "dit" and v == p.dit.main else f"_{v}"),
                  f"Quantize the float {m}: {v}", "quantize", inputs={"tflite": f.floats[m]},
                  outputs={"tflite": file}, config={"recipe": v, "entries": RECIPES[v], "role": m}, tools=QUANTIZER)
            for v, file in f.variants[m].items() if file not in made]


def _verify(p: Profile, f: _Paths, m: str) -> Stage:
    """Every variant of model `m` against PyTorch, each by its own gate."""
    s = p.models[m]
    inputs = {"shard": f.shards[m], "variants": {"float32": f.floats[m], **f.variants[m]}}
    config = {"max_rel_fp32": s.max_rel_fp32, "variants": {v: s.min_snr(v) for v in s.variants if v != "float32"}}
    if m == "conditioners":
        inputs |= {k: f.src[k] for k in ("t5_config", "t5_weights", "spiece")}
        config |= {"prompts": s.prompts, "seconds": s.seconds}
    config |= {"verify_cases": s.verify_cases} if m == "dit" else {"min_snr_db": s.min_snr_db} if m == "decoder" else {}
    return Stage(f"verify_{PREFIX[m]}", f"Compare every {m} variant with PyTorch; gate each", f"verify_{PREFIX[m]}",
                 inputs=inputs, outputs={"report": f.parity[m]}, config=config,
                 tools=(*TORCH, *(("transformers", "ai-edge-litert", "sentencepiece") if m == "conditioners"
                                  else ("ai-edge-litert",))))


def _select_app(p: Profile, f: _Paths) -> Stage:
    c = p.conditioners
    return Stage("select_app", "Choose the app set: every combination of passing variants run end to end "
                               "against PyTorch; the best meeting [app]'s constraints",
                 "select_app", inputs={"reference": f.reference, "source": f.facts, "parity": f.parity,
                                       "variants": f.variants},
                 outputs={**f.app, "chosen": f.chosen, "report": f.reports / "app.json"},
                 config={**p.app.model_dump(exclude={"bundle_variants"}),
                         "pins": {m: s.app for m, s in p.models.items()},
                         "prompts": c.prompts[:p.app.requests], "seconds": c.seconds[:p.app.requests],
                         "steps": p.generate.steps, "threads": 2},
                 tools=(*TORCH, "transformers", "ai-edge-litert", "sentencepiece"))


def _web(p: Profile, f: _Paths) -> list[Stage]:
    c, apps = p.conditioners, {**f.app, "conditioners": f.web}
    return [Stage("web_conditioners", "The app's conditioners for LiteRT.js: int32 ids and mask, cast to int64 in "
                                      "the graph", "web_conditioners", inputs={"tflite": f.app["conditioners"]},
                  outputs={"tflite": f.web}, tools=("ai-edge-litert", "flatbuffers")),
            Stage("verify_web", "Run the app set in LiteRT.js in headless Chromium (wasm): each model against this "
                                "runtime, one generation against PyTorch",
                  "verify_web", inputs={"reference": f.reference, "app": apps},
                  outputs={"report": f.reports / "parity_web.json"},
                  config={"prompt": c.prompts[0], "seconds": c.seconds[0], "steps": p.generate.steps,
                          "min_snr_db": p.targets.web_min_snr_db, "min_latent_snr_db": p.app.min_latent_snr_db,
                          "min_audio_snr_db": p.app.min_audio_snr_db, "timeout_s": p.targets.web_timeout_s},
                  tools=(*TORCH, "transformers", "ai-edge-litert", "sentencepiece"))]


def _aarch64(p: Profile, f: _Paths) -> Stage:
    c, d, a, t = p.conditioners, p.dit, p.autoencoder, p.targets
    decoders = f.variants["decoder"] if t.aarch64_decoders == "all" else {}
    return Stage(
        "verify_aarch64", "Run the app set (and the other conditioners and decoders) on aarch64 LiteRT kernels "
                          "(emulated); gate against PyTorch",
        "verify_aarch64",
        inputs={"reference": f.reference, "source": f.facts, "chosen": f.chosen, "app": f.app,
                "conditioners": {v: f.variants["conditioners"][v] for v in ("float32", "float16") if v in c.variants},
                "decoders": decoders},
        outputs={"report": f.reports / "parity_aarch64.json"},
        config={"prompts": c.prompts[:t.aarch64_prompts or None], "seconds": c.seconds[:t.aarch64_prompts or None],
                "max_rel_cond_fp32": c.max_rel_fp32,
                "gates": {"conditioners": {v: c.min_snr(v) for v in c.variants if v != "float32"},
                          "dit": {v: d.min_snr(v) for v in d.variants},
                          "decoder": {q: a.min_snr_db if q == "float32" else a.min_snr(q) for q in a.variants}},
                "dit_cases": t.aarch64_dit_cases, "latents": t.aarch64_latents, "cpu": t.aarch64_cpu,
                "decoders": list(decoders), "min_snr_fp16_db": t.min_snr_fp16_db, "layout": p.app.layout,
                "steps": t.aarch64_steps, "threads": 2, "min_latent_snr_db": p.app.min_latent_snr_db,
                "min_audio_snr_db": p.app.min_audio_snr_db, "min_latent_snr_vs_x86_db": t.min_latent_snr_vs_x86_db,
                "min_audio_snr_vs_x86_db": t.min_audio_snr_vs_x86_db, "toolchain": aarch64_versions() or "absent"},
        tools=(*TORCH, "transformers", "ai-edge-litert", "sentencepiece"))


def _collect(p: Profile, f: _Paths) -> Stage:
    """The bundle: every file by its bundle name, with what it is ({model, variant}; variant None
    for the app set's file of that model)."""
    files = {name: {"model": m, "variant": None} for m, name in LAYOUTS[p.app.layout].files.items()}
    if p.app.bundle_variants:
        files |= {f"variants/{PREFIX[m]}_{v}.tflite": {"model": m, "variant": v}
                  for m, vs in f.variants.items() for v in vs}
    web = {WEB_CONDITIONERS: f.web} if p.targets.web else {}
    return Stage(
        "collect", "Collect the app bundle (the app set, the other variants in variants/) and write manifest.json",
        "collect",
        inputs={"app": f.app, "web": web, SPIECE: f.src["spiece"], "source": f.facts, "report": f.reports / "app.json",
                "variants": {m: {v: file for v, file in vs.items() if {"model": m, "variant": v} in files.values()}
                             for m, vs in f.variants.items()}},
        outputs={**{n: f.bundle / n for n in files}, SPIECE: f.bundle / SPIECE, **{n: f.bundle / n for n in web},
                 MANIFEST: f.bundle / MANIFEST},
        config={"profile": p.name, "steps": p.generate.steps, "files": files, "layout": p.app.layout,
                "web": p.targets.web},
        tools=("ai-edge-litert",))


def _attest(p: Profile, f: _Paths, checks: list[Stage]) -> Stage:
    """The checks of the bundle's files done: bundle/verified.json (the last stage)."""
    web = {WEB_CONDITIONERS: f.web} if p.targets.web else {}
    return Stage(DONE, "Attest which architectures and clients verified this bundle (bundle/verified.json)",
                 "attest", inputs={MANIFEST: f.bundle / MANIFEST, "app": f.app, "web": web,
                                   "reports": {s.name: s.outputs["report"] for s in checks}},
                 outputs={VERIFIED: f.bundle / VERIFIED},
                 config={"verified_on": ["x86_64", *(["aarch64"] if p.targets.aarch64 else [])]})


DONE = "attest"  # the last stage: the bundle and every check of it; `doit report`, `cache_push` follow it


# Targets that name a final artifact rather than a step.
ALIASES = {"dit_tflite": ("The final (quantized) DiT file", ["dit_quantize"])}
