"""Differential random filesystem operations: mindbfs against tmpfs.

A seeded generator makes a sequence of operations on a small namespace, so
that they collide: opens with O_CREAT/O_EXCL/O_TRUNC/O_APPEND into a few fd
slots kept open across operations, writes at offsets (holes, past the end),
reads, truncates, fallocate, renames (RENAME_NOREPLACE, RENAME_EXCHANGE, of
directories, into their own subtree), links (also of an open file, through
/proc/self/fd), unlink and rmdir (of open files too), mkdir, symlinks,
mkfifo, chmod, chown, utimens, xattrs (by name and by fd), fsync, the *at
calls in a directory held open (which may have moved or gone), and
remounts.
The same sequence runs on a fresh tmpfs directory and a fresh mindbfs mount:
every operation's outcome (return value or errno name, bytes read) must be
equal, and every CHECK_EVERY operations and at the end so must the whole
trees and the files still open. A mismatch is then shrunk: the shortest
failing prefix by bisection, then operations dropped while it still fails,
each trial on a fresh mount and a fresh tmpfs directory.

The CI form is tests/test_fs_random.py. The long form, from the repository:

    nice /usr/bin/python3 tests/fsrandom.py --build build --mode both --ops 1000000

runs 1,000,000 operations per writeback mode in runs of --per-run operations
(seeds --seed, --seed + 1, ...), shrinks and prints every mismatch, and
mounts and unmounts everything itself (Ctrl-C too); --help tells the rest.
"""

import argparse
import contextlib
import hashlib
import os
import pathlib
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402 - Mount reports its failures through pytest.fail

import conftest  # noqa: E402
from fscalls import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, RENAME_EXCHANGE,  # noqa: E402
                     RENAME_NOREPLACE, errname, fallocate, linkat, renameat2)

KIB = 1024
MIB = 1024 * KIB

CHECK_EVERY = 250  # operations between two whole-tree comparisons
WATCHDOG_S = 180  # an operation that takes longer has hung: the daemon is killed

MODES = {"wb": "writeback_cache", "nowb": "no_writeback_cache"}

# ---- known differences --------------------------------------------------------
#
# Where mindbfs may answer otherwise than tmpfs, and why that is not a bug.
# Each is applied where the outcome or the state is made, never silently:
#
# - st_blocks, st_ino, st_dev, atime and ctime are never compared (allocation
#   and numbering are each filesystem's own), nor the size of a directory
#   (tmpfs counts entries, mindbfs answers 0).
# - An mtime is compared exactly where an operation set it explicitly (the
#   generator's explicit times are before 2020 or after 2100); a time in
#   2020..2100 shows as "now" on both sides: the two clocks are read at
#   different moments.
# - lseek(SEEK_END) on a directory is not compared: POSIX leaves a directory's
#   offsets to the filesystem; tmpfs refuses SEEK_END (EINVAL), the kernel's
#   FUSE directory lseek (generic_file_llseek) adds the offset to the
#   directory's size (ext4 does that too, with a size of its own).
# - truncate(2) to the size a file has already: POSIX leaves the times open.
#   ext4 sets mtime to now; tmpfs only when the file holds a page of data (its
#   truncate of the page cache does it); mindbfs sets it in the store, but with
#   the writeback cache the kernel keeps its own mtime (it adds ATTR_MTIME to
#   a truncate only when the size changes) until it drops the inode. Side
#   sets the mtime to now after such a truncate, on both sides.
# - mkfifo: mindbfs makes regular files, directories and symlinks only and
#   answers EOPNOTSUPP (docs/FUSE.md); where tmpfs makes the FIFO, the
#   reference removes it again (and puts its directory's times back) and
#   answers EOPNOTSUPP. Where tmpfs fails (EEXIST, ENOENT...), the errno must
#   be the same.

# ---- the namespace -----------------------------------------------------------------

# A few names so that operations collide, with odd bytes and the longest legal
# name; TOO_LONG is drawn now and then for ENAMETOOLONG.
NAMES = (b"a", b"b", b"c", b"sp ace", b"\xff\x01\n", b"L" * 255)
TOO_LONG = b"T" * 256
MAX_DEPTH = 3
SLOTS = 6

# Symlink targets only ever go down (no "..", and the absolute one names
# nothing): resolved on either side, they stay inside the tree under test.
TARGETS = (b"a", b"b", b"a/b", b"c/sp ace", b"L" * 255, b".", b"nowhere", b"",
           b"/nonexistent-fsrandom/x", b"t/" * 2000, b"x" * 4096)

XATTR_NAMES = ("user.a", "user.b", "user.c", "user." + "n" * 250, "user." + "n" * 251,
               "user.", "trusted.t", "security.s", "system.x")
MODES_CHMOD = (0o644, 0o600, 0o755, 0o000, 0o444, 0o777, 0o4755, 0o2755, 0o1777, 0o7777)
OWNERS = ((0, 0), (1000, 1000), (-1, 5), (65534, -1))

# Explicit times: 1970..2019 or 2100..2199, never in the "now" window.
NOW_LOW = 1_577_836_800 * 10**9  # 2020-01-01
NOW_HIGH = 4_102_444_800 * 10**9  # 2100-01-01
YEAR_2200 = 7_258_118_400 * 10**9

POOL = 1 * MIB
RANDOM_BYTES = random.Random(0x5EED).randbytes(POOL)
TEXT_BYTES = conftest.words(random.Random(0x7E47), POOL)
ZERO_BYTES = bytes(POOL)
DATA = {"rand": RANDOM_BYTES, "text": TEXT_BYTES, "zero": ZERO_BYTES}


def data_bytes(desc):
    pool, start, n = desc
    return DATA[pool][start:start + n]


def join(parent, name):
    return parent + b"/" + name if parent else name


def parent_of(rel):
    return rel.rpartition(b"/")[0]


def depth(rel):
    return rel.count(b"/") + 1 if rel else 0


# ---- the generator ----------------------------------------------------------------


