"""A cache a team can trust, against a real S3 server (SeaweedFS on loopback) with two identities:
CI writes with the writer's credentials and signs with its key; a laptop reads with the reader's
credentials (the server refuses it any write) and trusts CI's public key. Scenarios a–e of the
trusted-cache issue; the tests share state and run in file order."""
import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import REPO, doit, doit_shared, executed, files_source
from pipeline.cache import signing
from pipeline.core.config import load_profile
from pipeline.core.dag import stages
from pipeline.core.hashing import file_digest
from pipeline.tools.bench import checkout
from pipeline.tools.seaweed import BUCKET, SeaweedS3
from runtime.vocab import LAYOUTS, MANIFEST

PROFILE = "trusted"


@pytest.fixture(scope="module")
def team(tmp_path_factory, default_build):
    tmp = tmp_path_factory.mktemp("trust")
    server = SeaweedS3(tmp / "s3").start()
    keys = tmp / "keys"
    pub = {name: sao_litert("cache", "keygen", name, "--out", str(keys)).stdout.strip() for name in ("ci", "ci2", "other")}
    model = tmp / "model"
    subprocess.run(["cp", "-r", str(default_build / "inputs"), str(model)], check=True)
    clones = {}
    for name in ("ci", "laptop"):
        clone = checkout(tmp / name / "sao-litert")
        (clone / "profiles" / f"{PROFILE}.toml").write_text(files_source(model))
        clones[name] = clone
    yield {"server": server, "keys": keys, "pub": pub, "tmp": tmp, **clones}
    server.stop()
    assert server.proc.poll() is not None


def sao_litert(*args, env=None, check=True):
    r = subprocess.run([sys.executable, "-m", "pipeline.tools.cli", *args], cwd=REPO, env={**os.environ, **(env or {})},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"sao-litert {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}")
    return r


def build(team, who, *args, prefix="shared", trust=(), sign=None, mode=None, reader=None, check=True, env=None):
    """doit in one clone: CI (writer credentials, may sign) or the laptop (reader credentials,
    mode "read" unless `mode` says otherwise)."""
    reader = who == "laptop" if reader is None else reader
    mode = mode or ("read" if reader else None)
    env = {**team["server"].env(reader=reader), "SAO_LITERT_CACHE": f"s3://{BUCKET}/{prefix}",
           "SAO_LITERT_CACHE_TRUSTED_KEYS": ",".join(team["pub"][k] for k in trust), **(env or {})}
    if sign:
        env["SAO_LITERT_CACHE_SIGNING_KEY"] = str(team["keys"] / f"{sign}.key")
    if mode:
        env["SAO_LITERT_CACHE_MODE"] = mode
    return doit(*args, f"profile=profiles/{PROFILE}.toml", env=env, cwd=team[who], check=check)


def out(team, who):
    return team[who] / "artifacts" / PROFILE


def stats(team, who) -> dict:
    return json.loads((out(team, who) / "logs" / "last_build.json").read_text())


def bundle_files(team, who) -> dict:
    return json.loads((out(team, who) / "bundle" / "manifest.json").read_text())["files"]


def warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("warning:")]


def entry_of(team, prefix, stage) -> tuple[str, dict]:
    """(object path, entry) of a stage's action entry in the store."""
    fs = team["server"].fs()
    fs.invalidate_cache()
    for path in fs.find(f"{BUCKET}/{prefix}/ac"):
        entry = json.loads(fs.cat_file(path))
        if entry["stage"] == stage:
            return path, entry
    raise AssertionError(f"no entry for {stage}")


def objects(team, prefix) -> dict:
    fs = team["server"].fs()
    fs.invalidate_cache()
    return {p: i["size"] for p, i in fs.find(f"{BUCKET}/{prefix}", detail=True).items()}


