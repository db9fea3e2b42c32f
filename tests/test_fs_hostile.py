"""Hostile and bad input that the other suites leave out; docs/RELIABILITY.md
lists every kind of bad input with the test that checks it.

Sizes, paths and extended attributes at and past the limits: each operation
runs on a fresh mindbfs mount and on a tmpfs, and both must give the answer
the test expects (a value, or an errno's name). Where mindbfs answers
otherwise by design (keys longer than 4096 bytes, fallocate reserving
nothing) the test checks each answer. Afterwards the tree is the same after
a remount and `mindb check` finds the store sound.

Damaged store files: a store holding files in a data segment, in two
manifests and in the log (committed, not yet checkpointed) is copied for
each case, one of its files is damaged (bytes flipped, cut to 0 or to half,
a newer version), and mindbfs is started on it. Either it refuses, exits 1
with a few lines "mindbfs: ..." that name the problem, and leaves the
store's files as they were; or it mounts and every file reads back whole or
fails with EIO (never with other bytes), and `mindb check` names exactly the
files that fail. Damage in the log's records after the last checkpoint is
the exception the cases "wal-*-in-log-tail" pin down: the log ends there,
the changes after it are gone, and a log line is the only sign.

There is no long form: every case runs in CI.
"""

import ctypes
import errno
import hashlib
import os
import random
import re
import stat
import struct
import subprocess

import pytest

from conftest import Mount

KIB = 1024
MIB = 1024 * KIB
MAX_SIZE = (1 << 63) - 1  # the largest file size Linux (and the store) allows

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
libc.truncate.argtypes = [ctypes.c_char_p, ctypes.c_int64]
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
AT_FDCWD = -100
RENAME_EXCHANGE = 2


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def attempt(fn, *args, **kwargs):
    """fn's result, or the errno name ("ENOENT"...) of the OSError it raised."""
    try:
        return fn(*args, **kwargs)
    except OSError as e:
        return errname(e)


def _check(ret):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def fallocate(fd, mode, offset, length):
    _check(libc.fallocate(fd, mode, offset, length))


def truncate64(path, size):
    """truncate(2) with any 64-bit size, negative ones too."""
    _check(libc.truncate(os.fsencode(path), size))


def exchange(a, b):
    _check(libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE))


def write_file(path, data, dir_fd=None):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def on_both(fs, ref, what, op, expect):
    """Runs op(root) on tmpfs, then on mindbfs: each must answer `expect`."""
    got = attempt(op, ref)
    assert got == expect, f"{what}: tmpfs answered {got!r:.300}, the test expects {expect!r:.300}"
    got = attempt(op, fs.mnt)
    assert got == expect, f"{what}: mindbfs answered {got!r:.300}, tmpfs {expect!r:.300}"


def tree_digest(root):
    """relative path -> "dir", a symlink's mode and target, or a file's size
    and the sha256 of its ends, walked through descriptors (the paths may be
    longer than PATH_MAX)."""
    out = {}

    def walk(dfd, rel):
        for name in sorted(os.listdir(dfd)):
            path = f"{rel}/{name}" if rel else name
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                out[path] = "dir"
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=dfd)
                try:
                    walk(sub, path)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(st.st_mode):
                # The first and the last MiB: files here may be 8 EiB long.
                fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
                try:
                    tail = max(0, st.st_size - MIB)
                    ends = os.pread(fd, MIB, 0) + os.pread(fd, st.st_size - tail, tail)
                finally:
                    os.close(fd)
                out[path] = (st.st_size, hashlib.sha256(ends).hexdigest())
            else:
                out[path] = (stat.filemode(st.st_mode), os.readlink(name, dir_fd=dfd))

    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        walk(top, "")
    finally:
        os.close(top)
    return out


def assert_survives_remount(fs, what, before=None):
    """The tree is the same after a remount, and `mindb check` passes."""
    before = tree_digest(fs.mnt) if before is None else before
    fs.remount()
    after = tree_digest(fs.mnt)
    assert after == before, f"{what}: the tree changed across a remount: " + ", ".join(
        sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)))[:2000]
    fs.stop()
    r = fs.cli("check", expect=None)
    assert r.returncode == 0, (f"{what}: mindb check: expected exit 0, got {r.returncode}\n"
                               f"{(r.stdout + r.stderr).decode(errors='replace')}")


