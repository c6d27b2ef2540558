"""Where a model is on disk: a folder, or a Hugging Face repo id found in the local Hugging Face
cache. Never downloads: it reads the cache's documented layout
(`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`;
`models--ORG--NAME/refs/<revision>` holds a commit, `snapshots/<commit>/` the files, as symlinks
into `blobs/`). Files are then tracked by content, so a snapshot's symlinks need no care."""
import os
import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_cache() -> Path:
    if v := os.environ.get("HF_HUB_CACHE"):
        return Path(v)
    if v := os.environ.get("HF_HOME"):
        return Path(v) / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface" / "hub"


def locate(spec: str, revision: str | None, base: Path) -> Path:
    """The folder `spec` names (relative to `base`), or the snapshot of repo id `spec` at
    `revision` (default: the cache's `main`). LookupError says what is missing."""
    folder = Path(spec).expanduser()
    folder = folder if folder.is_absolute() else base / folder
    if folder.is_dir():
        return folder
    if not _REPO_ID.match(spec):
        raise LookupError(f"{folder} is not a folder")
    repo = hub_cache() / f"models--{spec.replace('/', '--')}"
    if not repo.is_dir():
        raise LookupError(f"'{spec}' is neither a folder nor in the Hugging Face cache ({repo} does not "
                          f"exist; `hf download {spec}` puts it there)")
    rev = revision or "main"
    ref = repo / "refs" / rev
    commit = ref.read_text().strip() if ref.is_file() else rev
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        raise LookupError(f"revision '{rev}' of '{spec}' is not in the Hugging Face cache ({snapshot} does not exist)")
    return snapshot
