"""The bundle as its clients load it: the Arm audiogen app addresses every tensor by position
(kleidiai-examples/audiogen/app/audiogen.cpp), strict JSON parsers read the manifest."""
import json
import shutil

from conftest import REPO, doit, executed
from pipeline.core.hashing import file_digest
from pipeline.core.log import read_records
from runtime import client, ping_pong
from runtime.generate import Request, generate, load_manifest
from runtime.parity import metrics

# audiogen.cpp's indices, written out here (not read from runtime/vocab.py): k_t5_ids_in_idx 0,
# k_t5_attnmask_in_idx 1, k_t5_audio_len_in_idx 2; k_t5_crossattn_out_idx 0, k_t5_globalcond_out_idx 2;
# k_dit_crossattn_in_idx 0, k_dit_globalcond_in_idx 1, k_dit_x_in_idx 2, k_dit_t_in_idx 3, out 0;
# the autoencoder's input 0 and output 0. With the dtypes it writes through typed_tensor<T>.
ARM_APP = {
    "conditioners": {"inputs": {0: ("input_ids", "INT64"), 1: ("attention_mask", "INT64"), 2: ("seconds_total", "FLOAT32")},
                     "outputs": {0: ("cross_attention_input", "FLOAT32"), 2: ("global_cond", "FLOAT32")}},
    "dit": {"inputs": {0: ("cross_attn_cond", "FLOAT32"), 1: ("global_cond", "FLOAT32"), 2: ("x", "FLOAT32"),
                       3: ("t", "FLOAT32")}, "outputs": {0: ("output_0", "FLOAT32")}},
    "decoder": {"inputs": {0: ("latent", "FLOAT32")}, "outputs": {0: ("output_0", "FLOAT32")}},
}


def positions(path) -> dict:
    """The file's main subgraph inputs and outputs in order, read from the flatbuffer itself:
    position → (the signature's name of that tensor, its TensorType)."""
    from ai_edge_litert.schema_py_generated import Model, TensorType
    model = Model.GetRootAs(bytearray(path.read_bytes()), 0)
    sig = model.SignatureDefs(0)
    graph = model.Subgraphs(sig.SubgraphIndex())
    types = {v: k for k, v in vars(TensorType).items() if not k.startswith("_")}
    names = {sig.Inputs(i).TensorIndex(): sig.Inputs(i).Name().decode() for i in range(sig.InputsLength())}
    names |= {sig.Outputs(i).TensorIndex(): sig.Outputs(i).Name().decode() for i in range(sig.OutputsLength())}
    return {kind: {i: (names[t], types[graph.Tensors(t).Type()]) for i, t in enumerate(vector)}
            for kind, vector in (("inputs", graph.InputsAsNumpy()), ("outputs", graph.OutputsAsNumpy()))}


def test_every_bundled_file_holds_the_arm_apps_tensors_at_its_positions(default_bundle):
    bundle = default_bundle / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["app"]["files"] == {"conditioners": "conditioners_float32.tflite", "dit": "dit_model.tflite",
                                        "decoder": "autoencoder_model.tflite"}
    assert len(manifest["models"]) == 7  # the app set and every variant
    for name, desc in manifest["models"].items():
        have = positions(bundle / name)
        for kind, want in ARM_APP[desc["model"]].items():
            assert {i: have[kind][i] for i in want} == want, (name, kind)
        # the manifest records the order a client sees
        assert [(r["position"], r["name"]) for r in desc["inputs"]] == [(i, n) for i, (n, _) in have["inputs"].items()]


def test_the_arm_apps_flow_by_position_matches_the_runtime_by_name(default_bundle):
    """The app's flow (runtime/client.py: by position, its XNNPACK flags, FORCE_FP16 on the decoder)
    against this runtime's generate (by name, default flags), same noise."""
    bundle = default_bundle / "bundle"
    manifest = load_manifest(bundle)
    noise = ping_pong.noises(3, manifest["sampler"]["latent_shape"], 8)
    by_name, latent_by_name, _ = generate(bundle, Request("warm analog pad", 10.0, 3, 8), noise, manifest)
    files = {m: bundle / f for m, f in manifest["app"]["files"].items()}
    audio, latent = client.generate(files, bundle / "spiece.model", "warm analog pad", 10.0, noise, 8)
    assert metrics(latent_by_name, latent)["snr_db"] > 60
    # FORCE_FP16 (x86 XNNPACK rounds to fp16): close, not equal
    assert 30 < metrics(by_name, audio)["snr_db"] < 200
    app = json.loads((default_bundle / "reports" / "app.json").read_text())
    assert app["layout"] == "arm" and app["figures"]["audio_snr_db"] >= app["constraints"]["min_audio_snr_db"]