# ---- keys longer than 4096 bytes ------------------------------------------------------
#
# A key is a whole path, at most 4096 bytes. The kernel refuses a path
# string of 4096 bytes or more by itself (test_fs_posix.py), but the *at()
# calls on a directory descriptor go deeper: there ext4 and tmpfs have no
# limit, and mindbfs answers ENAMETOOLONG.

COMPONENT = "c" * 200


def dig(root, depth):
    """Makes `depth` nested directories through descriptors, stopping at the
    first refusal; returns each mkdir's answer and the deepest descriptor."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    answers = []
    for _ in range(depth):
        answers.append(attempt(os.mkdir, COMPONENT, 0o755, dir_fd=fd))
        if answers[-1] is not None:
            break
        deeper = os.open(COMPONENT, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    return answers, fd


def test_tree_deeper_than_a_key_stops_at_4096_bytes(fs, tmpfs_dir):
    # "top" and 20 levels of "/" + 200 bytes: 4023 bytes; a 21st makes 4224.
    for root in (tmpfs_dir, fs.mnt):
        os.mkdir(root / "top")
    answers, fd = dig(tmpfs_dir / "top", 21)
    os.close(fd)
    assert answers == [None] * 21, f"tmpfs: mkdir at each depth: {answers}"
    answers, fd = dig(fs.mnt / "top", 21)
    try:
        assert answers == [None] * 20 + ["ENAMETOOLONG"], (
            f"mindbfs: mkdir at each depth: expected 20 x None, then ENAMETOOLONG; got {answers}")
        fits = "f" * (4096 - (3 + 20 * 201) - 1)  # a key of exactly 4096 bytes
        write_file(fits, b"at the bottom", dir_fd=fd)
        too_long = fits + "x"
        for what, op in [
            ("create", lambda: os.close(os.open(too_long, os.O_CREAT | os.O_WRONLY, 0o644,
                                                dir_fd=fd))),
            ("mkdir", lambda: os.mkdir(too_long, dir_fd=fd)),
            ("symlink", lambda: os.symlink("target", too_long, dir_fd=fd)),
            ("link", lambda: os.link(fits, too_long, src_dir_fd=fd, dst_dir_fd=fd)),
            ("rename", lambda: os.rename(fits, too_long, src_dir_fd=fd, dst_dir_fd=fd)),
        ]:
            got = attempt(op)
            assert got == "ENAMETOOLONG", f"{what} making a 4097-byte key: got {got}"
        assert os.listdir(fd) == [fits], f"left in the deepest directory: {os.listdir(fd)}"
    finally:
        os.close(fd)
    assert_survives_remount(fs, "the deep tree")


def test_rename_that_would_make_a_key_too_long_changes_nothing(fs, tmpfs_dir):
    # "r" and 19 levels hold a file whose key is 1 + 19 * 201 + 81 = 3901
    # bytes; "r" renamed to a 250-byte name would make it 4150.
    def build(root):
        os.mkdir(root / "r")
        answers, fd = dig(root / "r", 19)
        try:
            assert answers == [None] * 19, answers
            write_file("f" * 80, b"at the bottom", dir_fd=fd)
        finally:
            os.close(fd)
        os.mkdir(root / ("X" * 250))

    for root in (tmpfs_dir, fs.mnt):
        build(root)
    before = tree_digest(fs.mnt)
    assert tree_digest(tmpfs_dir) == before
    long_name = "R" * 250
    got = attempt(exchange, tmpfs_dir / "r", tmpfs_dir / ("X" * 250))
    assert got is None, f"tmpfs: exchange with a 250-byte name: {got}"
    got = attempt(os.rename, tmpfs_dir / ("X" * 250), tmpfs_dir / long_name)
    assert got is None, f"tmpfs: rename to a 250-byte name: {got}"
    got = attempt(exchange, fs.mnt / "r", fs.mnt / ("X" * 250))
    assert got == "ENAMETOOLONG", f"mindbfs: exchange with a 250-byte name: {got}"
    got = attempt(os.rename, fs.mnt / "r", fs.mnt / long_name)
    assert got == "ENAMETOOLONG", f"mindbfs: rename to a 250-byte name: {got}"
    after = tree_digest(fs.mnt)
    assert after == before, "a refused rename moved something: " + ", ".join(
        sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)))[:2000]
    assert_survives_remount(fs, "the refused renames", before)


# ---- sizes at the limit -------------------------------------------------------------


HUGE_SIZES = [1 << 40, (1 << 44) + 1, 1 << 62, MAX_SIZE]


def test_truncate_to_huge_sizes(fs_wb, tmpfs_dir):
    data = random.Random(1).randbytes(100_000)
    for root in (tmpfs_dir, fs_wb.mnt):
        write_file(root / "f", data)
        write_file(root / "g", b"second")
        write_file(root / "h", b"third")

    def grow(r, size):
        truncate64(r / "f", size)
        fd = os.open(r / "f", os.O_RDONLY)
        try:
            return (os.fstat(fd).st_size, os.pread(fd, 10, size - 10),
                    attempt(os.pread, fd, 1, size), os.pread(fd, len(data), 0) == data)
        finally:
            os.close(fd)

    for size in HUGE_SIZES:
        on_both(fs_wb, tmpfs_dir, f"truncate to {size}", lambda r: grow(r, size),
                expect=(size, bytes(10), "EINVAL" if size == MAX_SIZE else b"", True))
    on_both(fs_wb, tmpfs_dir, "truncate to -1", lambda r: truncate64(r / "f", -1), "EINVAL")
    on_both(fs_wb, tmpfs_dir, "truncate to 2^63 (-2^63 as off_t)",
            lambda r: truncate64(r / "f", -(1 << 63)), "EINVAL")
    for name in ("g", "h"):
        on_both(fs_wb, tmpfs_dir, f"{name} at the largest size",
                lambda r: (truncate64(r / name, MAX_SIZE), os.stat(r / name).st_size)[1],
                MAX_SIZE)
    assert_survives_remount(fs_wb, "files of 8 EiB")
    # Three files of 2^63 - 1 bytes: their sum passes 2^64, and must not
    # wrap round to less than two of them.
    out = fs_wb.cli("stat").stdout.decode()
    m = re.search(r"^logical bytes: (\d+)", out, re.M)
    assert m and int(m.group(1)) >= 2 * MAX_SIZE, (
        f"mindb stat: expected logical bytes of at least {2 * MAX_SIZE} (three files of "
        f"{MAX_SIZE}), got:\n{out}")


def test_write_at_offsets_near_the_maximum_file_size(fs_wb, tmpfs_dir):
    def op(r):
        fd = os.open(r / "w", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            out = [attempt(os.pwrite, fd, b"x", MAX_SIZE - 1),   # the last byte a file has
                   attempt(os.pwrite, fd, b"yz", MAX_SIZE - 1),  # would end past it
                   attempt(os.pwrite, fd, b"x", MAX_SIZE),       # starts past it
                   os.fstat(fd).st_size,
                   attempt(os.pread, fd, 1, MAX_SIZE - 1),
                   attempt(os.pread, fd, 1, 1 << 44),
                   attempt(os.pwrite, fd, b"q", 1 << 44)]
        finally:
            os.close(fd)
        fd = os.open(r / "w", os.O_WRONLY | os.O_APPEND)
        try:
            out.append(attempt(os.write, fd, b"a"))  # appending at the largest size
        finally:
            os.close(fd)
        return out

    on_both(fs_wb, tmpfs_dir, "writes near 2^63", op,
            expect=[1, "EINVAL", "EINVAL", MAX_SIZE, b"x", b"\0", 1, "EFBIG"])
    assert_survives_remount(fs_wb, "a file written at 2^63 - 2")


def test_fallocate_past_the_free_space_reserves_nothing(fs, tmpfs_dir):
    # tmpfs (and ext4) reserve the space or answer ENOSPC; mindbfs stores
    # chunks compressed when they are written, so it cannot reserve any:
    # it makes the file as long and reserves nothing (ops_file.c).
    def alloc(r):
        fd = os.open(r / "big", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            return attempt(fallocate, fd, 0, 0, 1 << 40), os.fstat(fd).st_size
        finally:
            os.close(fd)

    got = alloc(tmpfs_dir)
    assert got == ("ENOSPC", 0), f"tmpfs: fallocate of 1 TiB: expected ENOSPC, got {got}"
    got = alloc(fs.mnt)
    assert got == (None, 1 << 40), f"mindbfs: fallocate of 1 TiB: expected 0, got {got}"

    def bounds(r):
        fd = os.open(r / "small", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            return [attempt(fallocate, fd, 0, 0, 0), attempt(fallocate, fd, 0, -1, 10),
                    attempt(fallocate, fd, 0, MAX_SIZE, 1), attempt(fallocate, fd, 0, 10, -1),
                    attempt(fallocate, fd, 0, MAX_SIZE - 10, 10)]
        finally:
            os.close(fd)

    on_both(fs, tmpfs_dir, "fallocate at the bounds", bounds,
            ["EINVAL", "EINVAL", "EFBIG", "EINVAL", None])
    assert_survives_remount(fs, "fallocated files")


# ---- extended attributes past the list's limit --------------------------------------------


def test_xattr_names_longer_together_than_a_list_can_hold(fs, tmpfs_dir):
    # 300 names of 248 bytes: 74,700 bytes of list, over the 65,536 a
    # listxattr(2) can return. Each still works by name.
    names = [f"user.{i:03d}" + "m" * 240 for i in range(300)]
    for root in (tmpfs_dir, fs.mnt):
        write_file(root / "f", b"x")

    def set_all(r):
        for i, n in enumerate(names):
            os.setxattr(r / "f", n, b"%d" % i)

    on_both(fs, tmpfs_dir, "set 300 long names", set_all, None)
    on_both(fs, tmpfs_dir, "list them", lambda r: os.listxattr(r / "f"), "E2BIG")
    on_both(fs, tmpfs_dir, "get each", lambda r: [os.getxattr(r / "f", n) for n in names],
            [b"%d" % i for i in range(300)])
    fs.remount()
    on_both(fs, tmpfs_dir, "list after a remount", lambda r: os.listxattr(r / "f"), "E2BIG")

    def remove_some(r):
        for n in names[:100]:
            os.removexattr(r / "f", n)
        return sorted(os.listxattr(r / "f"))

    on_both(fs, tmpfs_dir, "list once under the limit", remove_some, sorted(names[100:]))
    assert_survives_remount(fs, "long xattr names")


# ---- damaged store files --------------------------------------------------------------------


def segment_offset(pos):
    """File offset of log position pos in its 64 MiB segment (FORMAT.md)."""
    return pos % (64 * MIB)


@pytest.fixture(scope="module")
def damaged_template(tmp_path_factory):
    """A store holding files in data segment 1 ("old/*", checkpointed when
    the first mount ended) and in the log only ("new/*", fsynced, then the
    daemon was killed): (store, {name: contents}, facts about its log)."""
    base = tmp_path_factory.mktemp("damaged-template")
    store, mnt = base / "store", base / "mnt"
    mnt.mkdir()
    rng = random.Random(7)
    files = {}
    m = Mount(store, mnt)
    try:
        m.start()
        (mnt / "old").mkdir()
        for i, size in enumerate([0, 1, 5000, 65536, 65537, 200_000, 300_000]):
            files[f"old/f{i}"] = rng.randbytes(size)
            write_file(mnt / f"old/f{i}", files[f"old/f{i}"])
        m.stop()
        m.start()
        (mnt / "new").mkdir()
        # Less than a chunk each: a write's whole 64 KiB chunks would go to
        # a data segment, not the log.
        for i, size in enumerate([10, 30_000, 65_535]):
            files[f"new/g{i}"] = rng.randbytes(size)
            write_file(mnt / f"new/g{i}", files[f"new/g{i}"])
            fd = os.open(mnt / f"new/g{i}", os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        fd = os.open(mnt / "new", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        m.kill9()
    except BaseException:
        m._cleanup_quietly()
        raise
    newest = sorted(store.glob("manifest.*"))[-1].read_bytes()
    checkpoint_pos = struct.unpack_from("<Q", newest, 24)[0]
    dump = m.cli("wal-dump").stdout.decode().splitlines()
    tail_pos = int(dump[0].split()[0])  # the first record after the checkpoint
    segs = sorted((store / "data").glob("*.seg"))
    assert len(segs) == 1 and (store / "wal" / "0000000000000000.wal").is_file(), (
        sorted(p.name for p in store.rglob("*")))
    assert tail_pos >= checkpoint_pos and tail_pos < 32 * MIB, (checkpoint_pos, tail_pos)
    return store, files, {"checkpoint_pos": checkpoint_pos, "tail_pos": tail_pos}


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def put_u32(path, offset, value):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<I", value))


def cut(path, size):
    os.truncate(path, size)


def manifests(s):
    return sorted(s.glob("manifest.*"))


WAL0 = "wal/0000000000000000.wal"
SEG1 = "data/00000001.seg"

# case -> (damage(store, log facts), outcome, what the daemon's lines must say)
# outcome: "refused" (exit 1, files unchanged), "intact" (mounts, every file
# whole), "eio" (mounts, some old/* files fail with EIO), "log-cut" (mounts,
# the new/* files after the damage are gone).
DAMAGE = {
    "FORMAT-flipped": (lambda s, f: flip(s / "FORMAT", 8), "refused", r"not a mindb store"),
    "FORMAT-cut-to-0": (lambda s, f: cut(s / "FORMAT", 0), "refused", r"not a mindb store"),
    "FORMAT-cut-to-half": (lambda s, f: cut(s / "FORMAT", 10), "refused", r"not a mindb store"),
    "FORMAT-newer-version": (lambda s, f: (s / "FORMAT").write_bytes(b"mindb store format 4\n"),
                             "refused", r"newer format version"),
    "LOCK-garbage": (lambda s, f: (s / "LOCK").write_bytes(b"\xff" * 64), "intact", None),
    "LOCK-naming-a-live-process": (lambda s, f: (s / "LOCK").write_bytes(b"1\n"), "intact",
                                   None),
    "LOCK-cut-to-0": (lambda s, f: cut(s / "LOCK", 0), "intact", None),
    "LOCK-cut-to-half": (lambda s, f: cut(s / "LOCK", (s / "LOCK").stat().st_size // 2),
                         "intact", None),
    "manifest-newest-flipped": (lambda s, f: flip(manifests(s)[-1], 60), "intact",
                                r"newest manifest is damaged; using manifest\.0+1\b"),
    "manifest-newest-cut-to-0": (lambda s, f: cut(manifests(s)[-1], 0), "intact",
                                 r"newest manifest is damaged"),
    "manifest-newest-cut-to-half": (
        lambda s, f: cut(manifests(s)[-1], manifests(s)[-1].stat().st_size // 2), "intact",
        r"newest manifest is damaged"),
    "manifest-older-flipped": (lambda s, f: flip(manifests(s)[0], 30), "intact", None),
    "manifest-older-cut-to-0": (lambda s, f: cut(manifests(s)[0], 0), "intact", None),
    "manifest-older-cut-to-half": (
        lambda s, f: cut(manifests(s)[0], manifests(s)[0].stat().st_size // 2), "intact", None),
    "manifest-tmp-left-over": (lambda s, f: (s / "manifest.tmp").write_bytes(b"\xff" * 5000),
                               "intact", None),
    "manifests-all-cut-to-0": (lambda s, f: [cut(p, 0) for p in manifests(s)], "refused",
                               r"manifest\.0+2: .*damaged"),
    "manifests-all-removed": (lambda s, f: [p.unlink() for p in manifests(s)], "refused",
                              r"no manifest"),
    "wal-header-flipped": (lambda s, f: flip(s / WAL0, 20), "refused",
                           r"segment 0000000000000000\.wal has a damaged header"),
    "wal-header-newer-version": (lambda s, f: put_u32(s / WAL0, 8, 2), "refused",
                                 r"0000000000000000\.wal"),
    "wal-cut-to-0": (lambda s, f: cut(s / WAL0, 0), "refused",
                     r"log ends at 0, before the manifest's position"),
    "wal-cut-to-half": (lambda s, f: cut(s / WAL0, 32 * MIB), "intact", None),
    "wal-cut-before-the-checkpoint": (
        lambda s, f: cut(s / WAL0, segment_offset(f["checkpoint_pos"]) // 2), "refused",
        r"before the manifest's position"),
    "wal-removed": (lambda s, f: (s / WAL0).unlink(), "refused",
                    r"before the manifest's position"),
    "wal-flipped-in-log-tail": (lambda s, f: flip(s / WAL0, segment_offset(f["tail_pos"]) + 30),
                                "log-cut", r"log ends at position \d+: checksum mismatch"),
    "wal-cut-in-log-tail": (lambda s, f: cut(s / WAL0, segment_offset(f["tail_pos"]) + 100),
                            "log-cut", r"log ends at position \d+"),
    "wal-flipped-past-its-end": (lambda s, f: flip(s / WAL0, 48 * MIB), "intact", None),
    "wal-spare-garbage": (lambda s, f: [flip(p, 100) for p in (s / "wal").glob("spare-*")],
                          "intact", None),
    "wal-spare-cut-to-0": (lambda s, f: [cut(p, 0) for p in (s / "wal").glob("spare-*")],
                           "intact", None),
    "wal-spare-cut-to-half": (
        lambda s, f: [cut(p, 32 * MIB) for p in (s / "wal").glob("spare-*")], "intact", None),
    "stray-files": (lambda s, f: [(s / d / "notes.txt").write_bytes(b"mine\n")
                                  for d in ("", "wal", "data")], "intact", None),
    "segment-header-flipped": (lambda s, f: flip(s / SEG1, 20), "refused",
                               r"data segment 00000001\.seg: damaged header"),
    "segment-newer-version": (lambda s, f: put_u32(s / SEG1, 8, 2), "refused",
                              r"data segment 00000001\.seg: written by a newer format version"),
    "segment-flipped-in-a-chunk": (
        lambda s, f: flip(s / SEG1, (s / SEG1).stat().st_size // 2), "eio",
        r"data segment 00000001 offset \d+"),
    "segment-cut-to-half": (lambda s, f: cut(s / SEG1, (s / SEG1).stat().st_size // 2), "eio",
                            r"data segment 00000001 offset \d+"),
    "segment-cut-to-0": (lambda s, f: cut(s / SEG1, 0), "eio", r"data segment 00000001 "),
    "segment-removed": (lambda s, f: (s / SEG1).unlink(), "eio", r"data segment 00000001 "),
}

# What a refused start may change: the cut log segment had no header, which
# the log takes for a segment it made and never used, and keeps as a spare.
ALLOWED_CHANGES = {"wal-cut-to-0": {WAL0}}


def store_state(store):
    """relative path -> what shows any change of its bytes: the contents of
    small files and of the log's segments, the size and times of the others
    (spares). LOCK only by name: every start writes its pid there, as it is
    meant to. The log's segments by contents: a refused start rewrites the
    block after the log's last record with zeros (wal_close), which are
    what was there."""
    out = {}
    for p in sorted(store.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(store))
        st = p.stat()
        if rel == "LOCK":
            out[rel] = "present"
        elif st.st_size <= MIB or re.fullmatch(r"wal/[0-9a-f]{16}\.wal", rel):
            h = hashlib.sha1()
            with open(p, "rb") as f:
                while chunk := f.read(4 * MIB):
                    h.update(chunk)
            out[rel] = (st.st_size, h.hexdigest())
        else:
            out[rel] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return out


def daemon_lines(m):
    return [line for line in m.stderr_text().splitlines() if line.strip()]


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_store_file(damaged_template, tmpfs_dir, case):
    template, files, facts = damaged_template
    damage, outcome, says = DAMAGE[case]
    store, mnt = tmpfs_dir / "store", tmpfs_dir / "mnt"
    subprocess.run(["cp", "-a", str(template), str(store)], check=True)
    damage(store, facts)
    before = store_state(store)
    mnt.mkdir()
    m = Mount(store, mnt)
    try:
        m.start()
        refused = None
    except pytest.fail.Exception as e:
        refused = str(e)
    if outcome == "refused":
        lines = daemon_lines(m)
        assert any(re.search(says, line) for line in lines), (
            f"{case}: no line of the daemon matches {says!r}:\n" + "\n".join(lines))
        assert refused is not None, f"{case}: expected a refusal, but it mounted"
        assert m.proc.returncode == 1, f"{case}: exit {m.proc.returncode}, expected 1\n{refused}"
        assert lines and len(lines) <= 4 and all(line.startswith("mindbfs: ") for line in lines), (
            f"{case}: expected a few lines 'mindbfs: ...', got:\n" + "\n".join(lines))
        after = store_state(store)
        allowed = ALLOWED_CHANGES.get(case, set())
        changed = sorted(k for k in before.keys() | after.keys()
                         if before.get(k) != after.get(k) and k not in allowed
                         and not (allowed and k.startswith("wal/spare-")
                                  and after.get(k, (None,))[0] == 0))
        assert not changed, f"{case}: the refused start changed {changed}"
        r = m.cli("check", expect=None)
        err = r.stderr.decode(errors="replace")
        assert r.returncode == 1 and (not says or re.search(says, err)), (
            f"{case}: mindb check: expected exit 1 and a line matching {says!r}, got exit "
            f"{r.returncode}:\n{err}")
        return

    assert refused is None, f"{case}: expected a mount, it was refused:\n{refused}"
    read = {}
    for name, data in files.items():
        got = attempt((mnt / name).read_bytes)
        assert got in ("EIO", "ENOENT", data), (
            f"{case}: {name}: expected its {len(data)} bytes, EIO or ENOENT; got "
            f"{got if isinstance(got, str) else f'{len(got)} other bytes'}")
        read[name] = "whole" if got == data else got
    failing = sorted(n for n, v in read.items() if v == "EIO")
    missing = sorted(n for n, v in read.items() if v == "ENOENT")
    if outcome == "intact":
        assert not failing and not missing, f"{case}: failing {failing}, missing {missing}"
    elif outcome == "eio":
        assert failing and not missing and all(n.startswith("old/") for n in failing), (
            f"{case}: expected files of the segment to fail: failing {failing}, missing {missing}")
    else:  # log-cut: the history keeps a prefix
        names = sorted(n for n in files if n.startswith("new/"))
        assert missing and not failing and missing == names[len(names) - len(missing):], (
            f"{case}: expected the last new/* files gone: failing {failing}, missing {missing}")
    if says:
        lines = daemon_lines(m)
        assert any(re.search(says, line) for line in lines), (
            f"{case}: no line of the daemon matches {says!r}:\n" + "\n".join(lines))
    # What it shows, it keeps, and the store takes writes.
    write_file(mnt / "written-after", b"still works\n")
    m.stop()
    r = m.cli("check", expect=None)
    out = r.stdout.decode(errors="replace")
    named = sorted(re.findall(r"^damaged: (\S+): ", out, re.M))
    assert named == failing and r.returncode == (1 if failing else 0), (
        f"{case}: mindb check: expected exit {1 if failing else 0} naming {failing}, got exit "
        f"{r.returncode}:\n{out}{r.stderr.decode(errors='replace')}")
    assert m.cli("get", "written-after").stdout == b"still works\n"
    if case == "stray-files":
        kept = [d for d in ("", "wal", "data") if (store / d / "notes.txt").is_file()]
        assert kept == ["", "wal", "data"], f"{case}: notes.txt left only in {kept}"
