"""Shared fixtures of the pytest suites that mount a store with mindbfs.

Binaries come from $MINDB_BUILD_DIR (default: the repository's build/):
fuse/mindbfs and tools/mindb.

Every mount a test makes is a `Mount`. Live mounts are kept in a registry;
each fixture stops its own mounts at teardown, an autouse fixture clears
whatever a test left mounted, and a session finalizer clears the rest, so no
mount outlives a failing test.
"""

import contextlib
import hashlib
import os
import pathlib
import random
import shutil
import signal
import stat
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

MOUNT_TIMEOUT = 15  # seconds for a mount to appear
EXIT_TIMEOUT = 120  # seconds for a daemon to finish closing the store after unmount


def build_dir():
    """The build directory whose binaries the tests run."""
    return pathlib.Path(os.environ.get("MINDB_BUILD_DIR", REPO / "build")).resolve()


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


def require_ci_or_skip(reason):
    """A missing prerequisite: a failure in CI, a skip elsewhere."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def _binary(*parts):
    path = build_dir().joinpath(*parts)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} is missing: build it first (cmake --build {build_dir()}), "
                    "or point MINDB_BUILD_DIR at a build directory")
    return path


def mindbfs_path():
    return _binary("fuse", "mindbfs")


def mindb_path():
    return _binary("tools", "mindb")


@pytest.fixture(scope="session")
def mindbfs_bin():
    return mindbfs_path()


@pytest.fixture(scope="session")
def mindb_bin():
    return mindb_path()


# ---- mount table and processes ----------------------------------------------


def _unescape_mountinfo(field):
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out = bytearray()
    raw = field.encode("latin-1") if isinstance(field, str) else field
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and raw[i + 1:i + 4].isdigit() and len(raw[i + 1:i + 4]) == 3:
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def mount_entries():
    """(mount point, fs type, source, mount options, super options) of every mount."""
    entries = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.rstrip(b"\n").split(b" ")
            sep = fields.index(b"-")
            entries.append((
                _unescape_mountinfo(fields[4]),
                os.fsdecode(fields[sep + 1]),
                _unescape_mountinfo(fields[sep + 2]),
                os.fsdecode(fields[5]),
                os.fsdecode(fields[sep + 3]) if len(fields) > sep + 3 else "",
            ))
    return entries


def _real(path):
    """realpath without touching path itself: a mount point whose daemon hangs
    would hang lstat."""
    path = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def mount_entry(path):
    """The mountinfo entry whose mount point is path (the last one), or None."""
    target = _real(path)
    found = None
    for entry in mount_entries():
        if entry[0] == target:
            found = entry
    return found


def is_mounted(path):
    return mount_entry(path) is not None


def wait_until(predicate, timeout, interval=0.02):
    """Polls predicate until it is true (returns True) or timeout s pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def pid_alive(pid):
    """True while pid runs (a zombie has exited: it only waits to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3]
    return state not in (b"Z", b"X")


def find_daemon_pids(store, mnt):
    """Pids of running mindbfs processes started for this store and mount point."""
    stores = {os.fsencode(str(store)).rstrip(b"/"), os.fsencode(_real(store))}
    mnts = {os.fsencode(str(mnt)).rstrip(b"/"), os.fsencode(_real(mnt))}
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) != b"mindbfs":
            continue
        args = {a.rstrip(b"/") for a in argv[1:]}
        if args & stores and args & mnts and pid_alive(int(entry)):
            pids.append(int(entry))
    return pids


def _fuse_usable():
    """Whether this machine can mount FUSE at all (else a failed mount is a skip)."""
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return os.geteuid() == 0 or any(
        os.access(os.path.join(d, "fusermount3"), os.X_OK)
        for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"))


def _unmount(mnt, lazy_only=False, busy_timeout=10):
    """Unmounts mnt: fusermount3 -u, retried while busy, then umount -l. Returns a log."""
    log = []
    if not lazy_only:
        deadline = time.monotonic() + busy_timeout
        while is_mounted(mnt):
            r = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, text=True)
            if r.returncode == 0 and not is_mounted(mnt):
                return log
            log.append(f"fusermount3 -u: {r.returncode} {r.stderr.strip()}")
            if "busy" not in r.stderr.lower() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    if is_mounted(mnt):
        r = subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True, text=True)
        if r.returncode != 0:
            log.append(f"fusermount3 -u -z: {r.returncode} {r.stderr.strip()}")
    if is_mounted(mnt):
        r = subprocess.run(["umount", "-l", str(mnt)], capture_output=True, text=True)
        if r.returncode != 0:
            log.append(f"umount -l: {r.returncode} {r.stderr.strip()}")
    return log


# ---- Mount --------------------------------------------------------------------

_LIVE = []  # Mount objects whose daemon may be running or whose mount may be up


class Mount:
    """One mindbfs daemon serving STORE at MNT.

    `options` are joined into a single -o. `foreground` runs it with -f (the
    process is the daemon); otherwise the command must detach once mounted and
    the daemon's pid is found through /proc.
    """

    def __init__(self, store, mnt, options=(), foreground=True):
        self.store = pathlib.Path(store)
        self.mnt = pathlib.Path(mnt)
        self.options = list(options)
        self.foreground = foreground
        self.proc = None  # the Popen of the last start (for -f: the daemon itself)
        self.pid = None  # the daemon's pid
        self.returncode = None  # the daemon's exit status once known
        self._killed = False
        self._stderr_path = None
        self._starts = 0

    # -- life cycle

    def argv(self):
        argv = [str(mindbfs_path()), str(self.store), str(self.mnt)]
        if self.foreground:
            argv.append("-f")
        if self.options:
            argv += ["-o", ",".join(self.options)]
        return argv

    def start(self):
        """Starts the daemon and waits until the mount point is mounted."""
        if self.running():
            raise RuntimeError(f"{self.mnt}: daemon already running (pid {self.pid})")
        if is_mounted(self.mnt):
            pytest.fail(f"{self.mnt} is already a mount point before mindbfs starts")
        self._starts += 1
        self._stderr_path = self.mnt.parent / f".{self.mnt.name}.mindbfs.{self._starts}.stderr"
        self._killed = False
        self.returncode = None
        self.pid = None
        with open(self._stderr_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err, start_new_session=True)
        if self not in _LIVE:
            _LIVE.append(self)
        if self.foreground:
            self.pid = self.proc.pid
            ok = wait_until(lambda: is_mounted(self.mnt) or self.proc.poll() is not None,
                            MOUNT_TIMEOUT) and is_mounted(self.mnt)
            problem = None if ok else (
                f"exited with status {self.proc.returncode}" if self.proc.poll() is not None
                else f"not mounted after {MOUNT_TIMEOUT} s")
        else:
            try:
                self.proc.wait(timeout=MOUNT_TIMEOUT)
            except subprocess.TimeoutExpired:
                problem = f"did not return within {MOUNT_TIMEOUT} s"
            else:
                problem = None
                if self.proc.returncode != 0:
                    problem = f"exited with status {self.proc.returncode}"
                elif not is_mounted(self.mnt):
                    problem = "returned 0 but the mount point is not mounted"
            pids = find_daemon_pids(self.store, self.mnt)
            if len(pids) == 1:
                self.pid = pids[0]
            elif problem is None:
                problem = f"mounted, but found daemon pids {pids} in /proc"
        if problem is None:
            # The kernel shows the mount before the daemon answered INIT: a
            # daemon that fails there leaves a dead mount. One GETATTR tells.
            try:
                r = subprocess.run(["stat", "-c", "%i", str(self.mnt)], capture_output=True,
                                   timeout=MOUNT_TIMEOUT)
                if r.returncode != 0:
                    err = r.stderr.decode(errors="replace").strip()
                    problem = f"mounted, but stat fails: {err}"
            except subprocess.TimeoutExpired:
                problem = f"mounted, but stat of the mount point hangs for {MOUNT_TIMEOUT} s"
        if problem:
            argv = " ".join(self.argv())
            text = self.stderr_text()
            self._cleanup_quietly()
            message = f"{argv}: {problem}\nstderr:\n{text}"
            if in_ci() or _fuse_usable():
                pytest.fail(message)
            pytest.skip("cannot mount FUSE here: " + message)
        return self

    @classmethod
    def adopt(cls, store, mnt, options=()):
        """A Mount for a daemon that something else started (mount(8), a detached
        start): finds its pid and registers it for cleanup."""
        m = cls(store, mnt, options, foreground=False)
        pids = find_daemon_pids(store, mnt)
        if len(pids) != 1:
            pytest.fail(f"expected one mindbfs process for {store} at {mnt}, found {pids}")
        m.pid = pids[0]
        _LIVE.append(m)
        return m

    def running(self):
        return self.pid is not None and self.returncode is None and (
            self.proc.poll() is None if self.foreground else pid_alive(self.pid))

    def _wait_exit(self, timeout):
        """Waits for the daemon to exit; True when it did."""
        if self.pid is None:
            return True
        if self.foreground:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            self.returncode = self.proc.returncode
            return True
        if wait_until(lambda: not pid_alive(self.pid), timeout, interval=0.05):
            # Not our child: its exit status cannot be known (returncode stays None).
            return True
        return False

    def _sigkill(self):
        self._killed = True
        with contextlib.suppress(ProcessLookupError):
            if self.foreground:
                self.proc.kill()
            else:
                os.kill(self.pid, signal.SIGKILL)

    def _forget(self):
        with contextlib.suppress(ValueError):
            _LIVE.remove(self)

    def stop(self, timeout=EXIT_TIMEOUT):
        """Unmounts, waits for the daemon to exit and checks it exited with 0.

        Does nothing when the daemon was already stopped or killed with kill9."""
        if self not in _LIVE and not is_mounted(self.mnt):
            return
        log = _unmount(self.mnt)
        exited = self._wait_exit(timeout)
        if not exited:
            self._sigkill()
            self._wait_exit(10)
        self._forget()
        if self.foreground:
            status = self.proc.returncode
        else:
            status = self.returncode
        if not exited:
            pytest.fail(f"mindbfs ({self.mnt}) did not exit within {timeout} s after unmount; "
                        f"killed it\nunmount: {log}\nstderr:\n{self.stderr_text()}")
        if is_mounted(self.mnt):
            pytest.fail(f"{self.mnt} still mounted after stop: {log}")
        if not self._killed and status not in (0, None):
            pytest.fail(f"mindbfs ({self.mnt}) exited with status {status}\n"
                        f"stderr:\n{self.stderr_text()}")

    def kill9(self):
        """SIGKILLs the daemon (a crash), clears the dead mount, waits for the pid."""
        if self.running():
            self._sigkill()
        _unmount(self.mnt, lazy_only=True)
        if not self._wait_exit(30):
            pytest.fail(f"mindbfs ({self.mnt}) still running 30 s after SIGKILL")
        _unmount(self.mnt, lazy_only=True)
        self._forget()

    def remount(self, options=None):
        self.stop()
        if options is not None:
            self.options = list(options)
        return self.start()

    def _cleanup_quietly(self):
        """Best effort, for teardown paths: never raises, never waits long."""
        try:
            if self.running():
                _unmount(self.mnt, busy_timeout=2)
                if not self._wait_exit(10):
                    self._sigkill()
                    self._wait_exit(10)
            _unmount(self.mnt, lazy_only=True)
        except Exception:  # noqa: BLE001 - teardown must go on
            pass
        self._forget()

    # -- helpers

    def cli(self, *args, expect=0, input=None, timeout=300):
        """Runs `mindb COMMAND STORE ARGS...` (the store must not be mounted)."""
        argv = [str(mindb_path()), os.fspath(args[0]), str(self.store)]
        argv += [a if isinstance(a, bytes) else os.fspath(a) for a in args[1:]]
        r = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
        if expect is not None:
            assert r.returncode == expect, (
                f"{' '.join(map(os.fsdecode, argv))}: exit {r.returncode}, expected {expect}\n"
                f"stderr: {r.stderr.decode(errors='replace')}")
        return r

    def stderr_text(self):
        """What the daemon of the last start wrote to stderr (and stdout)."""
        if self._stderr_path is None:
            return ""
        try:
            return self._stderr_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self):
        if not self.running():
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            self._cleanup_quietly()
        return False

    def __repr__(self):
        return f"Mount({str(self.store)!r}, {str(self.mnt)!r}, {self.options!r})"


def cleanup_all_mounts():
    for m in list(_LIVE):
        m._cleanup_quietly()


@pytest.fixture(autouse=True)
def _unmount_leftovers(request):
    """Clears mounts a test started and left behind (e.g. when it failed), and
    after a passed test, the stores it left in its tmp_path."""
    before = set(map(id, _LIVE))
    yield
    for m in list(_LIVE):
        if id(m) not in before:
            m._cleanup_quietly()
    tmp_path = request.node.funcargs.get("tmp_path")
    rep = getattr(request.node, "rep_call", None)
    if tmp_path is not None and rep is not None and rep.passed:
        _remove_stores_under(tmp_path)


def _remove_stores_under(tmp_path):
    """Removes the stores (directories holding FORMAT) up to two levels under
    tmp_path that no mount uses: each holds a few hundred MB of preallocated
    log, and pytest keeps the last three runs' directories."""
    in_use = {pathlib.Path(_real(m.store)) for m in _LIVE}
    for d in [tmp_path, *tmp_path.iterdir(), *tmp_path.glob("*/*")]:
        if d.is_dir() and not d.is_symlink() and (d / "FORMAT").is_file() and (
                pathlib.Path(_real(d)) not in in_use) and not is_mounted(d):
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _unmount_everything_at_exit():
    yield
    cleanup_all_mounts()


