"""The crash loop: a workload runs random file operations with fsyncs on a
mounted mindbfs while the harness kills the daemon (SIGKILL) at random
moments, remounts, and checks that everything acknowledged durable is there,
that nothing shows that never happened, and that `mindb check` is clean.

One store lives through every cycle. A cycle:

1. sometimes starts mindbfs and kills it after a few milliseconds, in the
   recovery of the previous crash or while it mounts, and runs `mindb check`;
2. mounts the store and verifies the tree it finds against the previous
   cycle's journal; that tree is where this cycle starts;
3. runs tests/crashloop_workload.py against the mount for a random time
   (0 to 1 s), the workload writing its journal outside the mount;
4. kills the daemon and the workload in a random order, or kills the
   workload and unmounts cleanly (the daemon must then exit 0);
5. runs `mindb check` on the unmounted store.

tests/crashloop_verify.py says what the verifier accepts after a crash,
and tests/crashloop_workload.py what the workload does.

CI runs a short form (tests/test_fs_crashloop.py). The long form:

    MINDB_BUILD_DIR=build nice /usr/bin/python3 tests/crashloop.py --cycles 2000
    /usr/bin/python3 tests/crashloop.py --help   # --seed, --modes, -o, --dir

On a failure it prints the seed, the cycle, the journal's tail and what was
expected against what was found, and keeps the store and the journals.
"""

import argparse
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import conftest  # noqa: E402
from conftest import Mount, is_mounted  # noqa: E402
from crashloop_verify import History, LoopFailure, Tree, read_journal, verify  # noqa: E402

WORKLOAD = pathlib.Path(__file__).resolve().with_name("crashloop_workload.py")

# Small enough that checkpoints (half of dirty_size, or each second) run all
# the time, so kills land in them.
BASE_OPTIONS = ["checkpoint_interval=1", "dirty_size=1M"]
MODES = {"wb": ["writeback_cache"], "nowb": ["no_writeback_cache"], "sync": ["sync"]}
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def journal_tail(path, lines=30):
    try:
        text = pathlib.Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no journal)"
    return "\n".join(text[-lines:]) if text else "(empty journal)"


# ---- the cycles -------------------------------------------------------------------


class Stats:
    def __init__(self):
        self.cycles = self.ops = self.acked = self.durable = 0
        self.kills = {}
        self.in_flight = {}
        self.start_kills = self.start_kills_unmounted = self.checkpoints = self.lost = 0

    def add(self, ops, kill):
        self.cycles += 1
        self.ops += len(ops)
        self.acked += sum(o.outcome == "D" for o in ops)
        self.durable += sum(o.outcome == "D" and o.op["op"] in ("fsync", "fsyncdir")
                            for o in ops)
        self.kills[kill] = self.kills.get(kill, 0) + 1
        if ops and ops[-1].outcome != "D":
            name = ops[-1].op["op"]
            self.in_flight[name] = self.in_flight.get(name, 0) + 1

    def __str__(self):
        kills = ", ".join(f"{k} {n}" for k, n in sorted(self.kills.items()))
        flight = ", ".join(f"{k} {n}" for k, n in sorted(self.in_flight.items(),
                                                          key=lambda kv: -kv[1]))
        return (f"{self.cycles} cycles, {self.ops} operations ({self.acked} acknowledged, "
                f"{self.durable} durable syncs), {self.checkpoints} checkpoints, "
                f"{self.lost} recoveries that lost acknowledged unsynced changes; kills: "
                f"{kills}, {self.start_kills} during start-up ({self.start_kills_unmounted} before "
                f"the mount was up); in flight at the kill: "
                f"{flight or 'nothing'}")


