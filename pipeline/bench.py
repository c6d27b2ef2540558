"""Benchmark: `./dev bench [PROFILE]` → artifacts/<profile>/reports/bench.json + a table.

No-op doit time, XXH3 checker vs doit's MD5Checker on a 1 GiB file, full build time and peak
stage memory (a fresh copy of the profile), bundle latency per stage vs PyTorch, artifact sizes."""
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .atomic import write_json
from .config import REPO, load_profile

log = logging.getLogger("sao.bench")


def _doit(*args):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "doit", *args], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def checker_throughput(size=1 << 30) -> dict:
    from doit.dependency import MD5Checker
    from .hashing import XXH3Checker
    with tempfile.TemporaryDirectory(dir=REPO / "artifacts") as d:
        f = Path(d) / "blob"
        with open(f, "wb") as out:
            chunk = os.urandom(64 << 20)
            for _ in range(size // len(chunk)):
                out.write(chunk)
        res = {}
        for name, checker in (("xxh3_128", XXH3Checker()), ("md5", MD5Checker())):
            checker.get_state(str(f), None)  # warm the page cache
            t0 = time.perf_counter()
            checker.get_state(str(f), None)
            res[name] = size / (time.perf_counter() - t0) / 1e9
    return {"file_gib": size / (1 << 30), "xxh3_gb_s": res["xxh3_128"], "md5_gb_s": res["md5"],
            "ratio": res["xxh3_128"] / res["md5"]}


def stage_figures(out: Path) -> dict:
    """Seconds and peak RSS of every stage, from the 'done in' line of its log."""
    figures = {}
    for log in sorted((out / "logs").glob("*.log")):
        m = re.findall(r"done in ([\d.]+) s, peak RSS (\d+) MB", log.read_text())
        if m:
            figures[log.stem] = {"seconds": float(m[-1][0]), "peak_rss_mb": int(m[-1][1])}
    return figures


def latency(profile_path: Path, threads=2) -> dict:
    """Per-stage seconds of the LiteRT bundle and the PyTorch modules on the same inputs, noise and
    thread count (each run twice; the second, warm run counts), and LiteRT/PyTorch ratios."""
    from runtime import ping_pong
    from runtime.generate import Request, generate, load_manifest
    from runtime.reference import generate as reference
    bundle = load_profile(profile_path).out / "bundle"
    manifest = load_manifest(bundle)
    req = Request("warm analog synth pad", 10.0, 0, manifest["sampler"]["steps"], threads)
    noise = ping_pong.noises(0, manifest["sampler"]["latent_shape"], req.steps)
    lite = [generate(bundle, req, noise, manifest)[2] for _ in range(2)][-1]
    torch_ = [reference(profile_path, req, noise)[2] for _ in range(2)][-1]
    for t in (lite, torch_):
        t["end_to_end"] = t["conditioners"] + t["dit_total"] + t["decoder"]
    return {"threads": threads, "steps": req.steps, "litert_s": lite, "pytorch_s": torch_,
            "litert_over_pytorch": {k: lite[k] / torch_[k] for k in STAGES}}


STAGES = ("conditioners", "dit_step", "decoder", "end_to_end")


def main(argv):
    """Everything is measured on a fresh copy of the profile (artifacts/bench_<name>), built once."""
    profile_path = Path(argv[0] if argv else REPO / "profiles" / "default.toml").resolve()
    profile = load_profile(profile_path)
    # Beside the original, so relative source paths still resolve; named after the file.
    copy = profile_path.with_name(f"bench_{profile.name}.toml")
    copy.write_text(re.sub(r"(?m)^name\s*=.*$", "", profile_path.read_text()))
    bench = load_profile(copy)
    shutil.rmtree(bench.out, ignore_errors=True)
    try:
        log.info("building %s from scratch (progress: %s)", copy.name, bench.out / "logs")
        build_s = _doit(f"profile={copy}")
        stages = stage_figures(bench.out)
        peak = max(stages, key=lambda k: stages[k]["peak_rss_mb"])
        log.info("built in %.0f s; no-op doit, file checkers, latency …", build_s)
        noop = statistics.median(_doit(f"profile={copy}") for _ in range(3))
        result = {"profile": profile.name, "noop_doit_s": noop, "checker": checker_throughput(),
                  "full_build": {"seconds": build_s, "peak_rss_mb": stages[peak]["peak_rss_mb"], "peak_stage": peak,
                                 "stages": stages},
                  "parity": {r.stem: {c["check"]: c["value"] for c in json.loads(r.read_text())["checks"]}
                             for r in sorted((bench.out / "reports").glob("parity_*.json"))},
                  "latency": latency(copy),
                  "sizes_bytes": {**{k: v["bytes"] for k, v in
                                     json.loads((bench.out / "bundle" / "manifest.json").read_text())["files"].items()},
                                  "dit_float32.tflite (not bundled)": (bench.out / "dit" / "dit_float32.tflite").stat().st_size}}
    except subprocess.CalledProcessError:
        sys.exit(f"bench: building {copy.name} failed; its artifacts and logs are kept in {bench.out}")
    finally:
        copy.unlink(missing_ok=True)
    shutil.rmtree(bench.out)
    write_json(profile.out / "reports" / "bench.json", result)
    c, b, lat = result["checker"], result["full_build"], result["latency"]
    rows = [("no-op doit", f"{noop:.3f} s"),
            ("xxh3 vs md5 (1 GiB)", f"{c['xxh3_gb_s']:.2f} vs {c['md5_gb_s']:.2f} GB/s = {c['ratio']:.1f}x"),
            ("full build", f"{b['seconds']:.1f} s, peak {b['peak_rss_mb']} MB ({b['peak_stage']})")]
    rows += [(f"{k} LiteRT / PyTorch", f"{lat['litert_s'][k] * 1e3:.1f} / {lat['pytorch_s'][k] * 1e3:.1f} ms "
              f"= {lat['litert_over_pytorch'][k]:.2f}") for k in STAGES]
    rows += [(f"stage {k}", f"{v['seconds']:.1f} s, peak {v['peak_rss_mb']} MB") for k, v in b["stages"].items()]
    rows += [(f"{r[7:]}: {k}", f"{v:.4g}") for r, checks in result["parity"].items() for k, v in checks.items()]
    rows += [(f"size {k}", f"{v / 1e6:.2f} MB") for k, v in result["sizes_bytes"].items()]
    for k, v in rows:
        log.info("%-56s %s", k, v)
    log.info("written: %s", profile.out / "reports" / "bench.json")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    main(sys.argv[1:])
