"""A full disk and a failing disk under a mounted store.

Full disk: the store lives on a tmpfs of its own (SMALL_DISK), the rest of
which a ballast file takes, so that the store has no room left to grow.
Writes through the mount then fail with ENOSPC and fsync reports it (never 0
for data that did not reach the disk); the daemon goes on serving what it
has; removing the ballast gives the space back, and the same mount works
again without a restart. After a crash (SIGKILL) and a new mount, whatever
an fsync acknowledged is there, and `mindb check` finds the store sound.
Removing files inside the mount frees nothing while the disk is full (their
space comes back only through a checkpoint and compaction, which need room
themselves): the test checks that too, so the advice in docs/RELIABILITY.md
stays true.

Failing disk: the daemon runs with tests/eio_preload.c preloaded, which
fails its pread() of one data segment, or its fdatasync() of the log, with
EIO while a file exists (see that file). A read of a file stored in the
failing segment gets EIO and the daemon logs a line naming the segment,
while stat, listing, reading a file stored elsewhere and writing new files
go on; once the fault is gone the file reads back intact. A failed
fdatasync makes fsync return EIO, and nothing fsynced before is lost.

The long form repeats the fill-and-free cycle and the arm-and-read cycle,
with fresh random data each round:

    MINDB_FAULT_ROUNDS=20 MINDB_BUILD_DIR=build /usr/bin/python3 -m pytest tests/test_fs_faults.py

MINDB_FAULT_SEED=N replays the data of a failed run (the seed is in every
failure message).
"""

import errno
import os
import pathlib
import random
import re
import subprocess

import pytest

from conftest import EXIT_TIMEOUT, Mount, build_dir, mindbfs_path, mounted_tmpfs

KIB = 1024
MIB = 1024 * KIB

ROUNDS = int(os.environ.get("MINDB_FAULT_ROUNDS", "1"))
SEED = int(os.environ.get("MINDB_FAULT_SEED", str(random.randrange(1 << 32))))

# A store's log is a segment of 64 MiB and, from its first checkpoint on
# (`mindb init` makes one), two spare segments (wal/wal.c), which the store
# keeps however little it holds. Once a full disk has filled the log, the
# store holds up to six segments until later checkpoints release them: the
# disk leaves room for those and for the ballast a round needs to free (the
# rounds of the long form find the store at that size).
LOG_BYTES = 3 * 64 * MIB
SMALL_DISK = "512m"
# What the store needs free to take writes again after a full disk: a new
# log segment and room for a checkpoint.
RECOVERY_ROOM = 96 * MIB
# Writes through a full store fail once its log has no room left: at most
# the log's size after the ballast went in.
FILL_LIMIT = 2 * LOG_BYTES


def seeded(text):
    return f"{text} (MINDB_FAULT_SEED={SEED})"


# ---- files ----------------------------------------------------------------------


def errname(code):
    return errno.errorcode.get(code, str(code))


def attempt(fn, *args):
    """fn's result, or the errno name of the OSError it raised."""
    try:
        return fn(*args)
    except OSError as e:
        return errname(e.errno)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_file(path, data):
    """Writes path, fsyncs it and its directory; raises OSError on any failure."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_path(os.path.dirname(path))


def try_durable_file(path, data):
    """durable_file's outcome: None, or the errno name of the step that failed."""
    return attempt(durable_file, path, data)


