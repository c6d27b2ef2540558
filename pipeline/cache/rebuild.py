"""`sao-litert cache verify --rebuild`: rebuild stored actions and compare bytes, as `nix build
--check` does. In a scratch folder, stage by stage in the table's order: the stage's key from the
inputs the store holds (the outputs of the entries before it, the source files here), its entry
looked up as a restore would, then (for every stage, or a random `sample` of them) the stage run
from exactly those inputs through pipeline.core.runner and its outputs compared with the entry's.
Each action is checked on its own (the stages after one use the store's outputs, not the rebuilt
ones), so the checks run side by side, admitted as a build's stages are. With a signing key the
rebuilder co-signs what it reproduced and records what it did not (entries.cosign): `[cache]
signatures_needed = 2` then trusts what two builders agree on."""
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.core import keys, resources
from pipeline.core.config import REPO, Profile
from pipeline.core.dag import stages
from pipeline.core.hashing import file_digest
from pipeline.core.keys import StageKey
from pipeline.core.procs import child_env, die_with_parent
from . import entries, signing
from .store import Store

log = logging.getLogger("sao.cache")


def rebuild(profile: Profile, store: Store, sample: int | None = None, signer: signing.Signer | None = None,
            trusted: dict | None = None, needed: int = 1) -> dict[str, dict]:
    """stage → {"verdict": "reproducible" | "differs" | "failed" | "not in store" | "untrusted" |
    "inputs not in store" | "not sampled", "outputs": {role: {"entry", "rebuilt"}} for "differs"}."""
    table = stages(profile)
    chosen = {s.name for s in table}
    if sample is not None and sample < len(table):
        chosen = set(random.sample(sorted(chosen), sample))
    digest_of: dict[Path, str] = {}  # every output path the store answered → its digest
    found: dict[str, tuple] = {}
    report: dict[str, dict] = {}
    for stage in table:
        inputs = {}
        for role, path in stage.inputs.items():
            if path in digest_of:
                inputs[role] = digest_of[path]
            elif not _under(path, profile.out) and path.is_file():
                inputs[role] = file_digest(path)
        if len(inputs) < len(stage.inputs):
            report[stage.name] = {"verdict": "inputs not in store"}
            continue
        key = StageKey(stage, keys.read_depfile(keys.depfile(profile.out, stage.name)), inputs)
        hit, why = entries.usable(store, stage, key, trusted, needed)  # as a restore looks it up
        if hit is None:
            report[stage.name] = {"verdict": "untrusted" if why else "not in store", "why": why}
            continue
        found[stage.name] = hit
        for role, path in stage.outputs.items():
            digest_of[path] = hit[1]["outputs"][role]["digest"]
    # The checks are independent (each from the store's inputs): as many at once as the build's
    # admission lets run (a core each, within the memory their stages need).
    with tempfile.TemporaryDirectory(prefix="sao-rebuild-") as scratch, \
            ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="rebuild") as pool:
        checks = {s.name: pool.submit(_admitted, s, *found[s.name], profile, store, Path(scratch), signer)
                  for s in table if s.name in found and s.name in chosen}
        for stage in table:
            if stage.name in found:
                report[stage.name] = checks[stage.name].result() if stage.name in checks else {"verdict": "not sampled"}
    for name, r in report.items():
        detail = "; ".join(f"{role}: entry {d['entry']}, rebuilt {d['rebuilt']}"
                           for role, d in r.get("outputs", {}).items()) or r.get("why") or ""
        log.info("%-20s %s%s", name, r["verdict"], f" ({detail})" if detail else "")
    return report


def _under(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def _admitted(stage, key: StageKey, entry: dict, profile: Profile, store: Store, scratch: Path,
              signer: signing.Signer | None) -> dict:
    with resources.admission().admit(stage.name, resources.need(stage, profile)):
        return _check(stage, key, entry, profile, store, scratch, signer)


def _check(stage, key: StageKey, entry: dict, profile: Profile, store: Store, scratch: Path,
           signer: signing.Signer | None) -> dict:
    """Run one stage from the store's inputs; compare (and co-sign or record a disagreement)."""
    here = scratch / stage.name
    in_paths = {}
    for role, path in stage.inputs.items():
        if not _under(path, profile.out):
            in_paths[role] = path
            continue
        local = here / "in" / Path(path).resolve().relative_to(profile.out.resolve())
        local.parent.mkdir(parents=True, exist_ok=True)
        want = key.inputs[role]
        if store.get_blob(want, local) != want:
            return {"verdict": "failed", "why": f"input {role}: blob {want} is corrupt in the store"}
        in_paths[role] = local
    out_paths = {role: here / "out" / Path(p).resolve().relative_to(profile.out.resolve())
                 for role, p in stage.outputs.items()}
    job = here / "job.json"
    here.mkdir(parents=True, exist_ok=True)
    job.write_text(json.dumps(stage.moved(in_paths, out_paths).job(here / "log" / f"{stage.name}.log",
                                                                  here / "deps.json", profile.path, "rebuild")))
    with open(here / "console.txt", "wb") as console:
        rc = subprocess.call([sys.executable, "-m", "pipeline.core.runner", "--job", str(job)], cwd=REPO,
                             env=child_env(PYTHONUNBUFFERED="1"), stdout=console, stderr=subprocess.STDOUT,
                             preexec_fn=die_with_parent)
    if rc != 0:
        return {"verdict": "failed", "why": f"the stage exited with {rc}; its log: {here / 'log'}"}
    rebuilt = {role: file_digest(p) for role, p in out_paths.items()}
    code = keys.read_depfile(here / "deps.json")
    shutil.rmtree(here, ignore_errors=True)
    if signer is not None:
        # Co-signed only under the key its own run gives: the code it recorded must be the entry's.
        mine = key.with_code(code)
        if mine.action != key.action:
            diff = sorted({f"+{f}" for f in set(code) - set(key.code)} | {f"-{f}" for f in set(key.code) - set(code)})
            return {"verdict": "failed", "why": "the stage's code here is not the entry's: " + ", ".join(diff)
                    if diff else "the stage's code here is not the entry's (same files, other contents)"}
        entries.cosign(store, key, rebuilt, signer)
    theirs = {role: b["digest"] for role, b in entry["outputs"].items()}
    differ = {r: {"entry": theirs[r], "rebuilt": d} for r, d in rebuilt.items() if theirs[r] != d}
    return {"verdict": "differs", "outputs": differ} if differ else {"verdict": "reproducible"}
