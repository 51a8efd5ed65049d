"""Content-addressed cache of task inputs: a file is stored under its SHA-256, checked on arrival,
shared by every task that needs it, and the least recently used files go when the cache is full."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .api import InputTooLarge, sha256_file

log = logging.getLogger(__name__)
_HEX = set("0123456789abcdef")


class InputHashMismatch(Exception):
    """An input arrived different from what the portal announced, twice in a row."""

    def __init__(self, name: str, expected: str, actual: str):
        super().__init__(f"input {name!r} arrived with SHA-256 {actual[:12]}…, not the announced "
                         f"{expected[:12]}…, even after downloading it again")
        self.name, self.expected, self.actual = name, expected, actual


def _check_sha(sha256: str) -> str:
    sha256 = (sha256 or "").lower()
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise ValueError(f"{sha256!r} is not a SHA-256 hex digest")
    return sha256


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, stat.S_IWUSR | stat.S_IRUSR)  # cached files are read-only; Windows minds
        path.unlink()


class InputCache:
    """Files under root/<first two hex digits>/<sha256>, read-only, at most max_bytes in all."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._pins: dict[str, int] = {}
        self.downloads = 0  # how many files this cache fetched (tests and the status command read it)

    def remove_partial_downloads(self) -> None:
        """Partial downloads of a previous run (only the engine owning the data folder may call this)."""
        for leftover in self.tmp.iterdir():
            _unlink(leftover)

    def path_for(self, sha256: str) -> Path:
        sha256 = _check_sha(sha256)
        return self.root / sha256[:2] / sha256

    def get(self, sha256: str, size: int | None = None) -> Path | None:
        """The cached file, marked as just used; None when absent (or the wrong size: then removed)."""
        path = self.path_for(sha256)
        with self._lock:
            try:
                st = path.stat()
            except FileNotFoundError:
                return None
            if size is not None and st.st_size != size:
                log.warning("cached %s has %d bytes, expected %d: fetching it again", sha256[:12],
                            st.st_size, size)
                _unlink(path)
                return None
            # Last use is the mtime: atime is often not kept (noatime mounts).
            with contextlib.suppress(OSError):
                os.utime(path)
            return path

    def fetch(self, sha256: str, download: Callable[[Path], object], *, name: str = "",
              size: int | None = None) -> Path:
        """The file with this hash, downloading it with download(dest) when it is not cached yet.

        A download whose hash does not match is thrown away and tried once more; a second mismatch
        raises InputHashMismatch. Nothing unverified ever lands in the cache. With size, download
        should stop itself past it (PortalClient.download's max_bytes); a file that still came out
        larger raises InputTooLarge."""
        sha256 = _check_sha(sha256)
        if hit := self.get(sha256, size):
            return hit
        actual = ""
        for attempt in (1, 2):
            part = self.tmp / f"{sha256}.{uuid.uuid4().hex[:8]}.part"
            try:
                download(part)
                self.downloads += 1
                if size is not None and part.stat().st_size > size:
                    raise InputTooLarge(name or sha256, size)
                actual = sha256_file(part)
                if actual == sha256:
                    return self._adopt(part, sha256)
                log.warning("input %s: SHA-256 mismatch on download %d (got %s)", name or sha256[:12],
                            attempt, actual[:12])
            finally:
                _unlink(part)
        raise InputHashMismatch(name or sha256, sha256, actual)

    def _adopt(self, part: Path, sha256: str) -> Path:
        path = self.path_for(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(part, stat.S_IRUSR | stat.S_IRGRP)  # tasks read inputs; none may change them
        with self._lock:
            os.replace(part, path)
            self.evict(extra_keep={sha256})
        return path

    @contextlib.contextmanager
    def pinned(self, hashes: Iterable[str]) -> Iterator[None]:
        """Keep these files from eviction while a task uses them."""
        hashes = [_check_sha(h) for h in hashes]
        with self._lock:
            for h in hashes:
                self._pins[h] = self._pins.get(h, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                for h in hashes:
                    self._pins[h] -= 1
                    if not self._pins[h]:
                        del self._pins[h]

    def entries(self) -> list[tuple[Path, int, float]]:
        """(path, size, last used) of every cached file."""
        found = []
        for sub in self.root.iterdir():
            if sub.is_dir() and len(sub.name) == 2:
                for path in sub.iterdir():
                    with contextlib.suppress(FileNotFoundError):
                        st = path.stat()
                        found.append((path, st.st_size, st.st_mtime))
        return found

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def evict(self, extra_keep: set[str] = frozenset()) -> int:
        """Remove least recently used files until the cache fits its cap; returns bytes freed.

        Pinned files and extra_keep stay even when that leaves the cache over its cap."""
        with self._lock:
            entries = sorted(self.entries(), key=lambda e: e[2])
            total = sum(size for _, size, _ in entries)
            freed = 0
            for path, size, _ in entries:
                if total - freed <= self.max_bytes:
                    break
                if path.name in self._pins or path.name in extra_keep:
                    continue
                _unlink(path)
                freed += size
                log.info("cache full: evicted %s (%d bytes)", path.name[:12], size)
            return freed

    def link_into(self, sha256: str, dest: Path) -> Path:
        """Put the cached file at dest without copying where the file system allows (a hard link)."""
        source = self.path_for(sha256)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        _unlink(dest)
        try:
            os.link(source, dest)
        except OSError:  # another drive, or a file system without hard links
            shutil.copyfile(source, dest)
        return dest
