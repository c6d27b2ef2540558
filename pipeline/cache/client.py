"""The shared build cache around one stage action: look the stage's action key up in the store and
restore its outputs (each verified by XXH3-128, then renamed into place), or let the stage run and
upload what it made. Stages never know the cache exists.

The cache never fails a build: a store that cannot be reached or refuses access turns the cache
off for the rest of the process with one warning line (a store that refuses only writes leaves it
read-only); a missing or corrupt blob, or an entry no trusted key signed, is reported for its
stage, which then builds locally (and, read-write, replaces the blob)."""
import atexit
import logging
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pipeline.core import atomic, keys
from pipeline.core.config import CacheSettings, Profile
from pipeline.core.errors import InputError
from pipeline.core.hashing import file_digest
from pipeline.core.keys import StageKey
from . import entries, remote, signing
from .store import Store, redact

log = logging.getLogger("sao.cache")
_ENV_URL, _ENV_MODE, _ENV_DOWNLOAD = "SAO_LITERT_CACHE", "SAO_LITERT_CACHE_MODE", "SAO_LITERT_CACHE_DOWNLOAD"
_ENV_SIGNING, _ENV_TRUSTED = signing.ENV_SIGNING_KEY, signing.ENV_TRUSTED_KEYS
_ENV_NEEDED = "SAO_LITERT_CACHE_SIGNATURES_NEEDED"


class BlobUnavailable(Exception):
    """A blob the cache cannot give: args (digest, "missing" or "corrupt")."""


def settings(profile: Profile) -> CacheSettings:
    """The profile's [cache] section with the environment's overrides: SAO_LITERT_CACHE=URL turns
    the cache on read-write; SAO_LITERT_CACHE_MODE sets the mode, SAO_LITERT_CACHE_DOWNLOAD what
    a restore downloads, SAO_LITERT_CACHE_SIGNING_KEY=FILE the key uploads are signed with,
    SAO_LITERT_CACHE_TRUSTED_KEYS="NAME:BASE64[,…]" the keys a restore trusts,
    SAO_LITERT_CACHE_SIGNATURES_NEEDED=N how many of them must have signed an entry."""
    s = profile.cache
    if url := os.environ.get(_ENV_URL):
        s = s.model_copy(update={"url": url, "mode": "read-write"})
    if mode := os.environ.get(_ENV_MODE):
        if mode not in ("read-write", "read", "off"):
            raise InputError(f"${_ENV_MODE}", None, f"'{mode}' is not one of read-write, read, off")
        s = s.model_copy(update={"mode": mode})
    if download := os.environ.get(_ENV_DOWNLOAD):
        if download not in ("toplevel", "all"):
            raise InputError(f"${_ENV_DOWNLOAD}", None, f"'{download}' is not one of toplevel, all")
        s = s.model_copy(update={"download": download})
    if (key := os.environ.get(_ENV_SIGNING)) is not None:
        s = s.model_copy(update={"signing_key": key or None})
    if (trusted := os.environ.get(_ENV_TRUSTED)) is not None:
        s = s.model_copy(update={"trusted_keys": [k for k in trusted.split(",") if k.strip()]})
    if (needed := os.environ.get(_ENV_NEEDED)) is not None:
        if not needed.isdigit() or int(needed) < 1:
            raise InputError(f"${_ENV_NEEDED}", None, f"'{needed}' is not a whole number ≥ 1")
        s = s.model_copy(update={"signatures_needed": int(needed)})
    if s.mode != "off" and not s.url:
        raise InputError(profile.path, "cache.url", f"mode '{s.mode}' needs a store URL (or ${_ENV_URL})")
    return s


def keys_of(cfg: CacheSettings, profile: Profile) -> tuple[signing.Signer | None, dict]:
    """The key this process signs uploads with (read-write only) and the keys it trusts;
    InputError naming the setting when one is unreadable or malformed."""
    env = _ENV_TRUSTED in os.environ
    trusted = signing.trusted_keys(cfg.trusted_keys, f"${_ENV_TRUSTED}" if env else profile.path,
                                   None if env else "cache.trusted_keys")
    if cfg.signatures_needed > 1 and cfg.signatures_needed > len(trusted):
        where = (f"${_ENV_NEEDED}", None) if _ENV_NEEDED in os.environ else (profile.path, "cache.signatures_needed")
        raise InputError(*where, f"{cfg.signatures_needed} signatures needed but {len(trusted)} trusted "
                         "key(s): no entry could ever be used (add cache.trusted_keys)")
    signer = None
    if cfg.signing_key and cfg.mode == "read-write":
        where = f"${_ENV_SIGNING}" if _ENV_SIGNING in os.environ else "cache.signing_key"
        signer = signing.Signer(Path(cfg.signing_key).expanduser(), where)
    return signer, trusted


