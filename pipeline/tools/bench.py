"""Benchmark: `./dev bench [PROFILE]` → artifacts/<profile>/reports/bench.json + a table.

No-op doit time, XXH3 checker vs doit's MD5Checker on a 1 GiB file, full build time with the
default command (plain doit, a fresh copy of the profile), peak stage memory and peak memory of
all processes together, `doit cache_push` of that build into a loopback SeaweedFS cache, a
fresh checkout restoring everything from that cache, the default profile on a 2-worker Dask
LocalCluster vs serial, the app set's latency per stage vs PyTorch (what `generate` loads: the
manifest's app set), every bundled model's load / first / warm invoke (decoders also vs PyTorch:
ratio, SNR), the app set select_app chose and the Pareto front of its choice, artifact sizes."""
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
import tomllib
from pathlib import Path

from runtime.files import read_json
from runtime.vocab import MANIFEST
from pipeline.core.atomic import write_json
from pipeline.cache.client import stats_path
from pipeline.core.config import DEFAULT_PROFILE, REPO, Profile, artifacts_root, load_profile
from pipeline.core.log import read_records
from pipeline.core.procs import child_env
from .seaweed import BUCKET, SeaweedS3

log = logging.getLogger("sao.bench")


# Runs a command and writes the peak RSS (kB) of its process tree's largest process to argv[1].
_PEAK = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
         "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(rc)")


def _doit(*args, cwd=REPO, env=None, peak: dict | None = None):
    """Seconds of one doit run; with `peak`, also its largest process's peak RSS and the peak of
    all its processes' RSS together (sampled every 0.2 s), in MB."""
    env = child_env(**(env or {}))
    with tempfile.NamedTemporaryFile() as rss:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _PEAK, rss.name, sys.executable, "-m", "doit", *args],
                                cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total = _sample_total_rss(proc)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        if peak is not None:
            peak["peak_rss_mb"] = int(Path(rss.name).read_text()) / 1024
            peak["peak_total_rss_mb"] = total / 1e6
    return seconds


def _sample_total_rss(proc) -> int:
    """Wait for proc; the largest sum of RSS over it and its descendants seen while it ran."""
    import psutil
    top, root = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        total = 0
        for p in [root, *root.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        top = max(top, total)
        time.sleep(0.2)
    return top


# What `./dev env` sets up in a clone beside its files (ignored by git): linked, not made again.
SET_UP = (".aarch64", "clients/web/node_modules")


def checkout(dst: Path) -> Path:
    """A copy of this working tree (tracked and untracked-but-not-ignored files), like a clone,
    with this checkout's aarch64 userland and LiteRT.js linked in as `./dev env` would make them."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           stdout=subprocess.PIPE).stdout.decode().split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
    for d in SET_UP:
        if (REPO / d).is_dir():
            (dst / d).parent.mkdir(parents=True, exist_ok=True)
            (dst / d).symlink_to(REPO / d)
    return dst


def cache_restore(profile_file: Path, built_out: Path, cache_env: dict, download: str) -> dict:
    """A fresh checkout, same profile, same cache: everything restored (`download`: "toplevel"
    leaves what only other stages read in the store, "all" downloads it). Wall time, the peak RSS
    of the doit process (restores run no stage process), bytes moved, and bundle equality."""
    with tempfile.TemporaryDirectory(dir=artifacts_root()) as d:
        clone = checkout(Path(d) / "checkout")
        shutil.copyfile(profile_file, clone / "profiles" / profile_file.name)
        peak = {}
        seconds = _doit(f"profile=profiles/{profile_file.name}", cwd=clone, peak=peak,
                        env={**cache_env, "SAO_LITERT_CACHE_DOWNLOAD": download})
        out = clone / "artifacts" / built_out.name
        stats = json.loads((out / "logs" / "last_build.json").read_text())
        same = (json.loads((out / "bundle" / MANIFEST).read_text())["files"]
                == json.loads((built_out / "bundle" / MANIFEST).read_text())["files"])
    return {"download": download, "seconds": seconds, **peak, "hits": stats["hits"], "misses": stats["misses"],
            "bytes_down": stats["bytes_down"], "bytes_left_in_cache": stats["bytes_left_in_cache"],
            "bundle_equal": same}


def cluster_build(cache_env: dict) -> dict:
    """The default profile built on a 2-worker LocalCluster (separate processes, one thread each)
    through the cache, against a local serial build (`doit -n 1`): wall times and their ratio, and
    per stage the Dask path's overhead: the client's span from submit to restored, less the stage
    process's own run time on the worker (inputs in, outputs out, scheduling)."""
    from distributed import Client, LocalCluster
    from pipeline.cluster.worker import EVENT_TOPIC
    d = Path(tempfile.mkdtemp(dir=artifacts_root()))
    serial, clustered = d / "bench_serial.toml", d / "bench_cluster.toml"
    for p in (serial, clustered):
        shutil.copyfile(DEFAULT_PROFILE, p)
        shutil.rmtree(load_profile(p).out, ignore_errors=True)
    try:
        serial_s = _doit(f"profile={serial}", "-n", "1")
        aws = {k: v for k, v in cache_env.items() if k.startswith("AWS_")}
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                          resources={"MEM": 4e9}, env=aws, local_directory=str(d / "workers")) as cluster, \
                Client(cluster) as client:
            env = {**aws, "SAO_LITERT_CACHE": f"s3://{BUCKET}/bench-cluster",
                   "SAO_LITERT_SCHEDULER": cluster.scheduler_address}
            cluster_s = _doit(f"profile={clustered}", env=env)
            ran = {m["stage"]: m["run_s"] for _, m in client.get_events(EVENT_TOPIC)}
        record = read_json(stats_path(load_profile(clustered)))
        if set(ran) != set(record["stages"]):
            raise RuntimeError(f"the cluster build ran {sorted(ran)} on workers; the client says {record['stages']}, "
                               f"warnings {record['warnings']}")
        times = record["times"]
        overhead = {s: round(t1 - t0 - ran[s], 2) for s, (t0, t1) in times.items() if s in ran}
        return {"profile": "default", "workers": 2, "serial_s": serial_s, "cluster_s": cluster_s,
                "cluster_over_serial": cluster_s / serial_s, "overhead_s": overhead,
                "overhead_median_s": statistics.median(overhead.values())}
    finally:
        for p in (serial, clustered):
            shutil.rmtree(load_profile(p).out, ignore_errors=True)
        shutil.rmtree(d, ignore_errors=True)


