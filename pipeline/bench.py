"""Benchmark: `./dev bench [PROFILE]` → artifacts/<profile>/reports/bench.json + a table.

No-op doit time, XXH3 checker vs doit's MD5Checker on a 1 GiB file, full build time and peak
stage memory (a fresh copy of the profile), bundle latency per stage vs PyTorch, artifact sizes."""
import json
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


def full_build(profile_path: Path) -> dict:
    """Build a fresh copy of the profile; peak memory is the largest stage 'peak RSS'."""
    name = f"bench_{load_profile(profile_path).name}"
    copy = REPO / "artifacts" / f"{name}.toml"
    copy.write_text(profile_path.read_text())
    shutil.rmtree(REPO / "artifacts" / name, ignore_errors=True)
    try:
        seconds = _doit(f"profile={copy}")
        peaks = {}
        for log in (REPO / "artifacts" / name / "logs").glob("*.log"):
            m = re.findall(r"peak RSS (\d+) MB", log.read_text())
            if m:
                peaks[log.stem] = int(m[-1])
        return {"seconds": seconds, "peak_rss_mb": max(peaks.values()), "peak_stage": max(peaks, key=peaks.get)}
    finally:
        shutil.rmtree(REPO / "artifacts" / name, ignore_errors=True)
        copy.unlink(missing_ok=True)


def latency(profile_path: Path, threads=2) -> dict:
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    from runtime import ping_pong
    from runtime.generate import Request, generate, load_manifest
    from runtime.reference import generate as reference
    bundle = load_profile(profile_path).out / "bundle"
    manifest = load_manifest(bundle)
    req = Request("warm analog synth pad", 10.0, 0, manifest["sampler"]["steps"], threads)
    noise = ping_pong.noises(0, manifest["sampler"]["latent_shape"], req.steps)
    generate(bundle, req, noise)  # warm-up
    lite = generate(bundle, req, noise)[2]
    t0 = time.perf_counter()
    reference(profile_path, req, noise)
    torch_e2e = time.perf_counter() - t0
    lite_e2e = lite["conditioners"] + lite["dit_total"] + lite["decoder"]
    return {"threads": threads, "litert_s": {**lite, "end_to_end": lite_e2e},
            "pytorch_end_to_end_s_incl_load": torch_e2e}


def main(argv):
    profile_path = Path(argv[0] if argv else REPO / "profiles" / "default.toml").resolve()
    profile = load_profile(profile_path)
    _doit(f"profile={profile_path}")  # make sure the profile is built
    noop = statistics.median(_doit(f"profile={profile_path}") for _ in range(3))
    result = {"profile": profile.name, "noop_doit_s": noop, "checker": checker_throughput(),
              "full_build": full_build(profile_path), "latency": latency(profile_path),
              "sizes_bytes": {k: v["bytes"] for k, v in
                              json.loads((profile.out / "bundle" / "manifest.json").read_text())["files"].items()}}
    write_json(profile.out / "reports" / "bench.json", result)
    c, b, lat = result["checker"], result["full_build"], result["latency"]["litert_s"]
    rows = [("no-op doit", f"{noop:.3f} s"),
            ("xxh3 vs md5 (1 GiB)", f"{c['xxh3_gb_s']:.2f} vs {c['md5_gb_s']:.2f} GB/s = {c['ratio']:.1f}x"),
            ("full build", f"{b['seconds']:.1f} s, peak {b['peak_rss_mb']} MB ({b['peak_stage']})"),
            ("LiteRT conditioners", f"{lat['conditioners'] * 1e3:.1f} ms"),
            ("LiteRT DiT step", f"{lat['dit_step'] * 1e3:.1f} ms"),
            ("LiteRT decoder", f"{lat['decoder'] * 1e3:.1f} ms"),
            ("LiteRT end to end", f"{lat['end_to_end'] * 1e3:.1f} ms"),
            ("PyTorch end to end (+load)", f"{result['latency']['pytorch_end_to_end_s_incl_load'] * 1e3:.1f} ms")]
    rows += [(f"size {k}", f"{v / 1e6:.2f} MB") for k, v in result["sizes_bytes"].items()]
    for k, v in rows:
        print(f"{k:<30} {v}")
    print(f"written: {profile.out / 'reports' / 'bench.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
