"""What a PACS job has done so far, kept on local disk: Study Instance UIDs and counters only
(no names, no dates, no pixels), written atomically after every study so a killed job resumes.

The PACS itself stays the authority on what exists (results have derived UIDs, see
``results.py``); this file saves a watcher from re-planning finished studies every cycle and
bounds the retries of a study that keeps failing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .._io import atomic_write_json
from ..errors import UsageError

VERSION = 1


def default_state_path(url: str, key: str) -> Path:
    from ..data.cache import default_cache_dir

    digest = hashlib.sha256(f"{url.rstrip('/')}\n{key}".encode()).hexdigest()[:16]
    return default_cache_dir() / "pacs" / f"job-{digest}.json"


class JobState:
    """``studies[uid] = {"status": "done" | "failed", "attempts": n}`` for one PACS and one model."""

    def __init__(self, path: Path, key: str):
        self.path = Path(path)
        self.key = key
        self.studies: dict[str, dict] = {}
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise UsageError(
                    f"--state {self.path}: unreadable ({type(exc).__name__}); delete it to start "
                    "over (results already on the PACS are recognised by their UIDs)"
                ) from None
            if saved.get("key") != key:
                raise UsageError(
                    f"--state {self.path} belongs to model {saved.get('key')!r}, not {key!r}; give another --state file"
                )
            self.studies = saved.get("studies", {})

    def done(self, study: str) -> bool:
        return self.studies.get(study, {}).get("status") == "done"

    def attempts(self, study: str) -> int:
        return int(self.studies.get(study, {}).get("attempts", 0))

    def record(self, study: str, ok: bool) -> None:
        entry = self.studies.setdefault(study, {"attempts": 0})
        entry["status"] = "done" if ok else "failed"
        entry["attempts"] = 0 if ok else entry.get("attempts", 0) + 1
        self.save()

    def save(self) -> None:
        atomic_write_json(self.path, {"version": VERSION, "key": self.key, "studies": self.studies})
