"""The workload of the crash loop (tests/crashloop.py): random file operations
on a mounted mindbfs, each one announced in a journal before it starts and
confirmed once it has returned, until the process is killed.

    crashloop_workload.py MOUNT BASE JOURNAL SEED

BASE is a JSON file written by the harness: the tree it found at MOUNT after
the last crash ({"next_seq", "objects": [[ino, kind, mode, size]...],
"entries": [[dir ino, name, ino]...]}). Objects are named by their inode
numbers, which mindbfs keeps across remounts (they are the store's object
ids). JOURNAL lives outside the mount; every line goes out in one os.write(),
so it is in the kernel before the next operation starts and survives the
kill of this process:

    I SEQ {"op": ...}     operation SEQ is about to start
    D SEQ [{"ino": N}]    it returned 0; for fsync, fdatasync and a directory
                          fsync that means durable; create and mkdir give
                          the inode number of what they made
    E SEQ ERRNAME TEXT    it failed: the workload exits with status 3

The operations (their JSON fields are what the harness replays on its
model): create, mkdir, write (pwrite through a kept descriptor or a fresh
one, or an O_APPEND write), trunc (ftruncate, truncate, or open with
O_TRUNC), chmod, rename (over a file or an empty directory too), link,
unlink, rmdir, fsync/fdatasync of a file, fsync of a directory, and open and
close of kept descriptors, which have no effect on the tree. A file whose
last name goes while a descriptor holds it lives on unnamed: writes and
fsyncs through that descriptor continue.

Every byte written describes itself: a file is a sequence of 32-byte cells,
and the cell at offset O written by operation SEQ on object INO reads
"fINO vSEQ oO" (see cell()), so a stale, misplaced or foreign block is told
apart from the expected one by reading it (`cat` shows it too).
"""

import errno
import json
import os
import random
import sys

CELL = 32
PAGE = 4096
MAX_SIZE = 192 * 1024  # three 64 KiB chunks: writes cross chunk edges
MAX_WRITE = 48 * 1024  # one FUSE WRITE without the writeback cache
MAX_FILES = 40
MAX_DIRS = 10
MAX_DEPTH = 3
MAX_HANDLES = 4
FILE_NAMES = [f"f{i}" for i in range(10)]
DIR_NAMES = [f"d{i}" for i in range(4)]
TEMP_NAMES = [f".tmp{i}" for i in range(3)]


def cell(ino, seq, index):
    """The 32 bytes at cell `index` of a write by operation seq on object ino."""
    return b"f%06d v%08d o%08x ~~~\n" % (ino % 10**6, seq % 10**8, index * CELL)


