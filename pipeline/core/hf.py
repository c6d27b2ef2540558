"""Where a model is on disk: a folder, or a Hugging Face repo id found in the local Hugging Face
cache through huggingface_hub's own cache API (`snapshot_download(local_files_only=True)`:
`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`). Never downloads. Files
are then tracked by content, so a snapshot's symlinks need no care."""
import re
from pathlib import Path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def locate(spec: str, revision: str | None, base: Path) -> Path:
    """The folder `spec` names (relative to `base`), or the snapshot of repo id `spec` at
    `revision` (default: the cache's `main`). LookupError says what is missing."""
    folder = Path(spec).expanduser()
    folder = folder if folder.is_absolute() else base / folder
    if folder.is_dir():
        return folder
    if not _REPO_ID.match(spec):
        raise LookupError(f"{folder} is not a folder")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    from huggingface_hub.file_download import repo_folder_name
    rev = revision or "main"
    try:
        return Path(snapshot_download(spec, revision=rev, local_files_only=True))
    except LocalEntryNotFoundError:
        repo = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=spec, repo_type="model")
        if not repo.is_dir():
            raise LookupError(f"'{spec}' is neither a folder nor in the Hugging Face cache ({repo} does not "
                              f"exist; `hf download {spec}` puts it there)") from None
        raise LookupError(f"revision '{rev}' of '{spec}' is not in the Hugging Face cache ({repo})") from None