def stats_path(profile: Profile):
    return profile.out / "logs" / "last_build.json"  # what the last build did, per stage; cache figures


@dataclass(frozen=True)
class Made:
    """What a stage's run made (`Cache.restore_or_run`): the key of the code it ran; `where` it ran:
    "here", a worker's address, or None for a worker's earlier result restored (and recorded) as
    such; `upload`: False for a run here that changed its own input; `span`: when the run itself
    started and ended (Unix seconds; None: the whole call, waits included)."""
    key: StageKey
    where: str | None = "here"
    upload: bool = True
    span: tuple[float, float] | None = None


class Cache:
    """One build's cache client (pipeline/orchestration/context.py makes it): doit's threads share its
    store, warnings and stats."""
    def __init__(self, profile: Profile, table, registry: remote.Registry):
        self.cfg = settings(profile)
        self.profile, self.registry = profile, registry
        self.signer, self.trusted = keys_of(self.cfg, profile)
        self._store = None
        self._lock = threading.Lock()
        self.bad: set[str] = set()  # blobs found corrupt: replaced on upload
        self._local: dict = {}      # digest → a file restored in this process
        self._uploader = None
        self._consumed = remote.consumed(table) if self.cfg.download == "toplevel" else set()
        # Made at a build's first stage action: the record describes the last build that ran
        # something (a no-op `doit` or `doit report` keeps it).
        self.stats = {"url": redact(self.cfg.url or ""), "mode": self.cfg.mode, "hits": 0, "misses": 0,
                      "bytes_down": 0, "bytes_up": 0, "bytes_left_in_cache": 0,
                      "stages": {}, "times": {}, "warnings": []}
        self._save()

    @property
    def readable(self) -> bool:
        return self.cfg.mode != "off"

    @property
    def writable(self) -> bool:
        return self.cfg.mode == "read-write"

    # ------------------------------------------------------------------ the operations
    def restore_or_run(self, stage, key: StageKey, produce, restore: bool = True) -> StageKey:
        """The one call a stage action makes: the outputs of an earlier identical run restored, or
        else made by `produce(log_file) -> Made` (here or on a worker), its outcome and time
        recorded and a run here uploaded in the background. Returns the key the outputs answer;
        what `produce` raises (StageFailed) is recorded as a failure and raised again.
        `restore=False`: a file a restore kept is being made again (nothing to look up)."""
        if restore and (found := self.restore(stage, key)) is not None:
            return found
        start = time.time()
        try:
            made = produce(self.log_file(stage))
        except BaseException as e:
            self._ran(stage.name, "failed", getattr(e, "span", None) or (start, time.time()))
            raise
        outcome = "ran" if made.where == "here" else f"ran on {made.where}" if made.where else None
        self._ran(stage.name, outcome, made.span or (start, time.time()))
        if made.where == "here" and made.upload and self.writable:
            self._background(self.upload, stage, made.key)
        return made.key

    def restore(self, stage, key: StageKey, ran_on: str | None = None) -> StageKey | None:
        """Outputs of an earlier identical run, in place and verified: the key they were found
        under; None → build locally. `ran_on`: the worker that has just built them for this build
        (pipeline/cluster/executor.py). The time it took is the stage's."""
        if not self.readable:
            return None
        start = time.time()
        try:
            return self._lookup(stage, key, ran_on)
        finally:
            self._ran(stage.name, None, (start, time.time()))

    def _lookup(self, stage, key: StageKey, ran_on: str | None) -> StageKey | None:
        t0 = time.perf_counter()
        try:
            found, why = entries.usable(self.store(), stage, key, self.trusted, self.cfg.signatures_needed)
            if why:
                self._unusable(stage, why)
                return None
            if found is not None and self._restore(self.store(), stage, *found, t0, ran_on):
                if ran_on is None and self.writable:
                    self._background(self._used, found[0])
                return found[0]
            if found is not None:
                return None
        except Exception as e:  # noqa: BLE001 - any store failure means: build locally
            self._fail(e)
            return None
        if ran_on is None:
            self._record(stage.name, "miss")
        return None

    def _background(self, fn, *args):
        """Uploads run in the background, so the stages that wait for this one can start now; the
        process waits for them before it exits."""
        with self._lock:
            if self._uploader is None:
                self._uploader = ThreadPoolExecutor(1, thread_name_prefix="cache-upload")
                atexit.register(self._uploader.shutdown, wait=True)
            self._uploader.submit(fn, *args)

    def upload(self, stage, key: StageKey):
        if not self.writable:
            return
        try:
            sent = entries.publish(self.store(), stage, key, self.log_file(stage),
                                   self.registry, replace=self.bad, signer=self.signer)
        except PermissionError as e:
            self._read_only(e)
            return
        except Exception as e:  # noqa: BLE001
            self._fail(e)
            return
        with self._lock:
            self.stats["bytes_up"] += sent
            self._save()
        if sent:
            log.info("  %s: uploaded %.1f MB to the cache", stage.name, sent / 1e6)

    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = Store(self.cfg.url, self.cfg.options)
            return self._store

    def log_file(self, stage) -> Path:
        return self.profile.out / "logs" / f"{stage.name}.log"

    # ------------------------------------------------------------------ details
    def _restore(self, store, stage, key: StageKey, entry: dict, t0, ran_on) -> bool:
        try:
            want = {role: (entry["outputs"][role], path) for role, path in stage.outputs.items()}
            for role, path in entries.files(stage, self.log_file(stage)).items():
                if role not in stage.outputs:
                    want[role] = (entry[role], path)
        except (KeyError, TypeError):
            return self._unusable(stage, f"entry ac/{key.action}.json is malformed")
        reg = self.registry
        here = {role for role, (blob, path) in want.items() if _holds(path, blob)}
        # Toplevel: what another stage reads stays in the store until a stage that runs needs it.
        keep = {role for role, (_, path) in want.items() if path in self._consumed} - here
        tmps, size, left = {}, 0, 0
        try:
            for role, (blob, path) in want.items():
                if role in here:
                    continue
                if role in keep:
                    if store.blob_size(blob["digest"]) != blob["size"]:
                        return self._unusable(stage, f"blob {blob['digest']} ({role}) is missing")
                    left += blob["size"]
                    continue
                try:
                    tmps[role] = self._download(store, blob["digest"], path)
                except BlobUnavailable as e:
                    return self._unusable(stage, f"blob {e.args[0]} ({role}) is {e.args[1]}")
                size += blob["size"]
            for role, (blob, path) in want.items():
                if role in keep:
                    path.unlink(missing_ok=True)  # another build's file; the record says what is there
                    reg.add(path, blob["digest"], blob["size"])
                elif role in tmps:
                    self._place(tmps[role], path, blob["digest"], reg)
                else:
                    reg.drop([path])
                    self._local[blob["digest"]] = path
            keys.write_depfile(keys.depfile(self.profile.out, stage.name), key.code)
        finally:
            for tmp in tmps.values():
                tmp.unlink(missing_ok=True)
        secs = time.perf_counter() - t0
        kept = f"; {left / 1e6:.1f} MB left in the cache" if left else ""
        with self._lock:
            self.stats["bytes_left_in_cache"] += left
        if ran_on:
            log.info("  %s: ran on %s; fetched %.1f MB in %.1f s%s", stage.name, ran_on, size / 1e6, secs, kept)
        else:
            log.info("  %s: restored from cache (%.1f MB, %.1f s%s)", stage.name, size / 1e6, secs, kept)
            self._record(stage.name, "hit")
        return True

    def fetch(self, stage, path, rec: dict) -> bool:
        """One file this build kept in the store, downloaded into place and verified. False (with
        a warning when the store misbehaved) when the cache cannot give it."""
        digest, path = rec["digest"], Path(path)
        if not self.readable or digest in self.bad:
            return False
        t0 = time.perf_counter()
        try:
            tmp = self._download(self.store(), digest, path)
        except BlobUnavailable as e:
            self._warn(f"cache: {stage.name}: blob {digest} ({path.name}) is {e.args[1]}")
            return False
        except Exception as e:  # noqa: BLE001 - the store failed
            self._fail(e)
            return False
        try:
            self._place(tmp, path, digest, self.registry)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("  %s: fetched %s from the cache (%.1f MB, %.1f s)", stage.name, path.name,
                 rec["size"] / 1e6, time.perf_counter() - t0)
        return True

    def _download(self, store, digest: str, path: Path) -> Path:
        """The blob into a temporary sibling of `path`, verified: that temporary path.
        BlobUnavailable when the store has no such blob or its bytes are not the digest's."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = atomic.tmp_path(path)
        try:
            got = self._get_blob(store, digest, tmp)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            raise BlobUnavailable(digest, "missing") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if got != digest:
            tmp.unlink(missing_ok=True)
            self.bad.add(digest)
            raise BlobUnavailable(digest, "corrupt")
        return tmp

    def _place(self, tmp: Path, path: Path, digest: str, reg):
        """A downloaded, verified blob into place; the file is no longer only in the cache."""
        remote.commit_fetched(tmp, path, digest, reg)
        self._local[digest] = path

    def _get_blob(self, store, digest: str, dst) -> str:
        """A blob this build already has on disk (the bundle repeats the final files) is copied
        locally; any other is downloaded. Returns the digest of what was written."""
        local = self._local.get(digest)
        if local is not None and local.is_file():
            shutil.copyfile(local, dst)
            return file_digest(dst)
        return store.get_blob(digest, dst, progress=self._down)

    def _down(self, nbytes: int):
        """Bytes downloaded, counted as they arrive (the live status line shows them)."""
        with self._lock:
            self.stats["bytes_down"] += nbytes

    def _unusable(self, stage, why: str) -> bool:
        self._warn(f"cache: {stage.name}: {why}; building it locally")
        self._record(stage.name, "miss")
        return False

    def _used(self, key: StageKey):
        """Mark the entry used now (`used/<action key>`, the store's clock): what `cache gc`
        keeps longest. Only a writer can; a read-only client's restores leave no trace."""
        try:
            self.store().put_json("used", key.action, {})
        except PermissionError as e:
            self._read_only(e)
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _read_only(self, e: Exception):
        """The store refused a write (its identity may only read): one warning, restores go on."""
        with self._lock:
            if self.cfg.mode != "read-write":
                return
            self.cfg = self.cfg.model_copy(update={"mode": "read"})
        self._warn(f"cache: store {self.stats['url']} refused a write ({type(e).__name__}); these "
                   "credentials may only read: uploading nothing, restoring as before")

    def _fail(self, e: Exception):
        """The store failed: one warning, then no more cache for this process."""
        with self._lock:
            if self.cfg.mode == "off":
                return
            self.cfg = self.cfg.model_copy(update={"mode": "off"})
        msg = redact(str(e)).splitlines()[0] if str(e) else ""
        self._warn(f"cache: store {self.stats['url']} unusable ({type(e).__name__}: {msg}); "
                   "building locally without the cache")

    def _warn(self, text: str):
        log.warning("warning: %s", text)
        with self._lock:
            self.stats["warnings"].append(text)
            self._save()

    def _record(self, stage: str, outcome: str):
        with self._lock:
            self.stats["hits" if outcome == "hit" else "misses"] += 1
            self.stats["stages"][stage] = "restored" if outcome == "hit" else "missed"
            self._save()

    def _ran(self, stage: str, outcome: str | None, span: tuple[float, float]):
        """A stage ran here (outcome "ran"), on a worker ("ran on ADDRESS"), failed ("failed") or
        was restored (None: recorded by the restore), from `span`'s start to its end (Unix s)."""
        with self._lock:
            if outcome is not None:
                self.stats["stages"][stage] = outcome
            self.stats["times"][stage] = [round(t, 3) for t in span]
            self._save()

    def _save(self):
        atomic.write_json(stats_path(self.profile), self.stats)


def _holds(path, blob: dict) -> bool:
    """The file is already on disk with the blob's bytes."""
    return path.is_file() and path.stat().st_size == blob["size"] and file_digest(path) == blob["digest"]
