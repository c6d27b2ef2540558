"""`sao-litert generate …`: prompt → WAV from a bundle, timing each stage like the app does.
`sao-litert init …`: a profile for a downloaded model (pipeline/init_profile.py).
`sao-litert build-many PROFILE…`: several profiles in one command (pipeline/many.py)."""
import argparse
import json
import logging
import sys
from pathlib import Path

from .generate import BundleError, Request, generate, load_manifest, write_wav


def _parser():
    p = argparse.ArgumentParser(prog="sao-litert")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="text → 44.1 kHz stereo WAV from a LiteRT bundle")
    g.add_argument("--bundle", type=Path, required=True)
    g.add_argument("--prompt", required=True)
    g.add_argument("--seconds", type=float, default=10.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, default=8)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--decoder-precision", help="a decoder precision in the bundle (manifest models.*.precision); "
                                               "default: the app's autoencoder_model.tflite")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--reference", metavar="PROFILE", type=Path,
                   help="also run the PyTorch modules of this built profile with the same noise; report SNR")
    g.add_argument("--report", type=Path, help="write timings (and reference SNRs) as JSON here")
    i = sub.add_parser("init", help="write profiles/NAME.toml for a downloaded model (folders or Hugging Face cache)")
    i.add_argument("name")
    i.add_argument("--model", required=True, help="SAOS folder or repo id (stabilityai/stable-audio-open-small)")
    i.add_argument("--t5", required=True, help="T5 folder or repo id (google-t5/t5-base)")
    i.add_argument("--revision", help="cached revision of --model (default: main)")
    i.add_argument("--t5-revision", help="cached revision of --t5 (default: main)")
    i.add_argument("--force", action="store_true", help="replace an existing profile")
    b = sub.add_parser("build-many", help="build several profiles (at once on a Dask cluster)")
    b.add_argument("profiles", nargs="+", type=Path)
    b.add_argument("-n", "--jobs", type=int, help="stages at once per profile (doit -n)")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.command == "init":
        from pipeline.init_profile import main as init  # the build side: not part of the runtime
        return init(args.name, args.model, args.t5, args.revision, args.t5_revision, args.force)
    if args.command == "build-many":
        from pipeline.many import main as build_many  # the build side: not part of the runtime
        return build_many(args.profiles, args.jobs)
    log = logging.getLogger("sao.generate")
    req = Request(args.prompt, args.seconds, args.seed, args.steps, args.threads, args.decoder_precision)
    try:
        from . import ping_pong
        manifest = load_manifest(args.bundle)
        noise = ping_pong.noises(req.seed, manifest["sampler"]["latent_shape"], max(req.steps, 1))
        audio, latent, times = generate(args.bundle, req, noise, manifest)
        write_wav(args.out, audio, manifest["audio"]["sample_rate"])
        log.info("wrote %s: %d samples x %d channels at %d Hz", args.out, audio.shape[1], audio.shape[0],
                 manifest["audio"]["sample_rate"])
        report = {"times_s": times}
        if args.reference:
            from pipeline.parity import metrics
            from .reference import generate as reference
            ref_audio, ref_latent, report["reference_times_s"] = reference(args.reference, req, noise)
            report["snr_db"] = {"latent": metrics(ref_latent, latent)["snr_db"],
                                "audio": metrics(ref_audio, audio)["snr_db"]}
            log.info("LiteRT vs PyTorch: latent SNR %.1f dB, audio SNR %.1f dB",
                     report["snr_db"]["latent"], report["snr_db"]["audio"])
        if args.report:
            args.report.write_text(json.dumps(report, indent=2) + "\n")
    except (BundleError, ValueError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
