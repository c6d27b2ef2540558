"""The whole build graph in one place: every stage with its inputs, outputs, config slice and
tools. doit infers the edges from matching output → input paths; each stage's code dependencies
are recorded when it runs (pipeline/core/keys.py), never listed here."""
from pathlib import Path

from .config import FileSource, Profile
from .stage import Stage
from .toolchain import aarch64_versions

TORCH = ("torch", "safetensors")


def source_files(p: Profile) -> dict[str, Path]:
    """The model's input files: the user's, or those the synth stage writes."""
    if isinstance(p.source, FileSource):
        s = p.source
        return {"model_config": s.model_config_json, "checkpoint": s.checkpoint,
                "t5_config": s.t5_dir / "config.json", "t5_weights": s.t5_dir / "model.safetensors",
                "spiece": s.t5_dir / "spiece.model"}
    d = p.out / "inputs"
    return {"model_config": d / "model_config.json", "checkpoint": d / "model.ckpt",
            "t5_config": d / "t5" / "config.json", "t5_weights": d / "t5" / "model.safetensors",
            "spiece": d / "t5" / "spiece.model"}


def stages(p: Profile) -> list[Stage]:
    src = source_files(p)
    o = p.out
    shards = {k: o / "shards" / f"{k}.safetensors" for k in ("conditioners", "dit", "decoder")}
    facts = o / "shards" / "source.json"  # checkpoint hash + audio facts, for the manifest
    cond, dit, ae, rep = o / "conditioners", o / "dit", o / "autoencoder", o / "reports"
    decoders = {q: ae / ("autoencoder_model.tflite" if q == "float32" else f"autoencoder_{q}.tflite")
                for q in p.autoencoder.precisions}
    app = p.autoencoder.app
    # bundle name → (built file, precision); the app's decoder is autoencoder_model.tflite
    finals = {"conditioners_float32.tflite": (cond / "conditioners_float32.tflite", "float32"),
              "conditioners_float16.tflite": (cond / "conditioners_float16.tflite", "float16"),
              "dit_model.tflite": (dit / "dit_model.tflite", p.dit.quant_recipe),
              "autoencoder_model.tflite": (decoders[app], app),
              **{f"autoencoder_{q}.tflite": (f, q) for q, f in decoders.items() if q != app},
              "spiece.model": (src["spiece"], None)}
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
              outputs={"onnx": cond / "conditioners.onnx"}, config={"opset": p.conditioners.opset},
              tools=(*TORCH, "transformers", "onnx")),
        Stage("conditioners_tflite", "onnx2tf: conditioners.onnx → float32 and float16 .tflite",
              "conditioners_tflite", inputs={"onnx": cond / "conditioners.onnx"},
              outputs={"float32": cond / "conditioners_float32.tflite",
                       "float16": cond / "conditioners_float16.tflite"},
              config={"onnx2tf": p.conditioners.onnx2tf},
              tools=("onnx2tf", "tensorflow-cpu", "tf-keras", "onnx", "onnxsim", "onnxruntime")),
        Stage("verify_conditioners", "Compare both conditioner .tflite files with PyTorch; fail past tolerance",
              "verify_conditioners", inputs={"shard": shards["conditioners"], "t5_config": src["t5_config"],
                                             "t5_weights": src["t5_weights"], "spiece": src["spiece"],
                                             "float32": cond / "conditioners_float32.tflite",
                                             "float16": cond / "conditioners_float16.tflite"},
              outputs={"report": rep / "parity_conditioners.json"},
              config=p.conditioners.model_dump(exclude={"opset", "onnx2tf"}),
              tools=(*TORCH, "transformers", "ai-edge-litert", "sentencepiece")),

        Stage("dit_reauthor", "Load the DiT shard into the re-authored DiT; torch.export it",
              "dit_reauthor", inputs={"shard": shards["dit"]},
              outputs={"pt2": dit / "dit.pt2"},
              tools=TORCH),
        Stage("dit_convert", "Convert the exported DiT to float32 LiteRT (litert-torch)",
              "litert_convert", inputs={"pt2": dit / "dit.pt2"},
              outputs={"tflite": dit / "dit_float32.tflite"},
              tools=(*TORCH, "litert-torch", "ai-edge-litert")),
        Stage("dit_quantize", "Quantize the float DiT (ai-edge-quantizer recipe from the profile)",
              "quantize", inputs={"tflite": dit / "dit_float32.tflite"},
              outputs={"tflite": dit / "dit_model.tflite"}, config={"recipe": p.dit.quant_recipe},
              tools=("ai-edge-quantizer", "ai-edge-litert")),
        Stage("verify_dit", "Compare the DiT .tflite files with PyTorch; fail past tolerance",
              "verify_dit", inputs={"shard": shards["dit"], "float32": dit / "dit_float32.tflite",
                                    "quantized": dit / "dit_model.tflite"},
              outputs={"report": rep / "parity_dit.json"}, config=p.dit.model_dump(),
              tools=(*TORCH, "ai-edge-litert")),

        Stage("autoencoder_reauthor", "Load the decoder shard (weight norm folded); torch.export it",
              "autoencoder_reauthor", inputs={"shard": shards["decoder"]},
              outputs={"pt2": ae / "decoder.pt2"},
              tools=TORCH),
        Stage("autoencoder_convert", "Convert the exported decoder to float32 LiteRT (litert-torch)",
              "litert_convert", inputs={"pt2": ae / "decoder.pt2"},
              outputs={"tflite": ae / "autoencoder_model.tflite"},
              tools=(*TORCH, "litert-torch", "ai-edge-litert")),
        *([Stage("autoencoder_quantize", "Quantize the float decoder: dynamic int8 on every conv",
                 "quantize", inputs={"tflite": decoders["float32"]},
                 outputs={"tflite": decoders["dynamic_int8"]}, config={"recipe": "dynamic_wi8_afp32"}, tools=("ai-edge-quantizer", "ai-edge-litert"))]
          if "dynamic_int8" in decoders else []),
        Stage("verify_autoencoder", "Compare the decoder .tflite files with PyTorch; fail past tolerance",
              "verify_autoencoder", inputs={"shard": shards["decoder"], "tflite": decoders["float32"],
                                            **{q: f for q, f in decoders.items() if q != "float32"}},
              outputs={"report": rep / "parity_autoencoder.json"},
              config=p.autoencoder.model_dump(exclude={"precisions", "app"}), tools=(*TORCH, "ai-edge-litert")),

    ]
    verified_on = ["x86_64"]
    if p.targets.aarch64:
        verified_on.append("aarch64")
        t, c, a = p.targets, p.conditioners, p.autoencoder
        table.append(Stage(
            "verify_aarch64", "Run the bundle's models on aarch64 LiteRT kernels (emulated); gate against PyTorch",
            "verify_aarch64",
            inputs={"cond_shard": shards["conditioners"], "dit_shard": shards["dit"], "decoder_shard": shards["decoder"],
                    "t5_config": src["t5_config"], "t5_weights": src["t5_weights"], "spiece": src["spiece"],
                    "source": facts, "cond_float32": finals["conditioners_float32.tflite"][0],
                    "cond_float16": finals["conditioners_float16.tflite"][0], "dit": dit / "dit_model.tflite",
                    **{f"decoder_{q}": f for q, f in decoders.items()}},
            outputs={"report": rep / "parity_aarch64.json"},
            config={"prompts": c.prompts[:t.aarch64_prompts or None], "seconds": c.seconds[:t.aarch64_prompts or None],
                    "max_rel_cond_fp32": c.max_rel_fp32,
                    "min_snr_cond_fp16_db": c.min_snr_fp16_db, "dit_recipe": p.dit.quant_recipe,
                    "min_snr_dit_db": p.dit.min_snr_quant_db, "dit_cases": t.aarch64_dit_cases,
                    "latents": t.aarch64_latents, "cpu": t.aarch64_cpu,
                    "decoders": list(decoders) if t.aarch64_decoders == "all" else [], "app_decoder": app,
                    "max_rel_dec_fp32": a.max_rel_fp32,
                    "min_snr_dec_int8_db": a.min_snr_int8_db, "min_snr_fp16_db": t.min_snr_fp16_db,
                    "steps": t.aarch64_steps, "threads": 2, "min_latent_snr_db": t.min_latent_snr_db,
                    "min_audio_snr_db": t.min_audio_snr_db, "min_latent_snr_vs_x86_db": t.min_latent_snr_vs_x86_db,
                    "min_audio_snr_vs_x86_db": t.min_audio_snr_vs_x86_db,
                    "toolchain": aarch64_versions() or "absent"},
            tools=(*TORCH, "transformers", "ai-edge-litert", "sentencepiece"),
            task_dep=("verify_conditioners", "verify_dit", "verify_autoencoder")))
    table.append(Stage(
        "collect", "Collect the app bundle (the Arm audiogen layout) and write manifest.json",
        "collect", inputs={**{f: path for f, (path, _) in finals.items()}, "source": facts},
        outputs={**{f: o / "bundle" / f for f in finals}, "manifest.json": o / "bundle" / "manifest.json"},
        config={"profile": p.name, "steps": p.generate.steps, "verified_on": verified_on,
                "precisions": {f: q for f, (_, q) in finals.items() if q}},
        tools=("ai-edge-litert",),
        task_dep=("verify_conditioners", "verify_dit", "verify_autoencoder",
                  *(["verify_aarch64"] if p.targets.aarch64 else []))))
    return table


# Targets that name a final artifact rather than a step.
ALIASES = {"dit_tflite": ("The final (quantized) DiT file", ["dit_quantize"])}
