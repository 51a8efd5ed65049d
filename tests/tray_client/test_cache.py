"""The content-addressed input cache: verified downloads, reuse, one retry on a bad hash, LRU cap."""

import hashlib
import os
import time

import pytest

from tray_client.cache import InputCache, InputHashMismatch


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Source:
    """A download function serving given bodies in turn, counting calls."""

    def __init__(self, *bodies: bytes):
        self.bodies = list(bodies)
        self.calls = 0

    def __call__(self, dest):
        body = self.bodies[min(self.calls, len(self.bodies) - 1)]
        self.calls += 1
        dest.write_bytes(body)


def test_a_second_fetch_downloads_nothing(tmp_path):
    cache = InputCache(tmp_path, 10**6)
    data = b"blend file bytes"
    source = Source(data)
    first = cache.fetch(sha(data), source, name="scene.blend", size=len(data))
    second = cache.fetch(sha(data), source, name="scene.blend", size=len(data))
    assert first == second and first.read_bytes() == data
    assert source.calls == 1 and cache.downloads == 1


def test_a_hash_mismatch_is_downloaded_again_once(tmp_path):
    cache = InputCache(tmp_path, 10**6)
    good = b"the real thing"
    source = Source(b"corrupted", good)
    path = cache.fetch(sha(good), source, name="a.png")
    assert path.read_bytes() == good and source.calls == 2


def test_two_mismatches_fail_and_leave_nothing_behind(tmp_path):
    cache = InputCache(tmp_path, 10**6)
    source = Source(b"wrong", b"still wrong")
    with pytest.raises(InputHashMismatch, match="a.png"):
        cache.fetch(sha(b"right"), source, name="a.png")
    assert source.calls == 2
    assert cache.entries() == [] and list(cache.tmp.iterdir()) == []


def test_cached_files_are_read_only(tmp_path):
    cache = InputCache(tmp_path, 10**6)
    path = cache.fetch(sha(b"x"), Source(b"x"))
    assert not os.access(path, os.W_OK) or os.geteuid() == 0  # root ignores modes
    assert not (os.stat(path).st_mode & 0o222)


def test_least_recently_used_files_go_first_and_pinned_ones_stay(tmp_path):
    cache = InputCache(tmp_path, 250)
    a, b, c = b"a" * 100, b"b" * 100, b"c" * 100
    pa = cache.fetch(sha(a), Source(a))
    pb = cache.fetch(sha(b), Source(b))
    old = time.time() - 100
    os.utime(pa, (old, old))
    os.utime(pb, (old + 10, old + 10))
    cache.get(sha(a))  # a is used again: b is now the oldest
    cache.fetch(sha(c), Source(c))
    assert pa.exists() and not pb.exists()
    with cache.pinned([sha(a), sha(c)]):
        d = b"d" * 100
        cache.fetch(sha(d), Source(d))  # over the cap, but a and c are in use
        assert pa.exists() and cache.path_for(sha(c)).exists()
    assert cache.total_bytes() == 300


def test_a_cached_file_of_the_wrong_size_is_fetched_again(tmp_path):
    cache = InputCache(tmp_path, 10**6)
    data = b"0123456789"
    cache.fetch(sha(data), Source(data))
    source = Source(data)
    cache.fetch(sha(data), source, size=999)  # the portal says otherwise: do not trust the copy
    assert source.calls == 1


def test_link_into_puts_the_file_where_the_task_wants_it(tmp_path):
    cache = InputCache(tmp_path / "cache", 10**6)
    cache.fetch(sha(b"img"), Source(b"img"))
    dest = cache.link_into(sha(b"img"), tmp_path / "work" / "inputs" / "photo.png")
    assert dest.read_bytes() == b"img"


def test_not_a_hash_is_refused(tmp_path):
    with pytest.raises(ValueError):
        InputCache(tmp_path, 10).path_for("../../etc/passwd")
