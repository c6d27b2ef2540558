"""`python -m runtime.cli generate …`: prompt → WAV from a bundle, timing each stage like the app
does. The `sao-litert` command (pipeline/tools/cli.py) runs the same code, with the build side's
`--reference` comparison and its other subcommands."""
import argparse
import json
import logging
import sys
from pathlib import Path

from . import ping_pong
from .generate import BundleError, Request, generate, load_manifest, write_wav

log = logging.getLogger("sao.generate")


def generate_arguments(g: argparse.ArgumentParser):
    g.add_argument("--bundle", type=Path, required=True)
    g.add_argument("--prompt", required=True)
    g.add_argument("--seconds", type=float, default=10.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, default=8)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--decoder-precision", help="a decoder precision in the bundle (manifest models.*.precision); "
                                               "default: the app's autoencoder_model.tflite")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--report", type=Path, help="write timings as JSON here")


def run_generate(args, compare=None) -> int:
    """Generate, write the WAV and the report. `compare(req, noise, audio, latent, report)` adds
    to the report (the build side's `--reference`). Bad input: one `error:` line, exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    req = Request(args.prompt, args.seconds, args.seed, args.steps, args.threads, args.decoder_precision)
    try:
        manifest = load_manifest(args.bundle)
        noise = ping_pong.noises(req.seed, manifest["sampler"]["latent_shape"], max(req.steps, 1))
        audio, latent, times = generate(args.bundle, req, noise, manifest)
        write_wav(args.out, audio, manifest["audio"]["sample_rate"])
        log.info("wrote %s: %d samples x %d channels at %d Hz", args.out, audio.shape[1], audio.shape[0],
                 manifest["audio"]["sample_rate"])
        report = {"times_s": times}
        if compare is not None:
            compare(req, noise, audio, latent, report)
        if args.report:
            args.report.write_text(json.dumps(report, indent=2) + "\n")
    except (BundleError, ValueError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.cli")
    sub = p.add_subparsers(dest="command", required=True)
    generate_arguments(sub.add_parser("generate", help="text → 44.1 kHz stereo WAV from a LiteRT bundle"))
    return run_generate(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
