"""The whole build graph in one place: every stage with its inputs, outputs, config slice, code
and tools. doit infers the edges from matching output → input paths."""
from pathlib import Path

from .config import FileSource, Profile
from .core import Stage

MODELS = "stages/models"
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
    t5 = {k: src[k] for k in ("t5_config", "t5_weights", "spiece")}
    cond, dit, ae, rep = o / "conditioners", o / "dit", o / "autoencoder", o / "reports"
    table = []
    if not isinstance(p.source, FileSource):
        table.append(Stage(
            "synth", "Write the seeded synthetic SAOS (model_config.json, model.ckpt, T5 folder)",
            "synth", inputs={}, outputs=src, config=p.source.model_dump(),
            code=(f"{MODELS}/layout.py", "stages/data/spiece_corpus.txt"),
            tools=(*TORCH, "transformers", "sentencepiece")))
    table += [
        Stage("checkpoint", "Validate the checkpoint against model_config.json; split it into shards",
              "checkpoint", inputs={"model_config": src["model_config"], "checkpoint": src["checkpoint"]},
              outputs=shards, code=(f"{MODELS}/layout.py", "pipeline/config.py"), tools=TORCH),
    ]
    return table