def checker_throughput(size=1 << 30) -> dict:
    from doit.dependency import MD5Checker
    from pipeline.orchestration.checker import XXH3Checker
    from pipeline.core import hashing
    with tempfile.TemporaryDirectory(dir=artifacts_root()) as d:
        f = Path(d) / "blob"
        with open(f, "wb") as out:
            chunk = os.urandom(64 << 20)
            for _ in range(size // len(chunk)):
                out.write(chunk)
        res = {}
        for name, checker in (("xxh3_128", XXH3Checker()), ("md5", MD5Checker())):
            checker.get_state(str(f), None)  # warm the page cache
            hashing._known.clear()  # time the hashing, not this process's digest memo
            t0 = time.perf_counter()
            checker.get_state(str(f), None)
            res[name] = size / (time.perf_counter() - t0) / 1e9
    return {"file_gib": size / (1 << 30), "xxh3_gb_s": res["xxh3_128"], "md5_gb_s": res["md5"],
            "ratio": res["xxh3_128"] / res["md5"]}


def stage_figures(out: Path) -> dict:
    """Seconds and peak RSS of every stage that ran, from its record (logs/<stage>.json), and its
    share of all stages' seconds together (stages run side by side: the shares, not the wall time)."""
    ran = {n: r for n, r in read_records(out).items() if r["outcome"] == "ran"}
    total = sum(r["seconds"] for r in ran.values()) or 1.0
    return {n: {"seconds": r["seconds"], "share": r["seconds"] / total, "peak_rss_mb": r["peak_rss_mb"]}
            for n, r in ran.items()}


def _edited(settings: dict, variants: list[str]) -> dict[str, dict]:
    """The edits a user makes to a built profile (its file's `settings`; `variants`: the DiT's, as
    the profile resolved them): a constraint that keeps any app set ([app] max_bytes = 100 GB), and
    another recipe for the DiT's main variant ([dit] variants, the first two swapped, or
    weight_only_wi8_afp32 alone)."""
    dit = settings.get("dit", {})
    swapped = [*variants[1:2], *variants[:1], *variants[2:]] if len(variants) > 1 else ["weight_only_wi8_afp32"]
    return {"constraint": {**settings, "app": {**settings.get("app", {}), "max_bytes": 10**11}},
            "dit_recipe": {**settings, "dit": {**dit, "variants": swapped}}}


def _toml(settings: dict) -> str:
    """Profile settings as TOML: tables of strings, numbers, booleans, lists and inline tables."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a TOML basic string
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
    top = [f"{k} = {value(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    tables = [f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in t.items())
              for name, t in settings.items() if isinstance(t, dict)]
    return "\n".join(top) + "\n" + "".join(tables)


def edit_scenarios(profile: Profile) -> dict:
    """Each edit of `_edited` on the built profile: seconds of plain `doit` to the verified bundle,
    its exit status (an edit may make a check fail: measured all the same) and the stages it ran
    (inside the stages that keep a memo: what they ran, not recalled); then the edit undone, timed
    the same way. The profile is put back."""
    copy = profile.path
    original, last_build = copy.read_text(), stats_path(profile)

    def build() -> dict:
        last_build.unlink(missing_ok=True)  # written by a build that runs a stage
        t0, status = time.perf_counter(), 0
        try:
            _doit(f"profile={copy}")
        except subprocess.CalledProcessError as e:
            status = e.returncode
        seconds = time.perf_counter() - t0
        stages = read_json(last_build)["stages"] if last_build.exists() else {}
        ran = sorted(s for s, how in stages.items() if how.startswith("ran"))
        # Inside the stages that keep a memo (pipeline/core/memo.py): what they ran, not recalled.
        records = read_records(profile.out)
        inside = {"select_app": records.get("select_app", {}).get("measured", {}).get("app", {}).get("ran"),
                  **{s: records.get(s, {}).get("measured", {}).get("ran") for s in ("verify_aarch64", "verify_web")}}
        return {"seconds": seconds, "exit": status, "ran": ran,
                "failed": sorted(s for s, how in stages.items() if how == "failed"),
                "inside": {s: v for s, v in inside.items() if s in ran}}
    result = {}
    try:
        for name, settings in _edited(tomllib.loads(original), profile.dit.variants).items():
            copy.write_text(_toml(settings))
            edit = build()
            copy.write_text(original)
            result[name] = {**edit, "undone": build()}
    finally:
        copy.write_text(original)
    return result


def latency(profile_path: Path, threads=2) -> dict:
    """Per-stage seconds of the LiteRT bundle and the PyTorch modules on the same inputs, noise and
    thread count (each run twice; the second, warm run counts), and LiteRT/PyTorch ratios."""
    from runtime import ping_pong
    from runtime.generate import Request, generate, load_manifest
    from .reference import generate as reference
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


def first_generation(profile_path: Path, threads=2) -> dict:
    """`sao-litert generate … --reference` in a fresh process, as a user runs it: LiteRT and PyTorch
    seconds from process start to audio (load + every first call), without the bundle's XNNPACK
    weight cache and then with it (the second start), and their ratios."""
    from runtime.generate import WEIGHT_CACHE
    bundle = load_profile(profile_path).out / "bundle"
    shutil.rmtree(bundle / WEIGHT_CACHE, ignore_errors=True)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in ("no_weight_cache", "weight_cache"):
            report = Path(tmp) / f"{run}.json"
            subprocess.run([sys.executable, "-m", "pipeline.tools.cli", "generate", "--bundle", str(bundle), "--prompt",
                            "warm analog synth pad", "--threads", str(threads), "--out", str(Path(tmp) / "x.wav"),
                            "--reference", str(profile_path), "--report", str(report)],
                           cwd=REPO, check=True, stdout=subprocess.DEVNULL)
            r = read_json(report)
            lite, ref = (sum(t[k] for k in ("load", "conditioners", "dit_total", "decoder"))
                         for t in (r["times_s"], r["reference_times_s"]))
            result[run] = {"litert_s": lite, "pytorch_s": ref, "litert_over_pytorch": lite / ref,
                           "snr_db": r["snr_db"], "litert_times_s": r["times_s"]}
    return result


def model_latency(profile_path: Path, threads=2, warm_runs=3) -> dict:
    """Every model of the bundle in a fresh interpreter: load, first invoke and warm invoke (median
    of `warm_runs` more) in seconds, on seeded inputs of its signature (floats unit-variance, ints
    1), and its size. Every decoder precision also runs on the same latent as the PyTorch decoder
    (same threads): warm ratio and audio SNR against it."""
    import numpy as np
    import torch
    from runtime.litert import Model
    from runtime.parity import metrics
    from stages.models.decoder import from_shard as build
    torch.set_num_threads(threads)
    out_dir = load_profile(profile_path).out
    manifest = json.loads((out_dir / "bundle" / MANIFEST).read_text())
    model, example = build(out_dir / "shards" / "decoder.safetensors")
    rng = np.random.default_rng(7)
    latent = rng.standard_normal(example["latent"].shape).astype(np.float32)
    with torch.no_grad():
        torch_s = []
        for _ in range(1 + warm_runs):
            t0 = time.perf_counter()
            ref = model(torch.from_numpy(latent)).numpy()
            torch_s.append(time.perf_counter() - t0)
    result = {"pytorch_decoder_warm_s": statistics.median(torch_s[1:]), "models": {}}
    app = {manifest["files"][n]["xxh3_128"] for n in manifest["app"]["models"]}
    for name, m in manifest["models"].items():
        if not m["app"] and manifest["files"][name]["xxh3_128"] in app:
            continue  # variants/ also holds the app set's files
        feed = {i["name"]: (rng.standard_normal(i["shape"]) if "float" in i["dtype"] else np.ones(i["shape"]))
                .astype(i["dtype"]) for i in m["inputs"]}
        if m["model"] == "decoder":
            feed = {"latent": latent}
        row = {"precision": m.get("precision"), "bytes": manifest["files"][name]["bytes"]}
        with tempfile.TemporaryDirectory() as cache:
            # Interpreter; then CompiledModel packing its weight cache; then one mapping it.
            for how, folder in (("", None), ("cache_written_", cache), ("cache_read_", cache)):
                t0 = time.perf_counter()
                lite = Model(out_dir / "bundle" / name, threads,
                             folder and (Path(folder), manifest["files"][name]["xxh3_128"]))
                load, runs = time.perf_counter() - t0, []
                if folder and lite.compiled is None:
                    break  # CompiledModel cannot take this model's inputs: the Interpreter runs it
                for _ in range(1 + (warm_runs if not how else 1)):
                    t0 = time.perf_counter()
                    got = lite(**feed)
                    runs.append(time.perf_counter() - t0)
                row.update({f"{how}load_s": load, f"{how}first_s": runs[0]})
                row.update({} if how else {"warm_s": statistics.median(runs[1:])})
        if m["model"] == "decoder":
            row.update(warm_over_pytorch=row["warm_s"] / result["pytorch_decoder_warm_s"],
                       snr_db_vs_pytorch=metrics(ref, next(iter(got.values())))["snr_db"])
        result["models"][name] = row
    return result


def _edit_line(edit: dict) -> str:
    """What one edit's build ran, for people: the stages, what the memo stages ran of their work,
    and a failure."""
    sel, arm, web = (edit["inside"].get(s) for s in ("select_app", "verify_aarch64", "verify_web"))
    return (f"{edit['seconds']:.1f} s, ran {', '.join(edit['ran']) or 'nothing'}"
            + (f" (select_app: {len(sel['combinations'])} combinations, {len(sel['variants'])} variants timed)"
               if sel else "")
            + (f" (verify_aarch64: {len(arm)} emulated runs{': ' * bool(arm)}{', '.join(arm)})"
               if arm is not None else "")
            + (f" (verify_web: {len(web)} runs in Chromium{': ' * bool(web)}{', '.join(web)})"
               if web is not None else "")
            + (f"; FAILED (exit {edit['exit']}: {', '.join(edit['failed'])})" if edit["exit"] else ""))


def measured(out: Path, stage: str) -> dict:
    """What a stage measured in its last run (its record's "measured"; pipeline/core/log.py)."""
    return read_records(out).get(stage, {}).get("measured", {})


def app_with_timings(out: Path) -> dict:
    """select_app's facts (reports/app.json) with this build's timings (its record) merged in, for
    people: the report page and the bench."""
    app = read_json(out / "reports" / "app.json")
    timed = measured(out, "select_app")["app"]
    app["figures"] |= timed["figures"]
    for m, vs in app["variants"].items():
        for v, fig in vs.items():
            fig |= timed["variants"][m].get(v, {})
    by_set = {tuple(t["models"].values()): t for t in timed["combinations"]}
    for c in app["combinations"]:
        c |= by_set[tuple(c["models"].values())]
    return app


def app_set(out: Path) -> dict:
    """select_app's choice (reports/app.json): the chosen set's figures and the Pareto front."""
    app = app_with_timings(out)
    keep = ("models", "bytes", "warm_s", "first_s", "latent_snr_db", "audio_snr_db", "meets")
    return {"objective": app["objective"], "constraints": app["constraints"], "chosen": app["chosen"],
            "figures": app["figures"], "combinations": len(app["combinations"]),
            "front": [{k: c[k] for k in keep} for c in app["combinations"] if c["front"]]}


def main(argv):
    """Everything is measured on a fresh copy of the profile (artifacts/bench_<name>), built once."""
    profile_path = Path(argv[0] if argv else REPO / "profiles" / "default.toml").resolve()
    profile = load_profile(profile_path)
    # Beside the original, so relative source paths still resolve; named after the file.
    copy = profile_path.with_name(f"bench_{profile.name}.toml")
    copy.write_text(re.sub(r"(?m)^name\s*=.*$", "", profile_path.read_text()))
    bench = load_profile(copy)
    shutil.rmtree(bench.out, ignore_errors=True)
    store = tempfile.TemporaryDirectory(dir=artifacts_root())
    server = SeaweedS3(Path(store.name)).start()
    cache_env = {**server.env(), "SAO_LITERT_CACHE": f"s3://{BUCKET}/bench"}
    try:
        log.info("building %s from scratch with plain doit (progress: %s)", copy.name, bench.out / "logs")
        build_peak = {}
        build_s = _doit(f"profile={copy}", peak=build_peak)
        log.info("built in %.0f s; pushing it into a loopback S3 cache …", build_s)
        push_s = _doit("cache_push", f"profile={copy}", env=cache_env)
        uploaded = read_json(stats_path(bench))["bytes_up"]
        log.info("pushed in %.0f s; a fresh checkout restores it from the cache …", push_s)
        restore = {**cache_restore(copy, bench.out, cache_env, "toplevel"), "bytes_up_by_push": uploaded,
                   "push_s": push_s, "download_all": cache_restore(copy, bench.out, cache_env, "all")}
        for r in (restore, restore["download_all"]):
            r["over_build"] = r["seconds"] / build_s
        stages = stage_figures(bench.out)
        peak = max(stages, key=lambda k: stages[k]["peak_rss_mb"])
        log.info("restored in %.1f s; the default profile on a 2-worker Dask cluster vs serial …", restore["seconds"])
        dask = cluster_build(cache_env)
        server.stop()  # now: the latency figures below must not share the cores with it
        log.info("no-op doit, file checkers, latency …")
        noop = statistics.median(_doit(f"profile={copy}") for _ in range(3))
        result = {"profile": profile.name, "noop_doit_s": noop, "edits": edit_scenarios(bench),
                  "checker": checker_throughput(),
                  "full_build": {"seconds": build_s, "command": "doit (default parallelism, memory admission)",
                                 "peak_rss_mb": stages[peak]["peak_rss_mb"], "peak_stage": peak,
                                 "peak_total_rss_mb": build_peak["peak_total_rss_mb"], "stages": stages},
                  "dask": dask,
                  "cache_restore": restore,
                  "parity": {r.stem: {c["check"]: c["value"] for c in read_json(r)["checks"]}
                             for r in sorted((bench.out / "reports").glob("parity_*.json"))},
                  "latency": latency(copy),
                  "first_generation": first_generation(copy),
                  "models": model_latency(copy),
                  "app": app_set(bench.out),
                  "sizes_bytes": _sizes(bench.out)}
        write_json(bench.out / "reports" / "bench.json", result)
        _report(copy, bench.out, profile.out)
    except subprocess.CalledProcessError:
        sys.exit(f"bench: building {copy.name} failed; its artifacts and logs are kept in {bench.out}")
    finally:
        copy.unlink(missing_ok=True)
        server.stop()
        store.cleanup()
    shutil.rmtree(bench.out)
    write_json(profile.out / "reports" / "bench.json", result)
    for k, v in _rows(result):
        log.info("%-56s %s", k, v)
    log.info("written: %s and index.html beside it", profile.out / "reports" / "bench.json")



def _sizes(out: Path) -> dict[str, int]:
    return {**{k: v["bytes"] for k, v in json.loads((out / "bundle" / MANIFEST).read_text())["files"].items()},
            "dit_float32.tflite (not bundled)": (out / "dit" / "dit_float32.tflite").stat().st_size}


def _report(profile_file: Path, out: Path, into: Path):
    """The build report of the bench's build, copied beside the profile's own reports."""
    log.info("build report …")
    subprocess.run([sys.executable, "-m", "pipeline.tools.report", str(profile_file)], cwd=REPO, check=True)
    (into / "reports").mkdir(parents=True, exist_ok=True)
    for f in ("index.html", "sample_litert.wav", "sample_pytorch.wav"):
        shutil.copyfile(out / "reports" / f, into / "reports" / f)

def _rows(result: dict) -> list[tuple[str, str]]:
    """The summary a person reads: (what, figure)."""
    c, b, lat = result["checker"], result["full_build"], result["latency"]
    rows = [("no-op doit", f"{result['noop_doit_s']:.3f} s"),
            ("xxh3 vs md5 (1 GiB)", f"{c['xxh3_gb_s']:.2f} vs {c['md5_gb_s']:.2f} GB/s = {c['ratio']:.1f}x"),
            ("full build, plain doit",
             f"{b['seconds']:.1f} s, peak {b['peak_rss_mb']} MB ({b['peak_stage']}), all processes "
             f"{b['peak_total_rss_mb']:.0f} MB"),
            ("default profile: 2-worker Dask cluster vs doit -n 1", "{cluster_s:.1f} s vs {serial_s:.1f} s = "
             "{cluster_over_serial:.2f}; Dask overhead per stage median {overhead_median_s:.2f} s".format(**result["dask"])),
            *((f"fresh checkout restoring all from the cache, download {r['download']}",
               "{seconds:.1f} s = {over_build:.3f} of the build, peak {peak_rss_mb:.0f} MB, {hits} hits / "
               "{misses} misses, {bytes_down:.3g} B down, {bytes_left_in_cache:.3g} B left in the cache, "
               "bundle equal: {bundle_equal}".format(**r))
              for r in (result["cache_restore"], result["cache_restore"]["download_all"]))]
    rows += [(f"{k} LiteRT / PyTorch", f"{lat['litert_s'][k] * 1e3:.1f} / {lat['pytorch_s'][k] * 1e3:.1f} ms "
              f"= {lat['litert_over_pytorch'][k]:.2f}") for k in STAGES]
    rows += [(f"first generation in a fresh process, {k}", "LiteRT {litert_s:.2f} s / PyTorch {pytorch_s:.2f} s = "
              "{litert_over_pytorch:.2f}; latent SNR {snr_db[latent]:.1f} dB".format(**v))
             for k, v in result["first_generation"].items()]
    mod = result["models"]
    rows += [(f"{k} ({v['precision']}) load / first / warm", f"{v['load_s']:.2f} / {v['first_s']:.3f} / "
              f"{v['warm_s']:.3f} s, {v['bytes'] / 1e6:.1f} MB" + (
                  f"; with its weight cache load + first {v['cache_read_load_s'] + v['cache_read_first_s']:.3f} s"
                  if "cache_read_load_s" in v else "") + (
                  f"; {v['warm_over_pytorch']:.2f} of PyTorch {mod['pytorch_decoder_warm_s']:.2f} s, "
                  f"SNR {v['snr_db_vs_pytorch']:.1f} dB" if "snr_db_vs_pytorch" in v else ""))
             for k, v in mod["models"].items()]
    app = result["app"]
    rows += [("app set ({objective})".format(**app), " + ".join(app["chosen"].values()) +
              ": {bytes:.4g} B, warm {warm_s:.3f} s, latent {latent_snr_db:.2f} dB, audio {audio_snr_db:.2f} dB"
              .format(**app["figures"]))]
    rows += [("Pareto front: " + " + ".join(c["models"].values()), "{bytes:.4g} B, warm {warm_s:.3f} s, latent "
              "{latent_snr_db:.2f} dB, audio {audio_snr_db:.2f} dB, meets the constraints: {meets}".format(**c))
             for c in app["front"]]
    rows += [(f"edit: {k}", f"{_edit_line(v)}; undone {_edit_line(v['undone'])}") for k, v in result["edits"].items()]
    rows += [(f"stage {k}", f"{v['seconds']:.1f} s ({v['share']:.0%} of all stages' seconds), peak "
              f"{v['peak_rss_mb']} MB") for k, v in b["stages"].items()]
    rows += [(f"{r[7:]}: {k}", f"{v:.4g}") for r, checks in result["parity"].items() for k, v in checks.items()]
    rows += [(f"size {k}", f"{v / 1e6:.2f} MB") for k, v in result["sizes_bytes"].items()]
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    main(sys.argv[1:])
