"""The whole build graph in one place: every stage with its inputs, outputs, config slice and
tools. doit infers the edges from matching output → input paths; each stage's code dependencies
are recorded when it runs (pipeline/core/keys.py), never listed here."""
from pathlib import Path

from runtime.vocab import LAYOUTS, MANIFEST, ROLES as MODELS, SPIECE, WEB_CONDITIONERS

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
    return {"conditioners": {v: o / "conditioners" / f"conditioners_{v}.tflite" for v in p.conditioners.built},
            "dit": {v: o / "dit" / ("dit_model.tflite" if v == p.dit.quant_recipe else f"dit_{v}.tflite")
                    for v in p.dit.built},
            "decoder": {q: o / "autoencoder" / ("autoencoder_model.tflite" if q == "float32" else f"autoencoder_{q}.tflite")
                        for q in p.autoencoder.built}}


def bundle_names(p: Profile) -> dict[str, str]:
    """Every bundled .tflite: bundle name → "model/variant" (the app set's as "model/app")."""
    names = {name: f"{m}/app" for m, name in LAYOUTS[p.app.layout].files.items()}
    if p.app.bundle_variants:
        names |= {f"variants/{PREFIX[m]}_{v}.tflite": f"{m}/{v}" for m, vs in variant_files(p).items() for v in vs}
    return names


def pins(p: Profile) -> dict[str, str]:
    """model → the variant the profile pins as the app's, or "auto"."""
    return {"conditioners": p.conditioners.app, "dit": p.dit.app_variant, "decoder": p.autoencoder.app}


def _quantize(name: str, doc: str, src: Path, dst: Path, recipe: str, role: str) -> Stage:
    return Stage(name, doc, "quantize", inputs={"tflite": src}, outputs={"tflite": dst},
                 config={"recipe": recipe, "entries": RECIPES[recipe], "role": role}, tools=QUANTIZER)


