"""Stage `verify_web`: the app set as the web client runs it: LiteRT.js (clients/web/: npm
@litertjs/core, pinned by its package-lock.json; `./dev env` installs it) in headless Chromium,
on its wasm (XNNPACK) accelerator.

This process serves the page (clients/web/client.js), the runtime's files, the models and the
inputs from loopback, with the COOP/COEP headers LiteRT.js needs, and starts Chromium on it. The
page runs each model by position (the web contracts in runtime/vocab.py: the conditioners take
int32 ids and mask, stage web_conditioners), then one whole generation — conditioners, the
ping-pong sampler over `steps` DiT calls, the decoder — on noise given here, and posts every output
back. It holds one model at a time, as a web app of this size must (wasm32's 4 GB). Gates: each
model against this runtime on x86 with the same inputs (kernel drift: [targets] web_min_snr_db),
the generation's latent and audio against PyTorch with the same noise ([app] min_latent_snr_db,
min_audio_snr_db: the thresholds select_app chose the set with). The
report (reports/parity_web.json) holds the checks, the browser and what it offered besides wasm;
the seconds the page measured go to the stage's record (logs/verify_web.json, "measured"). What
the page returned is kept in the stage's memo by the files and inputs it ran on: a re-run after
an edit of one model runs that model and the generation in Chromium (record: "ran"), not the rest."""
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from pipeline.core import memo
from pipeline.core.atomic import write_json
from pipeline.core.errors import InputError
from pipeline.core.log import measure
from pipeline.core.parity import ParityError
from runtime import client, ping_pong
from runtime.files import xxh3_128
from runtime.litert import Model
from runtime.parity import metrics
from runtime.vocab import ROLES, WEB_CLIENT, WEB_CONTRACTS
from stages.models.reference import Reference

log = logging.getLogger("sao.verify_web")
WEB = Path(__file__).resolve().parents[1] / "clients" / "web"
CHROMIUM = ("chromium", "chromium-browser")
PAGE = ("index.html", "client.js", "package-lock.json")  # what the browser runs, besides the models
_TIMED = {"generate": ("dit_step", "generate")}  # the page's seconds for each case (else its id)


def run(inputs, outputs, config):
    browser, version = _installed()
    versions = {"litertjs": version, "browser": _version(browser)}
    app = inputs["app"]
    models = {m: Model(app[m]) for m in ROLES}  # this runtime on x86, the web's reference
    for m, model in models.items():  # by position first: a broken order is one line, not a crash in the browser
        client.require_contract(model, m, app[m], WEB_CLIENT, WEB_CONTRACTS)
    ref = Reference.of(inputs["reference"])
    feeds = _feeds(ref, config)
    x86 = {m: models[m].by_position(*feeds[m]) for m in ROLES}
    noise = ping_pong.noises(0, ref.latent_shape, config["steps"])
    ref_audio, ref_latent = ref.generate(config["prompt"], config["seconds"], noise, config["steps"])
    arrays, job = _job(feeds, noise, x86, ref.latent_shape, config)
    done, got = _recalled(browser, versions, job, {f"/model/{m}": Path(app[m]) for m in ROLES}, arrays, config)

    def out(key, like):
        return np.frombuffer(got[key], like.dtype).reshape(like.shape)
    cond_out = [t.name for t in WEB_CONTRACTS["conditioners"].outputs]
    checks = [(m, f"{cond_out[i] if m == 'conditioners' else 'output'} SNR dB vs this runtime (x86)",
               metrics(expected, out(f"{m}/{i}", expected))["snr_db"], config["min_snr_db"])
              for m in ROLES for i, expected in enumerate(x86[m])]
    steps = config["steps"]
    for i, (what, expected, limit) in enumerate((("latent", ref_latent, config["min_latent_snr_db"]),
                                                 ("audio", ref_audio, config["min_audio_snr_db"]))):
        got_i = out(f"generate/{i}", expected.reshape(-1)).reshape(expected.shape)
        checks.append(("generation", f"{steps}-step {what} SNR dB vs PyTorch", metrics(expected, got_i)["snr_db"], limit))
    rows = [{"model": m, "check": c, "value": v, "op": ">=", "threshold": t, "ok": bool(v >= t)} for m, c, v, t in checks]
    for r in rows:
        log.info("%-12s %-46s %10.4g >= %-8.4g %s", r["model"], r["check"], r["value"], r["threshold"],
                 "ok" if r["ok"] else "FAIL")
    write_json(outputs["report"], {
        "client": WEB_CLIENT, **versions, "accelerator": done["accelerator"],
        "webgpu": done["webgpu"], "checks": rows})
    measure("seconds", done["seconds"])
    log.info("LiteRT.js %s, wasm: DiT step %.3f s, whole generation %.2f s with the three loads (WebGPU: %s)",
             version, done["seconds"]["dit_step"], done["seconds"]["generate"], done["webgpu"])
    if failed := [r for r in rows if not r["ok"]]:
        raise ParityError("web client (LiteRT.js) parity failed: " + "; ".join(
            f"{r['model']}: {r['check']} = {r['value']:.4g} (threshold >= {r['threshold']:.4g})" for r in failed))


