"""POSIX behaviour of mindbfs, compared operation by operation with tmpfs.

Each test runs the same operations on a fresh mindbfs mount and on a fresh
tmpfs (the fixtures of conftest.py) and compares what they answer: the
return value, or the errno of the OSError (by name). After the operations the
two trees are compared whole: names, types, modes, link counts, owners,
sizes of files, contents, symlink targets, user.* xattrs and which names
are hard links of one another. Inode numbers, st_dev, st_blocks, atime and
the size of directories are never compared; times are compared as relations
(moved forward or not) or, where a test set them, as exact nanoseconds.

Tests whose answer could depend on the kernel's writeback cache run twice,
mounted with writeback_cache and with no_writeback_cache (fixture fs_wb).
"""

import ctypes
import hashlib
import mmap
import os
import pathlib
import random
import re
import shutil
import stat
import subprocess
import time

import pytest

from fscalls import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, RENAME_EXCHANGE,
                     RENAME_NOREPLACE, UTIME_NOW, UTIME_OMIT, attempt, fallocate,
                     getxattr_sized, libc, listxattr_sized, renameat2, utimensat)

KIB = 1024
MIB = 1024 * KIB

class Dirent(ctypes.Structure):  # glibc's struct dirent on 64-bit Linux
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


libc.opendir.argtypes = [ctypes.c_char_p]
libc.opendir.restype = ctypes.c_void_p
libc.readdir.argtypes = [ctypes.c_void_p]
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.telldir.argtypes = [ctypes.c_void_p]
libc.telldir.restype = ctypes.c_long
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
libc.seekdir.restype = None
libc.closedir.argtypes = [ctypes.c_void_p]


# ---- the differential harness ----------------------------------------------------


_UNSET = object()


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def j(root, *parts):
    """root/parts as bytes (parts may be str or bytes)."""
    out = os.fsencode(root)
    for p in parts:
        out += b"/" + os.fsencode(p)
    return out


TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}


def snapshot(root, times=False, ctimes=False):
    """Everything comparable about the tree under root: ({relpath: facts}, hard links)."""
    rootb = os.fsencode(root)
    entries = {}
    inodes = {}
    stack = [b""]
    while stack:
        rel = stack.pop()
        full = rootb + b"/" + rel if rel else rootb
        st = os.lstat(full)
        fmt = stat.S_IFMT(st.st_mode)
        e = {"type": TYPES.get(fmt, oct(fmt)), "nlink": st.st_nlink}
        if rel:  # the roots' own mode and owner differ by construction
            e.update(mode=oct(stat.S_IMODE(st.st_mode)), uid=st.st_uid, gid=st.st_gid)
            if times:
                e["mtime_ns"] = st.st_mtime_ns
            if ctimes:
                e["ctime_ns"] = st.st_ctime_ns
        if fmt == stat.S_IFREG:
            data = read_file(full)
            e["size"] = st.st_size
            e["data"] = data if len(data) <= 256 else (
                len(data), hashlib.sha256(data).hexdigest()[:16])
        elif fmt == stat.S_IFLNK:
            e["size"] = st.st_size
            e["target"] = os.readlink(full)
        if fmt != stat.S_IFLNK:
            e["xattrs"] = {n: os.getxattr(full, n, follow_symlinks=False)
                           for n in sorted(os.listxattr(full, follow_symlinks=False))
                           if n.startswith("user.")}
        if fmt == stat.S_IFDIR:
            names = sorted(os.listdir(full))
            e["names"] = names
            stack.extend(rel + b"/" + n if rel else n for n in names)
        else:
            inodes.setdefault(st.st_ino, []).append(rel)
        entries[rel] = e
    links = sorted(sorted(group) for group in inodes.values() if len(group) > 1)
    return entries, links


def _short(value, limit=160):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def diff_snapshots(a, b, label_a="tmpfs", label_b="mindbfs"):
    lines = []
    for key in sorted(set(a[0]) | set(b[0])):
        ea, eb = a[0].get(key), b[0].get(key)
        if ea == eb:
            continue
        if ea is None or eb is None:
            lines.append(f"{_short(key)}: {label_a} {_short(ea)} / {label_b} {_short(eb)}")
            continue
        for field in sorted(set(ea) | set(eb)):
            if ea.get(field) != eb.get(field):
                lines.append(f"{_short(key)} {field}: {label_a} {_short(ea.get(field))} / "
                             f"{label_b} {_short(eb.get(field))}")
    if a[1] != b[1]:
        lines.append(f"hard links: {label_a} {_short(a[1], 400)} / {label_b} {_short(b[1], 400)}")
    return lines


def assert_same_tree(ref, mnt, times=False):
    lines = diff_snapshots(snapshot(ref, times), snapshot(mnt, times))
    if lines:
        pytest.fail(f"the trees differ ({len(lines)} differences):\n" + "\n".join(lines[:50]))


class Pair:
    """A mindbfs mount and a tmpfs that receive the same operations."""

    def __init__(self, fs, ref):
        self.fs = fs
        self.ref = pathlib.Path(ref)

    @property
    def mnt(self):
        return self.fs.mnt

    def setup(self, fn):
        """Prepares both trees the same way (must not fail on either)."""
        fn(self.ref)
        fn(self.mnt)

    def both(self, what, op, expect=_UNSET):
        """Runs op(root) on tmpfs, then on mindbfs; the outcomes must be equal.

        `expect`, when given, is what tmpfs must answer: it keeps the test
        honest about the case it means to exercise."""
        want = attempt(op, self.ref)
        if expect is not _UNSET:
            assert want == expect, f"{what}: tmpfs answered {want!r}, the test expects {expect!r}"
        got = attempt(op, self.mnt)
        assert got == want, f"{what}: tmpfs {_short(want, 600)}, mindbfs {_short(got, 600)}"
        return got

    def check(self, times=False):
        assert_same_tree(self.ref, self.mnt, times)


@pytest.fixture
def pair(fs, tmpfs_dir):
    return Pair(fs, tmpfs_dir)


@pytest.fixture
def pair_wb(fs_wb, tmpfs_dir):
    return Pair(fs_wb, tmpfs_dir)


