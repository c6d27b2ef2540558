"""Versions of the toolchain packages a stage uses: part of its up-to-date key."""
import json
import os
from importlib import metadata

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
