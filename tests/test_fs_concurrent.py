"""Many programs at once on one mount: writers and readers on many files, appends
to one file, writes to disjoint parts of one file. Readers must only ever see
complete files where the writers published them complete, and after an
unmount the store (read with the mindb CLI) must hold exactly what the mount
showed."""

import hashlib
import os
import random
import subprocess
import threading

from conftest import words

KIB = 1024
MIB = 1024 * KIB

WRITERS = 8
FILES_PER_WRITER = 50
READERS = 4


def file_data(seed, size):
    rng = random.Random(seed)
    if seed % 3 == 0:
        return rng.randbytes(size)
    if seed % 3 == 1:
        return words(rng, size)
    return words(rng, size // 2) + rng.randbytes(size - size // 2)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def write_all(fd, data, rng):
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:rng.choice([1, 100, 4096, 65536, 200_000, 1 << 20])])
        view = view[n:]


class Errors:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def add(self, text):
        with self.lock:
            self.items.append(text)


def test_concurrent_writers_and_readers_then_cli_sees_what_mount_showed(fs):
    mnt = fs.mnt
    (mnt / "shared").mkdir()
    published = []  # (relative path, sha256, size): complete and final
    intended = {}  # relative path -> (sha256, size), recorded just before the rename
    lock = threading.Lock()
    errors = Errors()
    writers_done = threading.Event()
    read_checks = [0]

    def writer(w):
        rng = random.Random(1000 + w)
        (mnt / f"w{w}").mkdir()
        (mnt / f"w{w}" / "sub").mkdir()
        try:
            for i in range(FILES_PER_WRITER):
                seed = w * 1000 + i
                size = rng.choice([0, 1, 4095, 4096, 65537, rng.randint(0, MIB),
                                   rng.randint(0, MIB)])
                data = file_data(seed, size)
                where = rng.choice(["w%d" % w, "w%d/sub" % w, "shared"])
                if i % 2:  # published by rename: complete whenever it is visible
                    rel = f"{where}/r-{w}-{i}"
                    tmp = mnt / f"{where}/.tmp-{w}-{i}"
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    write_all(fd, data, rng)
                    os.close(fd)
                    with lock:
                        intended[rel] = (sha(data), size)
                    os.rename(tmp, mnt / rel)
                else:  # written in place
                    rel = f"{where}/d-{w}-{i}"
                    fd = os.open(mnt / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    write_all(fd, data, rng)
                    os.close(fd)
                with lock:
                    published.append((rel, sha(data), size))
        except OSError as e:
            errors.add(f"writer {w}: {e!r}")

    def reader(r):
        rng = random.Random(r)
        while not writers_done.is_set():
            with lock:
                pick = rng.choice(published) if published else None
            if pick:
                rel, digest, size = pick
                try:
                    data = (mnt / rel).read_bytes()
                except OSError as e:
                    errors.add(f"reader {r}: {rel}: {e!r}")
                    return
                if len(data) != size or sha(data) != digest:
                    errors.add(f"reader {r}: {rel}: read {len(data)} bytes, expected {size}"
                               f"{'' if sha(data) == digest else ', content differs'}")
                read_checks[0] += 1
            # a file published by rename is complete as soon as its name shows
            d = rng.choice(["shared"] + [f"w{w}" for w in range(WRITERS)])
            try:
                names = [n for n in os.listdir(mnt / d) if n.startswith("r-")]
            except FileNotFoundError:
                continue  # its writer has not made it yet
            except OSError as e:
                errors.add(f"reader {r}: listdir {d}: {e!r}")
                return
            if names:
                rel = f"{d}/{rng.choice(names)}"
                try:
                    data = (mnt / rel).read_bytes()
                except OSError as e:
                    errors.add(f"reader {r}: {rel}: {e!r}")
                    return
                with lock:
                    want = intended.get(rel)
                if want is None:
                    errors.add(f"reader {r}: {rel} visible before its writer renamed it")
                elif (sha(data), len(data)) != want:
                    errors.add(f"reader {r}: {rel} visible but incomplete: "
                               f"{len(data)} of {want[1]} bytes")
                read_checks[0] += 1

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    readers = [threading.Thread(target=reader, args=(r,)) for r in range(READERS)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join(timeout=300)
    writers_done.set()
    for t in readers:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in writers + readers), "threads hung"
    assert not errors.items, "\n".join(errors.items[:30])
    assert len(published) == WRITERS * FILES_PER_WRITER
    assert read_checks[0] > 0

    # What the mount shows: os.walk and cat of every file
    walked = set()
    shown = {}
    for dirpath, dirnames, filenames in os.walk(mnt):
        for n in dirnames + filenames:
            walked.add(os.path.relpath(os.path.join(dirpath, n), mnt))
        for n in filenames:
            p = os.path.join(dirpath, n)
            r = subprocess.run(["cat", p], capture_output=True, timeout=60)
            assert r.returncode == 0, r.stderr
            shown[os.path.relpath(p, mnt)] = (sha(r.stdout), len(r.stdout))
    expected = {rel: (digest, size) for rel, digest, size in published}
    assert shown == expected, (
        f"missing: {sorted(expected.keys() - shown.keys())[:10]}, "
        f"unexpected: {sorted(shown.keys() - expected.keys())[:10]}, "
        f"different: {[k for k in expected if k in shown and shown[k] != expected[k]][:10]}")
    assert not any(".tmp-" in k for k in walked)

    fs.stop()
    fs.cli("check")
    listed = fs.cli("ls", "-R").stdout.decode().splitlines()
    assert {k.rstrip("/") for k in listed} == walked, (
        f"mindb ls -R only: {sorted({k.rstrip('/') for k in listed} - walked)[:10]}; "
        f"os.walk only: {sorted(walked - {k.rstrip('/') for k in listed})[:10]}")
    for rel, (digest, size) in sorted(shown.items()):
        out = fs.cli("get", rel).stdout
        assert (sha(out), len(out)) == (digest, size), f"mindb get {rel} differs from cat"
    # sizes in the long listing agree too
    for line in fs.cli("ls", "-l", "-R").stdout.decode().splitlines():
        fields = line.split()
        key = fields[-1]
        if key in shown:
            assert int(fields[1]) == shown[key][1], line


def test_concurrent_o_append_writers_interleave_whole_records(fs_wb):
    path = fs_wb.mnt / "log"
    threads, records, size = 8, 300, 100
    errors = Errors()

    def appender(t):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                for i in range(records):
                    rec = (f"thread {t} record {i:05d} ".encode() + b"x" * size)[:size - 1] + b"\n"
                    assert os.write(fd, rec) == size
            finally:
                os.close(fd)
        except (OSError, AssertionError) as e:
            errors.add(f"appender {t}: {e!r}")

    ts = [threading.Thread(target=appender, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not errors.items, errors.items

    def check(data):
        assert len(data) == threads * records * size
        seen = {t: [] for t in range(threads)}
        for off in range(0, len(data), size):
            rec = data[off:off + size]
            fields = rec.split()
            assert rec.endswith(b"\n") and fields[0] == b"thread", f"torn record at {off}: {rec!r}"
            seen[int(fields[1])].append(int(fields[3]))
        for t in range(threads):
            assert seen[t] == list(range(records)), f"thread {t}'s records out of order or lost"

    check(path.read_bytes())
    fs_wb.remount()
    check(path.read_bytes())


def test_concurrent_pwrite_to_disjoint_stripes_of_one_file(fs_wb):
    path = fs_wb.mnt / "striped"
    threads, stripe, rounds = 8, 64 * KIB + 1000, 6
    total = threads * stripe * rounds
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, total)
    errors = Errors()

    def block(t, r):
        return random.Random(t * 100 + r).randbytes(stripe)

    def striper(t):
        try:
            for r in range(rounds):
                off = (r * threads + t) * stripe
                data = block(t, r)
                assert os.pwrite(fd, data, off) == stripe
        except (OSError, AssertionError) as e:
            errors.add(f"thread {t}: {e!r}")

    try:
        ts = [threading.Thread(target=striper, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=120)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert not errors.items, errors.items
    expected = b"".join(block(t, r) for r in range(rounds) for t in range(threads))
    assert path.read_bytes() == expected
    fs_wb.remount()
    got = path.read_bytes()
    assert len(got) == total
    assert got == expected, "content differs after remount"