def test_a_forged_entry_is_refused_and_built_locally(team):
    # CI's build: the run's own build of the same model restored (all but collect: another
    # profile name), then pushed to the team's store, signed.
    ran = executed(doit_shared(f"profile=profiles/{PROFILE}.toml", cwd=team["ci"]).stdout)
    build(team, "ci", "cache_push", sign="ci")
    assert "collect" in ran and stats(team, "ci")["bytes_up"] > 0
    path, entry = entry_of(team, "shared", "dit_quantize")
    assert [s["key"] for s in entry["signatures"]] == ["ci"]
    private = (team["keys"] / "ci.key").read_text().split(":", 1)[1].strip()
    fs = team["server"].fs()
    assert not any(private.encode() in fs.cat_file(p) for p in objects(team, "shared"))

    # A writer without the key points dit_quantize's output at another valid blob (the float32 DiT).
    _, convert = entry_of(team, "shared", "dit_convert")
    [(role, good)] = entry["outputs"].items()
    entry["outputs"][role] = next(iter(convert["outputs"].values()))
    fs.pipe_file(path, json.dumps(entry).encode())

    r = build(team, "laptop", trust=["ci"])
    [warning] = warnings(r.stdout)
    assert "dit_quantize" in warning and "ci (invalid signature)" in warning
    s = stats(team, "laptop")
    assert s["stages"]["dit_quantize"] == "ran" and s["misses"] == 1 and s["hits"] == len(ran) - 1
    assert file_digest(out(team, "laptop") / "dit" / "dit_model.tflite") == good["digest"]
    assert bundle_files(team, "laptop") == bundle_files(team, "ci")
    fs.pipe_file(path, json.dumps({**entry, "outputs": {role: good}}).encode())  # put back for the rest


def test_b_unsigned_untrusted_and_rotated_keys(team):
    def checkpoint(**kw):
        doit("forget", "checkpoint", f"profile=profiles/{PROFILE}.toml", cwd=team["laptop"])
        r = build(team, "laptop", "checkpoint", **kw)
        return stats(team, "laptop")["stages"]["checkpoint"], warnings(r.stdout)

    # Entries pushed without a key are misses for a client that trusts keys.
    build(team, "ci", "cache_push", prefix="unsigned")
    state, [warning] = checkpoint(prefix="unsigned", trust=["ci"])
    assert state == "ran" and "checkpoint" in warning and "(unsigned)" in warning
    assert checkpoint(prefix="unsigned") == ("restored", [])  # no trusted keys: today's behaviour

    # A client trusting another key restores nothing (the DiT's first two stages: each says so).
    doit("clean", f"profile=profiles/{PROFILE}.toml", cwd=team["laptop"])
    r = build(team, "laptop", "dit_reauthor", trust=["other"])
    s = stats(team, "laptop")
    assert s["hits"] == 0 and s["stages"] == {"checkpoint": "ran", "dit_reauthor": "ran"}
    assert {w.split(":")[2].strip() for w in warnings(r.stdout)} == {"checkpoint", "dit_reauthor"}
    assert all("signed by ci (untrusted)" in w for w in warnings(r.stdout))
    pt2 = out(team, "ci") / "dit" / "dit.pt2"
    assert file_digest(out(team, "laptop") / pt2.relative_to(out(team, "ci"))) == file_digest(pt2)

    # Rotation: readers trust the old and the new key; CI signs again with the new one; then
    # readers drop the old key.
    assert checkpoint(trust=["ci", "ci2"]) == ("restored", [])
    state, [warning] = checkpoint(trust=["ci2"])
    assert state == "ran" and "signed by ci (untrusted)" in warning
    build(team, "ci", "cache_push", sign="ci2")
    assert [s["key"] for s in entry_of(team, "shared", "checkpoint")[1]["signatures"]] == ["ci", "ci2"]
    assert checkpoint(trust=["ci2"]) == ("restored", [])
    assert checkpoint(trust=["ci"]) == ("restored", [])  # the old signature is still there


def test_c_reader_credentials_in_read_write_mode_write_nothing(team):
    before = objects(team, "shared")
    doit("forget", "checkpoint", f"profile=profiles/{PROFILE}.toml", cwd=team["laptop"])
    r = build(team, "laptop", "checkpoint", prefix="empty", mode="read-write")  # a miss: builds, then uploads
    [warning] = warnings(r.stdout)
    assert "refused a write" in warning and "uploading nothing" in warning
    assert executed(r.stdout) == {"checkpoint"} and r.returncode == 0
    assert objects(team, "empty") == {} and objects(team, "shared") == before


