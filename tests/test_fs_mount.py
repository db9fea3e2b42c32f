"""Starting mindbfs: the command line, its options, its errors, detaching, and
mounting through mount(8) and fstab."""

import errno
import hashlib
import json
import os
import pathlib
import re
import stat
import subprocess
import sys

import pytest

from conftest import (Mount, build_dir, find_daemon_pids, is_mounted, mindb_path, mindbfs_path,
                      pid_alive, require_ci_or_skip, wait_until)

OPTIONS_WITH_DEFAULTS = {
    # option name in --help -> how its default is written
    "compression": r"\b3\b",
    "cache_size": r"\b32\s*M",
    "dirty_size": r"\b32\s*M",
    "checkpoint_interval": r"\b30\b",
    "attr_timeout": r"\b1(\.0*)?\b",
    "entry_timeout": r"\b1(\.0*)?\b",
    "negative_timeout": r"\b1(\.0*)?\b",
}
FLAG_OPTIONS = ["sync", "writeback_cache", "no_writeback_cache", "ro"]


def mindbfs(*args, cwd=None, timeout=30, env=None):
    """Runs mindbfs with pipes; a detached daemon must not keep them open."""
    argv = [str(mindbfs_path())] + [os.fspath(a) for a in args]
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout, cwd=cwd, env=env,
                               stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv}: no exit within {timeout} s (a detached daemon keeping "
                    "stdout/stderr open makes `$(mindbfs ...)` hang too)")


def mindb(*args, expect=0, input=None):
    argv = [str(mindb_path())] + [os.fspath(a) for a in args]
    r = subprocess.run(argv, capture_output=True, input=input, timeout=120)
    assert expect is None or r.returncode == expect, (
        f"{argv}: exit {r.returncode}, expected {expect}\n{r.stderr.decode(errors='replace')}")
    return r


def store_with_data(path):
    mindb("init", path)
    mindb("put", path, "dir/key", "-", input=b"precious\n" * 1000)
    return path


def assert_store_intact(path):
    mindb("check", path)
    assert mindb("get", path, "dir/key").stdout == b"precious\n" * 1000


