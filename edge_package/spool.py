"""A bounded on-disk spool: what the network could not take waits here, oldest first.

Each entry is one file written atomically (temp file + rename), so a power cut never leaves half an
entry. When the byte cap is reached the oldest entries are dropped to make room, and every drop is
counted (the telemetry reports it); a full disk drops the new entry and says so, and the device
keeps running. Entries are face crops, so the folder and files are readable by their owner only,
and each is deleted as soon as it is delivered.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import struct
import threading
from dataclasses import dataclass

_HEADER = struct.Struct(">I")
SUFFIX = ".spool"


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


@dataclass
class SpoolEntry:
    path: str
    meta: dict
    payload: bytes


class Spool:
    def __init__(self, folder: str, max_bytes: int):
        self.folder = folder
        self.max_bytes = int(max_bytes)
        self.dropped = 0
        self.last_error = ""
        self._lock = threading.Lock()
        self._counter = 0
        os.makedirs(folder, mode=0o700, exist_ok=True)  # face crops: owner-only
        self._sizes = {
            os.path.join(folder, name): os.path.getsize(os.path.join(folder, name))
            for name in os.listdir(folder)
            if name.endswith(SUFFIX)
        }
        self._total = sum(self._sizes.values())
        for name in os.listdir(folder):  # leftovers of an interrupted write
            if name.endswith(".tmp"):
                os.unlink(os.path.join(folder, name))

    @property
    def depth(self) -> int:
        return len(self._sizes)

    @property
    def bytes(self) -> int:
        return self._total

    def _ordered(self) -> list[str]:
        return sorted(self._sizes)

    def put(self, meta: dict, payload: bytes) -> bool:
        """Store one entry; False (and counted as dropped) when it cannot be kept."""
        header = json.dumps(meta, separators=(",", ":")).encode()
        blob = _HEADER.pack(len(header)) + header + payload
        with self._lock:
            if len(blob) > self.max_bytes:
                self.dropped += 1
                self.last_error = f"spool: entry of {len(blob)} bytes exceeds the spool cap"
                return False
            while self._sizes and self.bytes + len(blob) > self.max_bytes:
                oldest = self._ordered()[0]
                self._remove(oldest)
                self.dropped += 1
            self._counter += 1
            # Name sorts by capture time then arrival, so draining keeps the original order.
            stamp = int(meta.get("captured_at_ms", 0))
            name = f"{stamp:013d}-{os.getpid()}-{self._counter:08d}{SUFFIX}"
            path = os.path.join(self.folder, name)
            tmp = path + ".tmp"
            try:
                with open(tmp, "wb", opener=_private) as handle:
                    handle.write(blob)
                os.replace(tmp, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                self.dropped += 1
                reason = "disk full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
                self.last_error = f"spool {self.folder}: {reason}; entry dropped"
                return False
            self._sizes[path] = len(blob)
            self._total += len(blob)
            return True

    def _remove(self, path: str) -> None:
        self._total -= self._sizes.pop(path, 0)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def peek(self, limit: int = 16) -> list[SpoolEntry]:
        """The oldest entries (not removed: call ack() once each is delivered)."""
        entries = []
        with self._lock:
            paths = self._ordered()[:limit]
        for path in paths:
            try:
                with open(path, "rb") as handle:
                    blob = handle.read()
                (length,) = _HEADER.unpack_from(blob)
                meta = json.loads(blob[_HEADER.size : _HEADER.size + length])
                entries.append(SpoolEntry(path, meta, blob[_HEADER.size + length :]))
            except (OSError, ValueError, struct.error):
                with self._lock:  # unreadable entry: drop it rather than block the queue forever
                    self._remove(path)
                    self.dropped += 1
        return entries

    def clear(self) -> int:
        """Delete every waiting entry (e.g. crops, when the camera switches to edge mode);
        returns how many were deleted."""
        with self._lock:
            paths = list(self._sizes)
            for path in paths:
                self._remove(path)
        return len(paths)

    def ack(self, entry: SpoolEntry) -> None:
        with self._lock:
            self._remove(entry.path)
