"""Stage `attest`: bundle/verified.json, written once every check [targets] asks for has passed —
which architectures and clients verified this exact bundle. The checks (verify_aarch64,
verify_web) run beside `collect`, not before it (as Bazel's validation actions): the bundle is
there as soon as the app set is chosen, and the build still fails when a check fails. The file
names the manifest's digest and, per check stage, its report's digest; the files the checks ran
are the bundle's (their digests are compared with the manifest's first). `collect` removes the
file when it writes another manifest, so a bundle never carries another bundle's attestation."""
import logging

from pipeline.core.atomic import write_json
from pipeline.core.hashing import file_digest
from runtime.files import read_json
from runtime.vocab import MANIFEST, VERIFIED

log = logging.getLogger("sao.attest")


def run(inputs, outputs, config):
    manifest = read_json(inputs[MANIFEST])
    checked = {**{manifest["app"]["files"][m]: path for m, path in inputs["app"].items()}, **inputs.get("web", {})}
    for name, path in checked.items():
        if file_digest(path) != manifest["files"][name]["xxh3_128"]:
            raise RuntimeError(f"{inputs[MANIFEST]}: files.{name} is not the file the checks ran ({path})")
    write_json(outputs[VERIFIED], {
        "manifest_xxh3_128": file_digest(inputs[MANIFEST]),
        "verified_on": config["verified_on"],
        "checks": {check: {"report": path.name, "xxh3_128": file_digest(path)}
                   for check, path in inputs.get("reports", {}).items()}})
    log.info("verified on %s; checks: %s", ", ".join(config["verified_on"]), ", ".join(inputs.get("reports", {})) or "none")