def slug(name):
    """A test id without spaces or quotes, for the command line."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def rand_bytes(seed, size):
    return random.Random(seed).randbytes(size)


# ---- lookups and opens ----------------------------------------------------------


def test_missing_paths_enoent(pair):
    pair.setup(lambda r: os.mkdir(r / "d"))
    cases = {
        "stat": lambda r: os.stat(r / "nope"),
        "lstat": lambda r: os.lstat(r / "d" / "nope"),
        "open": lambda r: os.open(r / "nope", os.O_RDONLY),
        "create in missing dir": lambda r: os.open(r / "nodir" / "f", os.O_CREAT | os.O_WRONLY),
        "mkdir in missing dir": lambda r: os.mkdir(r / "nodir" / "x"),
        "unlink": lambda r: os.unlink(r / "nope"),
        "rmdir": lambda r: os.rmdir(r / "nope"),
        "rename from": lambda r: os.rename(r / "nope", r / "x"),
        "rename into missing dir": lambda r: os.rename(r / "d", r / "nodir" / "d"),
        "readlink": lambda r: os.readlink(r / "nope"),
        "listdir": lambda r: os.listdir(r / "nope"),
        "chmod": lambda r: os.chmod(r / "nope", 0o600),
        "chown": lambda r: os.chown(r / "nope", 1, 1),
        "truncate": lambda r: os.truncate(r / "nope", 0),
        "utime": lambda r: os.utime(r / "nope"),
        "getxattr": lambda r: os.getxattr(r / "nope", "user.x"),
        "link from": lambda r: os.link(r / "nope", r / "x"),
        "symlink in missing dir": lambda r: os.symlink("t", r / "nodir" / "s"),
    }
    for what, op in cases.items():
        pair.both(what, op, expect="ENOENT")
    # A name that was just looked up in vain appears as soon as it is made.
    pair.both("stat before create", lambda r: os.stat(r / "late"), expect="ENOENT")
    pair.setup(lambda r: write_file(r / "late", b"here"))
    pair.both("stat after create", lambda r: os.stat(r / "late").st_size, expect=4)
    pair.both("read after create", lambda r: read_file(r / "late"), expect=b"here")
    pair.check()


def test_enotdir_through_a_file(pair):
    pair.setup(lambda r: write_file(r / "f", b"data"))
    cases = {
        "stat f/x": lambda r: os.stat(r / "f" / "x"),
        "create f/x": lambda r: os.open(r / "f" / "x", os.O_CREAT | os.O_WRONLY),
        "mkdir f/x": lambda r: os.mkdir(r / "f" / "x"),
        "listdir f": lambda r: os.listdir(r / "f"),
        "stat f/": lambda r: os.stat(j(r, "f") + b"/"),
        "open f O_DIRECTORY": lambda r: os.open(r / "f", os.O_RDONLY | os.O_DIRECTORY),
        "rmdir f": lambda r: os.rmdir(r / "f"),
        "rename into f": lambda r: os.rename(r / "f", r / "f" / "x"),
    }
    for what, op in cases.items():
        pair.both(what, op, expect="ENOTDIR")
    pair.check()


def test_directories_refuse_writing(pair):
    pair.setup(lambda r: os.mkdir(r / "d"))

    def read_dir_fd(r):
        fd = os.open(r / "d", os.O_RDONLY)
        try:
            return os.read(fd, 100)
        finally:
            os.close(fd)

    pair.both("open dir O_WRONLY", lambda r: os.open(r / "d", os.O_WRONLY), expect="EISDIR")
    pair.both("open dir O_RDWR", lambda r: os.open(r / "d", os.O_RDWR), expect="EISDIR")
    pair.both("open dir O_CREAT|O_WRONLY",
              lambda r: os.open(r / "d", os.O_CREAT | os.O_WRONLY), expect="EISDIR")
    pair.both("open dir O_CREAT|O_EXCL",
              lambda r: os.open(r / "d", os.O_CREAT | os.O_EXCL | os.O_WRONLY), expect="EEXIST")
    pair.both("read a directory fd", read_dir_fd, expect="EISDIR")
    pair.both("truncate a directory", lambda r: os.truncate(r / "d", 0), expect="EISDIR")
    pair.check()


def test_open_excl_and_creat(pair):
    def prepare(r):
        write_file(r / "f", b"old")
        os.symlink("target", r / "dangling")

    pair.setup(prepare)
    excl = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    pair.both("O_EXCL on a file", lambda r: os.open(r / "f", excl), expect="EEXIST")
    pair.both("O_EXCL on a dangling symlink", lambda r: os.open(r / "dangling", excl),
              expect="EEXIST")

    def create_new(r):
        fd = os.open(r / "new", excl, 0o640)
        os.write(fd, b"fresh")
        st = os.fstat(fd)
        os.close(fd)
        return stat.S_IMODE(st.st_mode), st.st_size, st.st_nlink

    pair.both("O_EXCL on a new name", create_new)

    def creat_existing(r):  # O_CREAT without O_EXCL opens what is there, unchanged
        fd = os.open(r / "f", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            return os.read(fd, 10), stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)

    pair.both("O_CREAT on an existing file", creat_existing, expect=(b"old", 0o644))

    def creat_through_dangling(r):  # creates the symlink's target
        fd = os.open(r / "dangling", os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"via link")
        os.close(fd)
        return read_file(r / "target")

    pair.both("O_CREAT through a dangling symlink", creat_through_dangling, expect=b"via link")
    pair.check()


def test_o_trunc(pair_wb):
    pair = pair_wb
    pair.setup(lambda r: write_file(r / "f", rand_bytes(1, 10000)))

    def trunc_write(r):
        reader = os.open(r / "f", os.O_RDONLY)
        try:
            first = len(os.pread(reader, 20000, 0))  # pages now cached
            fd = os.open(r / "f", os.O_WRONLY | os.O_TRUNC)
            size_after_open = os.fstat(fd).st_size
            os.write(fd, b"new")
            os.close(fd)
            return first, size_after_open, os.pread(reader, 20000, 0), os.fstat(reader).st_size
        finally:
            os.close(reader)

    pair.both("O_TRUNC then write", trunc_write, expect=(10000, 0, b"new", 3))

    def trunc_rdonly(r):  # Linux truncates even when opened read-only
        fd = os.open(r / "f", os.O_RDONLY | os.O_TRUNC)
        try:
            return os.fstat(fd).st_size, os.read(fd, 10)
        finally:
            os.close(fd)

    pair.both("O_RDONLY|O_TRUNC", trunc_rdonly, expect=(0, b""))
    pair.check()


def test_o_append_two_fds(pair_wb):
    pair = pair_wb
    pair.setup(lambda r: write_file(r / "log", b"start\n"))

    def appenders(r):
        fd1 = os.open(r / "log", os.O_WRONLY | os.O_APPEND)
        fd2 = os.open(r / "log", os.O_WRONLY | os.O_APPEND)
        plain = os.open(r / "log", os.O_RDWR)
        out = []
        try:
            for i in range(20):
                fd = fd1 if i % 3 else fd2
                os.write(fd, b"line %d from fd%d\n" % (i, 1 if i % 3 else 2))
                out.append(os.lseek(fd, 0, os.SEEK_CUR))
            os.pwrite(plain, b"EXTENDED", os.fstat(plain).st_size + 100)  # a hole, then text
            os.write(fd1, b"after the hole\n")
            out.append(os.lseek(fd1, 0, os.SEEK_CUR))
            os.lseek(fd2, 0, os.SEEK_SET)
            os.write(fd2, b"seek is ignored\n")  # O_APPEND writes at the end anyway
            out.append(os.lseek(fd2, 0, os.SEEK_CUR))
            out.append(os.pread(plain, 1 << 16, 0))
        finally:
            for fd in (fd1, fd2, plain):
                os.close(fd)
        return out

    pair.both("two O_APPEND fds", appenders)
    pair.check()


# ---- reading and writing -------------------------------------------------------


def test_read_write_at_offsets(pair_wb):
    pair = pair_wb
    pair.setup(lambda r: write_file(r / "f", b""))

    def op(r):
        fd = os.open(r / "f", os.O_RDWR)
        out = []
        try:
            rng = random.Random(7)
            for off, size in [(0, 100), (4090, 20), (4096, 4096), (131070, 10), (50, 10),
                              (200000, 70000), (1, 1), (65536 * 3 - 5, 11)]:
                os.pwrite(fd, rng.randbytes(size), off)
            for off, size in [(0, 5000), (4000, 200), (131060, 40), (199990, 80000),
                              (270000, 10), (300000, 5), (10 ** 9, 1)]:
                out.append(hashlib.sha256(os.pread(fd, size, off)).hexdigest()[:12])
            os.lseek(fd, 10, os.SEEK_SET)
            os.write(fd, b"sequential")
            os.write(fd, b"-more")
            out.append(os.lseek(fd, 0, os.SEEK_CUR))
            out.append(os.lseek(fd, 0, os.SEEK_END))
            out.append(os.fstat(fd).st_size)
        finally:
            os.close(fd)
        return out

    pair.both("writes and reads at offsets", op)
    pair.check()


def test_sparse_writes_read_zeros(pair_wb):
    pair = pair_wb

    def op(r):
        fd = os.open(r / "sparse", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"head", 0)
            os.pwrite(fd, b"middle", 5 * MIB + 3)
            os.pwrite(fd, b"tail", 10 * MIB)
            size = os.fstat(fd).st_size
            hole1 = os.pread(fd, 5 * MIB - 10, 4)
            hole2 = os.pread(fd, 4096, 10 * MIB - 4096)
            return (size, hole1 == bytes(len(hole1)), len(hole1), hole2 == bytes(4096),
                    os.pread(fd, 10, 5 * MIB), os.pread(fd, 100, 10 * MIB - 2))
        finally:
            os.close(fd)

    pair.both("sparse file", op, expect=(10 * MIB + 4, True, 5 * MIB - 10, True,
                                         b"\0\0\0middle\0", b"\0\0tail"))
    pair.check()


def test_truncate_up_and_down(pair_wb):
    pair = pair_wb
    data = rand_bytes(2, 300000)
    pair.setup(lambda r: write_file(r / "f", data))

    def by_path(r):
        p = r / "f"
        out = []
        os.truncate(p, 100000)
        out.append((os.stat(p).st_size, read_file(p) == data[:100000]))
        os.truncate(p, 1 * MIB)  # the regrown part must read zeros, not the old data
        got = read_file(p)
        out.append((len(got), got[:100000] == data[:100000], got[100000:] == bytes(MIB - 100000)))
        os.truncate(p, 0)
        out.append(read_file(p))
        os.truncate(p, 5000)
        out.append(read_file(p) == bytes(5000))
        return out

    pair.both("truncate(path)", by_path)

    def by_fd(r):
        fd = os.open(r / "g", os.O_RDWR | os.O_CREAT, 0o644)
        out = []
        try:
            os.write(fd, data)
            os.ftruncate(fd, 4097)
            out.append((os.fstat(fd).st_size, os.pread(fd, 10, 4090)))
            os.pwrite(fd, b"Z", 9000)  # a write past the end after shrinking
            expect = data[:4097] + bytes(4903) + b"Z"
            out.append((os.fstat(fd).st_size, os.pread(fd, 9001, 0) == expect))
            os.ftruncate(fd, 3)
            os.ftruncate(fd, 300000)
            out.append(os.pread(fd, 300000, 0) == data[:3] + bytes(299997))
        finally:
            os.close(fd)
        return out

    pair.both("ftruncate(fd)", by_fd)
    pair.check()


def test_fallocate(pair_wb):
    pair = pair_wb
    data = rand_bytes(3, 64 * KIB)

    def op(r):
        out = []
        fd = os.open(r / "f", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            out.append(attempt(fallocate, fd, 0, 0, 1 * MIB))  # mode 0: allocates and extends
            out.append((os.fstat(fd).st_size, os.pread(fd, MIB, 0) == bytes(MIB)))
            os.pwrite(fd, data, 0)
            out.append(attempt(fallocate, fd, 0, 4096, 8192))  # inside: no change
            out.append((os.fstat(fd).st_size, os.pread(fd, len(data), 0) == data))
            out.append(attempt(fallocate, fd, FALLOC_FL_KEEP_SIZE, 0, 4 * MIB))
            out.append(os.fstat(fd).st_size)
            out.append(attempt(fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               4096, 8192))
            got = os.pread(fd, len(data), 0)
            out.append((os.fstat(fd).st_size, got[:4096] == data[:4096],
                        got[4096:12288] == bytes(8192), got[12288:] == data[12288:]))
            # an unaligned hole
            out.append(attempt(fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               20000, 333))
            got = os.pread(fd, len(data), 0)
            out.append((got[19990:20000] == data[19990:20000], got[20000:20333] == bytes(333),
                        got[20333:20400] == data[20333:20400]))
            # punching past the end changes nothing
            out.append(attempt(fallocate, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               2 * MIB, 4096))
            out.append(os.fstat(fd).st_size)
            # PUNCH_HOLE requires KEEP_SIZE
            out.append(attempt(fallocate, fd, FALLOC_FL_PUNCH_HOLE, 0, 4096))
            out.append(attempt(fallocate, fd, 0, -1, 10))
            out.append(attempt(fallocate, fd, 0, 0, 0))
            # mode 0 past the end extends the size, KEEP_SIZE past the end does not
            out.append(attempt(fallocate, fd, 0, 3 * MIB, 5))
            out.append(os.fstat(fd).st_size)
            out.append(attempt(os.posix_fallocate, fd, 3 * MIB + 100, 1000))
            out.append(os.fstat(fd).st_size)
            out.append(os.pread(fd, 20, 3 * MIB + 1090))
            # a write after KEEP_SIZE preallocation past the end
            out.append(attempt(fallocate, fd, FALLOC_FL_KEEP_SIZE, 4 * MIB, MIB))
            os.pwrite(fd, b"end", 4 * MIB + 10)
            out.append((os.fstat(fd).st_size, os.pread(fd, 20, 4 * MIB)))
        finally:
            os.close(fd)
        return out

    pair.both("fallocate sequence", op)
    pair.check()


# ---- unlink while open, hard links --------------------------------------------


def test_unlink_while_open(pair_wb):
    pair = pair_wb
    pair.setup(lambda r: write_file(r / "f", b"hello world"))

    def op(r):
        p = r / "f"
        fd = os.open(p, os.O_RDWR)
        out = []
        try:
            os.unlink(p)
            out.append(attempt(os.stat, p))
            out.append(sorted(os.listdir(r)))
            out.append(os.fstat(fd).st_nlink)
            out.append(os.pread(fd, 100, 0))
            os.pwrite(fd, b" and more", 11)
            os.pwrite(fd, b"X" * 5000, 70000)
            out.append(os.fstat(fd).st_size)
            out.append((os.pread(fd, 25, 0), os.pread(fd, 10, 69995)))
            fd2 = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)  # reopen the nameless file
            try:
                out.append(os.pread(fd2, 11, 0))
            finally:
                os.close(fd2)
            os.fchmod(fd, 0o600)
            os.setxattr(fd, "user.gone", b"still")
            out.append((stat.S_IMODE(os.fstat(fd).st_mode), os.getxattr(fd, "user.gone")))
            os.ftruncate(fd, 5)
            out.append(os.pread(fd, 100, 0))
            write_file(p, b"a new file")  # the name again: another file
            out.append((os.pread(fd, 100, 0), read_file(p), os.stat(p).st_nlink))
            out.append(os.fsync(fd))
        finally:
            os.close(fd)
        out.append(sorted(os.listdir(r)))
        return out

    pair.both("unlink while open", op)
    pair.check()
    # closed, the nameless file is gone for good: the store is clean and a
    # remount shows the same tree
    pair.fs.stop()
    pair.fs.cli("check")
    pair.fs.start()
    pair.check()


def test_hard_links(pair):
    def prepare(r):
        os.mkdir(r / "sub")
        write_file(r / "a", b"shared")
        os.mkdir(r / "dir")

    pair.setup(prepare)

    def op(r):
        out = []
        os.link(r / "a", r / "b")
        os.link(r / "b", r / "sub" / "c")
        out.append([os.stat(r / n).st_nlink for n in ("a", "b", "sub/c")])
        out.append(len({os.stat(r / n).st_ino for n in ("a", "b", "sub/c")}))
        with open(r / "b", "r+b") as f:
            f.write(b"SH")
        out.append(read_file(r / "sub" / "c"))
        os.chmod(r / "a", 0o600)
        os.setxattr(r / "sub" / "c", "user.k", b"v")
        out.append((oct(stat.S_IMODE(os.stat(r / "b").st_mode)), os.getxattr(r / "b", "user.k")))
        os.unlink(r / "a")
        out.append([os.stat(r / n).st_nlink for n in ("b", "sub/c")])
        out.append(read_file(r / "b"))
        return out

    pair.both("links", op)
    pair.both("link to a directory", lambda r: os.link(r / "dir", r / "dirlink"), expect="EPERM")
    pair.both("link over an existing name", lambda r: os.link(r / "b", r / "sub" / "c"),
              expect="EEXIST")
    pair.both("link over a directory", lambda r: os.link(r / "b", r / "dir"), expect="EEXIST")
    pair.both("link into a missing dir", lambda r: os.link(r / "b", r / "nodir" / "x"),
              expect="ENOENT")

    def link_symlink(r):
        os.symlink("b", r / "sl")
        os.link(r / "sl", r / "sl2", follow_symlinks=False)  # links the symlink itself
        os.link(r / "sl", r / "followed")  # links its target
        return (os.readlink(r / "sl2"), os.lstat(r / "sl").st_nlink,
                os.stat(r / "b").st_nlink, read_file(r / "followed"))

    pair.both("links of a symlink", link_symlink)
    pair.check()


# ---- directories -----------------------------------------------------------------


def test_mkdir_rmdir(pair):
    def prepare(r):
        os.mkdir(r / "d")
        os.mkdir(r / "full")
        write_file(r / "full" / "f", b"x")
        os.mkdir(r / "hassub")
        os.mkdir(r / "hassub" / "s")
        os.mkdir(r / "haslink")
        os.symlink("nowhere", r / "haslink" / "l")
        write_file(r / "file", b"y")
        os.symlink("d", r / "dlink")

    pair.setup(prepare)
    pair.both("mkdir existing dir", lambda r: os.mkdir(r / "d"), expect="EEXIST")
    pair.both("mkdir over a file", lambda r: os.mkdir(r / "file"), expect="EEXIST")
    pair.both("mkdir over a symlink", lambda r: os.mkdir(r / "dlink"), expect="EEXIST")
    pair.both("rmdir with a file", lambda r: os.rmdir(r / "full"), expect="ENOTEMPTY")
    pair.both("rmdir with a subdir", lambda r: os.rmdir(r / "hassub"), expect="ENOTEMPTY")
    pair.both("rmdir with a symlink", lambda r: os.rmdir(r / "haslink"), expect="ENOTEMPTY")
    pair.both("rmdir a file", lambda r: os.rmdir(r / "file"), expect="ENOTDIR")
    pair.both("rmdir a symlink to a dir", lambda r: os.rmdir(r / "dlink"), expect="ENOTDIR")
    pair.both("rmdir d/.", lambda r: os.rmdir(j(r, "d", ".")), expect="EINVAL")
    pair.both("rmdir hassub/s/..", lambda r: os.rmdir(j(r, "hassub", "s", "..")),
              expect="ENOTEMPTY")
    pair.both("unlink a directory", lambda r: os.unlink(r / "d"), expect="EISDIR")

    def modes(r):
        out = []
        for name, mode in [("m0", 0o700), ("m1", 0o1777), ("m2", 0o2755), ("m3", 0o555)]:
            os.mkdir(r / name, mode)
            out.append(oct(stat.S_IMODE(os.stat(r / name).st_mode)))
        return out

    pair.both("mkdir modes", modes)
    pair.both("rmdir an empty dir", lambda r: os.rmdir(r / "d"), expect=None)
    pair.both("rmdir it again", lambda r: os.rmdir(r / "d"), expect="ENOENT")
    pair.both("recreate it", lambda r: (os.mkdir(r / "d"), os.listdir(r / "d"))[1], expect=[])
    pair.check()


def test_directory_nlink(pair):
    def op(r):
        out = []
        nl = lambda *p: os.stat(os.path.join(r, *p)).st_nlink  # noqa: E731
        os.mkdir(r / "a")
        out.append((nl(), nl("a")))
        for s in ("b", "c", "d"):
            os.mkdir(r / "a" / s)
        write_file(r / "a" / "file", b"")
        os.symlink("b", r / "a" / "link")
        out.append((nl(), nl("a"), nl("a", "b")))
        os.rmdir(r / "a" / "b")
        out.append(nl("a"))
        os.rename(r / "a" / "c", r / "c")  # moves a subdirectory up
        out.append((nl(), nl("a"), nl("c")))
        os.rename(r / "c", r / "a" / "d" / "c")
        out.append((nl(), nl("a"), nl("a", "d")))
        os.mkdir(r / "e")
        os.rename(r / "a" / "d", r / "e")  # over an empty directory
        out.append((nl(), nl("a"), nl("e"), nl("e", "c")))
        return out

    pair.both("directory link counts", op)
    pair.check()


# ---- rename ------------------------------------------------------------------------


def _rename_tree(r):
    write_file(r / "f1", b"one")
    write_file(r / "f2", b"two")
    os.mkdir(r / "d1")
    write_file(r / "d1" / "in1", b"inside d1")
    os.mkdir(r / "d1" / "sub")
    write_file(r / "d1" / "sub" / "deep", b"deep in d1")
    os.mkdir(r / "empty")
    os.mkdir(r / "d2")
    write_file(r / "d2" / "in2", b"inside d2")
    os.mkdir(r / "p")
    os.mkdir(r / "q")
    write_file(r / "p" / "pf", b"file in p")
    os.mkdir(r / "q" / "qd")
    write_file(r / "q" / "qd" / "x", b"x in qd")
    os.link(r / "f1", r / "f1link")
    os.symlink("f2", r / "s2")


RENAME_CASES = {
    "file over file": (lambda r: os.rename(r / "f1", r / "f2"), None),
    "file to a new name": (lambda r: os.rename(r / "f1", r / "new"), None),
    "file into another dir": (lambda r: os.rename(r / "f2", r / "d2" / "moved"), None),
    "dir over an empty dir": (lambda r: os.rename(r / "d1", r / "empty"), None),
    "dir over a non-empty dir": (lambda r: os.rename(r / "d1", r / "d2"), "ENOTEMPTY"),
    "file over a dir": (lambda r: os.rename(r / "f1", r / "empty"), "EISDIR"),
    "dir over a file": (lambda r: os.rename(r / "empty", r / "f1"), "ENOTDIR"),
    "dir into its own subtree": (lambda r: os.rename(r / "d1", r / "d1" / "sub" / "x"), "EINVAL"),
    "dir onto itself": (lambda r: os.rename(r / "d1", r / "d1"), None),
    "subdir over its parent": (lambda r: os.rename(r / "d1" / "sub", r / "d1"), "ENOTEMPTY"),
    "dir across dirs": (lambda r: os.rename(r / "q" / "qd", r / "p" / "qd"), None),
    "dir with children renamed": (lambda r: os.rename(r / "d1", r / "renamed"), None),
    "to the same name": (lambda r: os.rename(r / "f1", r / "f1"), None),
    "onto its own hard link": (lambda r: os.rename(r / "f1", r / "f1link"), None),
    "a symlink": (lambda r: os.rename(r / "s2", r / "d2" / "s2"), None),
    "file over a symlink": (lambda r: os.rename(r / "f1", r / "s2"), None),
    "missing source": (lambda r: os.rename(r / "nope", r / "f1"), "ENOENT"),
    "noreplace onto existing": (
        lambda r: renameat2(r / "f1", r / "f2", RENAME_NOREPLACE), "EEXIST"),
    "noreplace onto a dir": (
        lambda r: renameat2(r / "d1", r / "empty", RENAME_NOREPLACE), "EEXIST"),
    "noreplace to a free name": (
        lambda r: renameat2(r / "d1", r / "free", RENAME_NOREPLACE), None),
    "exchange files": (lambda r: renameat2(r / "f1", r / "f2", RENAME_EXCHANGE), None),
    "exchange dirs": (lambda r: renameat2(r / "d1", r / "d2", RENAME_EXCHANGE), None),
    "exchange file and dir across parents": (
        lambda r: renameat2(r / "p" / "pf", r / "q" / "qd", RENAME_EXCHANGE), None),
    "exchange file and symlink": (
        lambda r: renameat2(r / "f1", r / "s2", RENAME_EXCHANGE), None),
    "exchange with a missing name": (
        lambda r: renameat2(r / "f1", r / "nope", RENAME_EXCHANGE), "ENOENT"),
    "exchange dir into its own subtree": (
        lambda r: renameat2(r / "d1", r / "d1" / "sub", RENAME_EXCHANGE), "EINVAL"),
    "exchange and noreplace together": (
        lambda r: renameat2(r / "f1", r / "f2", RENAME_EXCHANGE | RENAME_NOREPLACE), "EINVAL"),
}


@pytest.mark.parametrize("case", list(RENAME_CASES), ids=slug)
def test_rename(pair, case):
    op, expect = RENAME_CASES[case]
    pair.setup(_rename_tree)
    pair.both(case, op, expect=expect)

    def nlinks(r):
        return [os.lstat(os.path.join(r, p)).st_nlink
                for p in ("", "p", "q", "d1", "d2", "empty") if os.path.lexists(os.path.join(r, p))]

    pair.both("link counts after", nlinks)
    pair.check()


def test_rename_keeps_open_files_working(pair_wb):
    pair = pair_wb

    def prepare(r):
        write_file(r / "a", b"file a")
        write_file(r / "b", b"file b")
        os.mkdir(r / "dir")
        write_file(r / "dir" / "child", b"child")

    pair.setup(prepare)

    def op(r):
        out = []
        fa = os.open(r / "a", os.O_RDWR)
        fb = os.open(r / "b", os.O_RDONLY)
        fc = os.open(r / "dir" / "child", os.O_RDWR)
        try:
            os.rename(r / "a", r / "b")  # a replaces b; fb still reads the old b
            os.write(fa, b"FILE")
            out.append((os.pread(fb, 20, 0), read_file(r / "b"), os.fstat(fb).st_nlink))
            os.rename(r / "b", r / "c")
            os.pwrite(fa, b"!", 6)
            out.append(read_file(r / "c"))
            os.rename(r / "dir", r / "moved")  # the parent of an open file
            os.pwrite(fc, b"CHILD", 0)
            out.append((read_file(r / "moved" / "child"), attempt(os.stat, r / "dir")))
            write_file(r / "moved" / "sibling", b"made after the move")
            os.mkdir(r / "dir")
            write_file(r / "dir" / "child", b"a new one")
            out.append((os.pread(fc, 10, 0), read_file(r / "dir" / "child")))
        finally:
            for fd in (fa, fb, fc):
                os.close(fd)
        return out

    pair.both("renames under open files", op)
    pair.check()


def test_rename_of_deep_directory(pair):
    def prepare(r):
        os.makedirs(r / "top" / "a" / "b" / "c")
        for i, d in enumerate(["top", "top/a", "top/a/b", "top/a/b/c"]):
            for k in range(5):
                write_file(r / d / f"f{k}", b"%d-%d" % (i, k))
        os.symlink("../f0", r / "top" / "a" / "up")

    pair.setup(prepare)
    pair.both("rename top", lambda r: os.rename(r / "top", r / "newtop"))
    pair.both("read deep", lambda r: read_file(r / "newtop" / "a" / "b" / "c" / "f4"),
              expect=b"3-4")
    pair.both("old path", lambda r: os.stat(r / "top" / "a"), expect="ENOENT")
    pair.both("through the moved symlink", lambda r: read_file(r / "newtop" / "a" / "up"),
              expect=b"0-0")
    pair.both("move a middle dir up", lambda r: os.rename(r / "newtop" / "a" / "b", r / "b"))
    pair.both("rename back over a new empty dir",
              lambda r: (os.mkdir(r / "top"), os.rename(r / "newtop", r / "top"))[1])
    pair.check()


# ---- symlinks ---------------------------------------------------------------------


def test_symlinks(pair):
    def op(r):
        out = []
        os.symlink("target", r / "dangling")
        st = os.lstat(r / "dangling")
        out.append((TYPES.get(stat.S_IFMT(st.st_mode)), st.st_size, oct(stat.S_IMODE(st.st_mode))))
        out.append((os.readlink(r / "dangling"), attempt(os.stat, r / "dangling"),
                    attempt(read_file, r / "dangling")))
        write_file(r / "target", b"now it points somewhere")
        out.append((os.stat(r / "dangling").st_size, read_file(r / "dangling")))
        os.mkdir(r / "d")
        write_file(r / "d" / "inner", b"inner")
        os.symlink("d", r / "dl")
        os.symlink("../target", r / "d" / "up")
        os.symlink("/nonexistent/absolute/path", r / "abs")
        out.append((sorted(os.listdir(r / "dl")), read_file(r / "dl" / "inner"),
                    read_file(r / "dl" / "up")))
        out.append((stat.S_ISDIR(os.stat(r / "dl").st_mode),
                    stat.S_ISLNK(os.lstat(r / "dl").st_mode)))
        out.append((os.readlink(r / "abs"), attempt(os.stat, r / "abs")))
        out.append(attempt(os.symlink, "x", r / "target"))  # over an existing name
        out.append(attempt(os.readlink, r / "target"))  # not a symlink
        out.append(attempt(os.readlink, r / "d"))
        out.append(attempt(os.open, r / "dl", os.O_RDONLY | os.O_NOFOLLOW))
        weird = b"\xff\xfe\n tab\there/../..//x"
        os.symlink(weird, j(r, "weird"))
        out.append(os.readlink(j(r, "weird")))
        out.append(attempt(os.symlink, "", r / "empty"))  # an empty target: ENOENT
        os.chown(r / "dangling", 1234, 5678, follow_symlinks=False)
        st = os.lstat(r / "dangling")
        out.append((st.st_uid, st.st_gid, os.stat(r / "target").st_uid))
        os.unlink(r / "dl")  # removes the link, not the directory
        out.append((os.path.isdir(r / "d"), attempt(os.lstat, r / "dl")))
        return out

    pair.both("symlinks", op)
    pair.check()


def test_symlink_long_target(pair):
    long_target = (("t" * 200 + "/") * 21)[:4095]

    def op(r):
        os.symlink(long_target, r / "long")
        st = os.lstat(r / "long")
        return st.st_size, os.readlink(r / "long") == long_target

    pair.both("4095-byte target", op, expect=(4095, True))
    pair.both("4096-byte target", lambda r: os.symlink("x" * 4096, r / "toolong"),
              expect="ENAMETOOLONG")
    pair.check()


def test_lstat_versus_stat(pair):
    def prepare(r):
        write_file(r / "file", b"12345")
        os.chmod(r / "file", 0o640)
        os.symlink("file", r / "link")
        os.symlink("link", r / "link2")

    pair.setup(prepare)

    def op(r):
        out = []
        for name in ("file", "link", "link2"):
            s, l = os.stat(r / name), os.lstat(r / name)
            out.append((name, oct(s.st_mode), s.st_size, oct(l.st_mode), l.st_size,
                        s.st_ino == os.stat(r / "file").st_ino, l.st_nlink))
        return out

    pair.both("stat and lstat", op)
    pair.check()


# ---- chmod, chown, times -------------------------------------------------------


def test_chmod(pair):
    def prepare(r):
        write_file(r / "f", b"x")
        os.mkdir(r / "d")
        os.symlink("f", r / "l")

    pair.setup(prepare)

    def op(r):
        out = []
        for mode in (0, 0o777, 0o4755, 0o2755, 0o2745, 0o1777, 0o7777, 0o640, 0o400):
            os.chmod(r / "f", mode)
            os.chmod(r / "d", mode)
            out.append((oct(os.stat(r / "f").st_mode), oct(os.stat(r / "d").st_mode)))
        os.chmod(r / "l", 0o604)  # follows the link
        out.append((oct(os.stat(r / "f").st_mode), oct(os.lstat(r / "l").st_mode)))
        fd = os.open(r / "f", os.O_RDONLY)
        os.fchmod(fd, 0o755)
        out.append(oct(os.fstat(fd).st_mode))
        os.close(fd)
        return out

    pair.both("chmod", op)
    pair.check()


def test_chown(pair):
    def prepare(r):
        write_file(r / "f", b"x")
        os.mkdir(r / "d")
        os.symlink("f", r / "l")
        for name, mode in [("suid", 0o4755), ("sgid", 0o2755), ("sgid_noexec", 0o2745),
                           ("both", 0o6777)]:
            write_file(r / name, b"#!/bin/sh\n")
            os.chmod(r / name, mode)
        os.mkdir(r / "sgid_dir")
        os.chmod(r / "sgid_dir", 0o2775)

    pair.setup(prepare)

    def op(r):
        ids = lambda p: (lambda s: (s.st_uid, s.st_gid))(os.lstat(p))  # noqa: E731
        out = []
        os.chown(r / "f", 12345, 54321)
        os.chown(r / "d", 1, 2)
        os.chown(r / "l", 3, 4, follow_symlinks=False)
        out.append((ids(r / "f"), ids(r / "d"), ids(r / "l")))
        os.chown(r / "f", -1, 777)
        os.chown(r / "d", 4000000000, -1)
        out.append((ids(r / "f"), ids(r / "d")))
        os.chown(r / "l", 99, 98)  # follows the link
        out.append((ids(r / "f"), ids(r / "l")))
        fd = os.open(r / "f", os.O_RDONLY)
        os.fchown(fd, 0, 0)
        os.close(fd)
        out.append(ids(r / "f"))
        # chown clears set-user-id and set-group-id of files (not of directories)
        for name in ("suid", "sgid", "sgid_noexec", "both", "sgid_dir"):
            os.chown(r / name, 1000, 1000)
            out.append((name, oct(os.stat(r / name).st_mode)))
        return out

    pair.both("chown", op)
    pair.check()


def test_root_write_keeps_setid_bits(pair_wb):
    pair = pair_wb

    def op(r):
        write_file(r / "f", b"#!/bin/sh\n")
        os.chmod(r / "f", 0o6755)
        with open(r / "f", "ab") as f:
            f.write(b"echo\n")
        os.truncate(r / "f", 3)
        return oct(os.stat(r / "f").st_mode)

    pair.both("root writes a setuid file", op)
    pair.check()


UTIME_VALUES = {
    "ns precision": 1_234_567_890_123_456_789,
    "zero": 0,
    "one ns": 1,
    "before 1970": -1_000_000_000_123,
    "year 2200": 7_258_118_400_000_000_007,
    "whole second": 1_600_000_000_000_000_000,
}


@pytest.mark.parametrize("which", list(UTIME_VALUES), ids=slug)
def test_utimens_exact(pair, which):
    value = UTIME_VALUES[which]

    def prepare(r):
        write_file(r / "f", b"x")
        os.mkdir(r / "d")
        os.symlink("f", r / "l")

    pair.setup(prepare)

    def op(r):
        os.utime(r / "f", ns=(value, value))
        os.utime(r / "d", ns=(5, value))
        os.utime(r / "l", ns=(value, value + 1), follow_symlinks=False)
        return (os.stat(r / "f").st_mtime_ns, os.stat(r / "d").st_mtime_ns,
                os.lstat(r / "l").st_mtime_ns)

    pair.both("utimens", op, expect=(value, value, value + 1))
    pair.check(times=True)


# The store keeps times as signed 64-bit nanoseconds: 1677 to 2262. Beyond
# that they are clamped to the limit (as the kernel clamps times a local
# filesystem cannot hold), never wrapped round. ext4 and tmpfs go further.
NS_MAX = 2**63 - 1
NS_MIN = -(2**63) + 1  # the store's very lowest value means "now"


@pytest.mark.parametrize("value,stored", [(13_569_465_600_000_000_007, NS_MAX),
                                          (-13_569_465_600_000_000_007, NS_MIN)],
                         ids=["year-2400", "year-1540"])
def test_utimens_beyond_range_clamps(fs, value, stored):
    p = fs.mnt / "f"
    write_file(p, b"x")
    os.utime(p, ns=(value, value))
    # With the writeback cache the kernel keeps the mtime it was given until
    # it drops the inode; what the store holds shows after a remount.
    fs.remount()
    st = os.stat(p)
    assert (st.st_atime_ns, st.st_mtime_ns) == (stored, stored)


def test_utime_now_and_omit(pair):
    def prepare(r):
        write_file(r / "f", b"x")
        os.utime(r / "f", ns=(1_000_000_000_111, 2_000_000_000_222))

    pair.setup(prepare)
    time.sleep(0.05)

    def op(r):
        p = r / "f"
        out = []
        c0 = os.stat(p).st_ctime_ns
        utimensat(p, (5, 6), (0, UTIME_OMIT))  # atime only: mtime stays
        st = os.stat(p)
        out.append((st.st_mtime_ns, st.st_ctime_ns > c0))
        utimensat(p, (0, UTIME_OMIT), (7, 8))
        out.append(os.stat(p).st_mtime_ns)
        utimensat(p, (0, UTIME_OMIT), (0, UTIME_OMIT))  # nothing at all
        out.append(os.stat(p).st_mtime_ns)
        before = time.time_ns()
        time.sleep(0.01)
        utimensat(p, (0, UTIME_OMIT), (0, UTIME_NOW))
        after = time.time_ns()
        m = os.stat(p).st_mtime_ns
        out.append(before - 20_000_000 <= m <= after + 20_000_000)
        os.utime(p, ns=(1, 9))
        os.utime(p)  # both now
        m = os.stat(p).st_mtime_ns
        out.append(abs(m - time.time_ns()) < 2_000_000_000)
        os.utime(p, ns=(1, 9))
        utimensat(p, (0, UTIME_NOW), (0, UTIME_OMIT))
        out.append(os.stat(p).st_mtime_ns)
        return out

    pair.both("UTIME_NOW / UTIME_OMIT", op, expect=[(2_000_000_000_222, True), 7_000_000_008,
                                                    7_000_000_008, True, True, 9])
    pair.check(times=True)


def _prep_times(r):
    os.mkdir(r / "d")
    os.mkdir(r / "d2")
    write_file(r / "d" / "f", rand_bytes(4, 10000))
    os.link(r / "d" / "f", r / "d" / "hl")
    os.mkdir(r / "d" / "sub")
    os.setxattr(r / "d" / "f", "user.old", b"1")
    for p in ("d/f", "d", "d2", "d/sub"):
        os.utime(r / p, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))


def _mmap_write(r):
    fd = os.open(r / "d" / "f", os.O_RDWR)
    try:
        with mmap.mmap(fd, 4096) as m:
            m[0:4] = b"MMAP"
            m.flush()
    finally:
        os.close(fd)


def _append(r):
    with open(r / "d" / "f", "ab") as f:
        f.write(b"more")


TIME_OPS = {  # name: (operation, watched paths)
    "write": (_append, ["d/f", "d"]),
    "pwrite in place": (lambda r: (lambda fd: (os.pwrite(fd, b"x", 5), os.close(fd)))(
        os.open(r / "d" / "f", os.O_WRONLY)), ["d/f"]),
    "mmap write": (_mmap_write, ["d/f"]),
    "truncate": (lambda r: os.truncate(r / "d" / "f", 100), ["d/f"]),
    "ftruncate": (lambda r: (lambda fd: (os.ftruncate(fd, 5), os.close(fd)))(
        os.open(r / "d" / "f", os.O_WRONLY)), ["d/f"]),
    "O_TRUNC": (lambda r: os.close(os.open(r / "d" / "f", os.O_WRONLY | os.O_TRUNC)), ["d/f", "d"]),
    "read": (lambda r: read_file(r / "d" / "f"), ["d/f"]),
    "chmod": (lambda r: os.chmod(r / "d" / "f", 0o600), ["d/f", "d"]),
    "chown": (lambda r: os.chown(r / "d" / "f", 5, 5), ["d/f"]),
    "setxattr": (lambda r: os.setxattr(r / "d" / "f", "user.new", b"v"), ["d/f"]),
    "removexattr": (lambda r: os.removexattr(r / "d" / "f", "user.old"), ["d/f"]),
    "create": (lambda r: write_file(r / "d" / "new", b""), ["d", "d/f"]),
    "mkdir": (lambda r: os.mkdir(r / "d" / "nd"), ["d", "d/sub"]),
    "symlink": (lambda r: os.symlink("x", r / "d" / "sl"), ["d"]),
    "link": (lambda r: os.link(r / "d" / "f", r / "d2" / "hl2"), ["d/f", "d", "d2"]),
    "unlink one link": (lambda r: os.unlink(r / "d" / "hl"), ["d/f", "d"]),
    "rmdir": (lambda r: os.rmdir(r / "d" / "sub"), ["d"]),
    "rename within dir": (lambda r: os.rename(r / "d" / "f", r / "d" / "g"), ["d/hl", "d"]),
    "rename across dirs": (lambda r: os.rename(r / "d" / "f", r / "d2" / "f"), ["d/hl", "d", "d2"]),
    "rename dir across": (lambda r: os.rename(r / "d" / "sub", r / "d2" / "sub"),
                          ["d", "d2", "d2/sub"]),
    "fallocate extend": (lambda r: (lambda fd: (fallocate(fd, 0, 0, 20000), os.close(fd)))(
        os.open(r / "d" / "f", os.O_WRONLY)), ["d/f"]),
    "fallocate punch": (lambda r: (lambda fd: (fallocate(
        fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), os.close(fd)))(
        os.open(r / "d" / "f", os.O_WRONLY)), ["d/f"]),
    "utime explicit": (lambda r: os.utime(r / "d" / "f", ns=(3, 3)), ["d/f"]),
}


@pytest.mark.parametrize("case", list(TIME_OPS), ids=slug)
def test_time_relations(pair_wb, case):
    """Which times an operation moves (mtime, ctime: -1 back, 0 kept, 1 forward)."""
    pair = pair_wb
    op, watched = TIME_OPS[case]
    pair.setup(_prep_times)

    def run(r):
        before = {p: os.lstat(r / p) for p in watched}
        time.sleep(0.03)
        op(r)
        out = []
        for p in watched:
            path = r / p if os.path.lexists(r / p) else None
            if path is None:
                continue
            a, b = before[p], os.lstat(path)
            sign = lambda x, y: (x > y) - (x < y)  # noqa: E731
            out.append((p, sign(b.st_mtime_ns, a.st_mtime_ns), sign(b.st_ctime_ns, a.st_ctime_ns)))
        return out

    pair.both(case, run)
    pair.check()


# ---- extended attributes ------------------------------------------------------------


def test_xattr_set_get_list_remove(pair):
    def prepare(r):
        write_file(r / "f", b"x")
        os.mkdir(r / "d")

    pair.setup(prepare)

    def op(r):
        out = []
        p = r / "f"
        out.append(os.listxattr(p))
        os.setxattr(p, "user.a", b"1")
        os.setxattr(p, "user.empty", b"")
        os.setxattr(p, "user.binary", bytes(range(256)))
        os.setxattr(p, "user.\xe9t\xe9 name with spaces", b"v")
        out.append(sorted(os.listxattr(p)))
        out.append([os.getxattr(p, n) for n in sorted(os.listxattr(p))])
        os.setxattr(p, "user.a", b"replaced, longer value")
        out.append(os.getxattr(p, "user.a"))
        os.setxattr(p, "user.a", b"s")
        out.append(os.getxattr(p, "user.a"))
        os.removexattr(p, "user.empty")
        out.append(sorted(os.listxattr(p)))
        out.append(attempt(os.getxattr, p, "user.empty"))
        out.append(attempt(os.removexattr, p, "user.empty"))
        out.append(attempt(os.getxattr, p, "user.never"))
        os.setxattr(r / "d", "user.on_dir", b"dir value")
        out.append((os.listxattr(r / "d"), os.getxattr(r / "d", "user.on_dir")))
        for i in range(100):
            os.setxattr(p, f"user.many{i:03d}", b"%d" % i)
        names = sorted(os.listxattr(p))
        out.append((len(names), names[-1], os.getxattr(p, "user.many057")))
        fd = os.open(p, os.O_RDONLY)
        os.setxattr(fd, "user.by_fd", b"fd")
        out.append(os.getxattr(fd, "user.by_fd"))
        os.close(fd)
        return out

    pair.both("xattrs", op)
    pair.check()


def test_xattr_create_replace_flags(pair):
    pair.setup(lambda r: write_file(r / "f", b"x"))
    f = lambda r: r / "f"  # noqa: E731
    pair.both("XATTR_CREATE new", lambda r: os.setxattr(f(r), "user.k", b"1", os.XATTR_CREATE),
              expect=None)
    pair.both("XATTR_CREATE existing",
              lambda r: os.setxattr(f(r), "user.k", b"2", os.XATTR_CREATE), expect="EEXIST")
    pair.both("XATTR_REPLACE missing",
              lambda r: os.setxattr(f(r), "user.other", b"3", os.XATTR_REPLACE), expect="ENODATA")
    pair.both("XATTR_REPLACE existing",
              lambda r: os.setxattr(f(r), "user.k", b"4", os.XATTR_REPLACE), expect=None)
    pair.both("value", lambda r: os.getxattr(f(r), "user.k"), expect=b"4")
    pair.both("both flags", lambda r: os.setxattr(
        f(r), "user.k", b"5", os.XATTR_CREATE | os.XATTR_REPLACE), expect="EEXIST")
    pair.check()


def test_xattr_limits(pair):
    pair.setup(lambda r: write_file(r / "f", b"x"))
    big = rand_bytes(5, 65536)
    name255 = "user." + "n" * 250
    name256 = "user." + "n" * 251
    f = lambda r: r / "f"  # noqa: E731
    pair.both("65536-byte value", lambda r: (os.setxattr(f(r), "user.big", big),
                                             os.getxattr(f(r), "user.big") == big)[1], expect=True)
    pair.both("65537-byte value", lambda r: os.setxattr(f(r), "user.big2", big + b"x"),
              expect="E2BIG")
    pair.both("255-byte name", lambda r: (os.setxattr(f(r), name255, b"v"),
                                          os.getxattr(f(r), name255))[1], expect=b"v")
    pair.both("256-byte name", lambda r: os.setxattr(f(r), name256, b"v"), expect="ERANGE")
    pair.both("get 256-byte name", lambda r: os.getxattr(f(r), name256), expect="ERANGE")
    pair.both("empty name", lambda r: os.setxattr(f(r), "", b"v"), expect="ERANGE")
    pair.both("'user.' alone", lambda r: os.setxattr(f(r), "user.", b"v"), expect="EINVAL")
    pair.both("list", lambda r: sorted(os.listxattr(f(r))))
    pair.check()


def test_xattr_small_buffers(pair):
    def prepare(r):
        write_file(r / "f", b"x")
        os.setxattr(r / "f", "user.ten", b"0123456789")
        os.setxattr(r / "f", "user.b", b"")

    pair.setup(prepare)
    f = lambda r: r / "f"  # noqa: E731
    pair.both("size query", lambda r: getxattr_sized(f(r), "user.ten", 0), expect=(10, b""))
    pair.both("buffer of 1", lambda r: getxattr_sized(f(r), "user.ten", 1), expect="ERANGE")
    pair.both("buffer of 9", lambda r: getxattr_sized(f(r), "user.ten", 9), expect="ERANGE")
    pair.both("exact buffer", lambda r: getxattr_sized(f(r), "user.ten", 10),
              expect=(10, b"0123456789"))
    pair.both("empty value, size query", lambda r: getxattr_sized(f(r), "user.b", 0),
              expect=(0, b""))
    pair.both("list size query", lambda r: listxattr_sized(f(r), 0)[0], expect=16)
    pair.both("list buffer of 1", lambda r: listxattr_sized(f(r), 1), expect="ERANGE")
    pair.both("list buffer of 15", lambda r: listxattr_sized(f(r), 15), expect="ERANGE")
    pair.both("list exact", lambda r: sorted(listxattr_sized(f(r), 16)[1].split(b"\0")[:-1]),
              expect=[b"user.b", b"user.ten"])
    pair.check()


def test_xattr_namespaces(pair):
    def prepare(r):
        write_file(r / "f", b"x")
        os.symlink("f", r / "l")

    pair.setup(prepare)
    f = lambda r: r / "f"  # noqa: E731
    pair.both("trusted.*", lambda r: (os.setxattr(f(r), "trusted.t", b"tv"),
                                      os.getxattr(f(r), "trusted.t"))[1], expect=b"tv")
    pair.both("security.*", lambda r: (os.setxattr(f(r), "security.s", b"sv"),
                                       os.getxattr(f(r), "security.s"))[1], expect=b"sv")
    pair.both("system.* unknown", lambda r: os.setxattr(f(r), "system.foo", b"v"),
              expect="EOPNOTSUPP")
    pair.both("no namespace", lambda r: os.setxattr(f(r), "foo.bar", b"v"), expect="EOPNOTSUPP")
    pair.both("no dot at all", lambda r: os.setxattr(f(r), "plain", b"v"), expect="EOPNOTSUPP")
    pair.both("get unknown namespace", lambda r: os.getxattr(f(r), "foo.bar"),
              expect="EOPNOTSUPP")
    pair.both("user.* on a symlink",
              lambda r: os.setxattr(r / "l", "user.x", b"v", follow_symlinks=False),
              expect="EPERM")
    pair.both("list all", lambda r: sorted(os.listxattr(f(r))),
              expect=["security.s", "trusted.t"])
    pair.check()


# ---- names -------------------------------------------------------------------------


def _byte_names():
    names = []
    for b in range(1, 256):
        if b == ord("/"):
            continue
        if b != ord("."):
            names.append(bytes([b]))
        names.append(b"a" + bytes([b]) + b"z")
    return names


def test_every_byte_in_names(pair):
    names = _byte_names()

    def op(r):
        os.mkdir(j(r, "bytes"))
        for n in names:
            fd = os.open(j(r, "bytes", n), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.write(fd, n)
            os.close(fd)
        os.mkdir(j(r, "dirs"))
        for n in names[:60]:
            os.mkdir(j(r, "dirs", n))
            write_file(j(r, "dirs", n, n), n)
        return sorted(os.listdir(j(r, "bytes"))) == sorted(names)

    pair.both("create one file per byte", op, expect=True)
    pair.both("every file reads its name",
              lambda r: [n for n in names if read_file(j(r, "bytes", n)) != n], expect=[])
    pair.check()


INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf",
                b"\xf8\x88\x80\x80\x80", b"caf\xe9", b"\x80start", b"end\xc3"]


def test_invalid_utf8_names(pair):
    def op(r):
        out = []
        for i, n in enumerate(INVALID_UTF8):
            write_file(j(r, n), n)
            os.mkdir(j(r, b"dir" + n))
            os.symlink(n, j(r, b"link" + n))
            os.setxattr(j(r, n), b"user." + n, n)
        out.append(sorted(os.listdir(os.fsencode(r))))
        os.rename(j(r, INVALID_UTF8[0]), j(r, b"renamed\xff\xfe"))
        os.link(j(r, INVALID_UTF8[1]), j(r, b"dir\xff", b"linked\x80"))
        out.append(sorted(os.listdir(j(r, b"dir\xff"))))
        out.append([os.readlink(j(r, b"link" + n)) for n in INVALID_UTF8])
        out.append(os.listxattr(j(r, INVALID_UTF8[2])))
        return out

    pair.both("invalid UTF-8 names", op)
    pair.check()


def test_names_that_sort_around_the_separator(pair):
    """Siblings whose names start like a directory's name plus a byte below or
    above '/' must not be mistaken for its children."""
    sibs = [b"a", b"a\x01", b"a-", b"a.", b"a.b", b"a0", b"a\xff", b"a b", b"a\x2e\x2e"]

    def prepare(r):
        os.mkdir(j(r, b"a"))
        write_file(j(r, b"a", b"x"), b"child of a")
        os.mkdir(j(r, b"a", b"y"))
        write_file(j(r, b"a", b"y", b"z"), b"grandchild of a")
        for s in sibs[1:]:
            if s in (b"a-", b"a0"):
                os.mkdir(j(r, s))
                write_file(j(r, s, b"x"), s)
            else:
                write_file(j(r, s), s)

    pair.setup(prepare)
    pair.both("list a", lambda r: sorted(os.listdir(j(r, b"a"))), expect=[b"x", b"y"])
    pair.both("list a-", lambda r: os.listdir(j(r, b"a-")), expect=[b"x"])
    pair.both("rmdir a (not empty)", lambda r: os.rmdir(j(r, b"a")), expect="ENOTEMPTY")
    pair.both("rename a", lambda r: os.rename(j(r, b"a"), j(r, b"b")), expect=None)
    pair.both("root after rename", lambda r: sorted(os.listdir(os.fsencode(r))))
    pair.both("list b/y", lambda r: os.listdir(j(r, b"b", b"y")), expect=[b"z"])
    pair.both("a- untouched", lambda r: read_file(j(r, b"a-", b"x")), expect=b"a-")
    pair.both("empty a0, rmdir it",
              lambda r: (os.unlink(j(r, b"a0", b"x")), os.rmdir(j(r, b"a0")))[1], expect=None)
    pair.both("make an empty a, rmdir it",
              lambda r: (os.mkdir(j(r, b"a")), os.rmdir(j(r, b"a")))[1], expect=None)
    pair.both("rename a- to a", lambda r: os.rename(j(r, b"a-"), j(r, b"a")), expect=None)
    pair.both("exchange a and b", lambda r: renameat2(j(r, b"a"), j(r, b"b"), RENAME_EXCHANGE),
              expect=None)
    pair.both("list b", lambda r: sorted(os.listdir(j(r, b"b"))), expect=[b"x"])
    pair.both("list a", lambda r: sorted(os.listdir(j(r, b"a"))), expect=[b"x", b"y"])
    pair.check()


NAME_OPS = {
    "create": lambda r, n: os.close(os.open(r / n, os.O_CREAT | os.O_WRONLY, 0o644)),
    "mkdir": lambda r, n: os.mkdir(r / n),
    "rename": lambda r, n: os.rename(r / "src", r / n),
    "link": lambda r, n: os.link(r / "src", r / n),
    "symlink": lambda r, n: os.symlink("src", r / n),
    "lookup": lambda r, n: os.stat(r / n).st_size,
    "unlink": lambda r, n: os.unlink(r / n),
    "rmdir": lambda r, n: os.rmdir(r / n),
    "setxattr on it": lambda r, n: os.setxattr(r / n, "user.x", b"1"),
}
NAME_LENGTHS = [  # (name, fits in 255 bytes); UTF-8 names count bytes, not characters
    ("n" * 255, True),
    ("n" * 256, False),
    ("\xe9" * 127 + "a", True),
    ("\xe9" * 128, False),
    ("n" * 1000, False),
]


@pytest.mark.parametrize("op_name", list(NAME_OPS), ids=slug)
def test_name_length_limit(pair, op_name):
    op = NAME_OPS[op_name]
    for name, fits in NAME_LENGTHS:
        def prepare(r):
            if not os.path.exists(r / "src"):
                write_file(r / "src", b"source")
            if fits and op_name in ("lookup", "unlink", "setxattr on it"):
                write_file(r / name, b"long")
            if fits and op_name == "rmdir":
                os.mkdir(r / name)

        pair.setup(prepare)
        pair.both(f"{op_name} {len(os.fsencode(name))} bytes", lambda r: op(r, name),
                  expect=(4 if op_name == "lookup" else None) if fits else "ENAMETOOLONG")
    pair.check()


def test_long_name_in_symlink_target(pair):
    def op(r):
        os.symlink("x" * 256 + "/y", r / "l")
        return os.readlink(r / "l") == "x" * 256 + "/y", attempt(os.stat, r / "l")

    pair.both("symlink to a 256-byte component", op, expect=(True, "ENAMETOOLONG"))
    pair.check()


def test_deep_path_near_path_max(pair):
    comp = "d" * 200
    levels = 20  # 20 x 201 = 4020 bytes

    def op(r):
        root_fd = os.open(r, os.O_RDONLY | os.O_DIRECTORY)
        try:
            rel = ""
            for _ in range(levels):
                rel = f"{rel}/{comp}" if rel else comp
                os.mkdir(rel, dir_fd=root_fd)
            leaf = rel + "/" + "f" * (4095 - len(rel) - 1)
            assert len(leaf) == 4095
            fd = os.open(leaf, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=root_fd)
            os.write(fd, b"at the bottom")
            os.close(fd)
            out = [len(leaf)]
            fd = os.open(leaf, os.O_RDONLY, dir_fd=root_fd)
            out.append(os.read(fd, 100))
            os.close(fd)
            out.append(os.stat(leaf, dir_fd=root_fd).st_size)
            out.append(attempt(os.open, leaf + "x", os.O_CREAT | os.O_WRONLY, 0o644,
                               dir_fd=root_fd))
            d = os.open(rel, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root_fd)
            out.append(len(os.listdir(d)[0]))
            os.close(d)
            os.rename(leaf, rel + "/s", src_dir_fd=root_fd, dst_dir_fd=root_fd)
            d = os.open("/".join(rel.split("/")[:15]), os.O_RDONLY | os.O_DIRECTORY,
                        dir_fd=root_fd)
            out.append(sorted(len(n) for n in os.listdir(d)))
            os.close(d)
            # Removed through descriptors: the absolute paths of a deep tree
            # under the test's directory pass PATH_MAX.
            shutil.rmtree(comp, dir_fd=root_fd)
            return out
        finally:
            os.close(root_fd)

    pair.both("4095-byte path", op, expect=[4095, b"at the bottom", 13, "ENAMETOOLONG", 75, [200]])
    pair.check()


# ---- readdir ------------------------------------------------------------------------


def test_readdir_100k_entries(fs):
    n = 100_000
    d = fs.mnt / "big"
    os.mkdir(d)
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    for i in range(n):
        os.close(os.open(f"{d}/{i:06d}", flags, 0o644))
    expected = {f"{i:06d}" for i in range(n)}
    with os.scandir(d) as it:
        names = [e.name for e in it]
    assert len(names) == n, f"scandir listed {len(names)} entries, {len(set(names))} distinct"
    assert set(names) == expected
    out = subprocess.run(f"ls -f '{d}' | wc -l", shell=True, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == n + 2  # with . and ..
    assert os.stat(d).st_nlink == 2


def _make_files(r, count, dirname="many"):
    os.mkdir(r / dirname)
    for i in range(count):
        os.close(os.open(f"{r}/{dirname}/entry-with-a-longer-name-{i:05d}",
                         os.O_CREAT | os.O_WRONLY, 0o644))


def test_listing_while_deleting_empties_the_directory(pair):
    pair.setup(lambda r: _make_files(r, 5000))

    def rm_rf(r):
        removed = 0
        with os.scandir(r / "many") as it:
            for e in it:
                os.unlink(e.path)
                removed += 1
        return removed, os.listdir(r / "many"), os.rmdir(r / "many")

    pair.both("scandir + unlink", rm_rf, expect=(5000, [], None))

    def tree(r):
        for a in range(5):
            os.makedirs(r / "t" / f"a{a}" / "b")
            for i in range(100):
                write_file(r / "t" / f"a{a}" / f"f{i}", b"x")
                write_file(r / "t" / f"a{a}" / "b" / f"g{i}", b"y")
        return subprocess.run(["rm", "-rf", str(r / "t")], capture_output=True).returncode, \
            os.path.exists(r / "t")

    pair.both("rm -rf", tree, expect=(0, False))
    pair.check()


def _readdir_all(dirp):
    """[(telldir before, name)] from the current position to the end."""
    out = []
    while True:
        pos = libc.telldir(dirp)
        ctypes.set_errno(0)
        ent = libc.readdir(dirp)
        if not ent:
            if ctypes.get_errno():
                raise OSError(ctypes.get_errno(), "readdir")
            return out
        out.append((pos, ent.contents.d_name))


def test_seekdir_telldir(pair):
    pair.setup(lambda r: _make_files(r, 3000))

    def op(r):
        dirp = libc.opendir(os.fsencode(r / "many"))
        if not dirp:
            raise OSError(ctypes.get_errno(), "opendir")
        try:
            first = _readdir_all(dirp)
            names = [n for _, n in first]
            out = [len(names), len(set(names)), names.count(b"."), names.count(b"..")]
            rng = random.Random(11)
            for i in [0, 1, 2, 500, 1499, 2999, len(first) - 1] + rng.sample(range(len(first)), 10):
                libc.seekdir(dirp, first[i][0])
                rest = [n for _, n in _readdir_all(dirp)]
                out.append(rest == names[i:])
            # seek back into the middle after reaching the end, then read a few
            libc.seekdir(dirp, first[1000][0])
            ctypes.set_errno(0)
            ent = libc.readdir(dirp)
            out.append(ent.contents.d_name == names[1000])
        finally:
            libc.closedir(dirp)
        return out

    pair.both("seekdir/telldir", op, expect=[3002, 3002, 1, 1] + [True] * 18)
    pair.check()


def test_readdir_types_and_inodes(pair):
    def prepare(r):
        write_file(r / "file", b"x")
        os.mkdir(r / "dir")
        os.symlink("file", r / "link")
        os.link(r / "file", r / "hard")

    pair.setup(prepare)

    def op(r):
        out = []
        with os.scandir(r) as it:
            for e in sorted(it, key=lambda e: e.name):
                out.append((e.name, e.is_file(follow_symlinks=False),
                            e.is_dir(follow_symlinks=False), e.is_symlink(),
                            e.inode() == os.lstat(e.path).st_ino))
        out.append(os.stat(r / "file").st_ino == os.stat(r / "hard").st_ino)
        return out

    pair.both("d_type and d_ino", op)
    pair.check()


# ---- statfs, space ---------------------------------------------------------------


def test_statfs_numbers(fs):
    sv = os.statvfs(fs.mnt)
    assert sv.f_namemax == 255
    assert sv.f_bsize > 0 and sv.f_frsize > 0
    assert sv.f_blocks >= sv.f_bfree > 0
    assert sv.f_bfree >= sv.f_bavail
    write_file(fs.mnt / "f", b"x")
    fd = os.open(fs.mnt / "f", os.O_RDONLY)
    try:
        fsv = os.fstatvfs(fd)
    finally:
        os.close(fd)
    assert (fsv.f_namemax, fsv.f_bsize, fsv.f_blocks) == (sv.f_namemax, sv.f_bsize, sv.f_blocks)


def test_statfs_free_space_drops_after_writing(fs):
    """The free space reported drops by about what was written.

    The store's disk is shared with whatever else runs on the machine, so a
    round whose drop is off may have been disturbed: up to 5 rounds of 50 MiB,
    one must show a drop between 25 and 500 MiB."""
    def free_bytes():
        sv = os.statvfs(fs.mnt)
        return sv.f_bfree * sv.f_frsize

    drops = []
    for round_ in range(5):
        os.sync()
        before = free_bytes()
        fd = os.open(fs.mnt / f"random{round_}", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            for _ in range(50):
                os.write(fd, os.urandom(MIB))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.sync()
        dropped = before - free_bytes()
        drops.append(round(dropped / MIB, 1))
        if 25 * MIB <= dropped <= 500 * MIB:
            return
    pytest.fail(f"free space dropped by {drops} MiB in rounds that each wrote 50 MiB")


def test_st_blocks_after_remount(fs):
    size = 10 * MIB
    for name, data in (("zeros", bytes(size)), ("random", os.urandom(size))):
        fd = os.open(fs.mnt / name, os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            for off in range(0, size, MIB):
                os.write(fd, data[off:off + MIB])
            os.fsync(fd)
        finally:
            os.close(fd)
    fs.remount()
    zeros = os.stat(fs.mnt / "zeros")
    rand = os.stat(fs.mnt / "random")
    assert zeros.st_size == size and rand.st_size == size
    assert zeros.st_blocks * 512 < size // 20, \
        f"10 MiB of zeros occupy {zeros.st_blocks} blocks of 512 bytes"
    assert abs(rand.st_blocks * 512 - size) <= size // 10, \
        f"10 MiB of random bytes occupy {rand.st_blocks} blocks of 512 bytes " \
        f"({rand.st_blocks * 512 / MIB:.2f} MiB)"


# ---- mmap, fsync ------------------------------------------------------------------


def test_mmap_shared_writable(pair_wb):
    pair = pair_wb
    size = 3 * 4096 + 100
    pair.setup(lambda r: write_file(r / "m", rand_bytes(6, size)))

    def op(r):
        out = []
        fd = os.open(r / "m", os.O_RDWR)
        try:
            with mmap.mmap(fd, size) as m:
                m[10:20] = b"X" * 10
                m[8190:8200] = b"Y" * 10
                m[size - 5:size] = b"ZZZZZ"
                m.flush()
                other = os.open(r / "m", os.O_RDONLY)
                out.append(hashlib.sha256(os.pread(other, size + 10, 0)).hexdigest()[:16])
                os.close(other)
                os.pwrite(fd, b"written", 100)  # write() shows in the mapping
                out.append(m[100:107])
                out.append(os.fstat(fd).st_size)
        finally:
            os.close(fd)
        return out

    pair.both("shared mapping", op)
    pair.check()
    pair.fs.remount()
    pair.check()


def test_fsync_and_fdatasync(pair):
    def prepare(r):
        write_file(r / "f", b"data")
        os.mkdir(r / "d")

    pair.setup(prepare)

    def op(r):
        out = []
        fd = os.open(r / "f", os.O_RDWR)
        os.write(fd, b"more")
        out.append((os.fsync(fd), os.fdatasync(fd)))
        os.close(fd)
        fd = os.open(r / "f", os.O_RDONLY)
        out.append((os.fsync(fd), os.fdatasync(fd)))
        os.close(fd)
        for d in (r / "d", r):
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
            out.append((os.fsync(fd), os.fdatasync(fd)))
            os.close(fd)
        return out

    pair.both("fsync", op, expect=[(None, None)] * 4)
    r = subprocess.run(["sync"], timeout=60)
    assert r.returncode == 0
    r = subprocess.run(["sync", "-f", str(pair.mnt)], timeout=60)
    assert r.returncode == 0
    pair.check()


# ---- persistence ------------------------------------------------------------------


def _populate(r):
    """A tree with a bit of everything; explicit times set last."""
    os.mkdir(r / "docs")
    os.mkdir(r / "docs" / "nested")
    os.mkdir(r / "docs" / "nested" / "deeper")
    write_file(r / "docs" / "small.txt", b"small text\n")
    write_file(r / "docs" / "nested" / "random.bin", rand_bytes(10, 300 * KIB))
    write_file(r / "docs" / "nested" / "deeper" / "words", b"lorem ipsum " * 20000)
    write_file(r / "empty", b"")
    fd = os.open(r / "sparse", os.O_CREAT | os.O_WRONLY, 0o644)
    os.pwrite(fd, b"end", 5 * MIB)
    os.pwrite(fd, b"start", 0)
    os.close(fd)
    write_file(r / "truncated", rand_bytes(11, 100000))
    os.truncate(r / "truncated", 777)
    write_file(r / "punched", rand_bytes(12, 50000))
    fd = os.open(r / "punched", os.O_RDWR)
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8192, 16384)
    os.close(fd)
    write_file(r / "appended", b"one\n")
    with open(r / "appended", "ab") as f:
        f.write(b"two\n")
    os.link(r / "docs" / "small.txt", r / "hardlink")
    os.link(r / "docs" / "small.txt", r / "docs" / "nested" / "hardlink2")
    os.symlink("docs/small.txt", r / "symlink")
    os.symlink("nowhere/at/all", r / "dangling")
    os.symlink("L" * 4000, r / "longlink")
    write_file(r / "modes", b"m")
    os.chmod(r / "modes", 0o4751)
    write_file(r / "nomode", b"n")
    os.chmod(r / "nomode", 0)
    os.mkdir(r / "sticky")
    os.chmod(r / "sticky", 0o1777)
    write_file(r / "owned", b"o")
    os.chown(r / "owned", 4321, 8765)
    os.chown(r / "symlink", 11, 22, follow_symlinks=False)
    os.setxattr(r / "docs" / "small.txt", "user.note", b"a note")
    os.setxattr(r / "docs", "user.dir", b"on a dir")
    os.setxattr(r / "owned", "user.big", rand_bytes(13, 65536))
    os.mkdir(r / "gone")
    write_file(r / "gone" / "x", b"x")
    os.unlink(r / "gone" / "x")
    os.rmdir(r / "gone")
    os.mkdir(r / "before")
    write_file(r / "before" / "child", b"moved with its dir")
    os.rename(r / "before", r / "after")
    write_file(r / "x1", b"first")
    write_file(r / "x2", b"second")
    renameat2(r / "x1", r / "x2", RENAME_EXCHANGE)
    write_file(j(r, b"bytes\xff\x01name"), b"odd name")
    os.mkdir(r / "many")
    for i in range(300):
        write_file(r / "many" / f"m{i}", b"%d" % i)
    os.unlink(r / "many" / "m7")
    # explicit times, deepest entries first, so that nothing changes them after
    paths = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(r)):
        paths += [os.path.relpath(os.path.join(dirpath, n), os.fsencode(r))
                  for n in filenames + dirnames]
    for i, rel in enumerate(sorted(paths)):  # the same order on every filesystem
        p = os.path.join(os.fsencode(r), rel)
        os.utime(p, ns=(1_500_000_000_000_000_000 + i * 1_000_001,
                        1_600_000_000_123_456_789 + i * 1_000_003), follow_symlinks=False)


def test_remount_persistence(pair_wb):
    pair = pair_wb
    pair.setup(_populate)
    pair.check(times=True)
    before = snapshot(pair.mnt, times=True, ctimes=True)
    pair.fs.remount()
    after = snapshot(pair.mnt, times=True, ctimes=True)
    lines = diff_snapshots(before, after, "before remount", "after remount")
    assert not lines, "the remount changed the tree:\n" + "\n".join(lines[:50])
    pair.check(times=True)