def compressible(rng, size):
    """Data zstd shrinks to almost nothing: 64 random bytes over and over (so
    that many rounds of it do not fill the disk with dead records)."""
    block = rng.randbytes(64)
    return (block * (size // len(block) + 1))[:size]


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def assert_files(root, files, when):
    for name, data in files.items():
        got = attempt(lambda p: p.read_bytes(), root / name)
        if got != data:
            shown = got if isinstance(got, str) else f"{len(got)} bytes, not the ones written"
            pytest.fail(seeded(f"{when}: {name}: expected its {len(data)} bytes, got {shown}"))


# ---- a tmpfs of its own -------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A SMALL_DISK tmpfs in tmp_path, unmounted at teardown (after the mounts
    the test made there, which mount_factory stops first)."""
    with mounted_tmpfs(tmp_path / "disk", f"size={SMALL_DISK},mode=0755") as d:
        yield d


def fill_with_ballast(path):
    """Writes path until its filesystem is full; returns the bytes written."""
    block = bytes(MIB)
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                written += os.write(fd, block[:max(4 * KIB, min(MIB, free_bytes(path)))])
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return written
    finally:
        os.close(fd)


def fill_through_mount(path, rng):
    """Writes path through the mount, fsyncing every 8 MiB, until a write or
    an fsync fails. Returns (errno name, bytes written before, fd still open)."""
    block = compressible(rng, MIB)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    written = 0
    while written < FILL_LIMIT:
        try:
            write_all(fd, block)
            written += len(block)
            if written % (8 * MIB) == 0:
                os.fsync(fd)
        except OSError as e:
            return errname(e.errno), written, fd
    return None, written, fd


# ---- full disk ----------------------------------------------------------------------


@pytest.mark.parametrize("cache", ["writeback_cache", "no_writeback_cache"], ids=["wb", "nowb"])
def test_full_disk_gives_enospc_and_recovers_once_space_is_freed(small_disk, tmp_path,
                                                                  mount_factory, cache):
    rng = random.Random(SEED)
    store = small_disk / "store"
    Mount(store, tmp_path / "mnt").cli("init")
    m = mount_factory(store, tmp_path / "mnt", [cache])
    (m.mnt / "before").mkdir()
    durable = {}  # every file whose last fsync returned 0: name -> contents
    for i, size in enumerate([0, 1, 4095, 64 * KIB, 64 * KIB + 1, 300_000]):
        name = f"before/f{i}"
        durable[name] = rng.randbytes(size)
        durable_file(m.mnt / name, durable[name])
    durable_file(m.mnt / "doomed", rng.randbytes(100_000))
    ballast = small_disk / "ballast"

    for rnd in range(ROUNDS):
        what = f"round {rnd}"
        ballast_bytes = fill_with_ballast(ballast)
        # Removing the ballast must give the store room for a log segment
        # and a checkpoint, or it cannot take writes again (see
        # docs/RELIABILITY.md): a smaller ballast means the disk is too
        # small for the rounds asked for.
        assert ballast_bytes >= RECOVERY_ROOM, seeded(
            f"{what}: the ballast took only {ballast_bytes} bytes: the store leaves too little "
            f"of the {SMALL_DISK} disk to test its recovery")
        assert free_bytes(small_disk) < MIB, seeded(
            f"{what}: the disk should be full after {ballast_bytes} bytes of ballast, "
            f"{free_bytes(small_disk)} bytes are free")

        # The log takes writes until it is full too, then every write fails.
        err, written, fd = fill_through_mount(m.mnt / "filler", rng)
        try:
            assert err == "ENOSPC", seeded(
                f"{what}: filling the mount: expected ENOSPC within {FILL_LIMIT} bytes, got "
                f"{err} after {written} bytes")
            # What was written since the last good fsync is not durable: an
            # fsync says so every time it is asked, not just once.
            for i in range(2):
                got = attempt(os.fsync, fd)
                assert got == "ENOSPC", seeded(
                    f"{what}: fsync #{i + 2} of the file that hit ENOSPC: expected ENOSPC, "
                    f"got {got}")
        finally:
            os.close(fd)
        late_name, late = f"late-{rnd}", rng.randbytes(10_000)
        got = try_durable_file(m.mnt / late_name, late)
        assert got == "ENOSPC", seeded(
            f"{what}: a new file written and fsynced on the full disk: expected ENOSPC, "
            f"got {got}")

        # What the store has, it still serves.
        assert_files(m.mnt, durable, f"{what}, disk full")
        assert sorted(os.listdir(m.mnt / "before")) == sorted(
            n.split("/")[1] for n in durable if n.startswith("before/")), seeded(what)
        # Removing a file in the mount gives no space back: that needs a
        # checkpoint, which needs space itself.
        if rnd == 0:
            free = free_bytes(small_disk)
            got = attempt(os.unlink, m.mnt / "doomed")
            assert got in (None, "ENOSPC"), seeded(f"{what}: rm doomed: got {got}")
            assert free_bytes(small_disk) <= free, seeded(
                f"{what}: rm in the mount freed {free_bytes(small_disk) - free} bytes on "
                "the full disk: docs/RELIABILITY.md says it frees none")

        # Space comes back: the same mount works again.
        os.unlink(ballast)
        got = try_durable_file(m.mnt / late_name, late)
        assert got is None, seeded(f"{what}: write + fsync once space is back: got {got}")
        durable[late_name] = late
        name = f"after-{rnd}"
        durable[name] = rng.randbytes(rng.randrange(1, 200_000))
        got = try_durable_file(m.mnt / name, durable[name])
        assert got is None, seeded(f"{what}: a new file once space is back: got {got}")
        os.unlink(m.mnt / "filler")
        assert_files(m.mnt, durable, f"{what}, space back")

    # Whatever an fsync acknowledged survives a crash.
    m.kill9()
    m.start()
    assert_files(m.mnt, durable, "after SIGKILL and a new mount")
    got = try_durable_file(m.mnt / "last", b"the store takes writes\n")
    assert got is None, seeded(f"a write + fsync after the new mount: got {got}")
    m.stop()
    r = m.cli("check", expect=None)
    assert r.returncode == 0, seeded(
        f"mindb check after the full disk: expected exit 0, got {r.returncode}\n"
        f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}")
    for name, data in durable.items():
        got = m.cli("get", name).stdout
        assert got == data, seeded(f"mindb get {name}: expected its {len(data)} bytes, got "
                                   f"{len(got)} bytes, not the same")


# ---- a failing disk, through the preloaded library ---------------------------------


def preload_library():
    path = build_dir() / "tests" / "eio_preload.so"
    if not path.is_file():
        pytest.fail(f"{path} is missing: build the eio_preload target first "
                    f"(cmake --build {build_dir()})")
    return path


def sanitizer_runtime(binary):
    """The ASan runtime the binary links, which must come first in LD_PRELOAD."""
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    m = re.search(r"^\s*libasan\.so\S*\s+=>\s+(\S+)", r.stdout, re.M)
    return m.group(1) if m else None


class FaultyMount(Mount):
    """A mindbfs whose pread or fdatasync on files matching `paths` fails
    with EIO while `armed` exists (tests/eio_preload.c)."""

    def __init__(self, store, mnt, armed, paths, calls, options=()):
        super().__init__(store, mnt, options)
        self.armed = pathlib.Path(armed)
        preload = [str(preload_library())]
        asan = sanitizer_runtime(mindbfs_path())
        if asan:
            preload.insert(0, asan)
        self.env = {"LD_PRELOAD": " ".join(preload), "MINDB_EIO_ARMED": str(self.armed),
                    "MINDB_EIO_PATHS": paths, "MINDB_EIO_CALLS": calls}

    def argv(self):
        # Through env(1), so that only the daemon gets the library: env execs
        # it in the same process, which is what the Mount's pid tracks.
        return ["env", *(f"{k}={v}" for k, v in self.env.items()), *super().argv()]

    def arm(self):
        self.armed.touch()

    def disarm(self):
        self.armed.unlink(missing_ok=True)

    def unmount_and_wait(self):
        """Unmounts; returns the daemon's exit status, whatever it is."""
        r = subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True, text=True)
        assert r.returncode == 0, f"fusermount3 -u {self.mnt}: {r.stderr}"
        self.proc.wait(timeout=EXIT_TIMEOUT)
        self.returncode = self.proc.returncode
        self._forget()
        return self.returncode

    def injected(self):
        return self.stderr_text().count("eio_preload: ")


