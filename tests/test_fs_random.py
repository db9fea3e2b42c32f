"""Seeded random operations, the same on mindbfs and on tmpfs (CI form).

Every operation's outcome and, every few hundred operations and at the end,
the whole trees must agree; tests/fsrandom.py holds the generator, the
executor, the comparison, the known differences and the shrinker. CI runs
20,000 operations with the writeback cache and 20,000 without, in fixed
seeds of 5,000 that pytest-xdist spreads over its workers (half of them
with little memory for the store, so that checkpoints and cache evictions
happen meanwhile). A mismatch is shrunk (for up to MINDB_FSRANDOM_SHRINK_S
seconds, default 120) and the test fails with the shortest failing list and
the command that reruns it. The mismatches found so far stay as fixed
sequences (REGRESSIONS), and two tests check that the harness can fail.

    MINDB_FSRANDOM_SEED=N   seeds N, N+1, ... (in both modes) instead of the fixed ones
    MINDB_FSRANDOM_OPS=N    operations per mode (default 20,000)

Long form, 1,000,000 operations per mode (it mounts and unmounts by itself;
--options dirty_size=1M,cache_size=256K,checkpoint_interval=1 for little
memory; --help for the rest):

    nice /usr/bin/python3 tests/fsrandom.py --build build --mode both --ops 1000000
"""

import os
import re

import pytest

import fsrandom
from fscalls import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE

SEEDS_PER_MODE = 4
FIXED_SEEDS = {"wb": 1, "nowb": 101}  # the first of each mode's seeds
OPS_PER_MODE = int(os.environ.get("MINDB_FSRANDOM_OPS", "20000"))
SHRINK_S = float(os.environ.get("MINDB_FSRANDOM_SHRINK_S", "120"))
# Half the seeds run with little memory for written and cached data and a
# checkpoint every second, so that checkpoints and cache evictions happen
# between the operations.
SMALL_MEMORY = ("dirty_size=1M", "cache_size=256K", "checkpoint_interval=1")


def _cases():
    chosen = os.environ.get("MINDB_FSRANDOM_SEED")
    for mode in ("wb", "nowb"):
        first = int(chosen) if chosen else FIXED_SEEDS[mode]
        for k in range(SEEDS_PER_MODE):
            small = k >= SEEDS_PER_MODE // 2
            yield pytest.param(mode, first + k, SMALL_MEMORY if small else (),
                               id=f"{mode}-{first + k}{'-smallmem' if small else ''}")


