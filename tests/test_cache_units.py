"""The cache's parts without a server: settings and their errors, keys without absolute paths,
the store's create-only blobs on a file:// URL, credential redaction, signatures, gc, verify."""
import base64
import json
import os
import time

import pytest

from conftest import doit, write_profile
from pipeline.cache import client as cache, maintenance, signing
from pipeline.cache.store import Store, redact
from pipeline.core import keys
from pipeline.core.config import load_profile
from pipeline.core.dag import stages
from pipeline.core.errors import InputError
from pipeline.core.hashing import file_digest


def test_bad_mode_in_environment_is_one_error_line(scratch_profile):
    p = scratch_profile()
    r = doit(profile=p, env={"SAO_LITERT_CACHE": "file:///nonexistent/x", "SAO_LITERT_CACHE_MODE": "sometimes"},
             check=False)
    assert r.returncode == 2
    [line] = [x for x in r.stdout.splitlines() if "error:" in x]
    assert "$SAO_LITERT_CACHE_MODE" in line and "sometimes" in line


def test_mode_without_url_names_the_field(tmp_path, monkeypatch):
    monkeypatch.delenv("SAO_LITERT_CACHE", raising=False)
    p = write_profile(tmp_path, "c", '[source]\nkind = "synthetic"\n[cache]\nmode = "read"\n')
    with pytest.raises(InputError) as e:
        cache.settings(load_profile(p))
    assert e.value.field == "cache.url" and e.value.file == str(p)


def test_environment_turns_the_cache_on(tmp_path, monkeypatch):
    p = write_profile(tmp_path, "c", '[source]\nkind = "synthetic"\n')
    assert cache.settings(load_profile(p)).mode == "off"
    monkeypatch.setenv("SAO_LITERT_CACHE", "s3://bucket/prefix")
    s = cache.settings(load_profile(p))
    assert (s.url, s.mode) == ("s3://bucket/prefix", "read-write")
    monkeypatch.setenv("SAO_LITERT_CACHE_MODE", "read")
    assert cache.settings(load_profile(p)).mode == "read"
    assert cache.settings(load_profile(p)).download == "toplevel"
    monkeypatch.setenv("SAO_LITERT_CACHE_DOWNLOAD", "all")
    assert cache.settings(load_profile(p)).download == "all"
    monkeypatch.setenv("SAO_LITERT_CACHE_DOWNLOAD", "some")
    with pytest.raises(InputError) as e:
        cache.settings(load_profile(p))
    assert e.value.file == "$SAO_LITERT_CACHE_DOWNLOAD" and "'some'" in str(e.value)


def test_keys_hold_no_absolute_path(tmp_path):
    """Two profiles in other folders, with other artifact folders: equal keys (collect's config
    names the profile, so it is left out)."""
    a = load_profile(write_profile(tmp_path, "key_a", '[source]\nkind = "synthetic"\n'))
    b = load_profile(write_profile(tmp_path, "key_b", '[source]\nkind = "synthetic"\nseed = 0\n'))
    code = ["stages/collect.py", "runtime/litert.py"]
    for sa, sb in zip(*([s for s in stages(p) if s.name != "collect"] for p in (a, b))):
        assert sa.outputs != sb.outputs
        parts = json.dumps(keys.key_parts(sa, code))
        assert str(tmp_path) not in parts and str(keys.REPO) not in parts and "key_a" not in parts
        assert keys.StageKey(sa, code, {"x": "1"}).action == keys.StageKey(sb, code, {"x": "1"}).action
        assert keys.StageKey(sa, code, {"x": "1"}).action != keys.StageKey(sa, code, {"x": "2"}).action
        assert keys.StageKey(sa, code, {}).action != keys.StageKey(sa, code[:1], {}).action
        assert keys.StageKey(sa, code, {}).bare == keys.StageKey(sa, code[:1], {}).bare  # the deps record's name