@pytest.fixture
def faulty_factory(request, tmp_path):
    """make(store, mnt, paths, calls, options=()) -> a started FaultyMount."""
    made = []

    def make(store, mnt, paths, calls, options=()):
        pathlib.Path(mnt).mkdir(parents=True, exist_ok=True)
        m = FaultyMount(store, mnt, tmp_path / f"armed-{len(made)}", paths, calls, options)
        made.append(m)
        return m.start()

    yield make
    failed = getattr(request.node, "rep_call", None)
    for m in reversed(made):
        m.disarm()
        if failed is not None and failed.failed:
            print(f"---- mindbfs stderr ({m.mnt}), last start ----\n{m.stderr_text()}")
        m._cleanup_quietly()


def segments(store):
    return {p.name: p.stat().st_size for p in (store / "data").glob("*.seg")}


def store_with_two_segments(tmp_path, rng):
    """A store whose file "a/in-first" lies in data segment 1 and whose
    "b/in-second" lies in a later one, made with the CLI: a 64 MiB value of
    random bytes between them fills segment 1."""
    store = tmp_path / "store"
    m = Mount(store, tmp_path / "unused")
    files = {"a/in-first": rng.randbytes(300_000), "a/small": rng.randbytes(100),
             "b/in-second": rng.randbytes(200_000)}
    m.cli("init")
    for name in ["a/in-first", "a/small"]:
        m.cli("put", name, "-", input=files[name])
    first = segments(store)
    src = tmp_path / "value"
    src.write_bytes(rng.randbytes(64 * MIB))
    m.cli("put", "pad", src)
    src.unlink()
    padded = segments(store)
    m.cli("put", "b/in-second", "-", input=files["b/in-second"])
    last = segments(store)
    grown = sorted(n for n in last if last[n] != padded.get(n))
    assert list(first) == ["00000001.seg"], f"after the first puts: {first}"
    assert grown and "00000001.seg" not in grown, (
        f"the last put should have gone to a later segment: before {padded}, after {last}")
    return store, files