def _installed() -> tuple[str, str]:
    """(Chromium's path, LiteRT.js's version), or one error line saying what to install."""
    runtime_js = WEB / "node_modules" / "@litertjs" / "core" / "package.json"
    if not runtime_js.is_file():
        raise InputError(None, "targets.web", f"LiteRT.js is not installed ({runtime_js.parent} is missing): run "
                         "`./dev env`, or set [targets] web = false to build without this check")
    browser = next((b for b in map(shutil.which, CHROMIUM) if b), None)
    if browser is None:
        raise InputError(None, "targets.web", "no Chromium on this machine (apt-get install chromium), or set "
                         "[targets] web = false to build without this check")
    return browser, json.loads(runtime_js.read_text())["version"]


def _feeds(ref: Reference, config) -> dict[str, list[np.ndarray]]:
    """Each model's inputs, in its web contract's order: the prompt's, one DiT case, one latent."""
    ids, mask = (a.astype(np.int32) for a in ref.tokenizer(config["prompt"]))
    g = np.random.default_rng(1234)
    dit_case = {k: g.standard_normal(v.shape).astype(np.float32) for k, v in ref.dit_example.items()}
    dit_case["t"] = np.array([ping_pong.schedule(8)[3]], np.float32)
    named = {"conditioners": {"input_ids": ids, "attention_mask": mask,
                              "seconds_total": np.array([config["seconds"]], np.float32)},
             "dit": dit_case,
             "decoder": {"latent": g.standard_normal(ref.latent_shape).astype(np.float32)}}
    return {m: [named[m][t.name] for t in WEB_CONTRACTS[m].inputs] for m in ROLES}


def _job(feeds, noise, x86, latent_shape, config) -> tuple[dict, dict]:
    """What the page fetches: (URL key → array, job.json): each model's invoke, then the generation."""
    arrays = {f"{m}/{i}": a for m in ROLES for i, a in enumerate(feeds[m])}
    arrays |= {f"noise/{i}": n for i, n in enumerate(noise)}
    spec = {k: {"data": f"/in/{k}", "dtype": a.dtype.name, "shape": list(a.shape)} for k, a in arrays.items()}
    steps = config["steps"]
    return arrays, {
        "wasm": "/node_modules/@litertjs/core/wasm/", "accelerator": "wasm",
        "invokes": [{"id": m, "file": f"/model/{m}", "inputs": [spec[f"{m}/{i}"] for i in range(len(feeds[m]))]}
                    for m in ROLES],
        "generate": {"files": {m: f"/model/{m}" for m in ROLES}, "ids": spec["conditioners/0"],
                     "mask": spec["conditioners/1"], "seconds": config["seconds"], "steps": steps,
                     "schedule": [float(t) for t in ping_pong.schedule(steps)],
                     "noise": [spec[f"noise/{i}"] for i in range(len(noise))],
                     "cross_at": client.CROSS_AT, "global_at": client.GLOBAL_AT,
                     "cross_shape": list(x86["conditioners"][client.CROSS_AT].shape),
                     "global_shape": list(x86["conditioners"][client.GLOBAL_AT].shape),
                     "latent_shape": latent_shape}}


