import os

import xxhash
from doit.dependency import MD5Checker

from pipeline.hashing import XXH3Checker, file_digest


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
    from pipeline.config import REPO
    for f in [*(REPO / "pipeline").glob("*.py"), REPO / "dodo.py"]:
        text = f.read_text()
        assert "import hashlib" not in text and "from hashlib" not in text, f
        assert "config_changed" not in text and "md5(" not in text.lower(), f
