"""What a mindbfs tree may be after a crash, and the verifier of the crash
loop (tests/crashloop.py): the tree found at the mount point (Tree), the
history of every name and object that the workload's journal gives
(History), and verify(), which names every way the tree breaks the
durability contract.

What the verifier accepts (seq numbers are the journal's; an operation
whose `D` line is missing was in flight and may or may not have happened;
"acknowledged" means its D line is there):

- The names: the tree of names, types and modes is the one after some
  prefix of the operations, at least up to what acknowledged syncs made
  durable: a directory fsync everything before it; a file's fsync or
  fdatasync everything up to that file's last change (docs/FUSE.md: the
  file's create, truncate, chmod, or without the writeback cache its last
  write); with `-o sync`, or after a clean unmount, up to the last
  acknowledged operation. A rename is thereby atomic: the name
  holds the old or the new object, never nothing. Inode numbers say which
  object is which (mindbfs keeps them: they are object ids); the one object
  an unacknowledged create or mkdir may have made is the only unknown
  number allowed. st_nlink must count the names found.
- The contents without the writeback cache: every write reaches the daemon
  as it is made, so the whole state, contents and sizes too, is that of one
  such prefix. The kernel's one twist: a write(2) that covers part of a
  page not in the page cache goes out as more than one FUSE request, cut
  after that page, so where the prefix ends inside a write (the one in
  flight, or any write no sync covered: the log may end between its
  requests), that write shows as a part of itself, from its start up to a
  page boundary.
- The contents with the writeback cache: the kernel sends dirty pages when
  it likes, in any order, so a file's data is not ordered with the other
  operations. Of a file, each 4 KiB page must read as that page read after
  some operation from the file's last acknowledged fsync (or fdatasync)
  on, where a byte beyond the end of the file in that state may read as
  zero (a later page written back first, before the gap): never older data,
  never bytes no operation wrote there. The size must be one the file had
  from that point on, or a multiple of 4 KiB between the smallest and the
  largest of them (a prefix of the dirty pages written back).

Every byte written names the object, the operation and the offset (see
crashloop_workload.py), so a failure shows what a stale or foreign page is.
"""

import json
import os
import pathlib
import re
import stat
from typing import NamedTuple

from crashloop_workload import PAGE, written_bytes

NEW = "new"  # the object an unacknowledged create or mkdir may have made


class LoopFailure(Exception):
    pass


# ---- the tree found at the mount point -------------------------------------


class Found(NamedTuple):
    kind: str  # "f", "d", or the type letter of `ls -l` for anything else
    mode: int
    nlink: int
    size: int
    data: bytes  # a file's contents


class Tree:
    """Every name and object under a mount point, named by inode numbers."""

    def __init__(self, root):
        self.root_path = pathlib.Path(root)
        self.root = os.lstat(root).st_ino
        self.entries = {}  # (directory ino, name) -> ino
        self.objects = {self.root: self._found(root, os.lstat(root))}
        self.paths = {self.root: ""}
        self.problems = []
        self._walk(self.root, "")

    def _walk(self, d, rel):
        for entry in sorted(os.scandir(self.root_path / rel), key=lambda e: e.name):
            path = os.path.join(rel, entry.name)
            st = entry.stat(follow_symlinks=False)
            self.entries[(d, entry.name)] = st.st_ino
            if st.st_ino in self.objects:
                if stat.S_ISDIR(st.st_mode):
                    self.problems.append(f"{path!r}: a second name of directory "
                                         f"{self.paths[st.st_ino]!r}")
                continue
            self.paths[st.st_ino] = path
            try:
                self.objects[st.st_ino] = self._found(self.root_path / path, st)
            except OSError as e:
                self.problems.append(f"{path!r}: reading it fails: {e}")
                continue
            if stat.S_ISDIR(st.st_mode):
                self._walk(st.st_ino, path)

    @staticmethod
    def _found(path, st):
        kind = {stat.S_IFREG: "f", stat.S_IFDIR: "d"}.get(stat.S_IFMT(st.st_mode),
                                                           stat.filemode(st.st_mode)[0])
        data = pathlib.Path(path).read_bytes() if kind == "f" else b""
        if kind == "f" and len(data) != st.st_size:
            raise OSError(f"st_size is {st.st_size}, but {len(data)} bytes read")
        return Found(kind, stat.S_IMODE(st.st_mode), st.st_nlink, st.st_size, data)

    def base(self, next_seq):
        """What the workload starts from (crashloop_workload.py's BASE)."""
        return {"next_seq": next_seq, "root": self.root,
                "objects": [[i, o.kind, o.mode, len(o.data)] for i, o in self.objects.items()],
                "entries": [[d, n, i] for (d, n), i in self.entries.items()]}


