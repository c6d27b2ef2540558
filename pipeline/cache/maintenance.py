"""Keeping a shared store in shape: `sao-litert cache gc` and `sao-litert cache verify`.

Last use: a store keeps no access times, so a client that restores an entry read-write touches
`used/<action key>.json`; an entry's last use is the newer of that object's and the entry's own
modification time, both on the store's clock. A read-only client's restores leave no trace (it
may not write): the uses that count are the writers' (CI's builds).

gc removes entries, least recently used first, then the blobs no remaining entry references.
Entries go before their blobs, so a restore that read an entry and then finds a blob gone sees it
"missing" and builds the stage locally; downloads are verified before they are renamed into
place, so it never leaves a corrupt file. A blob no entry referenced when gc listed the store and
younger than an hour is kept: an upload in flight writes its blobs before its entry."""
import logging
import random
import time
from collections import Counter

from .store import Store

log = logging.getLogger("sao.cache")
ORPHAN_GRACE_S = 3600


def _entries(store: Store) -> dict[str, dict]:
    """action key → {"stage", "blobs": {digest: size}, "used": Unix time}, every entry readable."""
    used = store.listing("used")
    out = {}
    for key, (_, mtime) in store.listing("ac").items():
        entry = store.get_json("ac", key)
        if entry is None:  # removed since the listing
            continue
        blobs = {}
        for b in [*(entry.get("outputs") or {}).values(), entry.get("log"), entry.get("record")]:
            if isinstance(b, dict) and "digest" in b:
                blobs[b["digest"]] = b.get("size", 0)
        out[key] = {"stage": entry.get("stage", "?"), "blobs": blobs, "used": max(mtime, used.get(key, (0, 0))[1])}
    return out


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def gc(store: Store, max_bytes: int | None = None, older_than_days: float | None = None,
       dry_run: bool = False, now: float | None = None) -> dict:
    """Remove entries (LRU first) until the blobs the rest reference fit `max_bytes` and none is
    older than `older_than_days`, then every blob no remaining entry references. Returns what
    it removed (or would, `dry_run`)."""
    now = time.time() if now is None else now
    blobs = store.listing("cas")
    entries = _entries(store)
    order = sorted(entries, key=lambda k: entries[k]["used"])
    refs = Counter(d for e in entries.values() for d in e["blobs"] if d in blobs)  # entries per blob
    kept_bytes = sum(blobs[d][0] for d in refs)
    gone_entries, released = [], set()  # released: blobs whose last entry went
    for key in order:
        old = older_than_days is not None and now - entries[key]["used"] > older_than_days * 86400
        if not (old or (max_bytes is not None and kept_bytes > max_bytes)):
            break  # the rest are newer
        gone_entries.append(key)
        for d in entries[key]["blobs"]:
            if d in refs:
                refs[d] -= 1
                if refs[d] == 0:
                    released.add(d)
                    kept_bytes -= blobs[d][0]
    gone_blobs = [d for d, (_, mtime) in blobs.items()
                  if d in released or (d not in refs and now - mtime > ORPHAN_GRACE_S)]
    freed = sum(blobs[d][0] for d in gone_blobs)
    if not dry_run:
        for key in gone_entries:
            store.delete("ac", key)
            store.delete("used", key)
            store.delete("disagree", key)
        for digest in gone_blobs:
            store.delete("cas", digest)
    verb = "would remove" if dry_run else "removed"
    for key in gone_entries:
        log.info("%s %s (%s, last used %s)", verb, key, entries[key]["stage"],
                 time.strftime("%Y-%m-%d %H:%M", time.gmtime(entries[key]["used"])))
    left = sum(size for d, (size, _) in blobs.items()) - freed
    log.info("%s %d of %d entries and %d of %d blobs: %s freed, %s left",
             verb, len(gone_entries), len(entries), len(gone_blobs), len(blobs), _mb(freed), _mb(left))
    return {"entries": gone_entries, "blobs": gone_blobs, "freed_bytes": freed, "left_bytes": left,
            "dry_run": dry_run}


def verify(store: Store, sample: int | None = None, repair: bool = False) -> dict:
    """Re-hash stored blobs (all, or a random `sample` of them) and look for blobs entries name
    that are gone. Lists each bad blob with the entries that point at it; `repair` removes those
    entries and the corrupt blobs, so the next build runs those stages and uploads them afresh."""
    blobs = store.listing("cas")
    entries = _entries(store)
    names = sorted(blobs)
    if sample is not None and sample < len(names):
        names = random.sample(names, sample)
    corrupt = []
    for digest in names:
        try:
            if store.hash_blob(digest) != digest:
                corrupt.append(digest)
        except FileNotFoundError:  # removed since the listing (a gc): not corrupt
            pass
    missing = sorted({d for e in entries.values() for d in e["blobs"] if d not in blobs})
    bad = {**{d: "corrupt" for d in corrupt}, **{d: "missing" for d in missing}}
    users = {d: sorted(k for k, e in entries.items() if d in e["blobs"]) for d in bad}
    for digest, what in bad.items():
        named = ", ".join(f"{entries[k]['stage']} ({k[:16]}…)" for k in users[digest]) or "no entry"
        log.info("%s blob %s: %s", what, digest, named)
    hit = sorted({k for ks in users.values() for k in ks})
    if repair:
        for key in hit:
            store.delete("ac", key)
            store.delete("used", key)
            store.delete("disagree", key)
        for digest in corrupt:
            store.delete("cas", digest)
    log.info("checked %d of %d blobs and %d entries: %d corrupt, %d missing, %d entries point at them%s",
             len(names), len(blobs), len(entries), len(corrupt), len(missing), len(hit),
             "; removed those entries and the corrupt blobs" if repair and bad else "")
    return {"checked": len(names), "corrupt": corrupt, "missing": missing, "entries": hit, "repaired": repair}