def test_d_gc_under_a_concurrent_restore(team):
    """`cache gc --max-bytes 0` every second while the laptop restores the DiT's chain from the
    store: what gc took first is built locally, nothing restored is half a file."""
    build(team, "ci", "cache_push", prefix="gc", sign="ci")
    before = objects(team, "gc")
    r = sao_litert("cache", "gc", "--store", f"s3://{BUCKET}/gc", "--max-bytes", "0", "--dry-run",
                   env=team["server"].env())
    assert "would remove" in r.stdout and objects(team, "gc") == before  # dry run: nothing deleted

    doit("clean", f"profile=profiles/{PROFILE}.toml", cwd=team["laptop"])
    done, collected = threading.Event(), []

    def collect_garbage():  # a gc a second, leaving the build its cores
        while not done.is_set():
            collected.append(sao_litert("cache", "gc", "--store", f"s3://{BUCKET}/gc", "--max-bytes", "0",
                                        env=team["server"].env()).stdout)
            done.wait(1.0)

    gc = threading.Thread(target=collect_garbage)
    gc.start()
    try:
        build(team, "laptop", "verify_dit", prefix="gc", trust=["ci"], env={"SAO_LITERT_CACHE_DOWNLOAD": "all"})
    finally:
        done.set()
        gc.join()
    assert any(not c.splitlines()[-1].startswith("removed 0 of") for c in collected)  # gc did remove
    chain = [*(out(team, "ci") / "shards").glob("*"), *(out(team, "ci") / "dit").glob("*"),
             out(team, "ci") / "reports" / "parity_dit.json"]
    assert len(chain) > 5
    for f in chain:
        assert file_digest(out(team, "laptop") / f.relative_to(out(team, "ci"))) == file_digest(f), f


def test_e_verify_finds_a_corrupt_blob_and_repair_makes_the_next_build_run_it(team):
    build(team, "ci", "cache_push", prefix="scrub", sign="ci")
    _, entry = entry_of(team, "scrub", "dit_quantize")
    [blob] = entry["outputs"].values()
    fs = team["server"].fs()
    fs.pipe_file(f"{BUCKET}/scrub/cas/{blob['digest']}", b"x" * blob["size"])
    verify = ["cache", "verify", "--store", f"s3://{BUCKET}/scrub"]
    r = sao_litert(*verify, env=team["server"].env(), check=False)
    assert r.returncode == 1
    [line] = [x for x in r.stdout.splitlines() if x.startswith("corrupt blob")]
    assert blob["digest"] in line and "dit_quantize" in line and "collect" in line  # the bundle holds a copy
    sao_litert(*verify, "--repair", env=team["server"].env())
    assert sao_litert(*verify, env=team["server"].env()).returncode == 0

    doit("clean", f"profile=profiles/{PROFILE}.toml", cwd=team["laptop"])
    build(team, "laptop", prefix="scrub", trust=["ci"])
    s = stats(team, "laptop")
    # select_app's app/dit.tflite is the same blob: its entry went with the repair too
    assert {k for k, v in s["stages"].items() if v != "restored"} == {"dit_quantize", "select_app", "collect"}
    assert bundle_files(team, "laptop") == bundle_files(team, "ci")


def entry_at(team, prefix, stage, profile) -> tuple[str, dict]:
    """(object path, entry) of `stage`'s action entry for the build of `profile` in the CI clone
    (its last build's key: the depfile and inputs as they are now), found through the record of
    the stage's log blob the build uploaded."""
    log_digest = file_digest(team["ci"] / "artifacts" / profile / "logs" / f"{stage}.log")
    fs = team["server"].fs()
    fs.invalidate_cache()
    for path in fs.find(f"{BUCKET}/{prefix}/ac"):
        entry = json.loads(fs.cat_file(path))
        if entry["stage"] == stage and entry["log"]["digest"] == log_digest:
            return path, entry
    raise AssertionError(f"no entry for {stage} of {profile}")