# ---- what the journal says happened ----------------------------------------


class Op(NamedTuple):
    seq: int
    op: dict
    outcome: str  # "D" acknowledged, "E" failed, "" in flight at the kill
    extra: dict  # the D line's data, or {"error": ...}


def read_journal(path):
    ops = {}
    if not os.path.exists(path):
        return []  # killed before it began
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # the workload died while writing it
            kind, seq, *rest = raw.decode().rstrip("\n").split(" ", 2)
            seq = int(seq)
            if kind == "I":
                ops[seq] = Op(seq, json.loads(rest[0]), "", {})
            elif kind == "D":
                ops[seq] = ops[seq]._replace(outcome="D",
                                             extra=json.loads(rest[0]) if rest else {})
            elif kind == "E":
                ops[seq] = ops[seq]._replace(outcome="E", extra={"error": " ".join(rest)})
    return [ops[s] for s in sorted(ops)]


class Version(NamedTuple):
    """An object as one operation left it. A file's bytes are extents
    (start, end, source) covering [0, size): source ("w", ino, seq) is what
    that write put there, ("b", ino) what the cycle found there, None zeros."""
    kind: str
    mode: int
    size: int
    extents: tuple


def clip(extents, lo, hi):
    return tuple((max(s, lo), min(e, hi), src) for s, e, src in extents if s < hi and e > lo)