def store_files_digest(path):
    """Hash of every file of a store directory except its lock."""
    h = hashlib.sha256()
    for p in sorted(pathlib.Path(path).rglob("*")):
        if p.is_file() and p.name != "LOCK":
            h.update(str(p.relative_to(path)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def assert_startup_error(r, keyword):
    """Non-zero exit, nothing on stdout, and one stderr line "mindbfs: ..." that
    matches keyword (a regex)."""
    err = r.stderr.decode(errors="replace")
    assert r.returncode != 0, f"exit 0; stderr: {err}"
    assert r.stdout == b"", r.stdout.decode(errors="replace")
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mindbfs: "), (
        f"expected one line starting 'mindbfs: ', got:\n{err}")
    assert re.search(keyword, lines[0], re.IGNORECASE), f"{keyword!r} not in: {lines[0]}"


def nothing_mounted(store, mnt):
    assert not is_mounted(mnt), f"{mnt} is mounted"
    assert wait_until(lambda: not find_daemon_pids(store, mnt), 10), (
        f"a mindbfs process for {store} is still running: {find_daemon_pids(store, mnt)}")


def use_mount(mnt, name="hello", data=b"hello from the test\n"):
    (mnt / name).write_bytes(data)
    assert (mnt / name).read_bytes() == data
    return data


# ---- the program explains itself ----------------------------------------------------------


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_option_with_its_default(flag):
    r = mindbfs(flag)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    out = r.stdout.decode()
    assert "STORE_DIR" in out and "MOUNTPOINT" in out, out
    for opt in ["-f", "-d", "-o"]:
        assert re.search(rf"(^|\s){opt}\b", out, re.M), f"{opt} not in --help"
    names = list(OPTIONS_WITH_DEFAULTS) + FLAG_OPTIONS
    positions = {}
    for name in names:
        m = re.search(rf"(?<![\w-]){name}\b", out)
        assert m, f"option {name} not in --help:\n{out}"
        positions[name] = m.start()
    starts = sorted(positions.values()) + [len(out)]
    for name, default in OPTIONS_WITH_DEFAULTS.items():
        start = positions[name]
        end = min(p for p in starts if p > start)
        text = out[start:end]
        assert re.search(r"default", text, re.I) and re.search(default, text), (
            f"--help does not give the default of {name} ({default}):\n{text}")
    wb = out[min(positions["writeback_cache"], positions["no_writeback_cache"]):]
    wb = wb[:300]
    assert re.search(r"default", wb, re.I), (
        f"--help does not say which writeback mode is the default:\n{wb}")


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    r = mindbfs(flag)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    first = r.stdout.decode().splitlines()[0]
    assert re.match(r"mindbfs (version )?\d+\.\d+\.\d+\b", first), first


# ---- start-up errors ----------------------------------------------------------------------


@pytest.mark.parametrize("foreground", [True, False], ids=["fg", "detached"])
@pytest.mark.parametrize("case", ["unknown_option", "missing_mountpoint", "mountpoint_is_file",
                                  "not_a_store", "store_is_file", "no_mountpoint_argument",
                                  "store_in_use"])
def test_startup_error_is_one_line_nonzero_and_mounts_nothing(tmp_path, mount_factory, case,
                                                              foreground):
    store = tmp_path / "store"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = [store, mnt]
    keyword = None
    if case == "unknown_option":
        store_with_data(store)
        args += ["-o", "bogus"]
        keyword = "bogus"
    elif case == "missing_mountpoint":
        store_with_data(store)
        mnt = tmp_path / "no-such-mountpoint"
        args = [store, mnt]
        keyword = "no-such-mountpoint"
    elif case == "mountpoint_is_file":
        store_with_data(store)
        mnt = tmp_path / "a-file"
        mnt.write_bytes(b"not a directory\n")
        args = [store, mnt]
        keyword = "a-file"
    elif case == "not_a_store":
        store.mkdir()
        (store / "notes.txt").write_bytes(b"my notes\n")
        keyword = r"store|mindb"
    elif case == "store_is_file":
        store.write_bytes(b"a file\n")
        keyword = "store"
    elif case == "no_mountpoint_argument":
        store_with_data(store)
        args = [store]
        keyword = r"mount ?point|usage"
    elif case == "store_in_use":
        first = mount_factory(store, tmp_path / "first")
        data = use_mount(first.mnt)
        keyword = rf"in use|busy|locked|\b{first.pid}\b"
    if foreground:
        args.append("-f")
    r = mindbfs(*args)
    assert_startup_error(r, keyword)
    nothing_mounted(store, mnt)
    if case == "not_a_store":
        assert sorted(os.listdir(store)) == ["notes.txt"], "a foreign directory was changed"
        assert (store / "notes.txt").read_bytes() == b"my notes\n"
    elif case == "store_is_file":
        assert store.read_bytes() == b"a file\n"
    elif case == "store_in_use":
        # the first daemon keeps working, and its store is fine afterwards
        assert (first.mnt / "hello").read_bytes() == data
        use_mount(first.mnt, "after")
        first.stop()
        mindb("check", store)
        assert mindb("get", store, "after").stdout == data
    else:
        assert_store_intact(store)


@pytest.mark.parametrize("case", ["unknown_option", "missing_mountpoint", "bad_value"])
def test_failed_start_does_not_create_the_store(tmp_path, case):
    store, mnt = tmp_path / "new-store", tmp_path / "mnt"
    mnt.mkdir()
    args = {"unknown_option": [store, mnt, "-f", "-o", "bogus"],
            "missing_mountpoint": [store, tmp_path / "no-such-mountpoint", "-f"],
            "bad_value": [store, mnt, "-f", "-o", "compression=99"]}[case]
    r = mindbfs(*args)
    assert r.returncode != 0
    nothing_mounted(store, mnt)
    assert not store.exists(), f"a refused start left a store behind: {os.listdir(store)}"


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_missing_or_empty_store_dir_is_created(tmp_path, mount_factory, how):
    store = tmp_path / "new" / "store" if how == "missing" else tmp_path / "store"
    if how == "missing":
        (tmp_path / "new").mkdir()
    else:
        store.mkdir()
    m = mount_factory(store, tmp_path / "mnt")
    data = use_mount(m.mnt)
    m.stop()
    mindb("check", store)
    assert mindb("get", store, "hello").stdout == data


# ---- detaching -------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_detached_start_returns_after_mount_is_visible(tmp_path, relative):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    args = ["store", "mnt"] if relative else [store, mnt]
    r = mindbfs(*args, cwd=tmp_path)
    # checked right away, without polling: it must already be mounted
    mounted = is_mounted(mnt)
    pids = find_daemon_pids(*(args if relative else (store, mnt)))
    m = Mount(store, mnt, foreground=False)
    try:
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        assert mounted, "mindbfs returned before the mount was visible"
        assert len(pids) == 1, f"daemon pids: {pids}"
        m.pid = pids[0]
        assert pid_alive(m.pid)
        data = use_mount(mnt)
        assert subprocess.run(["fusermount3", "-u", str(mnt)]).returncode == 0
        assert wait_until(lambda: not pid_alive(m.pid), 60, 0.05), \
            "the daemon did not exit within 60 s after unmount"
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
        if m.pid and pid_alive(m.pid):
            os.kill(m.pid, 9)
    mindb("check", store)
    assert mindb("get", store, "hello").stdout == data


def test_detached_mount_class_round_trip(tmp_path):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    with Mount(store, mnt, ["compression=5"], foreground=False) as m:
        data = use_mount(m.mnt)
        m.remount()
        assert (m.mnt / "hello").read_bytes() == data
    mindb("check", store)


# ---- a store written by the tool ---------------------------------------------------------


@pytest.mark.parametrize("options", [["ro"], []], ids=["ro", "rw"])
def test_store_written_by_the_tool_shows_its_directories(tmp_path, mount_factory, options):
    """`mindb put STORE a/b/c.txt` makes no key "a" or "a/b": the mount still
    shows them as directories (a read-write mount makes them real ones)."""
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    tool = str(mindb_path())
    subprocess.run([tool, "init", str(store)], check=True)
    for key, value in [("a/b/c.txt", b"deep\n"), ("a/d.txt", b"shallow\n"), ("top", b"t\n")]:
        subprocess.run([tool, "put", str(store), key, "-"], input=value, check=True)
    m = mount_factory(store, mnt, options=options)
    assert sorted(os.listdir(mnt)) == ["a", "top"]
    assert sorted(os.listdir(mnt / "a")) == ["b", "d.txt"]
    assert (mnt / "a" / "b" / "c.txt").read_bytes() == b"deep\n"
    st = os.stat(mnt / "a" / "b")
    assert stat.S_ISDIR(st.st_mode) and st.st_nlink == 2
    # readdir and lookup agree on the inode numbers
    with os.scandir(mnt / "a") as it:
        listed = {e.name: e.inode() for e in it}
    assert listed["d.txt"] == os.stat(mnt / "a" / "d.txt").st_ino
    if options == ["ro"]:
        assert listed["b"] == st.st_ino
        assert os.listxattr(mnt / "a") == []
        with pytest.raises(OSError) as e:
            os.mkdir(mnt / "a" / "x")
        assert e.value.errno == errno.EROFS
    else:
        os.mkdir(mnt / "a" / "x")
        os.setxattr(mnt / "a", "user.k", b"v")
    m.stop()
    keys = subprocess.run([tool, "ls", str(store), "-R"], check=True, capture_output=True,
                          text=True).stdout.split()
    if options == ["ro"]:
        assert keys == ["a/b/c.txt", "a/d.txt", "top"]
    else:
        assert keys == ["a", "a/b", "a/b/c.txt", "a/d.txt", "a/x", "top"]


# ---- read-only -----------------------------------------------------------------------------


def test_ro_mount_reads_and_refuses_every_change_with_erofs(tmp_path, mount_factory):
    store = tmp_path / "store"
    m = mount_factory(store, tmp_path / "mnt")
    mnt = m.mnt
    (mnt / "d").mkdir()
    data = use_mount(mnt, "d/file", b"read me\n" * 5000)
    os.symlink("file", mnt / "d" / "link")
    os.setxattr(mnt / "d" / "file", "user.x", b"1")
    m.stop()
    digest = store_files_digest(store)
    m.remount(["ro"])
    assert (mnt / "d" / "file").read_bytes() == data
    assert os.readlink(mnt / "d" / "link") == "file"
    assert sorted(os.listdir(mnt / "d")) == ["file", "link"]
    assert os.getxattr(mnt / "d" / "file", "user.x") == b"1"
    r = subprocess.run(["touch", str(mnt / "new")], capture_output=True)
    assert r.returncode != 0 and b"Read-only file system" in r.stderr, r.stderr
    r = subprocess.run(["touch", str(mnt / "d" / "file")], capture_output=True)
    assert r.returncode != 0 and b"Read-only file system" in r.stderr, r.stderr
    f = mnt / "d" / "file"
    changes = {
        "create": lambda: os.open(mnt / "new", os.O_WRONLY | os.O_CREAT, 0o644),
        "open for writing": lambda: os.open(f, os.O_WRONLY),
        "open O_TRUNC": lambda: os.open(f, os.O_RDONLY | os.O_TRUNC),
        "truncate": lambda: os.truncate(f, 0),
        "mkdir": lambda: os.mkdir(mnt / "newdir"),
        "rmdir": lambda: os.rmdir(mnt / "d"),
        "unlink": lambda: os.unlink(f),
        "rename": lambda: os.rename(f, mnt / "d" / "renamed"),
        "symlink": lambda: os.symlink("x", mnt / "sl"),
        "link": lambda: os.link(f, mnt / "hl"),
        "chmod": lambda: os.chmod(f, 0o600),
        "chown": lambda: os.chown(f, 1000, 1000),
        "utime": lambda: os.utime(f, (1, 1)),
        "setxattr": lambda: os.setxattr(f, "user.y", b"2"),
        "removexattr": lambda: os.removexattr(f, "user.x"),
    }
    wrong = {}
    for what, change in changes.items():
        try:
            fd = change()
        except OSError as e:
            if e.errno != errno.EROFS:
                wrong[what] = errno.errorcode.get(e.errno, e.errno)
        else:
            wrong[what] = "succeeded"
            if isinstance(fd, int):
                os.close(fd)
    assert not wrong, f"not refused with EROFS: {wrong}"
    assert (mnt / "d" / "file").read_bytes() == data
    m.stop()
    assert store_files_digest(store) == digest, "a read-only mount changed the store's files"
    mindb("check", store)
    assert mindb("get", store, "d/file").stdout == data


def test_ro_refuses_to_create_a_missing_store(tmp_path):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    r = mindbfs(store, mnt, "-f", "-o", "ro")
    assert_startup_error(r, r"store|exist|read-only|ro\b")
    nothing_mounted(store, mnt)


# ---- sync --------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["no_writeback_cache"]], ids=["sync", "sync+nowb"])
def test_sync_option_makes_every_change_durable_without_fsync(tmp_path, mount_factory, extra):
    store = tmp_path / "store"
    m = mount_factory(store, tmp_path / "mnt", ["sync"] + extra)
    mnt = m.mnt
    (mnt / "gone").write_bytes(b"to be removed\n")
    (mnt / "old").write_bytes(b"to be renamed\n")
    data = os.urandom(300_000)
    # A writer that never syncs and keeps its file open while the daemon dies.
    child = subprocess.Popen(
        [sys.executable, "-c", "import os,sys\n"
         "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)\n"
         "data = open(sys.argv[2], 'rb').read()\n"
         "n = 0\n"
         "while n < len(data): n += os.write(fd, data[n:n + 70000])\n"
         "os.mkdir(sys.argv[3] + '/newdir')\n"
         "os.rename(sys.argv[3] + '/old', sys.argv[3] + '/newdir/renamed')\n"
         "os.unlink(sys.argv[3] + '/gone')\n"
         "os.symlink('target', sys.argv[3] + '/symlink')\n"
         "print('done', flush=True)\n"
         "sys.stdin.read()\n",
         str(mnt / "written"), str(_save(tmp_path / "data", data)), str(mnt)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = child.stdout.readline()
        assert line == b"done\n", child.stderr.read().decode(errors="replace")
        m.kill9()
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    m.start()
    assert (mnt / "written").read_bytes() == data
    assert sorted(os.listdir(mnt)) == ["newdir", "symlink", "written"]
    assert (mnt / "newdir" / "renamed").read_bytes() == b"to be renamed\n"
    assert os.readlink(mnt / "symlink") == "target"
    m.stop()
    mindb("check", store)


def _save(path, data):
    path.write_bytes(data)
    return path


# ---- tuning options ---------------------------------------------------------------------------

GOOD_OPTIONS = [
    "compression=1", "compression=9", "compression=19",
    "cache_size=16M", "cache_size=512K", "cache_size=1G",
    "dirty_size=8M", "dirty_size=1G",
    "checkpoint_interval=5", "checkpoint_interval=0",
    "attr_timeout=0", "entry_timeout=0", "negative_timeout=0",
    "attr_timeout=10,entry_timeout=10,negative_timeout=10",
    "sync", "writeback_cache", "no_writeback_cache",
    "compression=9,cache_size=16M,dirty_size=8M,checkpoint_interval=5,attr_timeout=0",
    "fsname=mystore", "subtype=mindbfs", "allow_other", "default_permissions", "max_read=131072",
    "dev,suid,exec,rw,noatime", "nodev,nosuid,noexec", "defaults",
    "noauto,nofail,_netdev,x-systemd.automount,x-systemd.device-timeout=10",
]


@pytest.mark.parametrize("options", GOOD_OPTIONS)
def test_option_accepted_and_store_works(tmp_path, mount_factory, options):
    store = tmp_path / "store"
    m = mount_factory(store, tmp_path / "mnt", options.split(","))
    data = os.urandom(100_000) + b"text " * 50_000
    use_mount(m.mnt, "file", data)
    m.remount()
    assert (m.mnt / "file").read_bytes() == data
    m.stop()
    mindb("check", store)
    assert mindb("get", store, "file").stdout == data


@pytest.mark.parametrize("options", [(), ("no_writeback_cache",)], ids=["writeback", "nowb"])
def test_close_costs_no_flush_request(tmp_path, mount_factory, options):
    # The daemon leaves FLUSH unimplemented (nothing is left to flush when
    # close() asks); the kernel learns that from the first one and stops
    # sending it, so a file's close is its RELEASE alone. libfuse's debug
    # output names each request it receives.
    m = mount_factory(tmp_path / "store", tmp_path / "mnt", ("debug", *options))
    for i in range(20):
        with open(m.mnt / f"f{i}", "wb") as f:
            f.write(b"x" * 4096)
    for i in range(20):
        assert (m.mnt / f"f{i}").read_bytes() == b"x" * 4096
    m.stop()
    log = m.stderr_text()
    assert len(re.findall(r"opcode: RELEASE\b", log)) >= 40, log[-3000:]
    assert len(re.findall(r"opcode: FLUSH\b", log)) <= 1, log[-3000:]


BAD_OPTIONS = [
    ("compression=99", "compression"), ("compression=0", "compression"),
    ("compression=abc", "compression"), ("compression=-1", "compression"),
    ("cache_size=abc", "cache_size"), ("cache_size=10X", "cache_size"),
    ("cache_size=-5M", "cache_size"), ("dirty_size=abc", "dirty_size"),
    ("checkpoint_interval=abc", "checkpoint_interval"),
    ("checkpoint_interval=-5", "checkpoint_interval"),
    ("attr_timeout=abc", "attr_timeout"), ("entry_timeout=-1", "entry_timeout"),
    ("compresion=3", "compresion"), ("writeback", "writeback"),
]


@pytest.mark.parametrize("option,keyword", BAD_OPTIONS, ids=[o for o, _ in BAD_OPTIONS])
def test_bad_option_value_refused(tmp_path, option, keyword):
    store, mnt = store_with_data(tmp_path / "store"), tmp_path / "mnt"
    mnt.mkdir()
    r = mindbfs(store, mnt, "-f", "-o", option)
    assert_startup_error(r, re.escape(keyword))
    nothing_mounted(store, mnt)
    assert_store_intact(store)


# ---- mount(8) and fstab -----------------------------------------------------------------------
#
# mount(8) runs /sbin/mount.fuse3 with PATH removed from the environment, so
# mount.fuse3's `sh -c 'mindbfs ...'` searches only the shell's default PATH
# (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin), as after an
# install. The tests run mount(8) in a private mount namespace where a directory
# holding a `mindbfs` symlink to the build is bind-mounted over /usr/local/sbin:
# the machine's own /usr/local/sbin is untouched, and the FUSE mount exists only
# in that namespace, where the helper below uses it, unmounts it with umount(8)
# and waits for the daemon to exit.

MOUNT8_HELPER = r"""
import json, os, subprocess, sys, time
cfg = json.load(open(sys.argv[1]))
res = {}
mnt = os.path.realpath(cfg["mnt"])

def mounted():
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[4].replace("\\040", " ") == mnt:
            return f[f.index("-") + 1]
    return None

def daemon_pids():
    pids = []
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            argv = open("/proc/%s/cmdline" % e, "rb").read().split(b"\0")
            state = open("/proc/%s/stat" % e).read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if os.path.basename(argv[0]) == b"mindbfs" and mnt.encode() in argv and state != "Z":
            pids.append(int(e))
    return pids

subprocess.run(["mount", "--bind", cfg["bindir"], "/usr/local/sbin"], check=True)
pids = []
try:
    r = subprocess.run(cfg["mount"], capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    res["mount_rc"] = r.returncode
    res["mount_out"] = (r.stdout + r.stderr).decode(errors="replace")
    res["fstype"] = mounted()
    if res["fstype"]:
        pids = daemon_pids()
        res["pids"] = pids
        for name, path in cfg["files"].items():
            data = open(path, "rb").read()
            os.makedirs(os.path.dirname(os.path.join(mnt, name)), exist_ok=True)
            with open(os.path.join(mnt, name), "wb") as f:
                f.write(data)
            with open(os.path.join(mnt, name), "rb") as f:
                res.setdefault("read_back", {})[name] = f.read() == data
        r = subprocess.run(["umount", mnt], capture_output=True, timeout=60)
        res["umount_rc"] = r.returncode
        res["umount_out"] = (r.stdout + r.stderr).decode(errors="replace")
        res["mounted_after_umount"] = mounted() is not None
        deadline = time.monotonic() + 60
        while daemon_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        res["daemon_exited"] = not daemon_pids()
    else:
        res["pids"] = daemon_pids()
finally:
    if mounted():
        subprocess.run(["umount", "-l", mnt])
    for pid in daemon_pids():
        os.kill(pid, 9)
print(json.dumps(res))
"""


def mount8(tmp_path, argv, store, mnt, files=None):
    """Runs mount(8) ARGV in a private mount namespace (see above), writes files
    through the mount, unmounts it with umount(8) and waits for the daemon to
    exit. Returns what happened, as a dict."""
    bindir = tmp_path / "usr-local-sbin"
    bindir.mkdir()
    (bindir / "mindbfs").symlink_to(mindbfs_path())
    datafiles = {}
    for i, (name, data) in enumerate((files or {}).items()):
        datafiles[name] = str(_save(tmp_path / f"file{i}.data", data))
    cfg = tmp_path / "mount8.json"
    cfg.write_text(json.dumps({"bindir": str(bindir), "mnt": str(mnt), "mount": argv,
                               "files": datafiles}))
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c",
                        MOUNT8_HELPER, str(cfg)], capture_output=True, timeout=180,
                       env=mount_env())
    if r.returncode != 0 and b"unshare" in r.stderr and b"Traceback" not in r.stderr:
        require_ci_or_skip("cannot make a mount namespace: " + r.stderr.decode(errors="replace"))
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return json.loads(r.stdout)


def mount_env():
    env = dict(os.environ)
    env["PATH"] = f"{build_dir() / 'fuse'}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def check_mount8_round_trip(res, store, files):
    assert res["mount_rc"] == 0, f"mount(8) failed: {res['mount_out']}"
    assert res["fstype"] == "fuse.mindbfs", res
    assert len(res["pids"]) == 1, f"mindbfs processes: {res['pids']}"
    assert res["read_back"] == {name: True for name in files}, res
    assert res["umount_rc"] == 0, res["umount_out"]
    assert not res["mounted_after_umount"]
    assert res["daemon_exited"], "the daemon did not exit within 60 s after umount"
    # The daemon has exited: the store is free for the CLI right away.
    assert wait_until(lambda: mindb("check", store, expect=None).returncode == 0, 60, 0.1), (
        mindb("check", store, expect=None).stderr.decode(errors="replace"))
    for name, data in files.items():
        assert mindb("get", store, name).stdout == data


@pytest.mark.parametrize("opts", ["defaults",
                                  "noauto,_netdev,nofail,x-systemd.automount,compression=5"],
                         ids=["defaults", "noauto-netdev-nofail-automount-compression"])
def test_fstab_line_mounts_with_mount_8(tmp_path, opts):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# test fstab\n{store} {mnt} fuse.mindbfs {opts} 0 0\n")
    files = {"from-fstab": os.urandom(50_000), "sub/second": b"second\n"}
    res = mount8(tmp_path, ["mount", "--fstab", str(fstab), str(mnt)], store, mnt, files)
    check_mount8_round_trip(res, store, files)


def test_mount_t_fuse_mindbfs_with_options(tmp_path):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    files = {"via-mount-t": b"abc" * 100_000}
    res = mount8(tmp_path, ["mount", "-t", "fuse.mindbfs", str(store), str(mnt), "-o",
                            "compression=5"], store, mnt, files)
    check_mount8_round_trip(res, store, files)


def test_mount_8_reports_a_failing_start(tmp_path):
    store, mnt = tmp_path / "store", tmp_path / "mnt"
    mnt.mkdir()
    res = mount8(tmp_path, ["mount", "-t", "fuse.mindbfs", str(store), str(mnt), "-o",
                            "compression=99"], store, mnt)
    assert res["mount_rc"] != 0
    assert "compression" in res["mount_out"], res["mount_out"]
    assert res["fstype"] is None and res["pids"] == []