def _recalled(browser, versions, job, files, arrays, config) -> tuple[dict, dict]:
    """The page in Chromium for the invokes and the generation the stage's memo does not hold for
    the same model files, inputs, page and browser (pipeline/core/memo.py); the rest recalled with
    the seconds the page measured then: an edit of one model re-runs its invoke and the generation.
    (the page's /done — accelerator, webgpu, seconds —, every output's bytes by "<id>/<position>")."""
    digests = {}

    def file(path: Path):
        return digests.setdefault(path, xxh3_128(path))

    def array(spec):
        return memo.array_key(arrays[spec["data"][len("/in/"):]])
    base = {**versions, "accelerator": job["accelerator"],
            "page": {name: file(WEB / name) for name in PAGE}}
    keys = {inv["id"]: {**base, "model": file(files[inv["file"]]), "inputs": [array(s) for s in inv["inputs"]]}
            for inv in job["invokes"]}
    g = job["generate"]
    keys["generate"] = {**base, "files": {m: file(files[f]) for m, f in g["files"].items()},
                        **{k: g[k] for k in ("seconds", "steps", "schedule", "cross_at", "global_at")},
                        "inputs": [array(s) for s in (g["ids"], g["mask"], *g["noise"])]}
    page_key = {**base, "what": "page"}
    page, got, seconds, todo = memo.recall(page_key), {}, {}, []
    for case, key in keys.items():
        hit, timed = memo.recall_arrays(key), memo.recall(key)
        if hit is None or timed is None:
            todo.append(case)
            continue
        got.update({f"{case}/{i}": a.tobytes() for i, a in hit.items()})
        seconds.update(timed)
    measure("ran", todo)
    if not todo and page is not None:
        return {**page, "seconds": seconds}, got
    job = {**job, "invokes": [inv for inv in job["invokes"] if inv["id"] in todo],
           "generate": g if "generate" in todo else None}
    done, out = _in_browser(browser, job, files, arrays, config["timeout_s"])
    if done.get("error"):
        raise RuntimeError(f"LiteRT.js in Chromium, {done['doing']}: {done['error'].splitlines()[0]}")
    memo.keep(page_key, {k: done[k] for k in ("accelerator", "webgpu")})
    for case in todo:
        memo.keep_arrays(keys[case], {n.split("/", 1)[1]: np.frombuffer(b, np.uint8) for n, b in out.items()
                                      if n.startswith(f"{case}/")})
        memo.keep(keys[case], {k: done["seconds"][k] for k in _TIMED.get(case, (case,))})
    return {**done, "seconds": {**seconds, **done["seconds"]}}, {**got, **out}


def _version(browser: str) -> str:
    return subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip()


class _Handler(SimpleHTTPRequestHandler):
    """The page and LiteRT.js from clients/web/, the models and inputs by URL, outputs by POST."""

    def __init__(self, *args, state, **kwargs):
        self.state = state
        super().__init__(*args, directory=str(WEB), **kwargs)

    def end_headers(self):  # what LiteRT.js's threaded wasm needs (SharedArrayBuffer)
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self):
        s, path = self.state, self.path.split("?")[0]
        body = (s["job"] if path == "/job.json" else s["arrays"][path[4:]].tobytes() if path.startswith("/in/")
                else s["files"][path].read_bytes() if path in s["files"] else None)
        if body is None:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        if self.path == "/done":
            self.state["done"] = json.loads(body)
            self.state["event"].set()
        else:
            self.state["got"][self.path[len("/out/"):]] = body

    def log_message(self, *args):
        pass


SimpleHTTPRequestHandler.extensions_map |= {".js": "text/javascript", ".wasm": "application/wasm"}


def _in_browser(browser, job, files, arrays, timeout_s) -> tuple[dict, dict]:
    """Serve the page on loopback, run it in headless Chromium until it posts /done: (done, outputs)."""
    state = {"job": json.dumps(job).encode(), "files": files, "arrays": arrays, "got": {}, "done": None,
             "event": threading.Event()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, state=state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}",
               f"http://127.0.0.1:{server.server_address[1]}/index.html"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            if not state["event"].wait(timeout_s):
                raise RuntimeError(f"LiteRT.js in Chromium did not finish within {timeout_s} s")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            server.shutdown()
            server.server_close()
    return state["done"], state["got"]