def _mount_fixture(request, tmp_path, options):
    store = tmp_path / "store"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    m = Mount(store, mnt, options)
    try:
        m.start()
        yield m
        if _test_failed(request):
            # shown under "Captured stdout teardown" of the failed test
            print(f"---- mindbfs stderr ({m.mnt}), last start ----\n{m.stderr_text()}")
            m._cleanup_quietly()
        else:
            m.stop()
            _remove_store(m, tmp_path)
    finally:
        m._cleanup_quietly()


def _remove_store(m, tmp_path):
    """Removes the store of a passed test: every store holds a few hundred MB of
    preallocated log, and pytest keeps the last three runs' directories. A failed
    test keeps its store for a look."""
    store = pathlib.Path(m.store)
    if not m.running() and not is_mounted(m.mnt) and tmp_path in store.parents:
        shutil.rmtree(store, ignore_errors=True)


def _test_failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is not None and rep.failed


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def fs(request, tmp_path):
    """A fresh store mounted with the default options."""
    yield from _mount_fixture(request, tmp_path, ())


@pytest.fixture(params=["writeback_cache", "no_writeback_cache"], ids=["wb", "nowb"])
def fs_wb(request, tmp_path):
    """A fresh store mounted with writeback caching on, then off."""
    yield from _mount_fixture(request, tmp_path, (request.param,))