def test_f_replayed_rolled_back_copied_and_forged_statements_are_misses(team):
    """Statements signed by the trusted key, moved to answer another question: another profile's
    entry, an older entry of the same stage, another entry's signatures, a forged deps record."""
    fs = team["server"].fs()
    build(team, "ci", sign="ci")
    _, mine = entry_at(team, "shared", "collect", PROFILE)
    # The other profile: the same model, every variant in the bundle; CI builds and signs it.
    other = team["ci"] / "profiles" / "other.toml"
    other.write_text((team["ci"] / "profiles" / f"{PROFILE}.toml").read_text() + "[app]\nbundle_variants = true\n")
    env = {**team["server"].env(), "SAO_LITERT_CACHE": f"s3://{BUCKET}/shared",
           "SAO_LITERT_CACHE_SIGNING_KEY": str(team["keys"] / "ci.key")}
    doit("profile=profiles/other.toml", env=env, cwd=team["ci"])
    other_stats = json.loads((team["ci"] / "artifacts" / "other" / "logs" / "last_build.json").read_text())
    assert {k for k, v in other_stats["stages"].items() if v != "restored"} == {"collect", "attest"}
    _, theirs = entry_at(team, "shared", "collect", "other")
    assert theirs["outputs"][MANIFEST]["digest"] != mine["outputs"][MANIFEST]["digest"]

    def laptop_collect(**kw):
        doit("forget", "collect", f"profile=profiles/{PROFILE}.toml", cwd=team["laptop"])
        r = build(team, "laptop", "collect", trust=["ci"], **kw)
        return stats(team, "laptop")["stages"]["collect"], warnings(r.stdout)

    path = f"{BUCKET}/shared/ac/{mine['key']}.json"
    for forged, why in [(theirs, "another action key"),  # replay: the other profile's bundle
                        ({**mine, "signatures": theirs["signatures"]}, "ci (invalid signature)")]:  # copied
        fs.pipe_file(path, json.dumps(forged).encode())
        state, [warning] = laptop_collect()
        assert state == "ran" and "collect" in warning and why in warning
        assert bundle_files(team, "laptop") == bundle_files(team, "ci")

    # Rollback: collect's code changes (both clones); CI signs the new entry; the store's writer
    # puts the old signed entry at the new key.
    for who in ("ci", "laptop"):
        with open(team[who] / "stages" / "collect.py", "a") as f:
            f.write("# a comment: the stage's key changes\n")
    try:
        assert executed(build(team, "ci", sign="ci").stdout) == {"collect"}
        new_path, new = entry_at(team, "shared", "collect", PROFILE)
        assert new["key"] != mine["key"]
        fs.pipe_file(new_path, json.dumps(mine).encode())
        state, [warning] = laptop_collect()
        assert state == "ran" and f"another action key ('{mine['key']}')" in warning
        fs.pipe_file(new_path, json.dumps(new).encode())
    finally:
        for who in ("ci", "laptop"):
            (team[who] / "stages" / "collect.py").write_text((REPO / "stages" / "collect.py").read_text())
    fs.pipe_file(path, json.dumps(mine).encode())

    # A forged deps record (another file list, the signature kept) steers no lookup: a checkout
    # without its own depfile for the stage finds nothing and builds.
    (out(team, "laptop") / ".deps" / "checkpoint.json").unlink()
    [deps_path] = [p for p in fs.find(f"{BUCKET}/shared/deps")
                   if json.loads(fs.cat_file(p))["files"] == json.loads(
                       (out(team, "ci") / ".deps" / "checkpoint.json").read_text())["files"]
                   and "checkpoint" in " ".join(json.loads(fs.cat_file(p))["files"])]
    record = json.loads(fs.cat_file(deps_path))
    fs.pipe_file(deps_path, json.dumps({**record, "files": record["files"][1:]}).encode())
    doit("forget", "checkpoint", f"profile=profiles/{PROFILE}.toml", cwd=team["laptop"])
    r = build(team, "laptop", "checkpoint", trust=["ci"])
    [warning] = warnings(r.stdout)
    assert "checkpoint" in warning and "deps/" in warning and "ci (invalid signature)" in warning
    assert stats(team, "laptop")["stages"]["checkpoint"] == "ran"
    fs.pipe_file(deps_path, json.dumps(record).encode())