class CrashLoop:
    """Runs cycles on one store in workdir; raises LoopFailure on a problem."""

    def __init__(self, workdir, seed, modes=("wb",), extra_options=(), log=None):
        self.dir = pathlib.Path(workdir)
        self.store = self.dir / "store"
        self.mnt = self.dir / "mnt"
        self.journals = self.dir / "journal"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.journals.mkdir(exist_ok=True)
        self.seed = seed
        self.rng = random.Random(seed)
        self.modes = list(modes)
        self.extra = list(extra_options)
        self.log = log or (lambda text: None)
        self.history = None
        self.next_seq = 1
        self.stats = Stats()
        self.cycle = 0
        self.context = self.last_context = "none"
        self.journal = None  # the last cycle's, until this cycle's workload starts
        self.mount = None

    def options(self, mode):
        return BASE_OPTIONS + MODES[mode] + self.extra

    def fail(self, what, problems=()):
        lines = [f"crash loop: {what}",
                 f"seed {self.seed}, cycle {self.cycle}: {self.context}",
                 f"the cycle before: {self.last_context}",
                 f"(the same choices again: tests/crashloop.py --seed {self.seed} --modes "
                 f"{','.join(self.modes)} --cycles {self.cycle + 1}"
                 + "".join(f" -o {o}" for o in self.extra) + ")"]
        lines += [f"  {p}" for p in list(problems)[:40]]
        if len(problems) > 40:
            lines.append(f"  ... {len(problems) - 40} more")
        if self.journal:
            lines.append(f"journal {self.journal} ends:\n{journal_tail(self.journal)}")
        lines.append(f"the store's log: {', '.join(self.wal_files())}")
        lines.append(f"store kept in {self.store}; journals in {self.journals}")
        if self.mount is not None:
            lines.append(f"mindbfs stderr (last start):\n{self.mount.stderr_text()[-3000:]}")
            self.mount._cleanup_quietly()
        raise LoopFailure("\n".join(lines))

    def check_store(self, when):
        r = subprocess.run([str(conftest.mindb_path()), "check", str(self.store)],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            self.fail(f"`mindb check` {when} exits {r.returncode}, expected 0",
                      (r.stdout + r.stderr).strip().splitlines())

    def check_daemon_output(self, m):
        text = m.stderr_text()
        if any(mark in text for mark in SANITIZER_MARKS):
            self.fail("the daemon reported a sanitizer error", text.splitlines()[-60:])

    def wal_files(self):
        return sorted(p.name for p in (self.store / "wal").glob("*.wal"))

    def manifest_seq(self):
        seqs = [int(p.name.split(".")[1], 16) for p in self.store.glob("manifest.[0-9]*")]
        return max(seqs, default=0)

    def kill_while_starting(self, options, delay):
        """mindbfs killed `delay` s after it starts: in recovery, or mounting."""
        m = Mount(self.store, self.mnt, options)
        err = self.dir / ".start-kill.stderr"
        with open(err, "wb") as f:
            p = subprocess.Popen(m.argv(), stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                 start_new_session=True)
        time.sleep(delay)
        p.kill()
        p.wait(timeout=60)
        if is_mounted(self.mnt):
            subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
        else:
            self.stats.start_kills_unmounted += 1
        self.stats.start_kills += 1

    def run(self, cycles):
        self.run_cycles(cycles)
        return self.finish()

    def run_cycles(self, cycles):
        for _ in range(cycles):
            self.one_cycle()
            self.cycle += 1

    def finish(self):
        """A last mount to verify the last cycle, a clean unmount, a check."""
        self.context = "after the last cycle: mount, verify, unmount"
        m = self.mount = Mount(self.store, self.mnt, self.options("wb")).start()
        self.verify(Tree(self.mnt))
        m.stop()
        self.check_daemon_output(m)
        self.mount = None
        self.check_store("after the final unmount")
        return self.stats

    def verify(self, tree):
        if self.history is None:
            return
        h = self.history
        problems = verify(h, tree)
        if problems:
            self.fail("the remounted tree breaks the durability contract", problems)
        acked = max((p for p, o in enumerate(h.ops, 1) if o.outcome == "D"), default=0)
        if not h.matched >> acked:
            self.stats.lost += 1

    def one_cycle(self):
        rng = self.rng
        mode = rng.choice(self.modes)
        options = self.options(mode)
        sync = mode == "sync" or "sync" in self.extra
        writeback = mode == "wb" and "no_writeback_cache" not in self.extra and not sync
        r = rng.random()
        delay = (rng.uniform(0, 0.05) if r < 0.1 else rng.uniform(0.05, 0.4) if r < 0.9
                 else rng.uniform(0.4, 1.0))
        kill = rng.choices(["daemon", "workload", "clean"], [45, 45, 10])[0]
        start_kill = self.cycle > 0 and rng.random() < 0.15
        self.context = f"-o {','.join(options)}; kill: {kill} after {delay * 1000:.0f} ms"
        if start_kill:
            self.kill_while_starting(options, rng.uniform(0, 0.06))
            self.check_store("after a kill during start-up")
        checkpoints = self.manifest_seq()
        self.mount = m = Mount(self.store, self.mnt, options).start()
        tree = Tree(self.mnt)
        self.verify(tree)
        self.journal = self.journals / f"{self.cycle:05d}.log"
        base = self.journals / f"{self.cycle:05d}.base.json"
        base.write_text(json.dumps(tree.base(self.next_seq)))
        werr = self.journals / f"{self.cycle:05d}.stderr"
        with open(werr, "wb") as f:
            w = subprocess.Popen([sys.executable, str(WORKLOAD), str(self.mnt), str(base),
                                  str(self.journal), str(rng.getrandbits(32))],
                                 stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                 start_new_session=True)
        try:
            time.sleep(delay)
            if w.poll() is not None:
                self.fail(f"the workload exited with status {w.returncode} while the daemon "
                          f"was running:\n{werr.read_text(errors='replace')}")
            if kill == "daemon":
                # Stopped first: the kill unmounts (lazily), and a workload
                # still running would go on in the bare mount-point directory,
                # journaling as acknowledged what never reached mindbfs. With
                # the stop pending, an operation in flight ends (answered, or
                # failed by the kill) and the workload stops before it can
                # journal it or start another.
                w.send_signal(signal.SIGSTOP)
                m.kill9()
            else:
                w.kill()
                try:
                    w.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass  # blocked on the daemon: it goes with it
                if kill == "workload":
                    time.sleep(rng.uniform(0, 0.02))
                    m.kill9()
                else:
                    try:
                        m.stop()
                    except BaseException as e:  # noqa: BLE001 - pytest's Failed
                        self.fail(f"clean unmount after the workload's kill: {e}")
        finally:
            w.kill()
            w.wait()
        self.check_daemon_output(m)
        self.mount = None
        self.check_store(f"after the {kill} kill")
        ops = read_journal(self.journal)
        self.stats.add(ops, kill)
        self.stats.checkpoints += self.manifest_seq() - checkpoints
        self.history = History(tree, ops, writeback,
                               every_ack_durable=sync or kill == "clean")
        if ops:
            self.next_seq = ops[-1].seq + 1
        for old in self.journals.glob(f"{self.cycle - 5:05d}.*"):
            old.unlink()
        self.log(f"cycle {self.cycle}: {self.context}: {len(ops)} operations")
        self.last_context = self.context + (" (and during the start-up before)" if start_kill
                                            else "")


# ---- the long form ------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Kill mindbfs (SIGKILL) at random moments under a workload of file "
                    "operations and fsyncs, remount, and verify the durability contract. "
                    "See the header of tests/crashloop.py for what is checked.")
    parser.add_argument("--cycles", type=int, default=2000, help="kill cycles (default 2000)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--build", default=None,
                        help="build directory with fuse/mindbfs and tools/mindb "
                             "(default: $MINDB_BUILD_DIR, else build/)")
    parser.add_argument("--modes", default="wb,nowb,sync",
                        help="mount modes chosen at random for each cycle, from wb "
                             "(writeback cache), nowb (no_writeback_cache), sync "
                             "(-o sync) (default: all three)")
    parser.add_argument("-o", dest="options", action="append", default=[],
                        help="more mindbfs options for every mount (e.g. -o no_writeback_cache)")
    parser.add_argument("--dir", default=None,
                        help="work directory (store, mount point, journals); default: a new "
                             "temporary directory, removed after a run without failure")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per cycle")
    args = parser.parse_args(argv)
    if args.build:
        os.environ["MINDB_BUILD_DIR"] = os.path.abspath(args.build)
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    extra = [o for opt in args.options for o in opt.split(",") if o]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    workdir = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="mindb-crashloop-"))
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    loop = CrashLoop(workdir, seed, modes, extra,
                     log=print if args.verbose else None)
    print(f"crash loop: seed {seed}, {args.cycles} cycles, modes {args.modes}, "
          f"in {workdir}, build {conftest.build_dir()}", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        done = 0
        while done < args.cycles:
            n = min(100, args.cycles - done)
            loop.run_cycles(n)
            done += n
            print(f"{time.monotonic() - start:.0f} s: {loop.stats}", flush=True)
        loop.finish()
    except LoopFailure as e:
        print(e, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001 - pytest's Failed from the fixtures too
        print(f"crash loop: seed {seed}, cycle {loop.cycle}: {loop.context}\n"
              f"{traceback.format_exc()}store kept in {loop.store}", file=sys.stderr)
        return 1
    finally:
        conftest.cleanup_all_mounts()
    print(f"crash loop passed in {time.monotonic() - start:.0f} s: {loop.stats}")
    if not args.dir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
