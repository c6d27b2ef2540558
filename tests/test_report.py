"""The build report as a person sees it: headless Chromium opens the page (its DOM after scripts
ran, and a screenshot); the stage statuses after a scripted edit; the plotted sample is the WAV
`sao-litert generate` writes."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import xxhash

from conftest import ARTIFACTS, DIT_CHAIN, REPO, doit, edit_dit_tensor, executed, files_profile, shared
from pipeline.core.config import load_profile
from pipeline.core.dag import stages
from pipeline.tools.report import SAMPLE


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have Chromium (.ci/run installs the Debian package)")
        pytest.skip("no Chromium on this machine (apt-get install chromium); CI runs this test")
    return found


def browse(page, *args) -> str:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=15000", *args, page.as_uri()]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True,
                          timeout=120).stdout


@pytest.fixture(scope="module")
def report(default_bundle):
    doit("report")
    return default_bundle / "reports" / "index.html"


def test_a_the_page_in_a_browser(report, default_bundle, tmp_path):
    dom = browse(report, "--dump-dom")
    for s in stages(load_profile(None)):
        assert f'data-stage="{s.name}"' in dom and s.name in dom
    dag = re.search(r'<div id="dag"[^>]*>\s*(<svg\b.*?</svg>)', dom, re.S)  # laid out by Graphviz, inline
    assert dag and 'viewBox="' in dag[1]
    assert all(f"<title>{s.name}</title>" in dag[1] for s in stages(load_profile(None)))
    images = re.findall(r"<img\b[^>]*>", dom)
    assert len(images) >= 2 and any('id="pareto"' in i for i in images)  # the app sets, the sample (, latency)
    manifest = json.loads((default_bundle / "bundle" / "manifest.json").read_text())
    assert 'id="parity-web"' in dom  # the LiteRT.js checks
    assert xxhash.xxh3_128_hexdigest((default_bundle / "bundle" / "manifest.json").read_bytes()) in dom
    rows = set(re.findall(r'<tr data-model="(\w+)" data-variant="(\w+)"', dom))  # every variant, a row
    assert rows == {(m, v) for m, vs in manifest["app"]["variants"].items() for v in vs}
    for img in images:
        w, h = (re.search(rf'data-natural-{k}="(\d+)"', img) for k in ("width", "height"))
        assert w and h and int(w[1]) > 0 and int(h[1]) > 0, img[:120]
    audio = json.loads((default_bundle / "bundle" / "manifest.json").read_text())["audio"]
    durations = [float(d) for d in re.findall(r'<audio\b[^>]*data-duration="([\d.]+)"', dom)]
    assert len(re.findall(r"<audio\b", dom)) == len(durations) == 2
    assert durations == pytest.approx([audio["samples"] / audio["sample_rate"]] * 2, abs=1e-3)

    shot = tmp_path / "report.png"
    browse(report, f"--screenshot={shot}", "--window-size=1400,4000")
    from PIL import Image
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50  # a rendered page, not a blank one


def test_c_plotted_waveform_is_the_wav_generate_writes(report, default_bundle, tmp_path):
    manifest = json.loads((default_bundle / "bundle" / "manifest.json").read_text())
    wav = tmp_path / "generate.wav"
    subprocess.run([sys.executable, "-m", "runtime.cli", "generate", "--bundle", str(default_bundle / "bundle"),
                    "--prompt", SAMPLE["prompt"], "--seconds", str(SAMPLE["seconds"]), "--seed", str(SAMPLE["seed"]),
                    "--steps", str(manifest["sampler"]["steps"]), "--out", str(wav)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    generated = sf.read(wav, dtype="float32", always_2d=True)[0].T
    beside = sf.read(report.parent / "sample_litert.wav", dtype="float32", always_2d=True)[0].T
    np.testing.assert_array_equal(beside, generated)
    plotted = re.search(r'data-samples-xxh3="([0-9a-f]+)"', report.read_text())[1]
    assert plotted == xxhash.xxh3_128_hexdigest(np.ascontiguousarray(generated).tobytes())


def test_b_report_marks_exactly_the_stages_that_ran(tmp_path, default_build, scratch_profile):
    profile, model = files_profile(tmp_path, default_build, scratch_profile)
    doit(profile=profile, env=shared())  # the default's stages: restored from the run's cache
    edit_dit_tensor(model / "model.ckpt")
    ran = executed(doit(profile=profile).stdout)
    assert ran == {"checkpoint", *DIT_CHAIN, "collect", "attest"}
    doit("report", profile=profile)
    page = (ARTIFACTS / profile.stem / "reports" / "index.html").read_text()
    marked = dict(re.findall(r'data-stage="([^"]+)" data-status="([^"]+)"', page))
    assert {s for s, status in marked.items() if status == "ran"} == ran
    assert {status for s, status in marked.items() if s not in ran} == {"up to date"}