def test_g_two_builders_co_sign_and_a_differing_entry_gets_no_second_signature(team):
    """`cache verify --rebuild` by a second builder (key ci2) over CI's signed build: every stage
    reproducible and co-signed but one whose entry CI's key signed with other bytes (a builder
    that differs); a reader needing two signatures then restores everything else."""
    fs = team["server"].fs()
    build(team, "ci", "cache_push", prefix="cosign", sign="ci")
    doit("forget", "checkpoint", f"profile=profiles/{PROFILE}.toml", cwd=team["laptop"])
    r = build(team, "laptop", "checkpoint", prefix="cosign", trust=["ci", "ci2"], env={"SAO_LITERT_CACHE_SIGNATURES_NEEDED": "2"})
    [warning] = warnings(r.stdout)
    assert "1 of 2 signatures needed" in warning and stats(team, "laptop")["stages"]["checkpoint"] == "ran"

    # CI's collect entry, signed by CI's key, bundles other bytes as the app's DiT (the float32 one).
    path, entry = entry_of(team, "cosign", "collect")
    role = LAYOUTS["arm"].files["dit"]
    quantized = entry_of(team, "cosign", "dit_quantize")[1]["outputs"]["tflite"]["digest"]
    assert entry["outputs"][role]["digest"] == quantized
    good, other = quantized, entry_of(team, "cosign", "dit_convert")[1]["outputs"]["tflite"]
    entry["outputs"][role] = other
    entry["signatures"] = [signing.Signer(team["keys"] / "ci.key").sign(entry)]
    fs.pipe_file(path, json.dumps(entry).encode())

    env = {**os.environ, **team["server"].env(), "SAO_LITERT_CACHE": f"s3://{BUCKET}/cosign",
           "SAO_LITERT_CACHE_SIGNING_KEY": str(team["keys"] / "ci2.key")}
    r = subprocess.run([sys.executable, "-m", "pipeline.tools.cli", "cache", "verify", "--rebuild",
                        "--profile", f"profiles/{PROFILE}.toml"], cwd=team["laptop"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 1, r.stdout[-3000:]
    names = {st.name for st in stages(load_profile(team["laptop"] / "profiles" / f"{PROFILE}.toml"))}
    verdicts = {w[0]: w[1] for line in r.stdout.splitlines() if (w := line.split()) and w[0] in names}
    assert set(verdicts) == names
    assert verdicts.pop("collect") == "differs" and set(verdicts.values()) == {"reproducible"}, r.stdout
    [line] = [x for x in r.stdout.splitlines() if x.startswith("collect")]
    assert f"{role}: entry {other['digest']}, rebuilt {good}" in line
    disagreement = json.loads(fs.cat_file(f"{BUCKET}/cosign/disagree/{entry['key']}.json"))
    assert disagreement["by"]["ci2"]["outputs"] == {role: {"entry": other["digest"], "rebuilt": good}}
    assert [s["key"] for s in entry_of(team, "cosign", "collect")[1]["signatures"]] == ["ci"]
    assert [s["key"] for s in entry_of(team, "cosign", "checkpoint")[1]["signatures"]] == ["ci", "ci2"]
    # --sample 1: one stage rebuilt, the others named as not sampled.
    r = subprocess.run([sys.executable, "-m", "pipeline.tools.cli", "cache", "verify", "--rebuild", "--sample", "1",
                        "--profile", f"profiles/{PROFILE}.toml"], cwd=team["laptop"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampled = {w[0]: w[1] for line in r.stdout.splitlines() if (w := line.split()) and w[0] in names
               and w[1] != "not"}
    assert len(sampled) == 1 and r.returncode == (1 if sampled == {"collect": "differs"} else 0), r.stdout
    assert sampled.popitem()[1] in ("reproducible", "differs")

    doit("clean", f"profile=profiles/{PROFILE}.toml", cwd=team["laptop"])
    r = build(team, "laptop", prefix="cosign", trust=["ci", "ci2"], env={"SAO_LITERT_CACHE_SIGNATURES_NEEDED": "2"})
    s = stats(team, "laptop")
    assert {k for k, v in s["stages"].items() if v != "restored"} == {"collect"} and s["stages"]["collect"] == "ran"
    [warning] = warnings(r.stdout)
    assert "cache: collect:" in warning and "1 of 2 signatures needed" in warning
    assert bundle_files(team, "laptop") == bundle_files(team, "ci")