@pytest.fixture
def mount_factory(request, tmp_path):
    """make(store, mnt, options=()) -> a started Mount, stopped at teardown."""
    made = []

    def make(store, mnt, options=()):
        pathlib.Path(mnt).mkdir(parents=True, exist_ok=True)
        m = Mount(store, mnt, options)
        made.append(m)
        return m.start()

    yield make
    if _test_failed(request):
        for m in made:
            print(f"---- mindbfs stderr ({m.mnt}), last start ----\n{m.stderr_text()}")
            m._cleanup_quietly()
        return
    errors = []
    for m in reversed(made):
        try:
            m.stop()
        except BaseException as e:  # noqa: BLE001 - stop the others first
            errors.append(e)
            m._cleanup_quietly()
    if errors:
        raise errors[0]
    for m in made:
        _remove_store(m, tmp_path)


@contextlib.contextmanager
def mounted_tmpfs(d, options="size=512m"):
    """A fresh tmpfs mounted on the new directory D, unmounted on leaving."""
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        require_ci_or_skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield d
    finally:
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.fixture
def tmpfs_dir(tmp_path):
    """A fresh 512 MiB tmpfs mounted in tmp_path."""
    with mounted_tmpfs(tmp_path / "tmpfs") as d:
        yield d


# ---- trees: make one, describe one, compare two -------------------------------


