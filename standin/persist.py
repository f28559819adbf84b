"""A stand-in's state in a JSON file, so that development keeps its users, grants and keys across restarts.

One file holds every provider's stand-in, a section each (``"discord"``,
``"slack"``) beside the format's ``"version"``; epoch seconds for times. A
section is written by reading the file again, replacing that section only and
putting a temporary file in its place with ``os.replace``: a reader never sees
half a file, and stand-ins sharing the file (runserver starts both in one
process; ``python -m standin.<provider> --state`` may run each in its own)
never write over each other's section. Writers of one file take one lock per
process and, where the system has it, ``flock`` on ``<file>.lock`` across
processes.

A file that cannot be read (not JSON, another version, a section a stand-in
cannot use) is logged and ignored: the stand-in starts afresh and its next
change replaces the file. Nothing here ever raises into a request; a failed
write is logged too. Without a path (the default, and what tests use) a
stand-in keeps its state in memory and no file is touched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

FORMAT_VERSION = 1

logger = logging.getLogger("standin")

_path_locks: dict[str, threading.Lock] = {}
_path_locks_guard = threading.Lock()


class UnreadableState(ValueError):
    """The file exists but holds nothing this version can use."""


def _process_lock(path: Path) -> threading.Lock:
    with _path_locks_guard:
        return _path_locks.setdefault(str(path), threading.Lock())


class StateFile:
    """The sections of one state file; every stand-in on the same path shares its lock."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()
        self._lock = _process_lock(self.path)

    def __repr__(self) -> str:
        return f"StateFile({str(self.path)!r})"

    def read(self, section: str) -> dict[str, Any] | None:
        """The section as saved; None when there is no file or no such section yet.

        Raises UnreadableState for a file that is not this format's JSON.
        """
        with self._lock:
            try:
                text = self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return None
            except OSError as error:
                raise UnreadableState(f"cannot read it ({error})") from None
        sections = self._parse(text)
        found = sections.get(section)
        if found is None:
            return None
        if not isinstance(found, dict):
            raise UnreadableState(f'its "{section}" section is not an object')
        return found

    def write(self, section: str, data: dict[str, Any]) -> None:
        """Replaces `section` and keeps the others as the file has them now; raises OSError if it cannot."""
        with self._lock, self._across_processes():
            try:
                sections = self._parse(self.path.read_text(encoding="utf-8"))
            except (OSError, UnreadableState):
                # Nothing there, or nothing usable: the other sections were lost already.
                sections = {}
            sections[section] = data
            body = json.dumps({"version": FORMAT_VERSION, **dict(sorted(sections.items()))}, indent=1)
            self._replace(body)

    @staticmethod
    def _parse(text: str) -> dict[str, Any]:
        try:
            content = json.loads(text)
        except ValueError as error:
            raise UnreadableState(f"it is not JSON ({error})") from None
        if not isinstance(content, dict):
            raise UnreadableState("it is not a JSON object")
        if content.get("version") != FORMAT_VERSION:
            raise UnreadableState(f"its format is version {content.get('version')!r}, not {FORMAT_VERSION}")
        return {key: value for key, value in content.items() if key != "version"}

    def _replace(self, body: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    @contextlib.contextmanager
    def _across_processes(self) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
