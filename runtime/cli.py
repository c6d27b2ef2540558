"""`python -m runtime.cli generate …`: prompt → WAV from a bundle, timing each stage like the app
does. The `sao-litert` command (pipeline/tools/cli.py) runs the same code, with the build side's
`--reference` comparison and its other subcommands."""
import argparse
import logging
import sys
from pathlib import Path

from . import ping_pong
from .files import strict_json
from .generate import BundleError, Request, generate, load_manifest, model_file, write_wav
from .vocab import ROLES as MODELS

log = logging.getLogger("sao.generate")


def generate_arguments(g: argparse.ArgumentParser):
    g.add_argument("--bundle", type=Path, required=True)
    g.add_argument("--prompt", required=True)
    g.add_argument("--seconds", type=float, default=10.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, default=8)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--variant", action="append", default=[], metavar="MODEL=FILE",
                   help="load another variant of a model (conditioners, dit, decoder) than the app set's: a bundle "
                        "file (variants/dit_dynamic_wi4_afp32.tflite) or a precision in the bundle; repeatable")
    g.add_argument("--decoder-precision", help="the same as --variant decoder=PRECISION")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--report", type=Path, help="write timings as JSON here")


def run_generate(args, compare=None) -> int:
    """Generate, write the WAV and the report. `compare(req, noise, audio, latent, report)` adds
    to the report (the build side's `--reference`). Bad input: one `error:` line, exit 2."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        req = Request(args.prompt, args.seconds, args.seed, args.steps, args.threads, _variants(args))
        manifest = load_manifest(args.bundle)
        noise = ping_pong.noises(req.seed, manifest["sampler"]["latent_shape"], max(req.steps, 1))
        audio, latent, times = generate(args.bundle, req, noise, manifest)
        write_wav(args.out, audio, manifest["audio"]["sample_rate"])
        log.info("wrote %s: %d samples x %d channels at %d Hz", args.out, audio.shape[1], audio.shape[0],
                 manifest["audio"]["sample_rate"])
        report = {"models": {m: model_file(manifest, m, req.variants.get(m)) for m in MODELS}, "times_s": times}
        if compare is not None:
            compare(req, noise, audio, latent, report)
        if args.report:
            args.report.write_text(strict_json(report))
    except (BundleError, ValueError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    return 0


def _variants(args) -> dict:
    variants = {"decoder": args.decoder_precision} if args.decoder_precision else {}
    for spec in args.variant:
        model, _, file = spec.partition("=")
        if model not in MODELS or not file:
            raise BundleError(f"--variant {spec}: expected MODEL=FILE with MODEL one of {', '.join(MODELS)}")
        variants[model] = file
    return variants


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m runtime.cli")
    sub = p.add_subparsers(dest="command", required=True)
    generate_arguments(sub.add_parser("generate", help="text → 44.1 kHz stereo WAV from a LiteRT bundle"))
    return run_generate(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