def _swap_inputs(path, a: int, b: int):
    """Swap two positions of the main subgraph's inputs in place (what another converter's order does)."""
    from ai_edge_litert.schema_py_generated import Model
    data = bytearray(path.read_bytes())
    vector = Model.GetRootAs(data, 0).Subgraphs(0).InputsAsNumpy()
    vector[[a, b]] = vector[[b, a]]
    del vector
    path.write_bytes(data)


def test_a_file_breaking_its_contract_fails_the_build_with_one_line(default_bundle, tmp_path):
    bundle = default_bundle / "bundle"
    before = {p: p.read_bytes() for p in (bundle / "manifest.json", bundle / "dit_model.tflite")}
    app_dit = default_bundle / "app" / "dit.tflite"
    shutil.copyfile(app_dit, tmp_path / "dit.tflite")
    # The default profile without the client checks (they read the app set first and fail on it
    # the same way: verify_aarch64 and verify_web call the same check), so collect meets the file.
    unchecked = tmp_path / "default.toml"
    unchecked.write_text((REPO / "profiles" / "default.toml").read_text() + "[targets]\naarch64 = false\nweb = false\n")
    try:
        _swap_inputs(app_dit, 2, 3)  # x and t
        r = doit("collect", profile=unchecked, check=False)
        assert r.returncode != 0
        [line] = [x for x in r.stdout.splitlines() if "error:" in x]
        assert ("collect: error: ContractError: dit_model.tflite: input 2: expects x (float32), the file has t "
                "(float32) (the Arm audiogen app addresses the dit by position; 1 more)") in line, line
        assert {p: p.read_bytes() for p in before} == before
    finally:
        shutil.copyfile(tmp_path / "dit.tflite", app_dit)
    assert executed(doit().stdout) <= {"collect", "attest"}


def test_every_json_the_build_writes_parses_strictly(default_bundle):
    def refuse(constant):
        raise ValueError(f"not RFC 8259 JSON: {constant}")
    files = [p for p in default_bundle.rglob("*.json") if ".xnnpack_cache" not in p.parts]
    assert len(files) > 20
    for p in files:
        json.loads(p.read_text(), parse_constant=refuse)
    # an SNR of identical outputs is written as null, and said to be +inf
    report = json.loads((default_bundle / "reports" / "parity_conditioners.json").read_text())
    nulls = [i for i, c in enumerate(report["checks"]) if c["value"] is None]
    assert nulls and all(report["non_finite"][f"/checks/{i}/value"] == "+inf" for i in nulls)


REPORTS = {"select_app": "app", "verify_web": "parity_web", "verify_aarch64": "parity_aarch64"}


def test_nothing_measured_in_what_stages_and_apps_read(default_bundle):
    manifest = (default_bundle / "bundle" / "manifest.json").read_text()
    app = (default_bundle / "reports" / "app.json").read_text()
    for text in (manifest, app):
        assert not any(k in text for k in ('"warm_s"', '"first_s"', '"load_s"', '"seconds"'))
    for stage, report in REPORTS.items():  # measurements go to the records
        text = (default_bundle / "reports" / f"{report}.json").read_text()
        assert '"seconds"' not in text and '"warm_s"' not in text, stage
    records = {s: json.loads((default_bundle / "logs" / f"{s}.json").read_text())["measured"] for s in REPORTS}
    assert records["select_app"]["app"]["figures"]["warm_s"] > 0
    assert records["verify_web"]["seconds"]["dit_step"] > 0 and records["verify_aarch64"]["seconds"]["generate"] > 0


def test_the_web_client_runs_the_app_set_in_litertjs(default_bundle):
    """stages/verify_web.py: LiteRT.js from npm in headless Chromium, every model and one generation."""
    report = json.loads((default_bundle / "reports" / "parity_web.json").read_text())
    assert report["litertjs"] == "2.5.3" and report["accelerator"] == "wasm"
    assert report["browser"].startswith("Chromium")
    checks = {(c["model"], c["check"]): c for c in report["checks"]}
    assert {m for m, _ in checks} == {"conditioners", "dit", "decoder", "generation"}
    assert all(c["ok"] for c in checks.values())
    assert checks["generation", "8-step audio SNR dB vs PyTorch"]["threshold"] == 20.0  # [app] min_audio_snr_db
    # the file it ran ships in the bundle: int32 ids and mask at the Arm app's positions
    bundle = default_bundle / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    web = manifest["clients"]["web"]
    assert web["files"]["conditioners"] == "conditioners_int32.tflite"
    assert web["files"]["dit"] == "dit_model.tflite"  # the Arm app's DiT and decoder, as they are
    have = positions(bundle / "conditioners_int32.tflite")
    assert have["inputs"] == {0: ("input_ids", "INT32"), 1: ("attention_mask", "INT32"), 2: ("seconds_total", "FLOAT32")}
    assert have["outputs"] == positions(bundle / "conditioners_float32.tflite")["outputs"]