def words(rng, size):
    """Compressible text from a small random vocabulary."""
    vocab = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(200)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(vocab) + (b"\n" if rng.random() < 0.1 else b" ")
    return bytes(out[:size])


def make_sample_tree(root, seed=0, nfiles=150):
    """Writes a tree that exercises what tools preserve: sizes around chunk and page
    bounds, compressible and random contents, modes with setuid/setgid bits, owners,
    odd names (spaces, UTF-8, newline, a 255-byte name), symlinks (relative, absolute,
    dangling, to a directory, a long target), hard links, user.* xattrs, ns mtimes
    (before 1970 too) and a read-only directory. Returns root."""
    rng = random.Random(seed)
    root = pathlib.Path(root)
    dirs = ["", "a", "a/b", "a/b/c", "a/b/c/d/e/f", "with space", "ünïcödé", "empty",
            "private", "setgid", "many"]
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    sizes = [0, 1, 100, 4095, 4096, 4097, 65535, 65536, 65537, 131075, (1 << 20) + 17,
             (2 << 20) + 5]
    names = ["-leading-dash", "name with spaces", "ünïcödé.txt", "x" * 255, ".hidden",
             "trailing.", "new\nline", "tab\tname", "back\\slash", "quote'\"", "*star?"]
    modes = [0o644, 0o600, 0o755, 0o444, 0o4755, 0o2750, 0o640, 0o000, 0o1777 & 0o777]
    owners = [(0, 0), (1000, 1000), (0, 1000), (65534, 65534)]
    files = []
    for i in range(nfiles):
        d = rng.choice(dirs[:-2] if i % 3 else ["many"])
        name = names[i] if i < len(names) else f"f{i:04d}" + rng.choice(["", ".c", ".h", ".txt"])
        size = sizes[i % len(sizes)] if i < 3 * len(sizes) else rng.choice(
            [rng.randint(0, 5000), rng.randint(0, 300000)])
        data = words(rng, size) if rng.random() < 0.6 else rng.randbytes(size)
        p = root / d / name
        p.write_bytes(data)
        files.append(p)
    for i, p in enumerate(files):
        uid, gid = owners[i % len(owners)]
        os.chown(p, uid, gid)
        os.chmod(p, modes[i % len(modes)])
    # xattrs on some files and on a directory
    for i, p in enumerate(files[:12]):
        os.setxattr(p, "user.comment", f"file {i} ✓".encode())
        if i % 3 == 0:
            os.setxattr(p, "user.bin", bytes(range(256)) * 2)
    os.setxattr(root / "a", "user.dir", b"directory value")
    # hard links, within and across directories
    os.link(files[20], root / "a" / "hardlink-1")
    os.link(files[20], root / "with space" / "hardlink-2")
    os.link(files[21], root / "many" / "hardlink-3")
    # symlinks
    os.symlink("b/c", root / "a" / "rel-dir-link")
    os.symlink("../" + os.path.relpath(files[5], root), root / "a" / "rel-file-link")
    os.symlink("/etc/hostname", root / "abs-link")
    os.symlink("does/not/exist", root / "dangling")
    os.symlink("long-component/" * 66 + "end", root / "long-target")
    os.symlink("ünïcödé/tårget", root / "utf8-link")
    os.lchown(root / "abs-link", 1000, 1000)
    # a read-only directory with a file in it
    ro = root / "readonly"
    ro.mkdir()
    (ro / "inside").write_bytes(b"in a read-only directory\n")
    os.chmod(ro, 0o555)
    os.chmod(root / "private", 0o700)
    os.chmod(root / "setgid", 0o2775)
    os.chown(root / "setgid", 0, 1000)
    # times: ns precision, 1969, 1980, 2100; symlinks get their own; directories last
    stamps = [1_234_567_890_123_456_789, -1_000_000_001, 315_532_800_000_000_000,
              4_102_444_800_999_999_999, 1_700_000_000_000_000_001]
    everything = []
    for dirpath, dirnames, filenames in os.walk(root):
        everything += [pathlib.Path(dirpath) / n for n in dirnames + filenames]
    everything.sort(key=lambda p: (-len(p.parts), str(p)))
    for i, p in enumerate(everything):
        t = stamps[i % len(stamps)] + rng.randint(0, 10**9 - 1) // 7
        os.utime(p, ns=(t, t), follow_symlinks=False)
    os.utime(root, ns=(stamps[0], stamps[0]))
    return root