def stages(p: Profile) -> list[Stage]:
    src = source_files(p)
    o = p.out
    shards = {k: o / "shards" / f"{k}.safetensors" for k in MODELS}
    facts = o / "shards" / "source.json"  # checkpoint hash + audio facts, for the manifest
    cond, dit, ae, rep = o / "conditioners", o / "dit", o / "autoencoder", o / "reports"
    files = variant_files(p)
    c, d, a = p.conditioners, p.dit, p.autoencoder
    app_files = {m: o / "app" / f"{m}.tflite" for m in MODELS}  # the chosen variants (select_app)
    chosen = o / "app" / "chosen.json"  # which they are: changes only when the set does
    parity = {m: rep / f"parity_{m}.json" for m in ("conditioners", "dit", "autoencoder")}
    # What the PyTorch reference generation reads (stages/models/reference.py).
    reference = {"cond_shard": shards["conditioners"], "dit_shard": shards["dit"], "decoder_shard": shards["decoder"],
                 "t5_config": src["t5_config"], "t5_weights": src["t5_weights"], "spiece": src["spiece"]}
    table = []
    if not isinstance(p.source, FileSource):
        table.append(Stage(
            "synth", "Write the seeded synthetic SAOS (model_config.json, model.ckpt, T5 folder)",
            "synth", inputs={}, outputs=src, config=p.source.model_dump(),
            tools=(*TORCH, "transformers", "sentencepiece")))
    table += [
        Stage("checkpoint", "Validate the checkpoint against model_config.json; split it into shards",
              "checkpoint", inputs={"model_config": src["model_config"], "checkpoint": src["checkpoint"]},
              outputs={**shards, "source": facts}, tools=TORCH),

        Stage("conditioners_onnx", "Export T5 + seconds_total embedder to ONNX (legacy exporter, fixed shapes)",
              "conditioners_onnx", inputs={"shard": shards["conditioners"], "t5_config": src["t5_config"],
                                           "t5_weights": src["t5_weights"]},
              outputs={"onnx": cond / "conditioners.onnx"}, config={"opset": c.opset},
              tools=(*TORCH, "transformers", "onnx")),
        Stage("conditioners_tflite", "onnx2tf: conditioners.onnx → float32 and float16 .tflite",
              "conditioners_tflite", inputs={"onnx": cond / "conditioners.onnx"},
              outputs={"float32": cond / "conditioners_float32.tflite",
                       "float16": cond / "conditioners_float16.tflite"},
              config={"onnx2tf": c.onnx2tf},
              tools=("onnx2tf", "tensorflow-cpu", "tf-keras", "onnx", "onnxsim", "onnxruntime")),
        *[_quantize(f"conditioners_quantize_{v}", f"Quantize the float32 conditioners: {v}",
                    files["conditioners"]["float32"], f, v, "conditioners")
          for v, f in files["conditioners"].items() if v not in ("float32", "float16")],
        Stage("verify_conditioners", "Compare every conditioners variant with PyTorch; gate each",
              "verify_conditioners", inputs={"shard": shards["conditioners"], "t5_config": src["t5_config"],
                                             "t5_weights": src["t5_weights"], "spiece": src["spiece"],
                                             **files["conditioners"]},
              outputs={"report": parity["conditioners"]},
              config={"prompts": c.prompts, "seconds": c.seconds, "max_rel_fp32": c.max_rel_fp32,
                      "variants": {v: c.min_snr(v) for v in c.built if v != "float32"}},
              tools=(*TORCH, "transformers", "ai-edge-litert", "sentencepiece")),

        Stage("dit_reauthor", "Load the DiT shard into the re-authored DiT; torch.export it",
              "dit_reauthor", inputs={"shard": shards["dit"]},
              outputs={"pt2": dit / "dit.pt2"},
              tools=TORCH),
        Stage("dit_convert", "Convert the exported DiT to float32 LiteRT (litert-torch)",
              "litert_convert", inputs={"pt2": dit / "dit.pt2"},
              outputs={"tflite": dit / "dit_float32.tflite"}, config={"role": "dit"},
              tools=(*TORCH, "litert-torch", "ai-edge-litert")),
        *[_quantize("dit_quantize" if v == d.quant_recipe else f"dit_quantize_{v}",
                    f"Quantize the float DiT: {v}" + (" (dit.quant_recipe)" if v == d.quant_recipe else ""),
                    dit / "dit_float32.tflite", f, v, "dit") for v, f in files["dit"].items()],
        Stage("verify_dit", "Compare the float DiT and every quantized one with PyTorch; gate each",
              "verify_dit", inputs={"shard": shards["dit"], "float32": dit / "dit_float32.tflite", **files["dit"]},
              outputs={"report": parity["dit"]},
              config={"max_rel_fp32": d.max_rel_fp32, "verify_cases": d.verify_cases,
                      "variants": {v: d.min_snr(v) for v in d.built}},
              tools=(*TORCH, "ai-edge-litert")),

        Stage("autoencoder_reauthor", "Load the decoder shard (weight norm folded); torch.export it",
              "autoencoder_reauthor", inputs={"shard": shards["decoder"]},
              outputs={"pt2": ae / "decoder.pt2"},
              tools=TORCH),
        Stage("autoencoder_convert", "Convert the exported decoder to float32 LiteRT (litert-torch)",
              "litert_convert", inputs={"pt2": ae / "decoder.pt2"},
              outputs={"tflite": ae / "autoencoder_model.tflite"}, config={"role": "decoder"},
              tools=(*TORCH, "litert-torch", "ai-edge-litert")),
        *[_quantize(f"autoencoder_quantize_{q}", f"Quantize the float decoder: {q}", files["decoder"]["float32"], f, q, "decoder")
          for q, f in files["decoder"].items() if q != "float32"],
        Stage("verify_autoencoder", "Compare every decoder variant with PyTorch; gate each",
              "verify_autoencoder", inputs={"shard": shards["decoder"], "tflite": files["decoder"]["float32"],
                                            **{q: f for q, f in files["decoder"].items() if q != "float32"}},
              outputs={"report": parity["autoencoder"]},
              config={"max_rel_fp32": a.max_rel_fp32, "min_snr_db": a.min_snr_db,
                      "variants": {q: a.min_snr(q) for q in a.built if q != "float32"}},
              tools=(*TORCH, "ai-edge-litert")),

        Stage("select_app", "Choose the app set: every combination of passing variants run end to end "
                            "against PyTorch; the best meeting [app]'s constraints",
              "select_app",
              inputs={**reference, "source": facts, **{f"parity_{m}": f for m, f in parity.items()},
                      **{f"{m}/{v}": f for m, vs in files.items() for v, f in vs.items()}},
              outputs={**app_files, "chosen": chosen, "report": rep / "app.json"},
              config={**p.app.model_dump(exclude={"bundle_variants"}), "pins": pins(p),
                      "prompts": c.prompts[:p.app.requests], "seconds": c.seconds[:p.app.requests],
                      "steps": p.generate.steps, "threads": 2},
              tools=(*TORCH, "transformers", "ai-edge-litert", "sentencepiece")),
    ]
    checks, web = [], {}  # collect's order-only dependencies; the web client's file: bundle name → artifact
    if p.targets.web:
        web_cond = o / "web" / WEB_CONDITIONERS
        web[WEB_CONDITIONERS] = web_cond
        checks.append("verify_web")
        table.append(Stage(
            "web_conditioners", "The app's conditioners for LiteRT.js: int32 ids and mask, cast to int64 in the graph",
            "web_conditioners", inputs={"tflite": app_files["conditioners"]}, outputs={"tflite": web_cond},
            tools=("ai-edge-litert", "flatbuffers")))
        table.append(Stage(
            "verify_web", "Run the app set in LiteRT.js in headless Chromium (wasm): each model against this "
                          "runtime, one generation against PyTorch",
            "verify_web", inputs={**reference, "conditioners": web_cond, "dit": app_files["dit"],
                                  "decoder": app_files["decoder"]},
            outputs={"report": rep / "parity_web.json"},
            config={"prompt": c.prompts[0], "seconds": c.seconds[0], "steps": p.generate.steps,
                    "min_snr_db": p.targets.web_min_snr_db, "min_latent_snr_db": p.app.min_latent_snr_db,
                    "min_audio_snr_db": p.app.min_audio_snr_db, "timeout_s": p.targets.web_timeout_s},
            tools=(*TORCH, "transformers", "ai-edge-litert", "sentencepiece")))
    verified_on = ["x86_64"]
    if p.targets.aarch64:
        verified_on.append("aarch64")
        t = p.targets
        table.append(Stage(
            "verify_aarch64", "Run the app set (and the other conditioners and decoders) on aarch64 LiteRT "
                              "kernels (emulated); gate against PyTorch",
            "verify_aarch64",
            inputs={**reference, "source": facts, "chosen": chosen, **{f"app_{m}": f for m, f in app_files.items()},
                    **{f"cond_{v}": files["conditioners"][v] for v in ("float32", "float16") if v in c.built},
                    **({f"decoder_{q}": f for q, f in files["decoder"].items()} if t.aarch64_decoders == "all" else {})},
            outputs={"report": rep / "parity_aarch64.json"},
            config={"prompts": c.prompts[:t.aarch64_prompts or None], "seconds": c.seconds[:t.aarch64_prompts or None],
                    "max_rel_cond_fp32": c.max_rel_fp32,
                    "gates": {"conditioners": {v: c.min_snr(v) for v in c.built if v != "float32"},
                              "dit": {v: d.min_snr(v) for v in d.built},
                              "decoder": {q: a.min_snr_db if q == "float32" else a.min_snr(q) for q in a.built}},
                    "dit_cases": t.aarch64_dit_cases,
                    "latents": t.aarch64_latents, "cpu": t.aarch64_cpu,
                    "decoders": list(files["decoder"]) if t.aarch64_decoders == "all" else [],
                    "min_snr_fp16_db": t.min_snr_fp16_db, "layout": p.app.layout,
                    "steps": t.aarch64_steps, "threads": 2, "min_latent_snr_db": p.app.min_latent_snr_db,
                    "min_audio_snr_db": p.app.min_audio_snr_db, "min_latent_snr_vs_x86_db": t.min_latent_snr_vs_x86_db,
                    "min_audio_snr_vs_x86_db": t.min_audio_snr_vs_x86_db,
                    "toolchain": aarch64_versions() or "absent"},
            tools=(*TORCH, "transformers", "ai-edge-litert", "sentencepiece")))
    names = bundle_names(p)
    table.append(Stage(
        "collect", "Collect the app bundle (the app set, the other variants in variants/) and write manifest.json",
        "collect",
        inputs={**{f"{m}/app": f for m, f in app_files.items()}, **web,
                **{f"{m}/{v}": f for m, vs in files.items() for v, f in vs.items()
                   if f"{m}/{v}" in names.values()},
                SPIECE: src["spiece"], "source": facts, "app": rep / "app.json"},
        outputs={**{n: o / "bundle" / n for n in names}, SPIECE: o / "bundle" / SPIECE,
                 **{n: o / "bundle" / n for n in web},
                 MANIFEST: o / "bundle" / MANIFEST},
        config={"profile": p.name, "steps": p.generate.steps, "verified_on": verified_on, "files": names,
                "layout": p.app.layout, "web": p.targets.web},
        tools=("ai-edge-litert",),
        task_dep=(*checks, *(("verify_aarch64",) if p.targets.aarch64 else ()))))
    return table


# Targets that name a final artifact rather than a step.
ALIASES = {"dit_tflite": ("The final (quantized) DiT file", ["dit_quantize"])}