class History:
    """Every state the tree went through in a cycle: for each name and each
    object, the values it took and from which operation on. Positions count
    operations: 0 is the tree the cycle started from, i the state after the
    i-th operation of the journal."""

    def __init__(self, start, ops, writeback, every_ack_durable):
        self.ops = ops
        self.base_seq = ops[0].seq - 1 if ops else 0
        self.last = len(ops)
        self.writeback = writeback
        self.start_paths = dict(start.paths)
        self.base_data = {i: o.data for i, o in start.objects.items()}
        self.bindings = {k: [(0, i)] for k, i in start.entries.items()}
        self.objects = {}
        for i, o in start.objects.items():
            ext = ((0, len(o.data), ("b", i)),) if o.data else ()
            self.objects[i] = [(0, Version(o.kind, o.mode, len(o.data), ext))]
        # The tree from here on holds every acknowledged durable change.
        self.floor = max(self.durable_positions(ops, writeback, every_ack_durable), default=0)
        # With the writeback cache, a file's data is durable from its own
        # fsync on (and everything after a clean unmount or with -o sync).
        self.file_floor_default = self.floor if every_ack_durable else 0
        self.file_floors = {}
        for p, o in enumerate(ops, 1):
            if o.outcome == "D" and o.op["op"] == "fsync":
                self.file_floors[o.op["ino"]] = max(p, self.file_floor_default)
        self.torn = {}  # position -> what else a write cut between its requests left
        for p, o in enumerate(ops, 1):
            self._apply(p, o)

    @staticmethod
    def durable_positions(ops, writeback, every_ack_durable):
        """Positions up to which acknowledged syncs made the history durable.
        A directory fsync commits the whole log. A file's fsync commits the
        log up to that file's last change (docs/FUSE.md), which is where the
        file was last created, truncated or chmodded, or written (without the
        writeback cache: with it, data reaches the daemon at times unknown)."""
        if every_ack_durable:
            return [p for p, o in enumerate(ops, 1) if o.outcome == "D"]
        out, last_change = [], {}
        for p, o in enumerate(ops, 1):
            a = o.op
            if o.outcome != "D":
                continue
            if a["op"] == "create":
                last_change[o.extra["ino"]] = p
            elif a["op"] in ("trunc", "chmod") or (a["op"] == "write" and not writeback):
                last_change[a["ino"]] = p
            elif a["op"] == "fsync":
                out.append(last_change.get(a["ino"], 0))
            elif a["op"] == "fsyncdir":
                out.append(p)
        return out

    def current(self, table, key):
        h = table.get(key)
        return h[-1][1] if h else None

    def _set(self, table, key, pos, value):
        table.setdefault(key, [(0, None)] if table is self.bindings else []).append((pos, value))

    def _apply(self, pos, o):
        op, a = o.op["op"], o.op
        cur = self.current
        if op in ("create", "mkdir"):
            ino = o.extra.get("ino", NEW)
            self._set(self.objects, ino, pos, Version("f" if op == "create" else "d",
                                                      a["mode"], 0, ()))
            self._set(self.bindings, (a["dir"], a["name"]), pos, ino)
        elif op in ("write", "trunc", "chmod"):
            v = cur(self.objects, a["ino"])
            if v is None:
                raise LoopFailure(f"harness: op {o.seq} {a} names an object the model lacks")
            if op == "write":
                off, end = a["off"], a["off"] + a["len"]
                cuts = range((off // PAGE + 1) * PAGE, end, PAGE)
                self.torn[pos] = (a["ino"], [self._write(v, off, cut, o) for cut in cuts])
                v = self._write(v, off, end, o)
            elif op == "trunc":
                n = a["size"]
                ext = clip(v.extents, 0, n) if n <= v.size else v.extents + ((v.size, n, None),)
                v = v._replace(size=n, extents=ext)
            else:
                v = v._replace(mode=a["mode"])
            self._set(self.objects, a["ino"], pos, v)
        elif op == "rename":
            src, dst = (a["sdir"], a["sname"]), (a["ddir"], a["dname"])
            moving = cur(self.bindings, src)
            if moving is None:
                raise LoopFailure(f"harness: op {o.seq} {a} renames a name the model lacks")
            if cur(self.bindings, dst) != moving:
                self._set(self.bindings, dst, pos, moving)
                self._set(self.bindings, src, pos, None)
        elif op == "link":
            self._set(self.bindings, (a["ddir"], a["dname"]), pos, a["ino"])
        elif op in ("unlink", "rmdir"):
            self._set(self.bindings, (a["dir"], a["name"]), pos, None)

    @staticmethod
    def _write(v, off, end, o):
        ext = clip(v.extents, 0, off) + (((v.size, off, None),) if off > v.size else ())
        ext += ((off, end, ("w", o.op["ino"], o.seq)),) + clip(v.extents, end, v.size)
        return v._replace(size=max(v.size, end), extents=ext)

    def mask(self, history, accept):
        """The positions (a bit set) at which the value of history is accepted."""
        m = 0
        for j, (start, value) in enumerate(history):
            end = history[j + 1][0] if j + 1 < len(history) else self.last + 1
            if end > start and accept(value):
                m |= ((1 << (end - start)) - 1) << start
        return m

    def file_floor(self, ino):
        return self.file_floors.get(ino, self.file_floor_default)

    def seq(self, pos):
        return self.base_seq + pos

    def since(self, history, pos):
        """The values of history from position pos on (the one then in force too)."""
        out = []
        for j, (start, value) in enumerate(history):
            end = history[j + 1][0] if j + 1 < len(history) else self.last + 1
            if end > pos:
                out.append((start, value))
        return out

    def materialize(self, extents, lo, hi):
        buf = bytearray(hi - lo)
        for s, e, src in clip(extents, lo, hi):
            if src is not None:
                data = (written_bytes(src[1], src[2], s, e - s) if src[0] == "w"
                        else self.base_data[src[1]][s:e])
                buf[s - lo:e - lo] = data
        return bytes(buf)

    def same_data(self, version, data):
        if version.size != len(data):
            return False
        return all(self.materialize(((s, e, src),), s, e) == data[s:e]
                   for s, e, src in version.extents)


# ---- the verifier ---------------------------------------------------------------


def describe_bytes(data, offset):
    """The 32-byte cell at offset, as a reader would tell it."""
    at = offset - offset % 32
    piece = data[at:at + 32]
    m = re.match(rb"f(\d{6}) v(\d{8}) o([0-9a-f]{8}) ~~~\n$", piece)
    if m:
        return (f"written by op {int(m[2])} to object {int(m[1])} at offset "
                f"{int(m[3], 16)}")
    if piece and not piece.strip(b"\0"):
        return "zeros"
    return f"unrecognised bytes {bytes(piece)!r}"


def ranges(mask, history):
    """Readable seq ranges of a position bit set."""
    out, pos = [], 0
    while mask >> pos:
        if mask >> pos & 1:
            end = pos
            while mask >> (end + 1) & 1:
                end += 1
            out.append(f"{history.seq(pos)}" if end == pos
                       else f"{history.seq(pos)}..{history.seq(end)}")
            pos = end + 1
        else:
            pos += 1
    return ", ".join(out) or "none"


def verify(h, tree):
    """The problems of the tree found against history h, as sentences."""
    problems = list(tree.problems)
    found = dict(tree.objects)
    entries = dict(tree.entries)
    # The one object an unacknowledged create or mkdir may have made.
    unknown = [i for i in found if i not in h.objects]
    if len(unknown) == 1 and NEW in h.objects:
        i = unknown.pop()
        found[NEW] = found.pop(i)
        entries = {k: (NEW if v == i else v) for k, v in entries.items()}
    for i in unknown:
        problems.append(f"{tree.paths[i]!r}: object {i} ({found[i].kind}) that no operation made")

    def where(key):
        d, name = key
        for paths in (tree.paths, h.start_paths):
            if d in paths:
                return os.path.join(paths[d], name)
        return f"<directory {d}>/{name}"

    def show(value):
        if value is None:
            return "absent"
        v = h.current(h.objects, value)
        return f"object {value} ({v.kind if v else '?'})"

    # st_nlink counts the names
    names = {}
    for k, i in entries.items():
        names[i] = names.get(i, 0) + 1
    subdirs = {}
    for (d, _), i in entries.items():
        if i in found and found[i].kind == "d":
            subdirs[d] = subdirs.get(d, 0) + 1
    for i, o in found.items():
        want = 2 + subdirs.get(i, 0) if o.kind == "d" else names.get(i, 0)
        if o.nlink != want:
            path = tree.paths.get(i, "?") if i != NEW else "(new object)"
            problems.append(f"{path!r}: st_nlink {o.nlink}, but {want} found")

    # one prefix of the operations explains the whole tree
    window = ((1 << (h.last + 1)) - 1) & ~((1 << h.floor) - 1)
    exact = not h.writeback
    items = []  # (what was found, the positions it fits, its history, a value's text)
    for key in sorted(set(h.bindings) | set(entries), key=str):
        hist = h.bindings.get(key, [(0, None)])
        got = entries.get(key)
        items.append((f"name {where(key)!r}: found {show(got)}",
                      h.mask(hist, lambda v, got=got: v == got), hist, show))
    for i, o in found.items():
        hist = h.objects.get(i, [])

        def same(v, o=o):
            return (v is not None and v.kind == o.kind and v.mode == o.mode
                    and (not exact or v.kind != "f" or h.same_data(v, o.data)))

        what = f"{o.kind} mode {oct(o.mode)}" + (f" size {o.size}" if exact else "")
        torn = 0
        for p, (ino, cut) in h.torn.items():
            if ino == i and any(same(v) for v in cut):
                torn |= 1 << p
        items.append((f"object {i} at {tree.paths.get(i, '(new)')!r}: found {what}",
                      h.mask(hist, same) | torn, hist,
                      lambda v: f"{v.kind} mode {oct(v.mode)}"
                                + (f" size {v.size}" if exact else "")))
    total = window
    for _, m, _, _ in items:
        total &= m
    h.matched = total
    if not total:
        lonely = [it for it in items if not it[1] & window]
        problems.append(f"no prefix of the operations ending between seq {h.seq(h.floor)} "
                        f"(what acknowledged syncs made durable) and {h.seq(h.last)} gives "
                        "this tree")
        for text, m, hist, fmt in (lonely or items)[:12]:
            was = "; ".join(f"{fmt(v) if v is not None else 'absent'} from seq {h.seq(p)}"
                            for p, v in h.since(hist, h.floor)) or "never present"
            problems.append(f"  {text}; it matches at seqs {ranges(m, h)}; it was: {was}")
        if exact:
            problems += whole_file_problems(h, tree, found)
    if h.writeback:
        problems += page_problems(h, tree, found)
    return problems


def file_versions(h, i, floor):
    since = [v for _, v in h.since(h.objects.get(i, []), floor) if v is not None]
    since += [v for p, (ino, cut) in sorted(h.torn.items()) if ino == i and p > floor for v in cut]
    return [v for v in since if v.kind == "f"]


def first_difference(a, b):
    """The offset of the first 32-byte cell where a and b differ."""
    return next((p for p in range(0, max(len(a), len(b)), 32) if a[p:p + 32] != b[p:p + 32]),
                len(a))


def whole_file_problems(h, tree, found):
    """Without the writeback cache: files whose data is no state they had
    since the floor (to explain a failed prefix)."""
    out = []
    for i, o in found.items():
        since = file_versions(h, i, h.floor) if o.kind == "f" else []
        if not since or any(h.same_data(v, o.data) for v in since):
            continue
        path = tree.paths.get(i, "(new)")
        sizes = sorted({v.size for v in since})
        if o.size not in sizes:
            out.append(f"  {path!r} (object {i}): size {o.size}, but from seq "
                       f"{h.seq(h.floor)} on it was only {sizes}")
            continue
        # the state it resembles longest from its start
        best, bad = max(((v, first_difference(h.materialize(v.extents, 0, v.size), o.data))
                         for v in since if v.size == o.size), key=lambda vb: vb[1])
        want = h.materialize(best.extents, 0, best.size)
        out.append(f"  {path!r} (object {i}): its data is no state it had from seq "
                   f"{h.seq(h.floor)} on; at offset {bad} it holds "
                   f"{describe_bytes(o.data, bad)}, where the state closest to it has "
                   f"{describe_bytes(want, bad)}")
    return out


def page_problems(h, tree, found):
    """With the writeback cache: files with a page that is none of what that
    page was since the file's last acknowledged fsync, or a size it cannot have."""
    out = []
    for i, o in found.items():
        floor = h.file_floor(i)
        since = file_versions(h, i, floor) if o.kind == "f" else []
        if not since:
            continue
        path = tree.paths.get(i, "(new)")
        why = f"from seq {h.seq(floor)} (acknowledged durable) on"
        sizes = {v.size for v in since}
        if o.size not in sizes and not (o.size % PAGE == 0 and min(sizes) < o.size < max(sizes)):
            out.append(f"{path!r} (object {i}): size {o.size}, but {why} it was only "
                       f"{sorted(sizes)}")
        for p in range(0, o.size, PAGE):
            end = min(p + PAGE, o.size)
            page = o.data[p:end]
            could = [h.materialize(ext, p, end) for ext in {clip(v.extents, p, end)
                                                            for v in since}]
            if page in could:
                continue
            at = first_difference(page, h.materialize(since[-1].extents, p, end))
            out.append(f"{path!r} (object {i}): at offset {p + at} (in the page at {p}) it "
                       f"holds {describe_bytes(page, at)}, but {why} that page could only "
                       f"be: {'; '.join(sorted({describe_bytes(c, at) for c in could}))}")
            break
    return out