def test_file_store_blobs_are_create_only_and_written_by_rename(tmp_path):
    store = Store((tmp_path / "store").as_uri())
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc" * 1000)
    d = file_digest(f)
    assert store.put_blob(f, d) == 3000
    assert store.put_blob(f, d) == 0  # already there: not sent again
    assert store.put_blob(f, d, replace=True) == 3000
    assert store.get_json("ac", "missing") is None
    store.put_json("ac", "k", {"a": 1})
    assert store.get_json("ac", "k") == {"a": 1}
    names = sorted(p.name for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert names == sorted([d, "k.json"])  # no temporary names left behind
    out = tmp_path / "back"
    store.get_blob(d, out)
    assert out.read_bytes() == f.read_bytes()


def test_redact_drops_user_and_password():
    assert redact("s3://AKIA:topsecret@bucket/p") == "s3://***@bucket/p"
    assert redact("file:///mnt/cache") == "file:///mnt/cache"


# ---------------------------------------------------------------- signed entries, gc, verify
def _entry(key="k1", digest="a" * 32, size=3) -> dict:
    blob = {"digest": digest, "size": size}
    return {"key": key, "stage": "dit_quantize", "outputs": {"model": blob}, "log": {"digest": "b" * 32, "size": 1},
            "record": {"digest": "c" * 32, "size": 1}, "signatures": []}


def test_keygen_writes_a_private_file_only_its_owner_reads(tmp_path):
    pub = signing.keygen("ci-2026", tmp_path)
    assert (tmp_path / "ci-2026.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "ci-2026.pub").read_text().strip() == pub and pub.startswith("ci-2026:")
    assert len(base64.b64decode(pub.split(":", 1)[1])) == 32
    with pytest.raises(InputError, match="not overwritten"):
        signing.keygen("ci-2026", tmp_path)


def test_only_a_trusted_valid_signature_counts(tmp_path):
    for name in ("old", "new"):
        signing.keygen(name, tmp_path)
    old, new = signing.Signer(tmp_path / "old.key"), signing.Signer(tmp_path / "new.key")

    def trusted(*names):
        return signing.trusted_keys([(tmp_path / f"{n}.pub").read_text() for n in names])
    e = _entry()
    assert signing.check(e, trusted("old")) == "unsigned"
    e["signatures"] = [old.sign(e)]
    assert signing.check(e, trusted("old")) is None
    assert signing.check(e, trusted("new")) == "signed by old (untrusted)"
    forged = {**e, "outputs": {"model": {"digest": "d" * 32, "size": 3}}}  # another blob, same signature
    assert signing.check(forged, trusted("old")) == "signed by old (invalid signature)"
    # Rotation: both trusted, then only the new one; the entry signed again by the new key.
    assert signing.check(e, trusted("old", "new")) is None
    e["signatures"].append(new.sign(e))
    assert signing.check(e, trusted("new")) is None
    # Fields a restore does not use are not covered (the creation time, the host's platform).
    assert signing.check({**e, "created": "2030-01-01"}, trusted("new")) is None


def test_malformed_keys_name_their_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("SAO_LITERT_CACHE", (tmp_path / "store").as_uri())
    monkeypatch.setenv("SAO_LITERT_CACHE_TRUSTED_KEYS", "ci:not-base64")
    p = load_profile(write_profile(tmp_path, "c", '[source]\nkind = "synthetic"\n'))
    with pytest.raises(InputError) as e:
        cache.keys_of(cache.settings(p), p)
    assert e.value.file == "$SAO_LITERT_CACHE_TRUSTED_KEYS" and "ci:not-base64" in str(e.value)
    monkeypatch.delenv("SAO_LITERT_CACHE_TRUSTED_KEYS")
    monkeypatch.setenv("SAO_LITERT_CACHE_SIGNING_KEY", str(tmp_path / "absent.key"))
    with pytest.raises(InputError) as e:
        cache.keys_of(cache.settings(p), p)
    assert e.value.file == str(tmp_path / "absent.key") and "cannot read" in str(e.value)


def _aged_store(tmp_path) -> tuple[Store, dict]:
    """Three entries used 30, 20 and 10 days ago, each with its own 1000-byte blob, one blob shared
    by the two newest, and an orphan blob two days old."""
    root = tmp_path / "store"
    store, now = Store(root.as_uri()), time.time()
    for name, data in [("k30", b"1"), ("k20", b"2"), ("k10", b"3"), ("shared", b"s"), ("orphan", b"o")]:
        f = tmp_path / name
        f.write_bytes(data * 1000)
        store.put_blob(f, name)
    for key, days, blobs in [("k30", 30, ["k30"]), ("k20", 20, ["k20", "shared"]), ("k10", 10, ["k10", "shared"])]:
        store.put_json("ac", key, {"key": key, "stage": key, "outputs": {b: {"digest": b, "size": 1000} for b in blobs},
                                   "log": {"digest": blobs[0], "size": 1000}, "record": {"digest": blobs[0], "size": 1000}})
        os.utime(root / "ac" / f"{key}.json", (now - days * 86400,) * 2)
    os.utime(root / "cas" / "orphan", (now - 2 * 86400,) * 2)
    return store, now


def test_gc_removes_least_recently_used_entries_then_unreferenced_blobs(tmp_path):
    store, now = _aged_store(tmp_path)
    before = sorted(p.name for p in (tmp_path / "store").rglob("*"))
    assert maintenance.gc(store, max_bytes=0, dry_run=True)["freed_bytes"] == 5000
    assert sorted(p.name for p in (tmp_path / "store").rglob("*")) == before  # dry run: nothing deleted
    # A use of the oldest entry (a writer's restore) makes it the newest.
    store.put_json("used", "k30", {})
    r = maintenance.gc(store, max_bytes=2000)
    assert r["entries"] == ["k20", "k10"]  # k30 used just now; after k20 the rest still needed 3000
    assert sorted(store.listing("cas")) == ["k30"] and sorted(store.listing("ac")) == ["k30"]
    assert r["freed_bytes"] == 4000 and r["left_bytes"] == 1000
    assert maintenance.gc(store, older_than_days=1)["entries"] == []


def test_gc_older_than_and_young_orphans(tmp_path):
    store, now = _aged_store(tmp_path)
    f = tmp_path / "young"
    f.write_bytes(b"y")
    store.put_blob(f, "young")  # an upload in flight: its entry is not written yet
    r = maintenance.gc(store, older_than_days=15)
    assert r["entries"] == ["k30", "k20"]
    assert sorted(store.listing("cas")) == ["k10", "shared", "young"]


def test_verify_lists_corrupt_and_missing_blobs_and_repair_removes_their_entries(tmp_path):
    root = tmp_path / "store"
    store = Store(root.as_uri())
    for name in ("a", "b"):
        f = tmp_path / name
        f.write_bytes(name.encode() * 100)
        d = file_digest(f)
        store.put_blob(f, d)
        e = _entry(key=name, digest=d, size=100)
        e["log"] = e["record"] = {"digest": d, "size": 100}
        store.put_json("ac", name, e)
    bad = store.get_json("ac", "a")["outputs"]["model"]["digest"]
    (root / "cas" / bad).write_bytes(b"x" * 100)  # same size, other bytes
    gone = store.get_json("ac", "b")["outputs"]["model"]["digest"]
    (root / "cas" / gone).unlink()
    r = maintenance.verify(store)
    assert (r["corrupt"], r["missing"], r["entries"]) == ([bad], [gone], ["a", "b"])
    assert sorted(store.listing("ac")) == ["a", "b"]  # not repaired: nothing removed
    maintenance.verify(store, repair=True)
    assert store.listing("ac") == {} and bad not in store.listing("cas")


def test_an_entry_answers_only_the_lookup_it_was_written_for(tmp_path):
    """A (validly signed) entry copied to another action key, or naming another stage or other
    outputs, is not used for this lookup: a replay or a rollback is a miss."""
    from types import SimpleNamespace
    from pipeline.cache import entries
    stage = SimpleNamespace(name="collect", outputs={"manifest.json": tmp_path / "m", "spiece.model": tmp_path / "s"})
    key = SimpleNamespace(action="k-now")
    good = {"key": "k-now", "stage": "collect", "outputs": {"manifest.json": {}, "spiece.model": {}}}
    assert entries.unbound(stage, key, good) is None
    assert "another action key ('k-old')" in entries.unbound(stage, key, {**good, "key": "k-old"})
    assert "stage 'dit_quantize'" in entries.unbound(stage, key, {**good, "stage": "dit_quantize"})
    assert "not this stage's" in entries.unbound(stage, key, {**good, "outputs": {"manifest.json": {}}})
    assert "malformed" in entries.unbound(stage, key, [])


def test_signatures_needed_counts_distinct_trusted_valid_keys(tmp_path):
    signers = {}
    for name in ("ci", "ci2", "other"):
        signing.keygen(name, tmp_path)
        signers[name] = signing.Signer(tmp_path / f"{name}.key")
    trusted = signing.trusted_keys([(tmp_path / f"{n}.pub").read_text() for n in ("ci", "ci2")])
    e = _entry()
    e["signatures"] = [signers["ci"].sign(e), signers["ci"].sign(e), signers["other"].sign(e)]
    assert signing.check(e, trusted, 1) is None
    # The same key twice and an untrusted one are not two signatures.
    assert signing.check(e, trusted, 2) == "signed by ci, other (untrusted): 1 of 2 signatures needed"
    e["signatures"] = signing.add_signature(e["signatures"], signers["ci2"].sign(e))
    assert signing.check(e, trusted, 2) is None
    e["signatures"][-1] = signers["ci2"].sign({**e, "key": "elsewhere"})  # ci2's signature of another entry
    assert "ci2 (invalid signature): 1 of 2" in signing.check(e, trusted, 2)
    # One key trusted under two names is one key.
    (tmp_path / "alias.key").write_text("alias:" + (tmp_path / "ci.key").read_text().split(":", 1)[1])
    alias = (tmp_path / "ci.pub").read_text().replace("ci:", "alias:", 1)
    trusted |= signing.trusted_keys(alias)
    e["signatures"] = [signers["ci"].sign(e), signing.Signer(tmp_path / "alias.key").sign(e)]
    assert signing.check(e, trusted, 2) == "signed by alias, ci: 1 of 2 signatures needed"


def test_a_deps_record_counts_only_signed_for_its_key_and_files(tmp_path):
    signing.keygen("ci", tmp_path)
    ci, trusted = signing.Signer(tmp_path / "ci.key"), signing.trusted_keys((tmp_path / "ci.pub").read_text())
    files = ["stages/synth.py", "stages/models/layout.py"]
    record = {"files": files, "signatures": [ci.sign_deps("bare1", files)]}
    assert signing.check_deps(record, "bare1", trusted) is None
    assert signing.check_deps(record, "bare2", trusted) == "signed by ci (invalid signature)"  # copied elsewhere
    assert signing.check_deps({**record, "files": files[:1]}, "bare1", trusted) == "signed by ci (invalid signature)"
    # An entry's signature is never a deps record's, nor the other way round.
    assert signing.check_deps({"files": files, "signatures": [ci.sign(_entry())]}, "bare1", trusted) is not None
    assert signing.check({**_entry(), "signatures": record["signatures"]}, trusted) is not None


def test_more_signatures_needed_than_keys_trusted_is_one_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SAO_LITERT_CACHE", (tmp_path / "store").as_uri())
    signing.keygen("ci", tmp_path)
    monkeypatch.setenv("SAO_LITERT_CACHE_TRUSTED_KEYS", (tmp_path / "ci.pub").read_text().strip())
    monkeypatch.setenv("SAO_LITERT_CACHE_SIGNATURES_NEEDED", "2")
    p = load_profile(write_profile(tmp_path, "c", '[source]\nkind = "synthetic"\n'))
    with pytest.raises(InputError) as e:
        cache.keys_of(cache.settings(p), p)
    assert e.value.file == "$SAO_LITERT_CACHE_SIGNATURES_NEEDED" and "2 signatures needed but 1 trusted" in str(e.value)
    monkeypatch.setenv("SAO_LITERT_CACHE_SIGNATURES_NEEDED", "two")
    with pytest.raises(InputError, match="'two' is not a whole number"):
        cache.settings(p)
