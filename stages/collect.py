"""Stage `collect`: copy the final artifacts into bundle/ (the folder the Arm audiogen app reads)
and describe them in manifest.json: hashes, sizes, every model's precision and signature with
raw tensor indices, names, shapes and dtypes, the sampler, the audio format and the toolchain."""
import json
import logging
import shutil

from pipeline.core import toolchain
from pipeline.core.atomic import write_json
from pipeline.core.hashing import file_digest
from runtime import ping_pong
from runtime.litert import Model

log = logging.getLogger("sao.collect")
TOOLCHAIN = ("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "onnx", "onnx2tf",
             "tensorflow-cpu", "transformers", "sentencepiece")


def run(inputs, outputs, config):
    source = json.loads(inputs["source"].read_text())
    files, models = {}, {}
    for name, dst in outputs.items():
        if name == "manifest.json":
            continue
        shutil.copyfile(inputs[name], dst)
        files[name] = {"xxh3_128": file_digest(dst), "bytes": dst.stat().st_size}
        if name.endswith(".tflite"):
            models[name] = {"precision": config["precisions"][name], **Model(dst).describe()}
    steps = config["steps"]
    manifest = {
        "profile": config["profile"],
        "source": {"checkpoint": source["checkpoint"], "checkpoint_xxh3_128": source["checkpoint_xxh3_128"]},
        "files": files,
        "models": models,
        "tokenizer": {"file": "spiece.model", "length": source["prompt_tokens"], "eos_id": 1, "pad_id": 0},
        "sampler": {"name": "ping_pong", "steps": steps, "schedule": [float(t) for t in ping_pong.schedule(steps)],
                    "latent_shape": [1, source["latent_channels"], source["latent_frames"]]},
        "audio": {"sample_rate": source["sample_rate"], "channels": source["audio_channels"],
                  "samples": source["samples"], "decoder_output_shape": [1, source["audio_channels"], source["samples"]]},
        "toolchain": toolchain.versions(TOOLCHAIN),
        # Every gate of these architectures passed before this bundle was written (verify_*).
        "verified_on": config["verified_on"],
    }
    write_json(outputs["manifest.json"], manifest)
    log.info("bundle: %d files, %.2f MB", len(files), sum(f["bytes"] for f in files.values()) / 1e6)
