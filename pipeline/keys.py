"""Stage keys and depfiles.

A stage's key hashes everything its outputs depend on besides its input files: name, config
slice, tool versions, Python and platform, a format salt and the XXH3-128 of every project file
its process imported or read. That list is not kept by hand: the runner records it after the
stage ran (like a compiler's depfile, `artifacts/<profile>/.deps/<stage>.json`) and the next
doit reads it back. doit compares the key to decide whether a stage re-runs; the action key adds
the input digests (by role) and names the stage's result in the shared cache. Only repository-
relative paths enter a key, so checkouts in different folders or machines agree."""
import json
import platform
import sys
from pathlib import Path

from . import toolchain
from .atomic import write_json
from .config import REPO
from .hashing import file_digest, json_digest

SALT = "sao-litert-key-1"  # change when the key's meaning or the cache format changes
_SKIP = ("artifacts", ".venv", ".git")


def depfile(out: Path, stage: str) -> Path:
    return out / ".deps" / f"{stage}.json"


def read_depfile(path: Path) -> list[str]:
    """The project files a stage's last run used; [] when it never ran here."""
    try:
        return json.loads(Path(path).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def write_depfile(path: Path, files):
    write_json(path, {"files": sorted(set(files))})


def project_file(path) -> str | None:
    """The repository-relative name of a project source or data file, else None (third-party
    code, the standard library, build artifacts)."""
    try:
        rel = Path(path).resolve().relative_to(REPO)
    except (ValueError, OSError):
        return None
    if (rel.parts[0] in _SKIP or "__pycache__" in rel.parts or rel.parts[0].endswith(".egg-info")
            or not (REPO / rel).is_file()):
        return None
    return rel.as_posix()


def imported_files(opened=()) -> list[str]:
    """Project files this process imported (sys.modules) or opened (paths seen by an audit hook)."""
    paths = [getattr(m, "__file__", None) for m in list(sys.modules.values())] + list(opened)
    return sorted({rel for p in paths if p and (rel := project_file(p))})


def code_digests(files) -> dict[str, str]:
    return {rel: file_digest(REPO / rel) if (REPO / rel).is_file() else "absent" for rel in files}


def key_parts(stage, code) -> dict:
    """Everything but the input files: what doit's up-to-date check compares."""
    return {"salt": SALT, "stage": stage.name, "module": stage.module, "config": stage.config,
            "tools": toolchain.versions(stage.tools), "outputs": sorted(stage.outputs),
            "python": "%d.%d" % sys.version_info[:2], "platform": f"{sys.platform}-{platform.machine()}",
            "code": code_digests(code)}


def local_key(stage, code) -> str:
    return json_digest(key_parts(stage, code))


def action_key(stage, code, input_digests: dict[str, str]) -> str:
    """The cache key: the local key's parts plus the XXH3-128 of every input file, by role."""
    return json_digest({**key_parts(stage, code), "inputs": input_digests})