assert len(cell(10**6 - 1, 10**8 - 1, 2**32 // CELL - 1)) == CELL


def written_bytes(ino, seq, off, length):
    """What operation seq writes at [off, off + length) of object ino: a byte
    depends on its offset, so any slice of a write is the write of that slice."""
    first, last = off // CELL, (off + length + CELL - 1) // CELL
    cells = b"".join(cell(ino, seq, c) for c in range(first, last))
    skip = off - first * CELL
    return cells[skip:skip + length]


class Failure(Exception):
    pass


class Workload:
    def __init__(self, mnt, base, journal_fd, rng):
        self.mnt = mnt
        self.jfd = journal_fd
        self.rng = rng
        self.seq = base["next_seq"]
        self.kind, self.mode, self.size = {}, {}, {}
        self.children = {}  # directory ino -> {name: ino}
        self.parent = {}  # directory ino -> (parent ino, name)
        self.names = {}  # file ino -> {(directory ino, name)}
        self.handles = []  # [fd, ino] of kept descriptors
        self.plan = []  # operations queued by a pattern (a safe save)
        for ino, kind, mode, size in base["objects"]:
            self.kind[ino], self.mode[ino], self.size[ino] = kind, mode, size
            if kind == "d":
                self.children[ino] = {}
            else:
                self.names[ino] = set()
        self.root = base["root"]
        for d, name, ino in base["entries"]:
            self.bind(d, name, ino)

    # -- the tree as the workload believes it is

    def bind(self, d, name, ino):
        self.children[d][name] = ino
        if self.kind[ino] == "d":
            self.parent[ino] = (d, name)
        else:
            self.names[ino].add((d, name))

    def unbind(self, d, name):
        ino = self.children[d].pop(name)
        if self.kind[ino] == "d":
            del self.parent[ino]
        else:
            self.names[ino].discard((d, name))
        return ino

    def path(self, d, name=None):
        parts = [] if name is None else [name]
        while d != self.root:
            d, n = self.parent[d]
            parts.append(n)
        return os.path.join(self.mnt, *reversed(parts))

    def rel(self, d, name=None):
        return os.path.relpath(self.path(d, name), self.mnt)

    def depth(self, d):
        n = 0
        while d != self.root:
            d = self.parent[d][0]
            n += 1
        return n

    def dirs(self):
        return sorted(self.children)

    def named_files(self):
        return sorted(i for i, n in self.names.items() if n)

    def file_path(self, ino):
        return self.path(*min(self.names[ino]))

    def writable_files(self):
        """Files an operation can reach: by a name or a kept descriptor."""
        return sorted(set(self.named_files()) | {ino for _, ino in self.handles})

    def inside(self, d, ancestor):
        while d != self.root:
            if d == ancestor:
                return True
            d = self.parent[d][0]
        return d == ancestor

    # -- the journal

    def line(self, text):
        data = text.encode() + b"\n"
        if os.write(self.jfd, data) != len(data):
            raise Failure("short write to the journal")

    def run(self, op, action):
        """Journals op, runs action(seq) and journals its outcome."""
        seq = self.seq
        self.seq += 1
        self.line(f"I {seq} {json.dumps(op, sort_keys=True)}")
        try:
            extra = action(seq)
        except OSError as e:
            self.line(f"E {seq} {errno.errorcode.get(e.errno, e.errno)} {e}")
            raise
        except Failure as e:
            self.line(f"E {seq} HARNESS {e}")
            raise
        self.line(f"D {seq}" + (f" {json.dumps(extra)}" if extra else ""))
        return seq

    # -- descriptors

    def handle_of(self, ino):
        for fd, i in self.handles:
            if i == ino:
                return fd
        return None

    def with_fd(self, ino, flags, fn):
        """fn(fd) through a kept descriptor of ino, or one opened for the call."""
        fd = self.handle_of(ino)
        if fd is not None and (not self.names[ino] or self.rng.random() < 0.7):
            return fn(fd)
        fd = os.open(self.file_path(ino), flags)
        try:
            return fn(fd)
        finally:
            os.close(fd)

    # -- operations: each returns False when it does not apply now

    def op_create(self, temp=False, d=None, name=None):
        if len(self.names) >= MAX_FILES:
            return False
        d = self.rng.choice(self.dirs()) if d is None else d
        name = name or self.rng.choice(TEMP_NAMES if temp else FILE_NAMES)
        if name in self.children[d]:
            return False
        mode = self.rng.choice([0o644, 0o600, 0o640])
        keep = len(self.handles) < MAX_HANDLES and self.rng.random() < 0.5
        box = {}

        def act(seq):
            fd = os.open(self.path(d, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
            ino = os.fstat(fd).st_ino
            if ino in self.kind:
                os.close(fd)
                raise Failure(f"create of {self.rel(d, name)} got inode {ino}, "
                              "the number of an object that exists")
            if keep:
                self.handles.append([fd, ino])
            else:
                os.close(fd)
            box["ino"] = ino
            return {"ino": ino}

        self.run({"op": "create", "dir": d, "name": name, "mode": mode, "keep": keep,
                  "path": self.rel(d, name)}, act)
        ino = box["ino"]
        self.kind[ino], self.mode[ino], self.size[ino] = "f", mode, 0
        self.names[ino] = set()
        self.bind(d, name, ino)
        return True

    def op_mkdir(self):
        candidates = [d for d in self.dirs() if self.depth(d) < MAX_DEPTH]
        if len(self.children) > MAX_DIRS or not candidates:
            return False
        d = self.rng.choice(candidates)
        name = self.rng.choice(DIR_NAMES)
        if name in self.children[d]:
            return False
        mode = self.rng.choice([0o755, 0o700, 0o750])
        box = {}

        def act(seq):
            os.mkdir(self.path(d, name), mode)
            box["ino"] = os.lstat(self.path(d, name)).st_ino
            if box["ino"] in self.kind:
                raise Failure(f"mkdir of {self.rel(d, name)} got inode {box['ino']}, "
                              "the number of an object that exists")
            return {"ino": box["ino"]}

        self.run({"op": "mkdir", "dir": d, "name": name, "mode": mode,
                  "path": self.rel(d, name)}, act)
        ino = box["ino"]
        self.kind[ino], self.mode[ino], self.size[ino] = "d", mode, 0
        self.children[ino] = {}
        self.bind(d, name, ino)
        return True

    def write_range(self, size):
        """(offset, length, how) of a write into a file of `size` bytes."""
        rng = self.rng
        length = rng.choice([rng.randint(1, 100), rng.randint(1, 8192), PAGE * rng.randint(1, 4),
                             rng.randint(1, MAX_WRITE)])
        shape = rng.random()
        if shape < 0.25:
            off, how = size, "append"
        elif shape < 0.35:
            off, how = size + rng.randint(1, 20000), "pwrite"  # leaves a hole
        elif shape < 0.5:  # across a chunk edge
            edge = 65536 * rng.randint(1, MAX_SIZE // 65536 - 1)
            off, how = max(0, edge - rng.randint(1, length)), "pwrite"
        elif shape < 0.65:
            off, how = PAGE * rng.randint(0, max(0, size // PAGE)), "pwrite"
        else:
            off, how = rng.randint(0, size), "pwrite"
        length = max(1, min(length, MAX_SIZE - off))
        if off >= MAX_SIZE:
            off, how = rng.randint(0, MAX_SIZE - length), "pwrite"
        return off, length, how

    def op_write(self, ino=None, off=None, length=None, how=None):
        files = self.writable_files()
        if not files:
            return False
        ino = self.rng.choice(files) if ino is None else ino
        if off is None:
            off, length, how = self.write_range(self.size[ino])
        if how == "append" and not self.names[ino]:
            how = "pwrite"

        def act(seq):
            data = written_bytes(ino, seq, off, length)
            if how == "append":
                fd = os.open(self.file_path(ino), os.O_WRONLY | os.O_APPEND)
                try:
                    self.write_all(fd, data, None)
                finally:
                    os.close(fd)
            else:
                self.with_fd(ino, os.O_WRONLY, lambda fd: self.write_all(fd, data, off))

        self.run({"op": "write", "ino": ino, "off": off, "len": length, "how": how,
                  "path": self.maybe_rel(ino)}, act)
        self.size[ino] = max(self.size[ino], off + length)
        return True

    @staticmethod
    def write_all(fd, data, off):
        view = memoryview(data)
        while view:
            n = os.write(fd, view) if off is None else os.pwrite(fd, view, off)
            if off is not None:
                off += n
            view = view[n:]

    def maybe_rel(self, ino):
        return os.path.relpath(self.file_path(ino), self.mnt) if self.names[ino] else None

    def op_trunc(self):
        files = self.writable_files()
        if not files:
            return False
        ino = self.rng.choice(files)
        size = self.size[ino]
        new = self.rng.choice([0, self.rng.randint(0, size), self.rng.randint(0, MAX_SIZE),
                               PAGE * self.rng.randint(0, MAX_SIZE // PAGE)])
        how = self.rng.choice(["handle", "path", "open"]) if self.names[ino] else "handle"
        if how == "open":
            new = 0

        def act(seq):
            if how == "open":
                fd = os.open(self.file_path(ino), os.O_WRONLY | os.O_TRUNC)
                os.close(fd)
            elif how == "path":
                os.truncate(self.file_path(ino), new)
            else:
                self.with_fd(ino, os.O_WRONLY, lambda fd: os.ftruncate(fd, new))

        self.run({"op": "trunc", "ino": ino, "size": new, "how": how,
                  "path": self.maybe_rel(ino)}, act)
        self.size[ino] = new
        return True

    def op_chmod(self):
        files = self.named_files()
        if not files:
            return False
        ino = self.rng.choice(files)
        mode = self.rng.choice([0o644, 0o600, 0o664, 0o444])

        def act(seq):
            os.chmod(self.file_path(ino), mode)

        self.run({"op": "chmod", "ino": ino, "mode": mode, "path": self.maybe_rel(ino)}, act)
        self.mode[ino] = mode
        return True

    def op_rename_file(self, src=None, dst=None):
        if src is None:
            files = self.named_files()
            if not files:
                return False
            ino = self.rng.choice(files)
            src = self.rng.choice(sorted(self.names[ino]))
            d = self.rng.choice(self.dirs())
            over = [n for n, i in self.children[d].items() if self.kind[i] == "f"]
            if over and self.rng.random() < 0.5:
                dst = (d, self.rng.choice(sorted(over)))
            else:
                dst = (d, self.rng.choice(FILE_NAMES))
                if dst[1] in self.children[d]:
                    return False
        return self.rename(src, dst)

    def op_rename_dir(self):
        movable = [d for d in self.dirs() if d != self.root]
        if not movable:
            return False
        moving = self.rng.choice(movable)
        src = self.parent[moving]
        targets = [d for d in self.dirs() if not self.inside(d, moving)]
        d = self.rng.choice(targets)
        name = self.rng.choice(DIR_NAMES)
        existing = self.children[d].get(name)
        if existing is not None and (self.kind[existing] != "d" or self.children[existing]
                                     or existing == moving):
            return False
        if self.depth(d) + self.height(moving) > MAX_DEPTH:
            return False
        return self.rename(src, (d, name))

    def height(self, d):
        sub = [i for i in self.children[d].values() if self.kind[i] == "d"]
        return 1 + max((self.height(i) for i in sub), default=0)

    def rename(self, src, dst):
        def act(seq):
            os.rename(self.path(*src), self.path(*dst))

        ino = self.children[src[0]][src[1]]
        replaced = self.children[dst[0]].get(dst[1])
        self.run({"op": "rename", "sdir": src[0], "sname": src[1], "ddir": dst[0],
                  "dname": dst[1], "path": self.rel(*src), "to": self.rel(*dst)}, act)
        if replaced == ino:
            return True  # two names of one file: POSIX does nothing
        if replaced is not None:
            self.unbind(*dst)
            if self.kind[replaced] == "d":
                del self.children[replaced]
            else:
                self.forget_if_gone(replaced)
        self.unbind(*src)
        self.bind(dst[0], dst[1], ino)
        return True

    def op_link(self):
        files = self.named_files()
        if not files or len(self.names) >= MAX_FILES:
            return False
        ino = self.rng.choice(files)
        d = self.rng.choice(self.dirs())
        name = self.rng.choice(FILE_NAMES)
        if name in self.children[d]:
            return False

        def act(seq):
            os.link(self.file_path(ino), self.path(d, name))

        self.run({"op": "link", "ino": ino, "ddir": d, "dname": name,
                  "path": self.maybe_rel(ino), "to": self.rel(d, name)}, act)
        self.bind(d, name, ino)
        return True

    def op_unlink(self, d=None, name=None):
        if d is None:
            files = self.named_files()
            if not files:
                return False
            d, name = self.rng.choice(sorted(self.names[self.rng.choice(files)]))

        def act(seq):
            os.unlink(self.path(d, name))

        self.run({"op": "unlink", "dir": d, "name": name, "path": self.rel(d, name)}, act)
        ino = self.unbind(d, name)
        self.forget_if_gone(ino)
        return True

    def forget_if_gone(self, ino):
        """An unnamed file no descriptor holds is gone. Its inode number stays in
        self.kind: mindbfs never gives an object's number to another."""
        if ino in self.names and not self.names[ino] and self.handle_of(ino) is None:
            del self.names[ino]

    def op_rmdir(self):
        empty = [d for d in self.dirs() if d != self.root and not self.children[d]]
        if not empty:
            return False
        d, name = self.parent[self.rng.choice(empty)]

        def act(seq):
            os.rmdir(self.path(d, name))

        self.run({"op": "rmdir", "dir": d, "name": name, "path": self.rel(d, name)}, act)
        del self.children[self.unbind(d, name)]
        return True

    def op_fsync(self, ino=None, data=None):
        files = self.writable_files()
        if not files:
            return False
        ino = self.rng.choice(files) if ino is None else ino
        data = self.rng.random() < 0.3 if data is None else data
        sync = os.fdatasync if data else os.fsync
        flags = self.rng.choice([os.O_RDONLY, os.O_WRONLY])

        def act(seq):
            self.with_fd(ino, flags, sync)

        self.run({"op": "fsync", "ino": ino, "data": data, "path": self.maybe_rel(ino)}, act)
        return True

    def op_fsyncdir(self, d=None):
        d = self.rng.choice(self.dirs()) if d is None else d

        def act(seq):
            fd = os.open(self.path(d), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        self.run({"op": "fsyncdir", "dir": d, "path": self.rel(d)}, act)
        return True

    def op_open(self):
        files = self.named_files()
        if not files or len(self.handles) >= MAX_HANDLES:
            return False
        ino = self.rng.choice(files)

        def act(seq):
            self.handles.append([os.open(self.file_path(ino), os.O_RDWR), ino])

        self.run({"op": "open", "ino": ino, "path": self.maybe_rel(ino)}, act)
        return True

    def op_close(self):
        if not self.handles:
            return False
        fd, ino = self.rng.choice(self.handles)

        def act(seq):
            self.handles.remove([fd, ino])
            os.close(fd)

        self.run({"op": "close", "ino": ino}, act)
        self.forget_if_gone(ino)
        return True

    def op_safe_save(self):
        """An editor's save: write a temporary file whole, fsync it, rename it
        over the target, fsync the directory. Queued as separate operations."""
        d = self.rng.choice(self.dirs())
        temp = self.rng.choice(TEMP_NAMES)
        target = self.rng.choice(FILE_NAMES)
        old = self.children[d].get(target)
        if temp in self.children[d] or (old is not None and self.kind[old] == "d"):
            return False
        if not self.op_create(temp=True, d=d, name=temp):
            return False
        ino = self.children[d][temp]
        size = self.rng.randint(0, MAX_SIZE // 2)
        off = 0
        while off < size:
            n = min(MAX_WRITE, size - off)
            self.plan.append(lambda o=off, n=n: self.op_write(ino, o, n, "pwrite"))
            off += n
        self.plan.append(lambda: self.op_fsync(ino, data=False))
        self.plan.append(lambda: self.rename((d, temp), (d, target)))
        self.plan.append(lambda: self.op_fsyncdir(d))
        return True

    WEIGHTS = [("op_write", 30), ("op_trunc", 6), ("op_create", 8), ("op_mkdir", 2),
               ("op_unlink", 5), ("op_rmdir", 2), ("op_rename_file", 7), ("op_rename_dir", 2),
               ("op_link", 3), ("op_chmod", 2), ("op_fsync", 12), ("op_fsyncdir", 6),
               ("op_open", 3), ("op_close", 3), ("op_safe_save", 2)]

    def step(self):
        if self.plan:
            self.plan.pop(0)()
            return
        names = [n for n, _ in self.WEIGHTS]
        weights = [w for _, w in self.WEIGHTS]
        while not getattr(self, self.rng.choices(names, weights)[0])():
            pass


def main(argv):
    if len(argv) != 5 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) == 2 else 2
    mnt, base_path, journal, seed = argv[1:]
    with open(base_path) as f:
        base = json.load(f)
    os.umask(0)  # modes are exactly what the journal says
    jfd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    w = Workload(mnt, base, jfd, random.Random(seed))
    try:
        while True:
            w.step()
    except (OSError, Failure) as e:
        print(f"crashloop_workload: {type(e).__name__}: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
