"""Versions of the toolchain packages a stage uses: part of its up-to-date key."""
import json
import os
from importlib import metadata
from pathlib import Path

# A test hook to simulate an upgrade: SAO_LITERT_TOOLCHAIN_OVERRIDE='{"onnx2tf": "9.9.9"}'.
_OVERRIDE_ENV = "SAO_LITERT_TOOLCHAIN_OVERRIDE"


def versions(packages) -> dict[str, str]:
    override = json.loads(os.environ.get(_OVERRIDE_ENV) or "{}")
    out = {}
    for name in packages:
        try:
            out[name] = override.get(name) or metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


_AARCH64_ENV = "SAO_LITERT_AARCH64"  # another aarch64 userland than the checkout's .aarch64/


def aarch64_userland() -> Path:
    """Where `./dev aarch64` put the aarch64 userland (Debian arm64 Python, qemu-user, wheels)."""
    return Path(os.environ.get(_AARCH64_ENV) or Path(__file__).resolve().parents[2] / ".aarch64")


def aarch64_versions() -> dict | None:
    """The userland's qemu, Debian packages and wheels (its versions.json), None when absent."""
    try:
        return json.loads((aarch64_userland() / "versions.json").read_text())
    except (OSError, ValueError):
        return None
