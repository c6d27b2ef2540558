"""A stage's memo: results of its costly actions (select_app's end-to-end runs, verify_aarch64's
emulated invokes, verify_web's runs in the browser, verify_dit's figures per file, the PyTorch
reference's outputs) kept between its runs in this checkout (artifacts/<profile>/memo/<stage>/),
each keyed by what the action read — its files' digests, its arguments — and by the code, tools and
Python the stage process runs. A stage re-run after an edit repeats only the actions the edit
touched; the rest it recalls. The memo is no stage's input or output: it spares work, it changes no
byte a stage writes. Only a build's local run has one; a Dask worker's stage or a
`cache verify --rebuild` check runs every action (`recall` finds nothing)."""
from pathlib import Path
from typing import Callable

import xxhash

from runtime.files import read_json
from .atomic import atomic_path, write_json
from .hashing import json_digest

_folder: Path | None = None
_salt: Callable[[], dict] | None = None
_salted: dict | None = None


def setup(folder: Path | None, salt: Callable[[], dict]):
    """Called by the runner before the stage runs (folder None: no memo). `salt()`, asked once, at
    the first recall or keep: the stage process's code (what its module reaches and has loaded by
    then), tools and Python, so an entry made by other code is never recalled. (The runner computes
    it: this module, imported by stages, stays out of their keys' build-tool modules.)"""
    global _folder, _salt, _salted
    _folder, _salt, _salted = folder, salt, None


def active() -> bool:
    """Whether this process has a memo (a key not worth computing otherwise)."""
    return _folder is not None


def array_key(a) -> list:
    """An array as a key holds it: dtype, shape and the XXH3-128 of its bytes."""
    import numpy as np
    a = np.ascontiguousarray(a)
    return [a.dtype.name, list(a.shape), xxhash.xxh3_128_hexdigest(a.tobytes())]


def _path(key: dict, suffix: str) -> Path | None:
    global _salted
    if _folder is None:
        return None
    if _salted is None:
        _salted = _salt()
    return _folder / f"{json_digest({'salt': _salted, 'key': key})}{suffix}"


def recall(key: dict):
    """The JSON value stored under `key`, None when there is none."""
    path = _path(key, ".json")
    try:
        return read_json(path)["value"] if path else None
    except (OSError, ValueError, KeyError):
        return None


def keep(key: dict, value):
    if path := _path(key, ".json"):
        write_json(path, {"key": key, "value": value})


def value(key: dict, compute: Callable[[], object]):
    """The JSON value stored under `key`, else compute()'s, kept there."""
    if (hit := recall(key)) is None:
        hit = compute()
        keep(key, hit)
    return hit


def recall_arrays(key: dict) -> dict | None:
    """The numpy arrays stored under `key` (an .npz), None when there are none."""
    import numpy as np
    path = _path(key, ".npz")
    try:
        return dict(np.load(path)) if path else None
    except (OSError, ValueError):
        return None


def arrays(key: dict, compute: Callable[[], dict]) -> dict:
    """The arrays stored under `key`, else compute()'s, kept there."""
    if (hit := recall_arrays(key)) is None:
        hit = compute()
        keep_arrays(key, hit)
    return hit


def keep_arrays(key: dict, arrays: dict):
    import numpy as np
    if path := _path(key, ".npz"):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
