"""Text → WAV from the LiteRT bundle alone (LiteRT + sentencepiece + numpy; no torch).

Every start checks each bundle file against the manifest's XXH3-128 before it is loaded (1.4 GB
at real size). A file verified before and unchanged since (same inode, size and mtime, as make
and doit judge files) is not read again: `BUNDLE/.xnnpack_cache/verified.json` remembers what
was verified, beside the weight caches (machine-specific, safe to delete). A first start, or one
after a file changed, pays the full hash, and the bench's first-generation figures include it."""
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ping_pong
from .files import atomic_path, xxh3_128
from .litert import Model
from .tokenizer import Tokenizer
from .vocab import LAYOUTS, MANIFEST, ROLES as MODELS, SPIECE

log = logging.getLogger("sao.generate")
# XNNPACK weight caches of this machine (runtime/litert.py): beside the models, not in the manifest.
WEIGHT_CACHE = ".xnnpack_cache"


class BundleError(Exception):
    """Bad input to generate: one line, exit 2."""


@dataclass
class Request:
    prompt: str
    seconds: float
    seed: int = 0
    steps: int = 8
    threads: int = 2
    # role (runtime/vocab.py ROLES) → a bundle file or a variant (precision) of that
    # model in the bundle, instead of the app set's (manifest "app")
    variants: dict | None = None


def load_manifest(bundle: Path) -> dict:
    """The bundle's manifest, every file in it checked against its digest (see the module doc)."""
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: missing (is --bundle an artifacts/<profile>/bundle folder?)")
    manifest = json.loads(path.read_text())
    memo = bundle / WEIGHT_CACHE / "verified.json"
    try:
        verified = json.loads(memo.read_text())
    except (OSError, ValueError):
        verified = {}
    now = {}
    for name, entry in manifest["files"].items():
        f = bundle / name
        if not f.is_file():
            raise BundleError(f"{f}: missing bundle file")
        st = f.stat()
        now[name] = [st.st_ino, st.st_size, st.st_mtime_ns, entry["xxh3_128"]]
        if verified.get(name) != now[name] and xxh3_128(f) != entry["xxh3_128"]:
            raise BundleError(f"{f}: xxh3_128 does not match manifest.json (file changed or corrupt)")
    if now != verified:
        try:
            with atomic_path(memo) as tmp:
                tmp.write_text(json.dumps(now))
        except OSError:
            pass  # a bundle folder that cannot be written: verified again next start
    return manifest


def check(req: Request, tok: Tokenizer):
    if not req.prompt.strip():
        raise BundleError("--prompt: empty prompt")
    n = len(tok.pieces(req.prompt))
    if n > tok.length - 1:
        raise BundleError(f"--prompt: {n} tokens; the model takes at most {tok.length - 1}")
    if not np.isfinite(req.seconds):
        raise BundleError("--seconds: must be a finite number")
    if req.steps < 1:
        raise BundleError("--steps: must be >= 1")




def model_file(manifest: dict, model: str, variant: str | None = None) -> str:
    """The bundle file of `model` the app loads (manifest["app"]), or the one `variant` names:
    a bundle file name, or a precision of that model in the bundle."""
    # Bundles written before the manifest named the app set: the Arm app's fixed names.
    app = manifest.get("app", {}).get("files", LAYOUTS["arm"].files)[model]
    if variant is None or variant == app:
        return app
    have = {n: m for n, m in manifest["models"].items() if m.get("model") == model}
    name = variant if variant in have else next(
        (n for n in sorted(have, key=lambda n: not have[n].get("app")) if have[n]["precision"] == variant), None)
    if name is None:
        raise BundleError(f"--variant {model}={variant}: the bundle has no such {model} file or precision (has "
                          f"{', '.join(sorted({*have, *(m['precision'] for m in have.values())}))})")
    if not have[name].get("gate", True):
        raise BundleError(f"--variant {model}={variant}: {name} failed its parity gate in the build (see the "
                          f"manifest's app.variants)")
    return name


def generate(bundle, req: Request, noise=None, manifest=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(audio [channels, samples], final latent, seconds per stage). `manifest`: one the caller
    has already loaded (and so hash-checked) with load_manifest."""
    bundle = Path(bundle)
    manifest = manifest or load_manifest(bundle)
    tok = Tokenizer(bundle / SPIECE, manifest["tokenizer"]["length"])
    check(req, tok)
    times = {}
    t0 = time.perf_counter()

    def model(name):
        return Model(bundle / name, req.threads, (bundle / WEIGHT_CACHE, manifest["files"][name]["xxh3_128"]))
    cond_model, dit, decoder = (model(model_file(manifest, m, (req.variants or {}).get(m))) for m in MODELS)
    times["load"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ids, mask = tok(req.prompt)
    cond = cond_model(input_ids=ids, attention_mask=mask, seconds_total=np.array([req.seconds], np.float32))
    times["conditioners"] = time.perf_counter() - t0
    log.info("conditioners: %.3f s", times["conditioners"])

    shape = manifest["sampler"]["latent_shape"]
    noise = noise if noise is not None else ping_pong.noises(req.seed, shape, req.steps)
    cross, glob = cond["cross_attention_input"], cond["global_cond"]

    def velocity(x, t):
        (v,) = dit(x=x, t=np.array([t], np.float32), cross_attn_cond=cross, global_cond=glob).values()
        return v

    t0 = time.perf_counter()
    latent = ping_pong.sample(velocity, noise, req.steps,
                              on_step=lambda i: log.info("dit step %d/%d", i + 1, req.steps))
    times["dit_total"] = time.perf_counter() - t0
    times["dit_step"] = times["dit_total"] / req.steps
    log.info("dit: %.3f s (%.3f s/step)", times["dit_total"], times["dit_step"])

    t0 = time.perf_counter()
    (audio,) = decoder(latent=latent).values()
    times["decoder"] = time.perf_counter() - t0
    log.info("decoder: %.3f s", times["decoder"])
    return audio.reshape(audio.shape[-2], audio.shape[-1]), latent, times


def write_wav(path, audio: np.ndarray, sample_rate: int):
    """32-bit float stereo WAV (as the Arm app), written to a temporary name then renamed."""
    import soundfile as sf
    with atomic_path(path) as tmp:
        sf.write(tmp, audio.T, sample_rate, subtype="FLOAT", format="WAV")
