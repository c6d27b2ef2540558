"""The `sao-litert` command.
`sao-litert generate …`: prompt → WAV from a bundle (runtime/cli.py), `--reference PROFILE` also
runs the PyTorch modules of that built profile with the same noise and reports the SNR.
`sao-litert init …`: a profile for a downloaded model (pipeline/tools/init_profile.py).
`sao-litert build-many PROFILE…`: several profiles in one command (pipeline/cluster/many.py).
`sao-litert cache keygen|gc|verify [--rebuild]`: signing keys, the shared store's upkeep and rebuild
checks (pipeline/cache/).
`sao-litert arm-worker SCHEDULER`: an emulated Arm Dask worker for the aarch64 check (pipeline/core/aarch64.py)."""
import argparse
import logging
import os
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
    i.add_argument("--aarch64-budget-s", type=float, default=900.0,
                   help="emulated seconds the aarch64 check may plan for this model (default 900): sized to fit")
    b = sub.add_parser("build-many", help="build several profiles (at once on a Dask cluster)")
    b.add_argument("profiles", nargs="+", type=Path)
    b.add_argument("-n", "--jobs", type=int, help="stages at once per profile (doit -n)")
    c = sub.add_parser("cache", help="signing keys and upkeep of the shared build cache")
    cs = c.add_subparsers(dest="cache_command", required=True)
    k = cs.add_parser("keygen", help="write NAME.key (private, 0600) and NAME.pub; print the public line")
    k.add_argument("name")
    k.add_argument("--out", type=Path, required=True, help="folder for the two files")
    store_args = argparse.ArgumentParser(add_help=False)
    store_args.add_argument("--store", help="the store's URL (default: $SAO_LITERT_CACHE, else the profile's [cache] url)")
    store_args.add_argument("--profile", type=Path, default=Path("profiles/default.toml"),
                            help="profile whose [cache] section names the store and its options")
    gc = cs.add_parser("gc", parents=[store_args], help="remove least recently used entries, then unreferenced blobs")
    limit = gc.add_mutually_exclusive_group(required=True)
    limit.add_argument("--max-bytes", type=_bytes, help="keep at most this much (e.g. 20G, 500M, 123456)")
    limit.add_argument("--older-than", type=float, metavar="DAYS", help="remove entries unused for DAYS days")
    gc.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    v = cs.add_parser("verify", parents=[store_args], help="re-hash blobs; list corrupt or missing ones and their entries")
    v.add_argument("--sample", type=int, metavar="N", help="check N random blobs instead of all")
    v.add_argument("--repair", action="store_true", help="remove the entries that point at bad blobs")
    v.add_argument("--rebuild", action="store_true",
                   help="rebuild --profile's stored actions (or --sample N of them) from the store's inputs and "
                        "compare bytes; co-sign what matches when a signing key is set")
    a = sub.add_parser("arm-worker", help="an emulated Arm Dask worker (qemu, the aarch64 userland) that runs the "
                                         "aarch64 check: the resource aarch64, nothing else")
    a.add_argument("scheduler", help="tcp://HOST:PORT")
    a.add_argument("--cpu", help="the Arm CPU qemu emulates (as [targets] aarch64_cpu, and its default)")
    return p


def _bytes(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    t = text.strip().upper().removesuffix("B")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a byte count (e.g. 20G, 500M, 123456)") from None


def _cache(args) -> int:
    from pipeline.cache import maintenance, signing
    from pipeline.cache.client import keys_of, settings
    from pipeline.cache.store import Store, redact
    from pipeline.core.config import load_profile
    from pipeline.core.errors import InputError
    try:
        if args.cache_command == "keygen":
            print(signing.keygen(args.name, args.out))
            return 0
        rebuilding = getattr(args, "rebuild", False)
        profile = load_profile(args.profile) if args.profile.is_file() or rebuilding else None
        cfg = settings(profile) if profile else None
        # A rebuild co-signs with the signing key whatever the build's mode: it writes signatures only.
        signer, trusted = keys_of(cfg.model_copy(update={"mode": "read-write"}), profile) if rebuilding else (None, {})
        url = args.store or os.environ.get("SAO_LITERT_CACHE") or (cfg.url if cfg else None)
        options = cfg.options if cfg else {}
        if not url:
            raise InputError(args.profile if cfg else "--store", "cache.url" if cfg else None,
                             "no store: give --store URL, set $SAO_LITERT_CACHE or [cache] url in --profile")
    except InputError as e:
        sys.stderr.write(f"error: {e}\n")
        return InputError.exit_code
    try:
        store = Store(url, options)
        if args.cache_command == "gc":
            maintenance.gc(store, args.max_bytes, args.older_than, args.dry_run)
            return 0
        if rebuilding:
            from pipeline.cache.rebuild import rebuild
            report = rebuild(profile, store, args.sample, signer, trusted, cfg.signatures_needed)
            return 1 if any(r["verdict"] in ("differs", "failed") for r in report.values()) else 0
        found = maintenance.verify(store, args.sample, args.repair)
        return 1 if (found["corrupt"] or found["missing"]) and not args.repair else 0
    except Exception as e:  # noqa: BLE001 - the store failed: one line, no traceback
        msg = redact(str(e)).splitlines()[0] if str(e) else ""
        sys.stderr.write(f"error: cache {args.cache_command}: store {redact(url)}: {type(e).__name__}: {msg}\n")
        return 1


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
        return init(args.name, args.model, args.t5, args.revision, args.t5_revision, args.force, args.dir,
                    args.aarch64_budget_s)
    if args.command == "cache":
        return _cache(args)
    if args.command == "arm-worker":
        from pipeline.core import aarch64, toolchain
        from pipeline.core.config import TargetsSettings
        if toolchain.aarch64_versions() is None:
            log.error("error: the aarch64 userland is not set up (%s is missing): run `./dev aarch64`",
                      toolchain.aarch64_userland())
            return 2
        cmd, env = aarch64.worker(args.scheduler, args.cpu or TargetsSettings().aarch64_cpu)
        os.execve(cmd[0], cmd, env)
    from pipeline.cluster.many import main as build_many
    return build_many(args.profiles, args.jobs)


if __name__ == "__main__":
    sys.exit(main())
