"""The cache's parts without a server: settings and their errors, keys without absolute paths,
the store's create-only blobs on a file:// URL, credential redaction."""
import json

import pytest

from conftest import doit, write_profile
from pipeline.cache import client as cache
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
    for sa, sb in zip(stages(a)[:-1], stages(b)[:-1]):
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