@pytest.mark.parametrize("mode,seed,extra", list(_cases()))
def test_random_operations_agree_with_tmpfs(tmp_path, tmpfs_dir, mode, seed, extra):
    count = max(1, OPS_PER_MODE // SEEDS_PER_MODE)
    bench = fsrandom.Bench(tmp_path, tmpfs_dir, mode, extra)
    text = fsrandom.check_seed(bench, seed, count, shrink_s=SHRINK_S)
    if text:
        pytest.fail(text, pytrace=False)
    assert bench.ops_run == count, \
        f"seed {seed} {mode}: {bench.ops_run} operations ran, expected {count}"


# ---- the harness itself: it must be able to fail ---------------------------------


class _FakeBench:
    """Fails a trial when every op of `needed` ran, at the last of them."""

    def __init__(self, needed):
        self.needed = set(needed)
        self.trials = 0

    def trial(self, ops, check_every=None):
        self.trials += 1
        indices = [i for i, _ in ops]
        if not self.needed <= set(indices):
            return None
        position = max(indices.index(i) for i in self.needed)
        return fsrandom.Mismatch(position, ops[position][0], "fake", ["needed ops ran"])


def test_shrink_keeps_exactly_the_ops_that_matter():
    ops = list(enumerate(fsrandom.generate(7, 3000)))
    needed = [3, 17, 1200, 2000]
    bench = _FakeBench(needed)
    first = bench.trial(ops)
    kept, best, reproduced = fsrandom.shrink(bench, ops, first, budget_s=60, log=lambda _: None)
    assert reproduced and [i for i, _ in kept] == needed, \
        f"kept {[i for i, _ in kept]}, expected {needed} ({bench.trials} trials)"
    assert best.index == needed[-1]


def test_comparison_sees_every_kind_of_difference(tmp_path):
    """Two trees made by the same ops, then one fact changed on one side: the
    comparison must name it."""
    ops = [("mkdir", b"d", 0o755), ("open", b"d/f", os.O_RDWR | os.O_CREAT, 0o644, 0),
           ("pwrite", 0, 100, ("rand", 0, 5000)), ("link", b"d/f", b"g", False),
           ("symlink", b"d/f", b"l"), ("setxattr", b"d/f", "user.a", ("rand", 9, 40), 0, True),
           ("utime", b"d", (10**18, 10**18), True)]
    changes = {
        "content": lambda r: os.truncate(r / "d" / "f", 4000),
        "mode": lambda r: os.chmod(r / "g", 0o600),
        "xattr": lambda r: os.setxattr(r / "g", "user.a", b"other"),
        "symlink target": lambda r: (os.unlink(r / "l"), os.symlink("g", r / "l")),
        "explicit mtime": lambda r: os.utime(r / "d", ns=(10**18, 10**18 + 1)),
        "extra name": lambda r: os.mkdir(r / "d" / "new"),
        "hard links": lambda r: (os.unlink(r / "g"), os.link(r / "l", r / "g",
                                                             follow_symlinks=False)),
    }
    for what, change in changes.items():
        roots = [tmp_path / what / side for side in ("a", "b")]
        sides = []
        for root in roots:
            root.mkdir(parents=True)
            side = fsrandom.Side(root)
            for op in ops:
                assert not isinstance(side.apply(op), str), f"{fsrandom.show_op(op)} failed"
            sides.append(side)
        assert fsrandom.diff_states(sides[0].state(), sides[1].state()) == []
        change(roots[1])
        lines = fsrandom.diff_states(sides[0].state(), sides[1].state())
        for side in sides:
            side.close_all()
        assert lines, f"a change of {what} went unseen"


# ---- mismatches the generator found, kept as fixed sequences ---------------------

_W, _R = os.O_WRONLY | os.O_CREAT, os.O_RDONLY
_EXPLICIT = (10**9, 1_000_000_000_123_456_789)  # 1970, 2001: not "now"
REGRESSIONS = {
    # mindbfs skipped the truncation of an empty file, and so its mtime
    "O_TRUNC of an empty file sets mtime": [
        ("open", b"f", _W, 0o644, 0), ("close", 0), ("utime", b"f", _EXPLICIT, True),
        ("open", b"f", os.O_RDWR | os.O_TRUNC, 0o644, 0), ("fstat", 0)],
    # fallocate that changes no byte left the mtime as it was
    "fallocate sets mtime": [
        ("open", b"f", os.O_RDWR | os.O_CREAT, 0o644, 0), ("pwrite", 0, 0, ("rand", 0, 5000)),
        ("utime", b"f", _EXPLICIT, True),
        ("fallocate", 0, FALLOC_FL_KEEP_SIZE, 100, 8000), ("fstat", 0),
        ("utime", b"f", _EXPLICIT, True), ("fallocate", 0, 0, 0, 100), ("fstat", 0),
        ("utime", b"f", _EXPLICIT, True),
        ("fallocate", 0, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 9000, 10),
        ("fstat", 0)],
    # a directory removed while open kept nlink 2
    "a removed directory has nlink 0": [
        ("mkdir", b"d", 0o755), ("mkdir", b"e", 0o755), ("open", b"d", _R, 0, 0),
        ("rename", b"e", b"d", 0), ("fstat", 0), ("mkdir", b"g", 0o755),
        ("open", b"g", _R, 0, 1), ("rmdir", b"g"), ("fstat", 1)],
}


@pytest.mark.parametrize("mode", ["wb", "nowb"])
@pytest.mark.parametrize("case", list(REGRESSIONS), ids=lambda c: re.sub(r"\W+", "-", c))
def test_regression_sequence(tmp_path, tmpfs_dir, mode, case):
    bench = fsrandom.Bench(tmp_path, tmpfs_dir, mode)
    mismatch = bench.trial(list(enumerate(REGRESSIONS[case])))
    assert mismatch is None, f"{case} ({mode}): mismatch {mismatch}"
