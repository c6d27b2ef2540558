import os

import xxhash
from doit.dependency import MD5Checker

from pipeline.core.hashing import file_digest
from pipeline.orchestration import checker
from pipeline.orchestration.checker import XXH3Checker
from pipeline.cache import remote


def test_digest_streams_across_chunks(tmp_path):
    data = os.urandom(9 * 1024 * 1024 + 17)  # more than two 4 MiB chunks
    p = tmp_path / "blob"
    p.write_bytes(data)
    assert file_digest(p) == xxhash.xxh3_128_hexdigest(data)


def test_checker_touch_same_bytes_is_unmodified(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"a" * 1000)
    c = XXH3Checker()
    state = c.get_state(str(p), None)
    os.utime(p, (1, 1))  # touch: new mtime, same bytes
    assert not c.check_modified(str(p), os.stat(p), state)


def test_checker_detects_same_size_change(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"a" * 1000)
    c = XXH3Checker()
    state = c.get_state(str(p), None)
    p.write_bytes(b"a" * 999 + b"b")
    os.utime(p, (5, 5))
    assert c.check_modified(str(p), os.stat(p), state)
    assert c.get_state(str(p), state) is not None


def test_checker_skips_rehash_when_mtime_unchanged(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"x")
    c = XXH3Checker()
    state = c.get_state(str(p), None)
    assert c.get_state(str(p), state) is None
    assert not isinstance(c, MD5Checker)


def test_no_md5_in_up_to_date_path():
    from pipeline.core.config import REPO
    for f in [*(REPO / "pipeline").rglob("*.py"), REPO / "dodo.py"]:
        text = f.read_text()
        assert "import hashlib" not in text and "from hashlib" not in text, f
        assert "config_changed" not in text and "md5(" not in text.lower(), f


def test_checker_sees_a_file_kept_in_the_cache(tmp_path):
    """A restore recorded the file instead of downloading it: doit sees it existing, with the
    recorded size and digest; once it comes to disk with those bytes, it is unchanged."""
    data = b"0123456789"
    f, other = tmp_path / "dit" / "x.bin", tmp_path / "other.bin"
    other.write_bytes(data)
    reg = remote.Registry(tmp_path)
    reg.add(f, file_digest(other), len(data))
    c = checker.checker_for(reg)()
    assert c.exists(str(f)) and not f.exists()
    assert c.info(str(f)).st_size == 10
    state = c.get_state(str(f), None)
    assert state == (checker.REMOTE_MTIME, 10, file_digest(other))
    assert c.get_state(str(f), state) is None
    assert not c.check_modified(str(f), c.info(str(f)), state)
    assert remote.Registry(tmp_path).get(f)["size"] == 10  # kept on disk for the next doit

    f.parent.mkdir()
    f.write_bytes(data)  # on disk now: the file wins over the record
    assert reg.get(f) is None
    assert not c.check_modified(str(f), os.stat(f), state)
    f.write_bytes(b"9876543210")
    assert c.check_modified(str(f), os.stat(f), state)
    f.unlink()
    assert c.exists(str(f))  # gone from disk: the record stands again
    reg.drop([f])
    assert not c.exists(str(f))