def _hash_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _xattrs(path):
    names = sorted(n for n in os.listxattr(path, follow_symlinks=False)
                   if n.startswith("user."))
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}


def tree_snapshot(root, contents=True, xattrs=True, nlink=True, dir_mtime=True,
                  symlink_mtime=True):
    """relative path -> the attributes tools are expected to keep. Leaves out what is
    not comparable between filesystems: atime, ctime, st_ino, st_dev, st_blocks and
    a directory's st_size. Hard links show as a shared 'group' (the first name)."""
    root = pathlib.Path(root)
    snap = {}
    first_name = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in [""] + sorted(dirnames + filenames) if dirpath == str(root) else sorted(
                dirnames + filenames):
            p = pathlib.Path(dirpath) / name
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            attrs = {"type": stat.filemode(st.st_mode)[0], "mode": oct(stat.S_IMODE(st.st_mode)),
                     "uid": st.st_uid, "gid": st.st_gid}
            if not stat.S_ISLNK(kind) or symlink_mtime:
                if not stat.S_ISDIR(kind) or dir_mtime:
                    attrs["mtime_ns"] = st.st_mtime_ns
            if stat.S_ISLNK(kind):
                attrs["target"] = os.readlink(p)
                attrs["size"] = st.st_size
            elif stat.S_ISREG(kind):
                attrs["size"] = st.st_size
                if contents:
                    attrs["sha256"] = _hash_file(p)
                if nlink:
                    attrs["nlink"] = st.st_nlink
                    attrs["group"] = first_name.setdefault((st.st_dev, st.st_ino), rel)
            elif stat.S_ISDIR(kind) and nlink:
                attrs["nlink"] = st.st_nlink
            if xattrs and not stat.S_ISLNK(kind):
                attrs["xattrs"] = _xattrs(p)
            snap[rel] = attrs
    return snap


def tree_differences(expected, got, **kw):
    """Readable differences between two trees (or snapshots)."""
    a = expected if isinstance(expected, dict) else tree_snapshot(expected, **kw)
    b = got if isinstance(got, dict) else tree_snapshot(got, **kw)
    out = []
    for rel in sorted(a.keys() | b.keys()):
        if rel not in b:
            out.append(f"missing: {rel!r}")
        elif rel not in a:
            out.append(f"unexpected: {rel!r}")
        else:
            for k in sorted(a[rel].keys() | b[rel].keys()):
                if a[rel].get(k) != b[rel].get(k):
                    va, vb = a[rel].get(k), b[rel].get(k)
                    out.append(f"{rel!r}: {k}: expected {va!r:.200}, got {vb!r:.200}")
    return out


def assert_same_tree(expected, got, **kw):
    diffs = tree_differences(expected, got, **kw)
    assert not diffs, f"{len(diffs)} differences, first ones:\n" + "\n".join(diffs[:30])
