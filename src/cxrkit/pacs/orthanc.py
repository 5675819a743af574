"""A throwaway Orthanc on 127.0.0.1 for the tests, the bench and the PACS quick start (docs/pacs.md).

Debian's ``orthanc`` + ``orthanc-dicomweb`` packages, started as ``Orthanc CONFIG.json`` with
its own storage folder and a free loopback port, so the system service is never needed
(and never touched). Its DICOM (DIMSE) port is off: only HTTP/DICOMweb is used.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import CxrkitError

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


class OrthancError(CxrkitError, RuntimeError):
    """The local Orthanc is not installed or did not start."""


def missing() -> str | None:
    """Why a local Orthanc cannot run here, or None when it can."""
    for path in (ORTHANC, DICOMWEB_PLUGIN):
        if not path.exists():
            return f"{path} is missing (apt-get install orthanc orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalOrthanc:
    """``with LocalOrthanc(folder) as o: o.dicomweb`` -> ``http://127.0.0.1:PORT/dicom-web``.

    ``stop()`` then ``start()`` keeps the port and the stored studies (the tests stop it
    mid-job to play a PACS outage). ``users`` turns on HTTP basic authentication.
    """

    def __init__(self, folder: str | Path, port: int | None = None, users: dict[str, str] | None = None):
        if reason := missing():
            raise OrthancError(reason)
        self.folder = Path(folder)
        self.port = port or free_port()
        self.users = users or {}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict:
        return {
            "Name": "cxrkit-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "storage"),
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "DicomServerEnabled": False,
            "AuthenticationEnabled": bool(self.users),
            "RegisteredUsers": self.users,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "HttpTimeout": 60,
            "StableAge": 1,
        }

    def start(self, timeout: float = 30.0) -> "LocalOrthanc":
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = self.folder / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        log = open(self.folder / "orthanc.log", "ab")
        self.proc = subprocess.Popen(
            [str(ORTHANC), str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=self.folder, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise OrthancError(f"Orthanc exited with {self.proc.returncode}; see {self.folder / 'orthanc.log'}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise OrthancError(f"Orthanc did not answer on port {self.port} within {timeout:.0f} s")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/system", timeout=1).close()
            return True
        except urllib.error.HTTPError as exc:  # 401: up, and asking for the password
            return exc.code == 401
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "LocalOrthanc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # python -m cxrkit.pacs.orthanc FOLDER: serve until Ctrl-C or SIGTERM
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave through the with: Orthanc is stopped too

    with LocalOrthanc(
        sys.argv[1] if len(sys.argv) > 1 else "orthanc-data", int(os.environ.get("PORT", 0)) or None
    ) as server:
        print(f"Orthanc on {server.url} (explorer {server.url}/app/explorer.html); DICOMweb {server.dicomweb}")
        try:
            server.proc.wait()
        except KeyboardInterrupt:
            pass
