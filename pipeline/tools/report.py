"""The build report: `python -m pipeline.tools.report PROFILE` → artifacts/<profile>/reports/index.html,
one page with its images inline and its two WAVs beside it; `--graph` writes the DAG picture alone
(reports/dag.svg, dag.png).

What the last build did per stage comes from logs/last_build.json (ran / restored / missed /
failed; absent = up to date), times and peak RSS from the stage logs, parity from reports/, sizes
and toolchain from the manifest, latency from reports/bench.json when a bench has run. The sample
is one fixed request: generated from the bundle (LiteRT) and by the PyTorch modules with the same
noise, written as WAVs, and plotted from those files as read back.

The DAG is laid out by Graphviz's `dot` (Debian's graphviz package; `.ci/run` installs it) and
inlined as SVG, so it scales to the page with readable labels."""
import base64
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import xxhash

from pipeline.cache import remote
from pipeline.cache.client import stats_path
from runtime.vocab import MANIFEST
from pipeline.core.atomic import write_bytes
from pipeline.core.config import load_profile
from pipeline.core.dag import stages
from .bench import STAGES, app_with_timings, measured, stage_figures

log = logging.getLogger("sao.report")
TEMPLATE = Path(__file__).with_name("report.html")
SAMPLE = {"prompt": "warm analog synth pad", "seconds": 10.0, "seed": 0}
COLOURS = {"ran": "#f4a259", "restored": "#5b8def", "up to date": "#8bc34a", "failed": "#e5484d",
           "missed": "#f4a259"}


def statuses(profile) -> dict[str, str]:
    path = stats_path(profile)
    done = json.loads(path.read_text())["stages"] if path.is_file() else {}
    return {s.name: done.get(s.name, "up to date") for s in stages(profile)}


def dag_dot(profile, status: dict, figures: dict) -> str:
    """The DAG in Graphviz's language: stages (coloured by status, with seconds and peak RSS)
    and the files between them, left to right."""
    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def file(f: Path) -> str:  # short, unique: bundle/dit_model.tflite ≠ dit/dit_model.tflite
        return f"{f.parent.name}/{f.name}"
    lines = ["digraph build {", "  rankdir=LR; nodesep=0.15; ranksep=0.35;",
             '  node [fontname="Helvetica", fontsize=11]; edge [color="#999999", arrowsize=0.6];',
             f"  label={q(f'profile {profile.name}: what the last build did')}; labelloc=t;"]
    files = set()
    for st in stages(profile):
        fig = figures.get(st.name)
        label = f"{st.name}\n{status[st.name]}" + (f"\n{fig['seconds']:.1f} s, {fig['peak_rss_mb']:.0f} MB" if fig else "")
        lines.append(f"  {q(st.name)} [shape=box, style=\"rounded,filled\", fillcolor={q(COLOURS[status[st.name]])}, "
                     f"label={q(label)}];")
        for f in st.inputs.values():
            files.add(file(f))
            lines.append(f"  {q(file(f))} -> {q(st.name)};")
        for f in st.outputs.values():
            files.add(file(f))
            lines.append(f"  {q(st.name)} -> {q(file(f))};")
    lines += [f"  {q(f)} [shape=note, style=filled, fillcolor=\"#eeeeee\", fontsize=9];" for f in sorted(files)]
    return "\n".join(lines + ["}"]) + "\n"


def inline_svg(svg: bytes) -> str:
    """An SVG document as an element to put in HTML: from `<svg` on (no XML prolog, doctype or comments)."""
    text = svg.decode()
    return text[text.index("<svg"):]


def render_dot(source: str, fmt: str) -> bytes:
    """Graphviz's `dot` (Debian's graphviz package) lays the graph out."""
    return subprocess.run(["dot", f"-T{fmt}"], input=source.encode(), check=True, capture_output=True).stdout


