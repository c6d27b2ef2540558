"""Action entries: what the store says an earlier run of a stage produced. `ac/<action key>.json`
names every output's blob (by role), the log's and the record's; `deps/<bare key>.json` the
project files that stage's code was, so a checkout that never ran the stage can compute the
key. Blobs are written first, the deps record next, the entry last: a killed upload leaves no
entry. Entries hold no machine name, path or credential; a writer with a signing key signs them
(signing.py). `used/<action key>` is touched when a writer restores an entry: the last use that
`cache gc` goes by (maintenance.py)."""
import os
import platform
import time
from datetime import datetime, timezone

from pipeline.core import toolchain
from pipeline.core.hashing import file_digest
from pipeline.core.keys import StageKey, code_digests
from pipeline.core.log import record_of
from . import signing
from .store import Store

FORMAT = 2
_TEST_PAUSE = "SAO_LITERT_CACHE_TEST_PAUSE_S"  # test hook: sleep between blobs and entry (kill test)


def find(store: Store, stage, key: StageKey, trusted: dict | None = None,
         needed: int = 1) -> tuple[StageKey, dict] | str | None:
    """(key, action entry) of an earlier identical run, None, or why the lookup cannot be
    trusted. The key hashes the code as this checkout has it, or, for a stage never run here, the
    file list its producer recorded (`deps/`); with `trusted` keys, only a list they signed."""
    candidates, refused = [key], None
    if seen := store.get_json("deps", key.bare):
        if trusted and (why := signing.check_deps(seen, key.bare, trusted, needed)):
            refused = f"deps/{key.bare}.json not signed by enough trusted keys ({why})"
        else:
            candidates.append(key.with_code(seen["files"]))
    for k in candidates:
        if (entry := store.get_json("ac", k.action)) is not None:
            return k, entry
    return refused


def usable(store: Store, stage, key: StageKey, trusted: dict | None = None,
           needed: int = 1) -> tuple[tuple[StageKey, dict] | None, str | None]:
    """The lookup a restore makes: ((key, entry), None) for an entry it may use; (None, why) for
    one it must not (a deps record or entry not signed by `needed` trusted keys, an entry that
    answers another question); (None, None) when the store holds nothing for this key."""
    found = find(store, stage, key, trusted, needed)
    if found is None or isinstance(found, str):
        return None, found
    if why := unbound(stage, *found):
        return None, why
    if trusted and (why := signing.check(found[1], trusted, needed)):
        return None, f"entry not signed by enough trusted keys ({why})"
    return found, None


def unbound(stage, key: StageKey, entry: dict) -> str | None:
    """Why `entry`, found at ac/<key.action>.json, does not answer that lookup, or None. A signed
    entry stays valid wherever it is copied: one written for another action key (another
    profile's build, or this stage's older inputs: a rollback) or another stage, copied here by
    anyone who may write the store, must be a miss, not another model's bundle."""
    if not isinstance(entry, dict):
        return f"entry ac/{key.action}.json is malformed"
    if entry.get("key") != key.action:
        return f"entry ac/{key.action}.json answers another action key ({entry.get('key')!r}): a replayed entry"
    if entry.get("stage") != stage.name:
        return f"entry ac/{key.action}.json is stage {entry.get('stage')!r}'s: a replayed entry"
    if not isinstance(entry.get("outputs"), dict) or set(entry["outputs"]) != set(stage.outputs):
        return f"entry ac/{key.action}.json names outputs {sorted(entry.get('outputs') or {})}, not this stage's"
    return None


def files(stage, log_file) -> dict:
    """role → path of everything an entry names: the outputs, the log and the record."""
    return {**stage.outputs, "log": log_file, "record": record_of(log_file)}


def publish(store: Store, stage, key: StageKey, log_file, reg=None, replace=(),
            signer: signing.Signer | None = None) -> int:
    """Upload a stage's outputs, log and record: blobs first (create-only; digests in `replace`
    are re-uploaded; the files `reg` says a restore left in the store are not on disk), then the
    deps record, then the action entry, last, signed by `signer` (the signatures of other keys
    on an existing entry for the same outputs are kept). Returns the bytes sent."""
    entry_files, sent = {}, 0
    for role, path in files(stage, log_file).items():
        if reg and (rec := reg.get(path)):  # kept in the store: the blob must be there already
            if store.blob_size(rec["digest"]) != rec["size"]:
                raise FileNotFoundError(f"{path} is not on disk and its blob is not in this store")
            entry_files[role] = rec
            continue
        digest = file_digest(path)
        sent += store.put_blob(path, digest, replace=digest in replace)
        entry_files[role] = {"digest": digest, "size": os.path.getsize(path)}
    if pause := float(os.environ.get(_TEST_PAUSE, 0)):
        time.sleep(pause)
    deps = {"files": key.code, "signatures": []}
    if signer is not None:
        old = store.get_json("deps", key.bare) or {}
        kept = old.get("signatures") if old.get("files") == key.code else []
        deps["signatures"] = signing.add_signature(kept, signer.sign_deps(key.bare, key.code))
    store.put_json("deps", key.bare, deps)
    log_blob, record_blob = entry_files.pop("log"), entry_files.pop("record")
    entry = {
        "format": FORMAT, "stage": stage.name, "key": key.action, "outputs": entry_files, "log": log_blob,
        "record": record_blob, "code": code_digests(key.code), "toolchain": toolchain.versions(stage.tools),
        "host": {"platform": platform.platform(), "python": platform.python_version()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "signatures": []}
    if signer is not None:
        old = store.get_json("ac", key.action) or {}
        # The same outputs signed by other keys before (a key rotation, a co-signer): keep those.
        kept = old.get("signatures") if _same_answer(old, entry) else []
        entry["signatures"] = signing.add_signature(kept, signer.sign(entry))
    store.put_json("ac", key.action, entry)
    return sent


def _same_answer(a: dict, b: dict) -> bool:
    try:
        return signing.fingerprint(a) == signing.fingerprint(b)
    except (KeyError, TypeError, AttributeError):
        return False


def cosign(store: Store, key: StageKey, outputs: dict[str, str], signer: signing.Signer) -> str | None:
    """A builder that rebuilt `key`'s action and got `outputs` (role → digest) adds its signature
    to the entry (and to the deps record when its code was the same files); when its bytes
    differ it signs nothing and records the disagreement in `disagree/<action key>.json` (who,
    which outputs, both digests). Returns None when it co-signed, else the disagreement line."""
    entry = store.get_json("ac", key.action)
    theirs = {role: b["digest"] for role, b in (entry or {}).get("outputs", {}).items()}
    if differ := {r: {"entry": theirs.get(r), "rebuilt": d} for r, d in outputs.items() if theirs.get(r) != d}:
        record = store.get_json("disagree", key.action) or {"stage": key.stage.name, "key": key.action, "by": {}}
        record["by"][signer.name] = {"outputs": differ,
                                     "entry_signed_by": [s.get("key") for s in entry.get("signatures") or []]}
        store.put_json("disagree", key.action, record)
        return "; ".join(f"{r}: entry {d['entry']}, rebuilt {d['rebuilt']}" for r, d in differ.items())
    entry["signatures"] = signing.add_signature(entry.get("signatures"), signer.sign(entry))
    store.put_json("ac", key.action, entry)
    deps = store.get_json("deps", key.bare)
    if deps is not None and deps.get("files") == key.code:
        deps["signatures"] = signing.add_signature(deps.get("signatures"), signer.sign_deps(key.bare, key.code))
        store.put_json("deps", key.bare, deps)
    return None