def test_eio_reading_a_data_segment_fails_that_read_only(tmp_path, faulty_factory):
    rng = random.Random(SEED)
    store, files = store_with_two_segments(tmp_path, rng)
    m = faulty_factory(store, tmp_path / "mnt", "*/data/00000001.seg", "pread")
    broken = m.mnt / "a" / "in-first"
    for rnd in range(ROUNDS):
        what = f"round {rnd}"
        if rnd:
            m.remount()  # caches cold again: the kernel's and the store's
        m.arm()
        injected = m.injected()
        got = attempt(lambda p: p.read_bytes(), broken)
        assert got == "EIO", seeded(f"{what}: reading a file of the failing segment: "
                                    f"expected EIO, got {got if isinstance(got, str) else 'data'}")
        assert m.injected() > injected, f"{what}: the library injected nothing:\n{m.stderr_text()}"
        # The daemon says where, in one line of its own.
        lines = [line for line in m.stderr_text().splitlines()
                 if line.startswith("mindbfs: ") and "00000001" in line]
        assert lines, (f"{what}: no line of the daemon names data segment 00000001:\n"
                       f"{m.stderr_text()}")
        # Everything else goes on.
        assert os.stat(broken).st_size == len(files["a/in-first"]), seeded(what)
        top = sorted({"pad"} | {name.split("/")[0] for name in files})
        assert sorted(os.listdir(m.mnt)) == top, seeded(f"{what}: listing the root")
        assert_files(m.mnt, {"b/in-second": files["b/in-second"]}, f"{what}, armed")
        name = f"new-{rnd}"
        data = rng.randbytes(rng.randrange(1, 300_000))
        got = try_durable_file(m.mnt / name, data)
        assert got is None, seeded(f"{what}: writing a new file while reads fail: got {got}")
        files[name] = data
        assert_files(m.mnt, {name: data}, f"{what}, armed")
        got = attempt(lambda p: p.read_bytes(), broken)
        assert got == "EIO", seeded(f"{what}: a second read of the failing file: got "
                                    f"{got if isinstance(got, str) else 'data'}")
        m.disarm()
        assert_files(m.mnt, files, f"{what}, disarmed")
    m.stop()
    r = m.cli("check", expect=None)
    assert r.returncode == 0, (f"mindb check after the EIO: exit {r.returncode}\n"
                               f"{r.stdout.decode(errors='replace')}")


@pytest.mark.parametrize("end", ["crash", "unmount"])
@pytest.mark.parametrize("cache", ["writeback_cache", "no_writeback_cache"], ids=["wb", "nowb"])
def test_eio_from_fdatasync_makes_fsync_fail_and_loses_nothing_synced(tmp_path, faulty_factory,
                                                                      cache, end):
    rng = random.Random(SEED)
    m = faulty_factory(tmp_path / "store", tmp_path / "mnt", "*/wal/*.wal", "fdatasync", [cache])
    durable = {}
    for i in range(4):
        durable[f"f{i}"] = rng.randbytes(rng.randrange(1, 200_000))
        durable_file(m.mnt / f"f{i}", durable[f"f{i}"])

    m.arm()
    lost = rng.randbytes(150_000)
    got = try_durable_file(m.mnt / "unsynced", lost)
    assert got == "EIO", seeded(f"write + fsync while fdatasync fails: expected EIO, got {got}")
    assert m.injected() > 0, f"the library injected nothing:\n{m.stderr_text()}"
    # Reads go on.
    assert_files(m.mnt, durable, "fdatasync failing")
    m.disarm()
    # A failed fdatasync may have dropped pages the kernel could not write:
    # the log refuses to take anything more rather than acknowledge it.
    got = attempt(fsync_path, m.mnt / "unsynced")
    assert got == "EIO", seeded(f"fsync again once fdatasync works: expected EIO, got {got}")
    got = try_durable_file(m.mnt / "later", b"later\n")
    assert got == "EIO", seeded(f"a new file after the failed sync: expected EIO, got {got}")
    assert_files(m.mnt, durable, "after the failed sync")

    if end == "crash":
        m.kill9()
    else:
        # The store cannot be closed cleanly: the daemon says so and exits 1.
        status = m.unmount_and_wait()
        lines = [line for line in m.stderr_text().splitlines() if line.startswith("mindbfs: ")]
        assert status == 1 and any("closing the store" in line for line in lines), (
            f"unmount after a failed sync: expected exit 1 and a line 'closing the store', got "
            f"exit {status}:\n{m.stderr_text()}")
    m.start()
    assert_files(m.mnt, durable, f"after the {end} and a new mount")
    got = attempt(lambda p: p.read_bytes(), m.mnt / "unsynced")
    assert got in ("ENOENT", b"", lost), seeded(
        f"the file whose fsync failed must be missing, empty or whole, got "
        f"{got if isinstance(got, str) else f'{len(got)} other bytes'}")
    got = try_durable_file(m.mnt / "later", b"later\n")
    assert got is None, seeded(f"write + fsync after the new mount: got {got}")
    m.stop()
    m.cli("check")