def png(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def sample(profile, out: Path) -> dict:
    """The fixed request through the bundle and through PyTorch, written as WAVs; what is
    plotted is read back from those files."""
    import soundfile as sf
    from runtime import ping_pong
    from runtime.generate import Request, generate, load_manifest, write_wav
    from runtime.parity import metrics
    from .reference import generate as reference
    manifest = load_manifest(profile.out / "bundle")
    req = Request(SAMPLE["prompt"], SAMPLE["seconds"], SAMPLE["seed"], manifest["sampler"]["steps"], 2)
    noise = ping_pong.noises(req.seed, manifest["sampler"]["latent_shape"], req.steps)
    lite, lite_latent, _ = generate(profile.out / "bundle", req, noise, manifest)
    ref, ref_latent, _ = reference(profile.path, req, noise)
    rate = manifest["audio"]["sample_rate"]
    write_wav(out / "sample_litert.wav", lite, rate)
    write_wav(out / "sample_pytorch.wav", ref, rate)
    a = sf.read(out / "sample_litert.wav", dtype="float32", always_2d=True)[0].T
    b = sf.read(out / "sample_pytorch.wav", dtype="float32", always_2d=True)[0].T
    return {"litert": a, "pytorch": b, "rate": rate, "request": {**SAMPLE, "steps": req.steps},
            "snr_latent_db": metrics(ref_latent, lite_latent)["snr_db"], "snr_audio_db": metrics(b, a)["snr_db"],
            "seconds": a.shape[1] / rate, "digest": xxhash.xxh3_128_hexdigest(np.ascontiguousarray(a).tobytes())}


def audio_figure(s: dict):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = (("LiteRT bundle", s["litert"]), ("PyTorch", s["pytorch"]), ("difference", s["litert"] - s["pytorch"]))
    fig, axes = plt.subplots(3, 2, figsize=(14, 8), sharex="col")
    t = np.arange(s["litert"].shape[1]) / s["rate"]
    for (name, x), (wave, spec) in zip(rows, axes):
        for ch, colour in zip(x, ("#1f77b4", "#ff7f0e")):
            wave.plot(t, ch, lw=0.4, color=colour)
        wave.set_ylabel(name)
        spec.specgram(x[0], Fs=s["rate"], NFFT=1024, noverlap=768, cmap="magma")
        spec.set_ylabel("Hz")
    axes[0][0].set_title("waveform (both channels)")
    axes[0][1].set_title("spectrogram (left channel)")
    axes[-1][0].set_xlabel("s")
    axes[-1][1].set_xlabel("s")
    fig.tight_layout()
    return fig


def latency_figure(bench: dict):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lat = bench["latency"]
    x = np.arange(len(STAGES))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(x - 0.2, [lat["litert_s"][k] for k in STAGES], 0.4, label="LiteRT bundle")
    ax.bar(x + 0.2, [lat["pytorch_s"][k] for k in STAGES], 0.4, label="PyTorch")
    ax.set_xticks(x, STAGES)
    ax.set_yscale("log")
    ax.set_ylabel(f"seconds (warm, {lat['threads']} threads)")
    ax.legend()
    fig.tight_layout()
    return fig


def pareto_figure(app: dict):
    """Every combination of passing variants: app-set MB against warm generation seconds,
    coloured by end-to-end latent SNR; the front joined, the chosen set starred, sets failing
    the constraints hollow."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    combos = app["combinations"]
    fig, ax = plt.subplots(figsize=(9, 5))
    snr = [60.0 if c["latent_snr_db"] is None else min(c["latent_snr_db"], 60.0) for c in combos]  # null: +inf
    norm = matplotlib.colors.Normalize(min(snr), max(max(snr), min(snr) + 1))
    for c, v in zip(combos, snr):
        colour = plt.cm.viridis(norm(v))
        ax.scatter(c["bytes"] / 1e6, c["warm_s"], s=40, color=colour if c["meets"] else "none",
                   edgecolors=colour, linewidths=1.2)
    front = sorted((c for c in combos if c["front"]), key=lambda c: c["bytes"])
    ax.plot([c["bytes"] / 1e6 for c in front], [c["warm_s"] for c in front], color="#999", lw=0.8, zorder=0,
            label="Pareto front (SNR constraints met)")
    chosen = next(c for c in combos if c.get("chosen"))
    ax.scatter(chosen["bytes"] / 1e6, chosen["warm_s"], marker="*", s=260, color="#e5484d", zorder=3,
               label=f"chosen ({app['objective']})")
    if app["constraints"]["max_bytes"]:
        ax.axvline(app["constraints"]["max_bytes"] / 1e6, color="#e5484d", ls="--", lw=0.8, label="max_bytes")
    ax.scatter([], [], facecolors="none", edgecolors="#555", label="fails the constraints")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="end-to-end latent SNR (dB)")
    ax.set_xlabel("app set (MB): the three models the app loads")
    ax.set_ylabel(f"warm generation (s, {app['steps']} steps, {app['threads']} threads)")
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    return fig


def _num(value, fmt: str) -> str:
    """A figure from a strict-JSON report: null stands for +inf there (an SNR of identical outputs)."""
    return "∞" if value is None else fmt % value


def write_graph(profile):
    source = dag_dot(profile, statuses(profile), stage_figures(profile.out))
    out = profile.out / "reports"
    for ext in ("svg", "png"):
        write_bytes(out / f"dag.{ext}", render_dot(source, ext))
    log.info("wrote %s and dag.png", out / "dag.svg")


def write_report(profile):
    import jinja2
    out = profile.out / "reports"
    status, figures = statuses(profile), stage_figures(profile.out)
    manifest = json.loads((profile.out / "bundle" / MANIFEST).read_text())
    sizes = {k: v["bytes"] for k, v in manifest["files"].items()}
    fp32 = profile.out / "dit" / "dit_float32.tflite"
    kept = remote.Registry(profile.out).get(fp32)  # left in the cache by a restore
    if kept or fp32.is_file():
        sizes["dit_float32.tflite (not bundled, for comparison)"] = kept["size"] if kept else fp32.stat().st_size
    bench_file = out / "bench.json"
    bench = json.loads(bench_file.read_text()) if bench_file.is_file() else None
    cache = json.loads(stats_path(profile).read_text()) if stats_path(profile).is_file() else None
    s = sample(profile, out)
    arm, web = out / "parity_aarch64.json", out / "parity_web.json"
    app = app_with_timings(profile.out)
    env = jinja2.Environment(autoescape=True)
    env.filters["num"] = _num
    page = env.from_string(TEMPLATE.read_text()).render(
        profile=profile.name, stages=[(st.name, st.doc, status[st.name], figures.get(st.name)) for st in stages(profile)],
        colours=COLOURS, sizes=sizes, toolchain=manifest["toolchain"], cache=cache,
        parity=[(r.stem[len("parity_"):], c) for r in sorted(out.glob("parity_*.json")) if r != arm
                for c in json.loads(r.read_text())["checks"] if r != web],
        aarch64=json.loads(arm.read_text()) if arm.is_file() and profile.targets.aarch64 else None,
        web={**json.loads(web.read_text()), "seconds": measured(profile.out, "verify_web")["seconds"]}
        if web.is_file() and profile.targets.web else None,
        manifest_digest=xxhash.xxh3_128_hexdigest((profile.out / "bundle" / MANIFEST).read_bytes()),
        dag=inline_svg(render_dot(dag_dot(profile, status, figures), "svg")), audio=png(audio_figure(s)), sample=s,
        latency=png(latency_figure(bench)) if bench else None, bench=bench, stage_keys=STAGES,
        app=app, app_files=manifest["app"]["files"], pareto=png(pareto_figure(app)))
    write_bytes(out / "index.html", page.encode())
    log.info("wrote %s", out / "index.html")


def main(argv):
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    graph_only = "--graph" in argv
    profile = load_profile(next((a for a in argv if not a.startswith("--")), None))
    (write_graph if graph_only else write_report)(profile)


if __name__ == "__main__":
    main(sys.argv[1:])