def test_a_constraint_edit_keeping_the_app_set_runs_no_model(default_bundle, tmp_path):
    """Early cutoff: select_app re-runs and writes the same app files and app/chosen.json, so the
    client checks (verify_aarch64, verify_web), which read only those, do not run again."""
    edited = tmp_path / "default.toml"  # the same profile name: the same artifacts folder
    edited.write_text((REPO / "profiles" / "default.toml").read_text() + "[app]\nmax_bytes = 1_000_000_000\n")
    bundle = {p.name: p.read_bytes() for p in (default_bundle / "bundle").glob("*.tflite")}
    assert executed(doit(profile=edited).stdout) == {"select_app", "collect", "attest"}
    assert {p.name: p.read_bytes() for p in (default_bundle / "bundle").glob("*.tflite")} == bundle
    manifest, verified = default_bundle / "bundle" / "manifest.json", default_bundle / "bundle" / "verified.json"
    assert json.loads(verified.read_text())["manifest_xxh3_128"] == file_digest(manifest)
    # Back, the bundle alone first: another manifest, so no attestation until the checks' stage runs.
    # select_app re-runs and, its combinations and timings kept in its memo by the edit's run, runs no model.
    assert executed(doit("collect").stdout) == {"select_app", "collect"}
    assert read_records(default_bundle)["select_app"]["measured"]["app"]["ran"] == {"variants": [], "combinations": []}
    assert not verified.exists()
    assert executed(doit().stdout) == {"attest"}
    assert json.loads(verified.read_text())["manifest_xxh3_128"] == file_digest(manifest)


def test_a_dit_recipe_edit_reruns_only_what_holds_the_dit(default_bundle, tmp_path):
    """Another recipe for the DiT, then back: the DiT's stages and the checks of the app set re-run,
    and inside them only what holds the DiT — select_app's combinations with it, verify_aarch64's
    and verify_web's DiT invokes and generations; the other models' runs come from the stages' memo."""
    shutil.rmtree(default_bundle / "memo", ignore_errors=True)  # whatever earlier tests left: a known start
    edited = tmp_path / "default.toml"
    edited.write_text((REPO / "profiles" / "default.toml").read_text() + '[dit]\nvariants = ["weight_only_wi8_afp32"]\n')
    chain = {"dit_quantize", "verify_dit", "select_app", "verify_aarch64", "verify_web", "collect", "attest"}
    assert executed(doit(profile=edited).stdout) == chain
    assert executed(doit().stdout) == chain  # back: the first recipe's file again, not seen since the memo was emptied
    records = read_records(default_bundle)
    report = json.loads((default_bundle / "reports" / "app.json").read_text())
    dit = report["chosen"]["dit"]
    ran = records["select_app"]["measured"]["app"]["ran"]
    holding = [x["models"] for x in report["combinations"] if x["models"]["dit"] == dit]
    assert len(ran["combinations"]) == len(holding) and all(x in holding for x in ran["combinations"])
    assert f"dit {dit}" in ran["variants"] and "conditioners float16" not in ran["variants"]  # its timing recalled
    emulated = records["verify_aarch64"]["measured"]["ran"]
    assert "generate" in emulated and any(c.startswith("dit") for c in emulated)
    assert all(c.startswith("dit") or c == "generate" for c in emulated)  # no conditioners or decoder invoke
    checks = json.loads((default_bundle / "reports" / "parity_aarch64.json").read_text())["checks"]
    assert {r["model"] for r in checks} == {"conditioners", "dit", "decoder", "generation"}  # recalled ones gated too
    assert all(r["ok"] for r in checks)
    assert records["verify_dit"]["measured"]["ran"] == [dit]  # the float DiT's figures recalled
    assert sorted(records["verify_web"]["measured"]["ran"]) == ["dit", "generate"]  # in the browser: the DiT's
    web = json.loads((default_bundle / "reports" / "parity_web.json").read_text())["checks"]
    assert {r["model"] for r in web} == {"conditioners", "dit", "decoder", "generation"} and all(r["ok"] for r in web)
