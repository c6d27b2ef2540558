"""Stage `collect`: copy the app set (select_app's choice) into bundle/ (the folder the Arm
audiogen app reads) under the layout's names, every variant under bundle/variants/ ([app]
bundle_variants), and describe them in manifest.json: hashes, sizes, every model's role,
precision, gate verdict and tensors in the order its client addresses them (position, signature
name, raw index, shape, dtype), each file checked against its contract (runtime/vocab.py) first; the
app set (`app`: the files the app loads, the objective, its figures and every variant's); the
sampler, the audio format and the toolchain. Files an earlier layout left in bundle/ go (the
folder is what gets copied to a phone), and so does another manifest's verified.json (stage
attest writes this one's; an unchanged manifest keeps its own); the runtime's .xnnpack_cache/
stays."""
import json
import logging
import shutil

from pipeline.core import toolchain
from pipeline.core.atomic import write_bytes
from pipeline.core.hashing import file_digest
from runtime import ping_pong
from runtime.client import require_contract
from runtime.files import read_json, strict_json
from runtime.generate import WEIGHT_CACHE
from runtime.litert import Model
from runtime.vocab import LAYOUTS, MANIFEST, ROLES, SPIECE, VERIFIED, WEB_CLIENT, WEB_CONDITIONERS, WEB_CONTRACTS

log = logging.getLogger("sao.collect")
TOOLCHAIN = ("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "onnx", "onnx2tf",
             "tensorflow-cpu", "transformers", "sentencepiece")


def run(inputs, outputs, config):
    source = json.loads(inputs["source"].read_text())
    app = read_json(inputs["report"])
    layout = LAYOUTS[config["layout"]]
    sources = {**{n: inputs["app"][f["model"]] if f["variant"] is None else inputs["variants"][f["model"]][f["variant"]]
                  for n, f in config["files"].items()}, SPIECE: inputs[SPIECE], **inputs.get("web", {})}
    files, models, app_files = {}, {}, {}
    for name, dst in outputs.items():
        if name == MANIFEST:
            continue
        shutil.copyfile(sources[name], dst)
        files[name] = {"xxh3_128": file_digest(dst), "bytes": dst.stat().st_size}
        if name == WEB_CONDITIONERS:
            require_contract(Model(dst), "conditioners", name, WEB_CLIENT, WEB_CONTRACTS)
        elif name in config["files"]:
            model, variant = config["files"][name]["model"], config["files"][name]["variant"]
            if variant is None:  # the app set's file of this model
                app_files[model], variant = name, app["chosen"][model]
            loaded = Model(dst)
            require_contract(loaded, model, name, layout.client)  # as the client sees the file: by position
            models[name] = {"model": model, "precision": variant, "app": name == app_files.get(model),
                            "gate": app["variants"][model][variant]["gate"], **loaded.describe()}
    steps = config["steps"]
    bundled = {(m["model"], m["precision"]): n for n, m in models.items() if not m["app"]}
    manifest = {
        "profile": config["profile"],
        "source": {"checkpoint": source["checkpoint"], "checkpoint_xxh3_128": source["checkpoint_xxh3_128"]},
        "files": files,
        "models": models,
        "tokenizer": {"file": SPIECE, "length": source["prompt_tokens"], "eos_id": 1, "pad_id": 0},
        "sampler": {"name": "ping_pong", "steps": steps, "schedule": [float(t) for t in ping_pong.schedule(steps)],
                    "latent_shape": [1, source["latent_channels"], source["latent_frames"]]},
        "audio": {"sample_rate": source["sample_rate"], "channels": source["audio_channels"],
                  "samples": source["samples"], "decoder_output_shape": [1, source["audio_channels"], source["samples"]]},
        "app": {"models": [app_files[m] for m in ROLES], "files": app_files,
                "layout": config["layout"], "client": layout.client, "xnnpack_flags": layout.xnnpack_flags,
                "objective": app["objective"], "constraints": app["constraints"],
                "pins": app["pins"], "figures": app["figures"],
                "variants": {m: {v: {"bundled_as": bundled.get((m, v)), **fig} for v, fig in vs.items()}
                             for m, vs in app["variants"].items()}},
        # Who loads what, by position: the app set's clients (runtime/vocab.py); the web client's
        # with [targets] web (its check, verify_web, runs beside: bundle/verified.json, stage attest).
        "clients": {"app": {"client": layout.client, "files": app_files, "xnnpack_flags": layout.xnnpack_flags},
                    **({"web": {"client": WEB_CLIENT, "files": {**app_files, "conditioners": WEB_CONDITIONERS},
                                "contracts": {m: c.rows() for m, c in WEB_CONTRACTS.items()}}} if config["web"] else {})},
        "toolchain": toolchain.versions(TOOLCHAIN),
    }
    text, bundle = strict_json(manifest).encode(), outputs[MANIFEST].parent
    if not (bundle / MANIFEST).is_file() or (bundle / MANIFEST).read_bytes() != text:  # (outputs: new names)
        (bundle / VERIFIED).unlink(missing_ok=True)  # another manifest's attestation
    write_bytes(outputs[MANIFEST], text)
    _remove_stale(outputs)
    log.info("bundle: %d files, %.2f MB", len(files), sum(f["bytes"] for f in files.values()) / 1e6)


def _remove_stale(outputs):
    bundle = outputs[MANIFEST].parent
    keep = {*outputs.values(), *(bundle / name for name in outputs), bundle / VERIFIED}
    for f in sorted(bundle.rglob("*"), reverse=True):  # files before their folders
        if WEIGHT_CACHE in f.relative_to(bundle).parts or f in keep:
            continue
        if f.is_dir():
            if not any(f.iterdir()):
                f.rmdir()
        else:
            log.info("removing %s (not in this bundle's layout)", f.relative_to(bundle))
            f.unlink()
