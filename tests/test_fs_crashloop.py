"""The crash loop's short form: 100 SIGKILLs of mindbfs under a random
workload of file operations and fsyncs, each followed by a remount that must
show everything acknowledged durable and nothing that never happened, and a
clean `mindb check`. tests/crashloop.py says how, tests/crashloop_verify.py
what exactly is checked.

Two stores of 50 cycles, one mounted with the writeback cache, one without
it (a third of its cycles with -o sync), so that xdist runs them side by
side. The long form (2,000 cycles, all modes mixed):

    MINDB_BUILD_DIR=build nice /usr/bin/python3 tests/crashloop.py --cycles 2000

The verifier itself is tested first, on trees made by hand on the host's
filesystem, so that a loop that passes says something: it must reject a
stale page, a lost rename, a torn write where no request boundary is, and an
object nobody made.
"""

import json
import os
import subprocess

import pytest

import crashloop
import crashloop_verify
from conftest import mindb_path
from crashloop_workload import written_bytes

CYCLES = 50


@pytest.mark.parametrize("modes, seed", [(["wb"], 6001), (["nowb", "nowb", "sync"], 6002)],
                         ids=["writeback", "no_writeback-sync"])
def test_crash_loop_keeps_what_was_acknowledged(tmp_path, modes, seed):
    loop = crashloop.CrashLoop(tmp_path / "loop", seed, modes)
    try:
        stats = loop.run(CYCLES)
    except crashloop.LoopFailure as e:
        pytest.fail(str(e), pytrace=False)
    print(stats)
    assert stats.cycles == CYCLES, f"expected {CYCLES} cycles, ran {stats.cycles}"


def test_crash_loop_fails_on_an_object_put_behind_its_back(tmp_path):
    loop = crashloop.CrashLoop(tmp_path / "loop", 6003, ["nowb"])
    loop.run_cycles(1)
    subprocess.run([str(mindb_path()), "put", str(loop.store), "intruder"], input=b"x" * 100,
                   check=True, capture_output=True)
    with pytest.raises(crashloop.LoopFailure) as failure:
        loop.run_cycles(1)
    # named as an object no operation made, or (taken for the object of a
    # create in flight) as a name no operation made
    assert "'intruder'" in str(failure.value), f"expected the intruder named, got:\n{failure.value}"


# ---- the verifier on trees made by hand ------------------------------------------


class Scenario:
    """A tree on the host's filesystem, a journal of operations on it, and the
    tree as a crash might have left it: verify() must judge it right."""

    def __init__(self, tmp_path):
        self.root = tmp_path / "tree"
        self.root.mkdir()
        self.journal = tmp_path / "journal"
        self.lines = []
        self.seq = 0

    def file(self, name, data=b""):
        path = self.root / name
        path.write_bytes(data)
        return os.lstat(path).st_ino

    def start(self):
        self.start_tree = crashloop_verify.Tree(self.root)

    def op(self, acked=True, extra=None, **op):
        self.seq += 1
        self.lines.append(f"I {self.seq} {json.dumps(op)}")
        if acked:
            self.lines.append(f"D {self.seq}" + (f" {json.dumps(extra)}" if extra else ""))
        return self.seq

    def write(self, ino, off, length, acked=True):
        seq = self.op(acked, op="write", ino=ino, off=off, len=length, how="pwrite")
        return written_bytes(ino, seq, off, length)

    def problems(self, writeback=False, sync=False):
        self.journal.write_text("".join(line + "\n" for line in self.lines))
        ops = crashloop_verify.read_journal(self.journal)
        h = crashloop_verify.History(self.start_tree, ops, writeback, sync)
        return crashloop_verify.verify(h, crashloop_verify.Tree(self.root))


def patch(data, off, piece):
    return data[:off] + piece + data[off + len(piece):]


@pytest.mark.parametrize("writeback", [False, True], ids=["nowb", "wb"])
def test_verifier_keeps_a_file_at_its_fsync_or_later(tmp_path, writeback):
    s = Scenario(tmp_path)
    a = s.file("a")
    s.start()
    first = s.write(a, 0, 8192)
    s.op(op="fsync", ino=a, data=False)
    second = s.write(a, 0, 4096)
    third = s.write(a, 4096, 4096, acked=False)
    ok = {"the fsynced state": first, "a later state": patch(first, 0, second),
          "the write in flight done": second + third}
    for what, data in ok.items():
        (s.root / "a").write_bytes(data)
        assert s.problems(writeback) == [], f"{what} must pass"
    bad = {"the state before the fsync": b"", "a page nobody wrote there": patch(
        first, 4096, written_bytes(a + 1, 1, 4096, 4096))}
    if not writeback:
        # the in-flight write without the acknowledged one before it: no prefix
        bad["a page of a later write over an older page"] = first[:4096] + third
    for what, data in bad.items():
        (s.root / "a").write_bytes(data)
        assert s.problems(writeback) != [], f"{what} must fail"


@pytest.mark.parametrize("durable", [False, True], ids=["unsynced", "dir-fsynced"])
def test_verifier_holds_a_rename_atomic(tmp_path, durable):
    s = Scenario(tmp_path)
    root = os.lstat(s.root).st_ino
    s.file("t", b"old\n")
    s.file(".tmp", b"new\n")
    s.start()
    s.op(op="rename", sdir=root, sname=".tmp", ddir=root, dname="t")
    s.op(acked=durable, op="fsyncdir", dir=root)
    before = s.problems()
    os.rename(s.root / ".tmp", s.root / "t")
    after = s.problems()
    os.rename(s.root / "t", s.root / "u")
    gone = s.problems()
    assert (before != []) == durable, f"the rename not applied: {before}"
    assert after == [], "the rename applied must pass"
    assert any("'t'" in p for p in gone), f"a name that is gone must fail: {gone}"


def test_verifier_rejects_what_no_operation_made(tmp_path):
    s = Scenario(tmp_path)
    root = os.lstat(s.root).st_ino
    s.start()
    s.op(acked=False, op="create", dir=root, name="n", mode=0o644, keep=False)
    s.file("n")
    os.chmod(s.root / "n", 0o644)
    assert s.problems() == [], "the file of a create in flight must pass"
    s.file("m")
    assert any("'m'" in p and "no operation made" in p for p in s.problems()), (
        "a second unknown file must fail")


def test_verifier_cuts_an_unsynced_write_only_between_pages(tmp_path):
    s = Scenario(tmp_path)
    a = s.file("a")
    s.start()
    data = s.write(a, 100, 8900)
    (s.root / "a").write_bytes(b"")
    assert s.problems() == [], "the write lost whole must pass"
    (s.root / "a").write_bytes(bytes(100) + data[:4096 - 100])
    assert s.problems() == [], "the write cut at a page boundary must pass"
    (s.root / "a").write_bytes(bytes(100) + data[:5000 - 100])
    assert s.problems() != [], "the write cut inside a page must fail"