class Generator:
    """Operations from a seed alone (never from what a filesystem answered), so a
    seed and a count name a sequence. A rough model of the tree (names and
    kinds only) steers the choice of paths towards names that exist."""

    WEIGHTS = {
        "open": 10, "close": 5, "pwrite": 12, "write": 6, "pread": 8, "read": 3, "lseek": 2,
        "ftruncate": 3, "truncate": 3, "fallocate": 2, "fstat": 3, "fsync": 2, "fdatasync": 1,
        "fsync_dir": 1, "rename": 8, "link": 3, "unlink": 5, "rmdir": 3, "mkdir": 6,
        "symlink": 3, "readlink": 2, "chmod": 3, "fchmod": 1, "chown": 1, "utime": 3,
        "futime": 1, "setxattr": 5, "getxattr": 2, "listxattr": 2, "removexattr": 2,
        "stat": 3, "listdir": 3, "flink": 1, "mkfifo": 0.5,
        # relative to a directory open in a slot (which may have moved or gone)
        "openat": 2, "mkdirat": 1, "unlinkat": 1, "renameat": 1, "statat": 1,
    }
    REMOUNT_CHANCE = 1 / 2500
    FD_OPS = {"close", "pwrite", "write", "pread", "read", "lseek", "ftruncate", "fallocate",
              "fstat", "fsync", "fdatasync", "fchmod", "futime", "flink", "openat", "mkdirat",
              "unlinkat", "renameat", "statat"}

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.kinds = {b"": "d"}  # path -> "f", "d" or "l"
        self.slots = {}  # slot -> (path, kind) of what it holds, as far as the model knows
        self._names = list(self.WEIGHTS)
        self._weights = list(self.WEIGHTS.values())

    def ops(self, count):
        return [self.next() for _ in range(count)]

    def next(self):
        if self.rng.random() < self.REMOUNT_CHANCE:
            self.slots.clear()
            return ("remount",)
        name = self.rng.choices(self._names, self._weights)[0]
        if name in self.FD_OPS and not self.slots:
            name = "open"
        return getattr(self, "_" + name)()

    # -- paths, slots, sizes

    def _any_path(self):
        n = self.rng.choices((1, 2, 3, 4), (5, 4, 2, 1))[0]
        return b"/".join(TOO_LONG if self.rng.random() < 0.01 else self.rng.choice(NAMES)
                         for _ in range(n))

    def _existing(self, kinds):
        found = [p for p, k in self.kinds.items() if p and k in kinds]
        return self.rng.choice(found) if found else self._any_path()

    def _fresh(self):
        dirs = [p for p, k in self.kinds.items() if k == "d" and depth(p) < MAX_DEPTH]
        return join(self.rng.choice(dirs), self.rng.choice(NAMES))

    def _path(self, kinds="fdl", existing=0.7, fresh=0.2):
        r = self.rng.random()
        if r < existing:
            return self._existing(kinds)
        if r < existing + fresh:
            return self._fresh()
        return self._any_path()

    def _slot(self):
        if self.slots and self.rng.random() < 0.98:
            return self.rng.choice(sorted(self.slots))
        return self.rng.randrange(SLOTS)

    def _dir_slot(self):
        dirs = sorted(slot for slot, (_, kind) in self.slots.items() if kind == "d")
        if dirs and self.rng.random() < 0.9:
            return self.rng.choice(dirs)
        return self._slot()

    def _in_slot(self, slot, name):
        """The path of `name` in the directory of `slot`, if the model knows it."""
        rel, kind = self.slots.get(slot, (None, None))
        return join(rel, name) if kind == "d" else None

    def _offset(self):
        r = self.rng.random()
        if r < 0.3:
            return self.rng.randint(0, 8192)
        if r < 0.5:
            return max(0, self.rng.randint(0, 64) * 4096 + self.rng.randint(-3, 3))
        if r < 0.65:
            return max(0, self.rng.randint(0, 8) * 65536 + self.rng.randint(-3, 3))
        if r < 0.88:
            return self.rng.randint(0, 300_000)
        if r < 0.98:
            return self.rng.randint(300_000, 2 * MIB)
        return self.rng.randint(2 * MIB, 4 * MIB)

    def _length(self, big=True):
        r = self.rng.random()
        if r < 0.4:
            return self.rng.randint(0, 100)
        if r < 0.75:
            return self.rng.randint(100, 5000)
        if r < 0.8:
            return 4096
        if r < 0.95 or not big:
            return self.rng.randint(5000, 70_000)
        return self.rng.randint(70_000, 200_000)

    def _data(self, big=True):
        n = self._length(big)
        pool = self.rng.choices(("rand", "text", "zero"), (5, 4, 1))[0]
        return (pool, self.rng.randint(0, POOL - n), n)

    def _size(self):
        r = self.rng.random()
        if r < 0.15:
            return 0
        if r < 0.45:
            return self.rng.randint(0, 10_000)
        if r < 0.6:
            return max(0, self.rng.randint(0, 64) * 4096 + self.rng.randint(-2, 2))
        if r < 0.97:
            return self.rng.randint(0, 1 * MIB)
        return self.rng.randint(1 * MIB, 4 * MIB)

    def _times(self):
        if self.rng.random() < 0.1:
            return None  # now

        def one():
            if self.rng.random() < 0.5:
                return self.rng.randrange(0, NOW_LOW)
            return self.rng.randrange(NOW_HIGH, YEAR_2200)
        return (one(), one())

    def _xattr_target(self):
        if self.rng.random() < 0.2:
            return ("fd", self._slot())
        return self._path(existing=0.8, fresh=0.1)

    def _xattr_name(self):
        return self.rng.choices(XATTR_NAMES, (6, 4, 2, 1, 0.3, 0.3, 0.5, 0.5, 0.3))[0]

    # -- the model

    def _add(self, rel, kind):
        if rel and self.kinds.get(parent_of(rel)) == "d" and rel not in self.kinds and \
                len(rel.rpartition(b"/")[2]) <= 255:
            self.kinds[rel] = kind

    def _subtree(self, rel):
        return [p for p in self.kinds if p == rel or p.startswith(rel + b"/")]

    def _remove(self, rel):
        for p in self._subtree(rel):
            del self.kinds[p]

    def _move(self, src, dst):
        moved = {p: self.kinds[p] for p in self._subtree(src)}
        self._remove(src)
        self._remove(dst)
        for p, k in moved.items():
            self.kinds[dst + p[len(src):]] = k

    # -- one generator per operation

    def _open(self):
        slot = self.rng.randrange(SLOTS)
        kind = self.rng.choices("fdl", (7, 2, 1))[0]
        rel = self._path(kind, 0.7, 0.25) if kind == "f" else self._path(kind)
        flags = self.rng.choices((os.O_RDONLY, os.O_WRONLY, os.O_RDWR), (3, 2, 5))[0]
        known = self.kinds.get(rel)
        for flag, chance in ((os.O_CREAT, 0.3 if known else 0.85), (os.O_EXCL, 0.15),
                             (os.O_TRUNC, 0.15), (os.O_APPEND, 0.15), (os.O_DIRECTORY, 0.03),
                             (os.O_NOFOLLOW, 0.03)):
            if self.rng.random() < chance:
                flags |= flag
        if flags & os.O_CREAT and not flags & os.O_DIRECTORY and not known:
            self._add(rel, "f")
        # a guess of whether the open works, so that fd operations mostly find a file
        if (known == "f" and not flags & (os.O_EXCL | os.O_DIRECTORY)) or \
                (known is None and self.kinds.get(rel) == "f") or \
                (known == "d" and flags & (3 | os.O_CREAT | os.O_TRUNC) == os.O_RDONLY):
            self.slots[slot] = (rel, self.kinds[rel])
        else:
            self.slots.pop(slot, None)
        return ("open", rel, flags, self.rng.choice(MODES_CHMOD), slot)

    def _close(self):
        slot = self._slot()
        self.slots.pop(slot, None)
        return ("close", slot)

    def _pwrite(self):
        return ("pwrite", self._slot(), self._offset(), self._data())

    def _write(self):
        return ("write", self._slot(), self._data(big=False))

    def _pread(self):
        return ("pread", self._slot(), self._offset(), self._length())

    def _read(self):
        return ("read", self._slot(), self._length(big=False))

    def _lseek(self):
        whence = self.rng.choice((os.SEEK_SET, os.SEEK_CUR, os.SEEK_END))
        offset = self._offset() if whence == os.SEEK_SET else self.rng.randint(-5000, 100_000)
        return ("lseek", self._slot(), offset, whence)

    def _ftruncate(self):
        return ("ftruncate", self._slot(), self._size())

    def _truncate(self):
        return ("truncate", self._path("f"), self._size())

    def _fallocate(self):
        mode = self.rng.choice((0, FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
        return ("fallocate", self._slot(), mode, self._offset(), self._length() + 1)

    def _fstat(self):
        return ("fstat", self._slot())

    def _fsync(self):
        return ("fsync", self._slot())

    def _fdatasync(self):
        return ("fdatasync", self._slot())

    def _fsync_dir(self):
        return ("fsync_dir", b"" if self.rng.random() < 0.3 else self._path("d"))

    def _rename(self):
        src = self._path(existing=0.85, fresh=0.05)
        r = self.rng.random()
        if r < 0.4:
            dst = self._fresh()
        elif r < 0.7:
            dst = self._existing(self.kinds.get(src, "fdl"))
        elif r < 0.8 and self.kinds.get(src) == "d":
            dst = join(src, self.rng.choice(NAMES))  # into its own subtree
        else:
            dst = self._path()
        flags = self.rng.choices((0, RENAME_NOREPLACE, RENAME_EXCHANGE,
                                  RENAME_EXCHANGE | RENAME_NOREPLACE), (65, 15, 17, 3))[0]
        self._model_rename(src, dst, flags)
        return ("rename", src, dst, flags)

    def _model_rename(self, src, dst, flags):
        ks, kd = self.kinds.get(src), self.kinds.get(dst)
        if ks is None or src == dst or dst.startswith(src + b"/") or \
                src.startswith(dst + b"/") or self.kinds.get(parent_of(dst)) != "d":
            return
        if flags == RENAME_EXCHANGE | RENAME_NOREPLACE:
            return
        if flags == RENAME_EXCHANGE:
            if kd is not None:
                tmp = b"\0swap"
                self._move(src, tmp)
                self._move(dst, src)
                self._move(tmp, dst)
            return
        if flags or kd is None:
            if kd is None:
                self._move(src, dst)
            return
        if (ks == "d") != (kd == "d"):
            return
        if kd == "d" and len(self._subtree(dst)) > 1:
            return
        self._move(src, dst)

    def _link(self):
        src = self._path("fl", 0.85, 0.05)
        dst = self._fresh() if self.rng.random() < 0.7 else self._path()
        follow = self.rng.random() < 0.5
        if self.kinds.get(src) == "f" or (self.kinds.get(src) == "l" and not follow):
            self._add(dst, self.kinds[src])
        return ("link", src, dst, follow)

    def _unlink(self):
        rel = self._path("fl", 0.8, 0.1)
        if self.kinds.get(rel) in ("f", "l"):
            self._remove(rel)
        return ("unlink", rel)

    def _rmdir(self):
        rel = self._path("d", 0.8, 0.1)
        if self.kinds.get(rel) == "d" and len(self._subtree(rel)) == 1:
            self._remove(rel)
        return ("rmdir", rel)

    def _mkdir(self):
        rel = self._fresh() if self.rng.random() < 0.8 else self._path()
        self._add(rel, "d")
        return ("mkdir", rel, self.rng.choice(MODES_CHMOD))

    def _symlink(self):
        r = self.rng.random()
        if r < 0.6:
            target = self._existing("fdl") or b"a"
        else:
            target = self.rng.choice(TARGETS)
        rel = self._fresh() if self.rng.random() < 0.8 else self._path()
        if 0 < len(target) < 4096:
            self._add(rel, "l")
        return ("symlink", target, rel)

    def _mkfifo(self):
        return ("mkfifo", self._fresh() if self.rng.random() < 0.8 else self._path())

    def _readlink(self):
        return ("readlink", self._path("l"))

    def _chmod(self):
        return ("chmod", self._path(), self.rng.choice(MODES_CHMOD))

    def _fchmod(self):
        return ("fchmod", self._slot(), self.rng.choice(MODES_CHMOD))

    def _chown(self):
        uid, gid = self.rng.choice(OWNERS)
        return ("chown", self._path(), uid, gid, self.rng.random() < 0.5)

    def _utime(self):
        return ("utime", self._path(), self._times(), self.rng.random() < 0.5)

    def _futime(self):
        return ("futime", self._slot(), self._times())

    def _setxattr(self):
        r = self.rng.random()
        if r < 0.1:
            n = 0
        elif r < 0.6:
            n = self.rng.randint(1, 64)
        elif r < 0.98:
            n = self.rng.randint(64, 4096)
        else:
            n = self.rng.choice((65536, 65537))
        value = ("rand", self.rng.randint(0, POOL - n), n)
        flags = self.rng.choices((0, os.XATTR_CREATE, os.XATTR_REPLACE), (6, 2, 2))[0]
        return ("setxattr", self._xattr_target(), self._xattr_name(), value, flags,
                self.rng.random() < 0.7)

    def _getxattr(self):
        return ("getxattr", self._xattr_target(), self._xattr_name(), self.rng.random() < 0.7)

    def _listxattr(self):
        return ("listxattr", self._xattr_target(), self.rng.random() < 0.7)

    def _removexattr(self):
        return ("removexattr", self._xattr_target(), self._xattr_name(),
                self.rng.random() < 0.7)

    def _stat(self):
        rel = b"" if self.rng.random() < 0.05 else self._path()
        return ("stat", rel, self.rng.random() < 0.5)

    def _listdir(self):
        return ("listdir", b"" if self.rng.random() < 0.2 else self._path("d"))

    def _flink(self):
        # a new name for the file open in a slot, through /proc/self/fd
        slot = self._slot()
        dst = self._fresh() if self.rng.random() < 0.8 else self._path()
        rel, kind = self.slots.get(slot, (None, None))
        if kind == "f" and rel in self.kinds:
            self._add(dst, "f")
        return ("flink", slot, dst)

    # The *at operations take a name in the directory open in a slot (which
    # may have moved or gone since: the model takes the path it was opened by).

    def _name(self):
        return TOO_LONG if self.rng.random() < 0.01 else self.rng.choice(NAMES)

    def _openat(self):
        flags = self.rng.choice((os.O_RDONLY, os.O_WRONLY, os.O_RDWR)) | self.rng.choice(
            (0, os.O_CREAT, os.O_CREAT | os.O_EXCL, os.O_TRUNC, os.O_APPEND | os.O_CREAT))
        dir_slot, name = self._dir_slot(), self._name()
        slot = self.rng.choice([s for s in range(SLOTS) if s != dir_slot])
        rel = self._in_slot(dir_slot, name)
        if rel is not None and flags & os.O_CREAT:
            self._add(rel, "f")
        if self.kinds.get(rel) == "f":
            self.slots[slot] = (rel, "f")
        else:
            self.slots.pop(slot, None)
        return ("openat", dir_slot, name, flags, self.rng.choice(MODES_CHMOD), slot)

    def _mkdirat(self):
        slot, name = self._dir_slot(), self._name()
        rel = self._in_slot(slot, name)
        if rel is not None:
            self._add(rel, "d")
        return ("mkdirat", slot, name, self.rng.choice(MODES_CHMOD))

    def _unlinkat(self):
        slot, name, is_dir = self._dir_slot(), self._name(), self.rng.random() < 0.3
        rel = self._in_slot(slot, name)
        kind = self.kinds.get(rel)
        if (is_dir and kind == "d" and len(self._subtree(rel)) == 1) or \
                (not is_dir and kind in ("f", "l")):
            self._remove(rel)
        return ("unlinkat", slot, name, is_dir)

    def _renameat(self):
        # a name of the slot's directory to a path from the root, or back
        slot, name, path, back = self._dir_slot(), self._name(), self._path(), \
            self.rng.random() < 0.5
        rel = self._in_slot(slot, name)
        if rel is not None:
            self._model_rename(path, rel, 0) if back else self._model_rename(rel, path, 0)
        return ("renameat", slot, name, path, back)

    def _statat(self):
        return ("statat", self._dir_slot(), self._name())


def generate(seed, count):
    return Generator(seed).ops(count)


# ---- the executor -----------------------------------------------------------------

TYPES = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink"}


def when(ns):
    """An mtime as compared: exact when set explicitly, "now" when from a clock."""
    return "now" if NOW_LOW <= ns < NOW_HIGH else ns


def stat_facts(st):
    fmt = stat.S_IFMT(st.st_mode)
    facts = (TYPES.get(fmt, oct(fmt)), oct(stat.S_IMODE(st.st_mode)), st.st_nlink, st.st_uid,
             st.st_gid, when(st.st_mtime_ns))
    return facts if fmt == stat.S_IFDIR else facts + (st.st_size,)


class Side:
    """One filesystem under test: its root and the descriptors of the fd slots.

    apply(op) returns the outcome of one operation: what it returned, or the
    errno name of the OSError it raised."""

    def __init__(self, root, remount=None, reference=False):
        self.root = os.fsencode(root)
        self.fds = {}
        self._remount = remount
        self.reference = reference  # tmpfs, which stands in for what mindbfs should answer

    def path(self, rel):
        return self.root + b"/" + rel if rel else self.root

    def apply(self, op):
        try:
            return getattr(self, "do_" + op[0])(*op[1:])
        except OSError as e:
            return errname(e)

    def close_all(self):
        out = []
        for slot in sorted(self.fds):
            out.append((slot, self.apply(("close", slot))))
        return out

    # -- descriptors

    def do_open(self, rel, flags, mode, slot):
        closed = self.apply(("close", slot)) if slot in self.fds else None
        fd = os.open(self.path(rel), flags, mode)
        self.fds[slot] = fd
        return closed, stat_facts(os.fstat(fd))

    def do_close(self, slot):
        fd = self.fds.pop(slot, None)
        if fd is None:
            return "no fd"
        os.close(fd)

    def _with_fd(self, slot, fn):
        fd = self.fds.get(slot)
        return "no fd" if fd is None else fn(fd)

    def do_pwrite(self, slot, offset, data):
        return self._with_fd(slot, lambda fd: os.pwrite(fd, data_bytes(data), offset))

    def do_write(self, slot, data):
        return self._with_fd(slot, lambda fd: (os.write(fd, data_bytes(data)),
                                               os.lseek(fd, 0, os.SEEK_CUR)))

    def do_pread(self, slot, offset, n):
        return self._with_fd(slot, lambda fd: os.pread(fd, n, offset))

    def do_read(self, slot, n):
        return self._with_fd(slot, lambda fd: (os.read(fd, n), os.lseek(fd, 0, os.SEEK_CUR)))

    def do_lseek(self, slot, offset, whence):
        def seek(fd):
            if whence == os.SEEK_END and stat.S_ISDIR(os.fstat(fd).st_mode):
                return "SEEK_END in a directory: not compared"
            return os.lseek(fd, offset, whence)
        return self._with_fd(slot, seek)

    def do_ftruncate(self, slot, size):
        return self._with_fd(slot, lambda fd: os.ftruncate(fd, size))

    def do_fallocate(self, slot, mode, offset, length):
        return self._with_fd(slot, lambda fd: fallocate(fd, mode, offset, length))

    def do_fstat(self, slot):
        return self._with_fd(slot, lambda fd: stat_facts(os.fstat(fd)))

    def do_fsync(self, slot):
        return self._with_fd(slot, os.fsync)

    def do_fdatasync(self, slot):
        return self._with_fd(slot, os.fdatasync)

    def do_fchmod(self, slot, mode):
        return self._with_fd(slot, lambda fd: os.fchmod(fd, mode))

    def do_futime(self, slot, times):
        return self._with_fd(slot, lambda fd: _utime(fd, times, True))

    # -- names

    def do_truncate(self, rel, size):
        try:
            before = os.stat(self.path(rel)).st_size
        except OSError:
            before = None
        os.truncate(self.path(rel), size)
        if before == size:  # a known difference: the mtime is set alike
            os.utime(self.path(rel))

    def do_fsync_dir(self, rel):
        fd = os.open(self.path(rel), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def do_rename(self, src, dst, flags):
        if flags:
            renameat2(self.path(src), self.path(dst), flags)
        else:
            os.rename(self.path(src), self.path(dst))

    def do_link(self, src, dst, follow):
        linkat(self.path(src), self.path(dst), follow)

    def do_unlink(self, rel):
        os.unlink(self.path(rel))

    def do_rmdir(self, rel):
        os.rmdir(self.path(rel))

    def do_mkdir(self, rel, mode):
        os.mkdir(self.path(rel), mode)

    def do_mkfifo(self, rel):
        parent = os.path.dirname(self.path(rel))
        try:
            before = os.stat(parent)
        except OSError:
            before = None
        os.mkfifo(self.path(rel))
        if self.reference:  # a known difference: mindbfs makes no FIFOs
            os.unlink(self.path(rel))
            os.utime(parent, ns=(before.st_atime_ns, before.st_mtime_ns))
            return "EOPNOTSUPP"

    def do_symlink(self, target, rel):
        os.symlink(target, self.path(rel))

    def do_readlink(self, rel):
        return os.readlink(self.path(rel))

    def do_chmod(self, rel, mode):
        os.chmod(self.path(rel), mode)

    def do_chown(self, rel, uid, gid, follow):
        os.chown(self.path(rel), uid, gid, follow_symlinks=follow)

    def do_utime(self, rel, times, follow):
        _utime(self.path(rel), times, follow)

    def do_stat(self, rel, follow):
        return stat_facts(os.stat(self.path(rel), follow_symlinks=follow))

    def do_listdir(self, rel):
        return sorted(os.listdir(self.path(rel)))

    def do_flink(self, slot, dst):
        return self._with_fd(slot, lambda fd: linkat(f"/proc/self/fd/{fd}", self.path(dst), True))

    # -- relative to a directory open in a slot

    def do_openat(self, dir_slot, name, flags, mode, slot):
        def openat(dir_fd):
            closed = self.apply(("close", slot)) if slot in self.fds else None
            fd = os.open(name, flags, mode, dir_fd=dir_fd)
            self.fds[slot] = fd
            return closed, stat_facts(os.fstat(fd))
        return self._with_fd(dir_slot, openat)

    def do_mkdirat(self, slot, name, mode):
        return self._with_fd(slot, lambda fd: os.mkdir(name, mode, dir_fd=fd))

    def do_unlinkat(self, slot, name, is_dir):
        remove = os.rmdir if is_dir else os.unlink
        return self._with_fd(slot, lambda fd: remove(name, dir_fd=fd))

    def do_renameat(self, slot, name, path, backwards):
        def renameat(fd):
            if backwards:
                os.rename(self.path(path), name, dst_dir_fd=fd)
            else:
                os.rename(name, self.path(path), src_dir_fd=fd)
        return self._with_fd(slot, renameat)

    def do_statat(self, slot, name):
        return self._with_fd(slot, lambda fd: stat_facts(
            os.stat(name, dir_fd=fd, follow_symlinks=False)))

    # -- xattrs: on a name or an fd slot

    def _xattr(self, target, follow, fn):
        if isinstance(target, tuple):
            return self._with_fd(target[1], lambda fd: fn(fd, True))
        return fn(self.path(target), follow)

    def do_setxattr(self, target, name, value, flags, follow):
        return self._xattr(target, follow, lambda t, f: os.setxattr(
            t, name, data_bytes(value), flags, follow_symlinks=f))

    def do_getxattr(self, target, name, follow):
        return self._xattr(target, follow, lambda t, f: os.getxattr(t, name, follow_symlinks=f))

    def do_listxattr(self, target, follow):
        return self._xattr(target, follow,
                           lambda t, f: sorted(os.listxattr(t, follow_symlinks=f)))

    def do_removexattr(self, target, name, follow):
        return self._xattr(target, follow,
                           lambda t, f: os.removexattr(t, name, follow_symlinks=f))

    # -- the whole filesystem

    def do_remount(self):
        closed = self.close_all()
        if self._remount:
            self._remount()
        return closed

    def state(self):
        """({relative path: facts}, hard-link groups, {slot: facts of the open file})."""
        entries = {}
        inodes = {}
        stack = [b""]
        while stack:
            rel = stack.pop()
            full = self.path(rel)
            st = os.lstat(full)
            fmt = stat.S_IFMT(st.st_mode)
            facts = {"stat": stat_facts(st),
                     "xattrs": _xattrs(full, lambda p: os.listxattr(p, follow_symlinks=False),
                                       lambda p, n: os.getxattr(p, n, follow_symlinks=False))}
            if fmt == stat.S_IFREG:
                facts["data"] = _digest(full)
            elif fmt == stat.S_IFLNK:
                facts["target"] = os.readlink(full)
            elif fmt == stat.S_IFDIR:
                stack.extend(join(rel, n) for n in os.listdir(full))
            if fmt != stat.S_IFDIR:
                inodes.setdefault(st.st_ino, []).append(rel)
            entries[rel] = facts
        links = sorted(sorted(names) for names in inodes.values() if len(names) > 1)
        open_files = {}
        for slot, fd in sorted(self.fds.items()):
            st = os.fstat(fd)
            facts = {"stat": stat_facts(st),
                     "xattrs": _xattrs(fd, os.listxattr, os.getxattr)}
            if stat.S_ISREG(st.st_mode):
                # the name may be gone: read through a descriptor of its own
                facts["data"] = _digest(f"/proc/self/fd/{fd}")
            open_files[slot] = facts
        return entries, links, open_files


def _utime(target, times, follow):
    if times is None:  # now
        os.utime(target, follow_symlinks=follow)
    else:
        os.utime(target, ns=times, follow_symlinks=follow)


def _digest(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        h = hashlib.sha256()
        size = 0
        while chunk := os.read(fd, MIB):
            h.update(chunk)
            size += len(chunk)
        return size, h.hexdigest()[:16]
    finally:
        os.close(fd)


def _xattrs(target, lister, getter):
    try:
        names = sorted(lister(target))
        return {n: hashlib.sha256(getter(target, n)).hexdigest()[:12] for n in names}
    except OSError as e:
        return errname(e)


# ---- comparing -------------------------------------------------------------------


def _squeeze(text):
    """repr text with long runs written short: LLLL... as L*255, t/t/... as [t/]*2000."""
    def run(m):
        unit, count = m.group(1), len(m.group(0)) // len(m.group(1))
        return f"{unit}*{count}" if len(unit) == 1 else f"[{unit}]*{count}"
    return re.sub(r"(.{1,3}?)\1{7,}", run, text)


def show(value, limit=300):
    if isinstance(value, (bytes, bytearray)) and len(value) > 48:
        text = f"<{len(value)} bytes sha {hashlib.sha256(value).hexdigest()[:12]}: " \
               f"{_squeeze(repr(bytes(value[:32])))}...>"
    else:
        text = _squeeze(repr(value))
    return text if len(text) <= limit else text[:limit] + "..."


MODE_ARG = {"open": 3, "openat": 4, "mkdir": 2, "mkdirat": 3, "chmod": 2, "fchmod": 2}
FLAGS_ARG = {"open": 2, "openat": 3}
RENAME_FLAGS = {0: "0", RENAME_NOREPLACE: "NOREPLACE", RENAME_EXCHANGE: "EXCHANGE",
                RENAME_EXCHANGE | RENAME_NOREPLACE: "EXCHANGE|NOREPLACE"}


def show_op(op):
    args = []
    for i, a in enumerate(op):
        if i == 0:
            continue
        if isinstance(a, tuple) and len(a) == 3 and a[0] in DATA:
            args.append(f"{a[0]}[{a[1]}:+{a[2]}]")
        elif MODE_ARG.get(op[0]) == i:
            args.append(oct(a))
        elif FLAGS_ARG.get(op[0]) == i:
            args.append(_open_flags(a))
        elif op[0] == "rename" and i == 3:
            args.append(RENAME_FLAGS[a])
        elif op[0] == "setxattr" and i == 4:
            args.append({0: "0", os.XATTR_CREATE: "CREATE", os.XATTR_REPLACE: "REPLACE"}[a])
        elif isinstance(a, bytes):
            args.append(_squeeze(repr(a)))
        else:
            args.append(show(a, 80))
    return f"{op[0]}({', '.join(args)})"


def _open_flags(flags):
    names = [{os.O_RDONLY: "O_RDONLY", os.O_WRONLY: "O_WRONLY", os.O_RDWR: "O_RDWR"}[flags & 3]]
    names += [n for n in ("O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND", "O_DIRECTORY", "O_NOFOLLOW")
              if flags & getattr(os, n)]
    return "|".join(names)


def snapshot(side):
    """side.state(), or the errno name of what failed reading it."""
    try:
        return side.state()
    except OSError as e:
        return errname(e)


def diff_states(a, b):
    """Lines telling how state b (mindbfs) differs from state a (tmpfs)."""
    if isinstance(a, str) or isinstance(b, str):
        return [] if a == b else [f"reading the tree: tmpfs {show(a)} / mindbfs {show(b)}"]
    lines = []
    for label, ea, eb in (("", a[0], b[0]), ("open slot ", a[2], b[2])):
        for key in sorted(set(ea) | set(eb), key=repr):
            fa, fb = ea.get(key), eb.get(key)
            if fa == fb:
                continue
            name = f"{label}{_squeeze(repr(key))}"
            if fa is None or fb is None:
                lines.append(f"{name}: tmpfs {show(fa)} / mindbfs {show(fb)}")
                continue
            for field in sorted(set(fa) | set(fb)):
                if fa.get(field) != fb.get(field):
                    lines.append(f"{name} {field}: tmpfs {show(fa.get(field))} / "
                                 f"mindbfs {show(fb.get(field))}")
    if a[1] != b[1]:
        lines.append(f"hard links: tmpfs {show(a[1], 600)} / mindbfs {show(b[1], 600)}")
    return lines


def legend(lines):
    """lines, and what the fields of stat facts are when some are shown."""
    if any(re.search(r"'(file|dir|symlink)', '0o", line) for line in lines):
        return lines + ["(stat facts: type, mode, nlink, uid, gid, mtime, size)"]
    return lines


class Mismatch:
    """Where a run went wrong: after operation `index` of the sequence (an
    operation's outcome, the trees, or the daemon), and how."""

    def __init__(self, position, index, what, detail):
        self.position = position  # in the list that ran
        self.index = index  # in the generated sequence
        self.what = what
        self.detail = detail

    def __str__(self):
        return f"after op #{self.index}: {self.what}\n" + "\n".join(
            "    " + line for line in self.detail)


# ---- running a sequence ------------------------------------------------------------


def prepare_root(root):
    """The two roots start alike: tmpfs's is a fresh directory, mindbfs's its root."""
    os.chmod(root, 0o755)
    os.chown(root, 0, 0)
    os.utime(root, ns=(10**18, 10**18))


def run_on(ops, ref, fs, check_every=CHECK_EVERY, progress=None):
    """Runs [(index, op)] on two Sides; the first Mismatch, or None."""
    for position, (index, op) in enumerate(ops):
        want = ref.apply(op)
        try:
            got = fs.apply(op)
        except pytest.fail.Exception as e:
            return Mismatch(position, index, f"{show_op(op)}: the daemon failed",
                            str(e).splitlines()[:40])
        if progress:
            progress()
        if got != want:
            return Mismatch(position, index, show_op(op), legend([
                f"tmpfs:   {show(want)}", f"mindbfs: {show(got)}"]))
        if (position + 1) % check_every == 0 or position + 1 == len(ops):
            lines = diff_states(snapshot(ref), snapshot(fs))
            if lines:
                return Mismatch(position, index, f"{show_op(op)}, then the trees differ",
                                legend(lines[:40]))
    return None


class Bench:
    """Where trials run: stores and mount points under `workdir`, the reference
    directories on the tmpfs `tmpfs`. Each trial gets a fresh store, mount and
    reference directory, and removes them after."""

    def __init__(self, workdir, tmpfs, mode, extra=(), check_every=CHECK_EVERY):
        self.workdir = pathlib.Path(workdir)
        self.tmpfs = pathlib.Path(tmpfs)
        self.mode = mode  # a key of MODES
        self.extra = tuple(extra)  # more mount options
        self.options = (MODES[mode],) + self.extra
        self.check_every = check_every
        self.trials = 0
        self.ops_run = 0

    def trial(self, ops, check_every=None):
        """Runs [(index, op)]: on success, also closes every file, remounts,
        compares the trees again, unmounts and checks the store. The first
        Mismatch, or None. The trees are compared every check_every ops
        (default: the bench's) and after the last."""
        self.trials += 1
        n = self.trials
        ref_root = self.tmpfs / f"ref{n}"
        ref_root.mkdir()
        mnt = self.workdir / f"mnt{n}"
        mnt.mkdir()
        m = conftest.Mount(self.workdir / f"store{n}", mnt, self.options)
        dog = _Watchdog(m)
        ref = Side(ref_root, reference=True)
        fs = Side(mnt, remount=m.remount)
        try:
            # A new store that does not mount is the machine's problem (the
            # Mount fails or skips the test), not a mismatch to shrink.
            m.start()
            try:
                prepare_root(ref_root)
                prepare_root(m.mnt)
                with dog:
                    mismatch = run_on(ops, ref, fs, check_every or self.check_every, dog.tick)
                    self.ops_run += len(ops) if mismatch is None else mismatch.position + 1
                    if mismatch is None:
                        mismatch = self._finish(ops, ref, fs, m)
                ref.close_all()
                fs.close_all()
                if mismatch is None:
                    mismatch = self._check_store(ops, m)
            except pytest.fail.Exception as e:
                mismatch = Mismatch(len(ops) - 1, ops[-1][0] if ops else -1,
                                    "the daemon failed", str(e).splitlines()[:40])
            said = m.stderr_text().splitlines()
            if mismatch is not None and said:
                mismatch.detail += ["the daemon's stderr (last start, end):"] + said[-30:]
        finally:
            # open files would keep the mount busy (after a mismatch, or ^C)
            ref.close_all()
            fs.close_all()
            m._cleanup_quietly()
            shutil.rmtree(ref_root, ignore_errors=True)
        if dog.fired and mismatch is not None:
            mismatch.detail.append(f"(an operation hung {WATCHDOG_S} s: the watchdog killed "
                                   "the daemon)")
        shutil.rmtree(m.store, ignore_errors=True)
        shutil.rmtree(mnt, ignore_errors=True)
        return mismatch

    def _finish(self, ops, ref, fs, m):
        last = ops[-1][0] if ops else -1
        closed = (ref.close_all(), fs.close_all())
        if closed[0] != closed[1]:
            return Mismatch(len(ops) - 1, last, "closing the files left open",
                            [f"tmpfs:   {show(closed[0])}", f"mindbfs: {show(closed[1])}"])
        m.remount()
        lines = diff_states(snapshot(ref), snapshot(fs))
        if lines:
            return Mismatch(len(ops) - 1, last, "after the final remount, the trees differ",
                            legend(lines[:40]))
        return None

    def _check_store(self, ops, m):
        m.stop()
        r = m.cli("check", expect=None)
        if r.returncode != 0:
            return Mismatch(len(ops) - 1, ops[-1][0] if ops else -1,
                            f"mindb check STORE exits {r.returncode}",
                            (r.stdout + r.stderr).decode(errors="replace").splitlines()[:40])
        return None


class _Watchdog:
    """Kills the daemon when no operation completes for WATCHDOG_S seconds: a
    hung request then fails with ENOTCONN and shows as a mismatch."""

    def __init__(self, mount):
        self.mount = mount
        self.fired = False
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._thread = None

    def tick(self):
        self._last = time.monotonic()

    def _watch(self):
        while not self._stop.wait(5):
            if time.monotonic() - self._last > WATCHDOG_S and self.mount.pid:
                self.fired = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.mount.pid, signal.SIGKILL)
                return

    def __enter__(self):
        self.tick()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


# ---- shrinking -----------------------------------------------------------------


# Operations that change nothing a later one could see (but the time of access).
OBSERVERS = {"pread", "fstat", "stat", "listdir", "readlink", "getxattr", "listxattr", "fsync",
             "fdatasync", "fsync_dir"}


def shrink(bench, ops, mismatch, budget_s=60.0, log=print):
    """The shortest failing prefix of [(index, op)] by bisection, then ops
    dropped while it still fails, until budget_s runs out: all the ops that
    only look, then all of one kind, then windows of halving size. Trials
    compare the trees after their last op only.

    Returns (ops, mismatch, reproduced): the smallest failing list found, its
    mismatch, and whether the first mismatch happened again at all."""
    deadline = time.monotonic() + budget_s

    def fails(trial):
        return bench.trial(trial, check_every=len(trial) + 1)

    hi = mismatch.position + 1
    best = fails(ops[:hi])
    if best is None:
        log(f"shrink: the first {hi} ops passed on a fresh mount: not reproducible")
        return ops[:hi], mismatch, False
    lo = 0  # the empty sequence passes
    while hi - lo > 1:
        mid = (lo + hi) // 2
        found = fails(ops[:mid])
        log(f"shrink: prefix {mid}: {'fails' if found else 'passes'}")
        if found:
            hi, best = mid, found
        else:
            lo = mid
    kept = ops[:hi]

    def attempt_without(trial):
        # the last op stays (without it the prefix passed); ops after the one
        # that fails now go too
        nonlocal kept, best
        if len(trial) < len(kept) and time.monotonic() < deadline:
            found = fails(trial)
            if found:
                kept, best = trial[:found.position + 1], found
                log(f"shrink: {len(kept)} ops left")

    kinds = sorted({op[0] for _, op in kept[:-1]} - OBSERVERS)
    for group in [OBSERVERS] + [{k} for k in kinds]:
        attempt_without([x for x in kept[:-1] if x[1][0] not in group] + kept[-1:])
    chunk = len(kept) // 2
    while chunk >= 1 and time.monotonic() < deadline:
        i = len(kept) - 1 - chunk
        while i > -chunk and time.monotonic() < deadline:
            attempt_without(kept[:max(0, i)] + kept[i + chunk:])
            i -= chunk
        chunk //= 2
    return kept, best, True


def ranges(indices):
    """[1, 2, 3, 7] -> "1-3,7"."""
    out = []
    for i in sorted(indices):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return ",".join(f"{a}-{b}" if a != b else f"{a}" for a, b in out)


def parse_ranges(text):
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def rerun_command(bench, seed, count, kept=None):
    cmd = (f"/usr/bin/python3 tests/fsrandom.py --build {conftest.build_dir()} "
           f"--mode {bench.mode} --seed {seed} --ops {count}")
    if bench.extra:
        cmd += f" --options {','.join(bench.extra)}"
    if kept is not None:
        cmd += f" --keep {ranges(kept)}"
    return cmd


def report(bench, seed, count, first, kept, best, reproduced):
    """The text printed for a mismatch."""
    lines = [f"fsrandom: seed {seed}, mindbfs -o {','.join(bench.options)}, {count} ops: "
             f"mismatch {first}"]
    if not reproduced:
        lines.append("It did not happen again on a fresh mount with the same "
                     f"{first.position + 1} ops (timing?). Rerun:")
        lines.append("  " + rerun_command(bench, seed, first.index + 1))
        return "\n".join(lines)
    lines.append(f"Shortest failing list: {len(kept)} ops (of {first.index + 1}):")
    for index, op in kept[-60:]:
        lines.append(f"  #{index} {show_op(op)}")
    if len(kept) > 60:
        lines.insert(-60, f"  ... {len(kept) - 60} earlier ops (see --keep)")
    lines.append(f"which ends {best}")
    lines.append("Rerun:")
    lines.append("  " + rerun_command(bench, seed, kept[-1][0] + 1, [i for i, _ in kept]))
    return "\n".join(lines)


def check_seed(bench, seed, count, shrink_s=60.0, keep=None, log=print):
    """Generates `count` ops from `seed` (only the indices in `keep`, when
    given) and runs them; on a mismatch shrinks it. The report text, or None
    when tmpfs and mindbfs agreed throughout."""
    ops = list(enumerate(generate(seed, count)))
    if keep is not None:
        wanted = set(keep)
        ops = [(i, op) for i, op in ops if i in wanted]
    first = bench.trial(ops)
    if first is None:
        return None
    log(f"fsrandom: seed {seed} {bench.mode}: mismatch {first}")
    if shrink_s <= 0:
        return report(bench, seed, count, first, ops[:first.position + 1], first, True)
    kept, best, reproduced = shrink(bench, ops, first, shrink_s, log)
    return report(bench, seed, count, first, kept, best, reproduced)


# ---- the long form ---------------------------------------------------------------


@contextlib.contextmanager
def tmpfs_mount(path, size="1g"):
    path.mkdir(exist_ok=True)
    if conftest.is_mounted(path):
        raise SystemExit(f"fsrandom: {path} is a mount point already")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"fsrandom: cannot mount a tmpfs at {path}: {r.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="fsrandom.py",
        description="Runs seeded random filesystem operations on mindbfs and on tmpfs and "
                    "compares every outcome and the whole trees; shrinks and prints each "
                    "mismatch. Needs root (tmpfs and FUSE mounts).")
    p.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    p.add_argument("--ops", type=int, default=1_000_000,
                   help="operations per mode in all (default 1,000,000)")
    p.add_argument("--per-run", type=int, default=50_000,
                   help="operations per seed, each on a fresh store (default 50,000)")
    p.add_argument("--mode", choices=("wb", "nowb", "both"), default="both",
                   help="writeback_cache, no_writeback_cache, or both (default)")
    p.add_argument("--build", help="build directory (default $MINDB_BUILD_DIR or build/)")
    p.add_argument("--options", default="",
                   help="more mindbfs -o options, e.g. dirty_size=1M,checkpoint_interval=1")
    p.add_argument("--dir", help="work directory for stores and mounts (default: a new "
                   "one in the system's temporary directory, removed at the end)")
    p.add_argument("--check-every", type=int, default=CHECK_EVERY,
                   help=f"operations between tree comparisons (default {CHECK_EVERY})")
    p.add_argument("--keep", help="run only these op indices of the sequence (e.g. 0-4,9), "
                   "as printed by a shrunk mismatch; implies one run of --ops ops")
    p.add_argument("--shrink-seconds", type=float, default=600,
                   help="time for dropping ops after bisection (default 600; 0: no shrinking)")
    p.add_argument("--stop", action="store_true", help="stop at the first mismatch")
    args = p.parse_args(argv)
    if args.build:
        os.environ["MINDB_BUILD_DIR"] = os.path.abspath(args.build)
    try:
        conftest.mindbfs_path()
        conftest.mindb_path()
    except pytest.fail.Exception as e:
        print(f"fsrandom: {e}", file=sys.stderr)
        return 2
    modes = ["wb", "nowb"] if args.mode == "both" else [args.mode]
    per_run = args.ops if args.keep else min(args.per_run, args.ops)
    keep = parse_ranges(args.keep) if args.keep else None

    # Stopped by any of these, it still unmounts everything (SIGINT too when a
    # shell started it in the background, which ignores SIGINT).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    workdir = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="fsrandom-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    found = []
    interrupted = False
    totals = {m: 0 for m in modes}
    started = time.monotonic()
    try:
        with tmpfs_mount(workdir / "tmpfs") as tmpfs:
            extra = tuple(o for o in args.options.split(",") if o)
            benches = {m: Bench(workdir, tmpfs, m, extra, args.check_every) for m in modes}
            seed = args.seed
            while any(totals[m] < args.ops for m in modes) and not (found and args.stop):
                for mode in modes:
                    count = min(per_run, args.ops - totals[mode])
                    if count <= 0 or (found and args.stop):
                        continue
                    bench = benches[mode]
                    t0, ran = time.monotonic(), bench.ops_run
                    text = check_seed(bench, seed, count, args.shrink_seconds, keep)
                    totals[mode] += count
                    took = time.monotonic() - t0
                    print(f"fsrandom: seed {seed} {mode}: {count} ops in {took:.1f} s "
                          f"({(bench.ops_run - ran) / took:.0f} ops/s, shrinking included): "
                          f"{'MISMATCH' if text else 'same'}; {mode} total {totals[mode]}",
                          flush=True)
                    if text:
                        print(text, flush=True)
                        found.append(text)
                seed += 1
    except KeyboardInterrupt:
        interrupted = True
        print("fsrandom: interrupted", file=sys.stderr)
    finally:
        conftest.cleanup_all_mounts()
        left = [e[0] for e in conftest.mount_entries() if e[0].startswith(str(workdir) + "/")]
        if left:
            print(f"fsrandom: still mounted, not removed: {left}", file=sys.stderr)
        elif not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    took = time.monotonic() - started
    done = sum(totals.values())
    print(f"fsrandom: {done} ops ({', '.join(f'{m} {n}' for m, n in totals.items())}) in "
          f"{took:.0f} s, {done / max(took, 1e-9):.0f} ops/s; {len(found)} mismatch(es)")
    return 1 if found else 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
