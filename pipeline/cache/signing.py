"""Signed action entries, as Nix signs store paths: an ed25519 signature over a canonical
fingerprint of everything a restore uses (action key, stage, each output role → digest and size,
the log's and the record's), made by the writer's private key and named after it. A reader that
trusts keys restores only entries carrying valid signatures by `needed` distinct ones of them
(`[cache] signatures_needed`, 1 by default); an entry may carry several: key rotation (sign with
the new key while readers still trust the old one), and builders that rebuilt the action and got
the same bytes (`sao-litert cache verify --rebuild` co-signs; pipeline/cache/rebuild.py). The
`deps/` record, which says which files a stage's code was and so steers a lookup, is signed the
same way (`sign_deps`, `check_deps`).

Key files, one line each: `NAME.key` = `NAME:BASE64(32-byte private key)` (mode 0600),
`NAME.pub` = `NAME:BASE64(32-byte public key)`, the form `trusted_keys` takes."""
import base64
import binascii
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from pipeline.core.errors import InputError

# A signature over an entry is never valid for a deps record, nor the other way round.
_DOMAIN, _DEPS_DOMAIN = b"sao-litert cache entry v1\n", b"sao-litert deps record v1\n"
ENV_SIGNING_KEY, ENV_TRUSTED_KEYS = "SAO_LITERT_CACHE_SIGNING_KEY", "SAO_LITERT_CACHE_TRUSTED_KEYS"


def _name_and_bytes(line: str, source, field) -> tuple[str, bytes]:
    name, sep, b64 = line.strip().partition(":")
    try:
        raw = base64.b64decode(b64, validate=True) if sep and name else b""
    except binascii.Error:
        raw = b""
    if len(raw) != 32:
        raise InputError(source, field, f"'{line.strip()[:40]}' is not NAME:BASE64 of a 32-byte ed25519 key")
    return name, raw


class Signer:
    def __init__(self, path: Path, field="signing_key"):
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise InputError(path, field, f"cannot read the signing key ({e.strerror})") from None
        self.name, raw = _name_and_bytes(text, path, field)
        self._key = Ed25519PrivateKey.from_private_bytes(raw)

    def sign(self, entry: dict) -> dict:
        return self._sign(_DOMAIN + fingerprint(entry))

    def sign_deps(self, bare: str, files: list[str]) -> dict:
        return self._sign(_DEPS_DOMAIN + _deps_fingerprint(bare, files))

    def _sign(self, data: bytes) -> dict:
        return {"key": self.name, "sig": base64.b64encode(self._key.sign(data)).decode()}


def add_signature(signatures, new: dict) -> list[dict]:
    """`signatures` with `new` in place of any earlier one by the same key."""
    return [s for s in signatures or [] if isinstance(s, dict) and s.get("key") != new["key"]] + [new]


def env_signer() -> "Signer | None":
    """The signer $SAO_LITERT_CACHE_SIGNING_KEY names (a Dask worker's own key), None without one."""
    path = os.environ.get(ENV_SIGNING_KEY)
    return Signer(Path(path), f"${ENV_SIGNING_KEY}") if path else None


def trusted_keys(text: str | list[str], source=f"${ENV_TRUSTED_KEYS}", field=None) -> dict:
    """"NAME:BASE64[,…]" (or a list of such) → {name: public key}."""
    items = text.split(",") if isinstance(text, str) else text
    keys = {}
    for item in filter(str.strip, items):
        name, raw = _name_and_bytes(item, source, field)
        keys[name] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


def fingerprint(entry: dict) -> bytes:
    """The canonical bytes a signature covers: what a restore reads from the entry, nothing else."""
    def blob(b):
        return [b["digest"], b["size"]]
    return json.dumps({"key": entry["key"], "stage": entry["stage"],
                       "outputs": {role: blob(b) for role, b in entry["outputs"].items()},
                       "log": blob(entry["log"]), "record": blob(entry["record"])},
                      sort_keys=True, separators=(",", ":")).encode()


def _deps_fingerprint(bare: str, files) -> bytes:
    return json.dumps({"bare": bare, "files": sorted(files)}, separators=(",", ":")).encode()


def check(entry: dict, trusted: dict, needed: int = 1) -> str | None:
    """None when `needed` distinct trusted keys signed this entry; otherwise why not, for a
    warning line: "unsigned", "signed by ci-old (untrusted)", "signed by ci (invalid signature)",
    "signed by ci: 1 of 2 signatures needed"."""
    try:
        data = _DOMAIN + fingerprint(entry)
    except (KeyError, TypeError):
        return "malformed"
    return _verdict(entry.get("signatures"), data, trusted, needed)


def check_deps(record: dict, bare: str, trusted: dict, needed: int = 1) -> str | None:
    """The same for a deps/ record found under `bare`: the files it lists, signed for that key."""
    try:
        data = _DEPS_DOMAIN + _deps_fingerprint(bare, record["files"])
    except (KeyError, TypeError):
        return "malformed"
    return _verdict(record.get("signatures"), data, trusted, needed)


def _verdict(signatures, data: bytes, trusted: dict, needed: int) -> str | None:
    why, good, keys = [], set(), set()  # names, and the public keys behind them: distinct keys count
    for s in signatures if isinstance(signatures, list) else []:
        name = str(s.get("key")) if isinstance(s, dict) else "?"
        if name not in trusted:
            why.append(f"{name} (untrusted)")
            continue
        try:
            trusted[name].verify(base64.b64decode(s.get("sig", ""), validate=True), data)
            good.add(name)
            keys.add(trusted[name].public_bytes_raw())
        except (InvalidSignature, binascii.Error, ValueError, TypeError):
            why.append(f"{name} (invalid signature)")
    if len(keys) >= needed:
        return None
    signed = ", ".join([*sorted(good), *why])
    if not signed:
        return "unsigned"
    return f"signed by {signed}" + (f": {len(keys)} of {needed} signatures needed" if good else "")


def keygen(name: str, out: Path) -> str:
    """Write out/NAME.key (0600) and out/NAME.pub; returns the public line. Never overwrites."""
    if not name or ":" in name or "," in name or "/" in name:
        raise InputError("NAME", None, f"'{name}' must be non-empty without ':', ',' or '/'")
    out.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    pub_line = f"{name}:{base64.b64encode(public).decode()}"
    for path in (out / f"{name}.key", out / f"{name}.pub"):
        if path.exists():
            raise InputError(path, None, "exists: not overwritten (remove it first to make a new key)")
    fd = os.open(out / f"{name}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{name}:{base64.b64encode(private).decode()}\n")
    (out / f"{name}.pub").write_text(pub_line + "\n")
    return pub_line
