"""The `sao-litert` command.
`sao-litert generate …`: prompt → WAV from a bundle (runtime/cli.py), `--reference PROFILE` also
runs the PyTorch modules of that built profile with the same noise and reports the SNR.
`sao-litert init …`: a profile for a downloaded model (pipeline/tools/init_profile.py).
`sao-litert build-many PROFILE…`: several profiles in one command (pipeline/cluster/many.py)."""
import argparse
import logging
import sys
from pathlib import Path

from runtime.cli import generate_arguments, run_generate

log = logging.getLogger("sao.generate")


def _parser():
    p = argparse.ArgumentParser(prog="sao-litert")
    sub = p.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="text → 44.1 kHz stereo WAV from a LiteRT bundle")
    generate_arguments(g)
    g.add_argument("--reference", metavar="PROFILE", type=Path,
                   help="also run the PyTorch modules of this built profile with the same noise; report SNR")
    i = sub.add_parser("init", help="write profiles/NAME.toml for a downloaded model (folders or Hugging Face cache)")
    i.add_argument("name")
    i.add_argument("--model", required=True, help="SAOS folder or repo id (stabilityai/stable-audio-open-small)")
    i.add_argument("--t5", required=True, help="T5 folder or repo id (google-t5/t5-base)")
    i.add_argument("--revision", help="cached revision of --model (default: main)")
    i.add_argument("--t5-revision", help="cached revision of --t5 (default: main)")
    i.add_argument("--force", action="store_true", help="replace an existing profile")
    i.add_argument("--dir", type=Path, help="write NAME.toml into this folder (default: the checkout's profiles/)")
    b = sub.add_parser("build-many", help="build several profiles (at once on a Dask cluster)")
    b.add_argument("profiles", nargs="+", type=Path)
    b.add_argument("-n", "--jobs", type=int, help="stages at once per profile (doit -n)")
    return p


def _reference(profile: Path):
    """The `--reference` comparison: PyTorch with the same request and noise, SNRs into the report."""
    def compare(req, noise, audio, latent, report):
        from runtime.parity import metrics
        from .reference import generate as reference
        ref_audio, ref_latent, report["reference_times_s"] = reference(profile, req, noise)
        report["snr_db"] = {"latent": metrics(ref_latent, latent)["snr_db"], "audio": metrics(ref_audio, audio)["snr_db"]}
        log.info("LiteRT vs PyTorch: latent SNR %.1f dB, audio SNR %.1f dB",
                 report["snr_db"]["latent"], report["snr_db"]["audio"])
    return compare


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "generate":
        return run_generate(args, _reference(args.reference) if args.reference else None)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if args.command == "init":
        from .init_profile import main as init
        return init(args.name, args.model, args.t5, args.revision, args.t5_revision, args.force, args.dir)
    from pipeline.cluster.many import main as build_many
    return build_many(args.profiles, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
