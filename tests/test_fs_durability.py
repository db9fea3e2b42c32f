"""Durability of mindbfs across a crash of the daemon.

A program (a Python child process) makes changes and calls fsync, fdatasync,
msync or fsync on a directory; once that call has returned, the daemon gets
SIGKILL. After a fresh mount the change must be there, and `mindb check`
must find the store sound. Changes nobody synced may be lost, but never the
store. SIGTERM and SIGINT are a clean shutdown: everything is kept.
"""

import os
import random
import selectors
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from conftest import assert_same_tree, is_mounted, make_sample_tree, tree_snapshot, words

KIB = 1024
MIB = 1024 * KIB

# Helpers for the child programs.
PRELUDE = textwrap.dedent("""
    import os, sys, mmap

    def fsync_dir(path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_all(fd, data, offset=None):
        view = memoryview(data)
        while view:
            n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
            if offset is not None:
                offset += n
            view = view[n:]

    def durable_file(path, data, mode=0o644):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        fsync_dir(os.path.dirname(path))

    def done():
        # The syscalls above have returned: the parent may now crash the daemon.
        # Open files stay open until the parent closes our stdin.
        print("done", flush=True)
        sys.stdin.read()
""")


class Child:
    """A program run against the mount; its files stay open until release()."""

    def __init__(self, script, *args, timeout=120):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + textwrap.dedent(script), *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
        sel.close()
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"done":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            why = "exited" if ready else f"no answer in {timeout} s"
            pytest.fail(f"child program did not finish its work ({why}):\n"
                        f"{err.decode(errors='replace')}")

    def release(self):
        """Lets the child close its files and exit (after a crash, with errors)."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_child(script, *args):
    """Runs a child to completion (its files closed)."""
    c = Child(textwrap.dedent(script) + "\ndone()\n", *args)
    c.release()
    assert c.proc.returncode == 0, c.proc.stderr.read().decode(errors="replace")


def crash(fs, *children):
    """SIGKILL of the daemon while the children keep their files open."""
    fs.kill9()
    assert not is_mounted(fs.mnt)
    for c in children:
        c.release()


def check_store(fs):
    """`mindb check STORE` exits 0 (the store is not mounted)."""
    fs.cli("check")


def content(seed, size):
    rng = random.Random(seed)
    return words(rng, size // 2) + rng.randbytes(size - size // 2)


# ---- fsync and fdatasync of a file ------------------------------------------------

WRITE_SCRIPT = """
    path, data_path, how = sys.argv[1], sys.argv[2], sys.argv[3]
    data = bytearray(open(data_path, "rb").read())
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    # written out of order, in pieces, with a region rewritten
    half = len(data) // 2
    write_all(fd, data[half:], half)
    write_all(fd, bytes(half), 0)
    write_all(fd, data[:half], 0)
    os.fchmod(fd, 0o640)
    getattr(os, how)(fd)
    st = os.fstat(fd)
    print(st.st_size, st.st_mtime_ns, oct(st.st_mode), file=sys.stderr, flush=True)
    done()
"""


@pytest.mark.parametrize("how", ["fsync", "fdatasync"])
def test_file_sync_survives_sigkill_with_file_still_open(fs_wb, tmp_path, how):
    data = content(1, 3 * MIB + 12345)
    (tmp_path / "data").write_bytes(data)
    (fs_wb.mnt / "dir").mkdir()
    run_child("fsync_dir(sys.argv[1])", fs_wb.mnt)  # the directory itself is durable
    target = fs_wb.mnt / "dir" / "file"
    child = Child(WRITE_SCRIPT, target, tmp_path / "data", how)
    before = os.stat(target)
    crash(fs_wb, child)
    if how == "fsync":
        # the daemon recovers the store, then the CLI sees the same
        fs_wb.start()
        st = os.stat(target)
        assert target.read_bytes() == data
        assert st.st_size == len(data)
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert st.st_mtime_ns == before.st_mtime_ns
        fs_wb.stop()
        check_store(fs_wb)
        assert fs_wb.cli("get", "dir/file").stdout == data
    else:
        # the CLI opens the crashed store first, then the daemon
        check_store(fs_wb)
        assert fs_wb.cli("get", "dir/file").stdout == data
        fs_wb.start()
        assert target.read_bytes() == data
        assert os.stat(target).st_size == len(data)
        fs_wb.stop()
        check_store(fs_wb)


def test_fsync_after_truncate_and_append_survives_sigkill(fs_wb, tmp_path):
    data = content(2, 700 * KIB)
    (tmp_path / "data").write_bytes(data)
    path = fs_wb.mnt / "log"
    child = Child("""
        path, data = sys.argv[1], open(sys.argv[2], "rb").read()
        durable_file(path, data)
        fd = os.open(path, os.O_WRONLY)
        os.ftruncate(fd, 100 * 1024 + 3)
        os.fsync(fd)
        os.close(fd)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        write_all(fd, b"appended\\n" * 1000)
        os.fdatasync(fd)
        done()
    """, path, tmp_path / "data")
    crash(fs_wb, child)
    fs_wb.start()
    assert path.read_bytes() == data[:100 * KIB + 3] + b"appended\n" * 1000
    fs_wb.stop()
    check_store(fs_wb)


def test_msync_of_shared_mapping_survives_sigkill(fs_wb):
    path = fs_wb.mnt / "mapped"
    page = 4096
    child = Child("""
        path = sys.argv[1]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(fd, 5 * 4096 + 7)
        m = mmap.mmap(fd, 5 * 4096 + 7)
        for i in range(5):
            m[i * 4096:i * 4096 + 6] = b"page%d!" % i
        m[-7:] = b"THE END"
        m.flush()
        done()
    """, path)
    crash(fs_wb, child)
    fs_wb.start()
    expected = bytearray(5 * page + 7)
    for i in range(5):
        expected[i * page:i * page + 6] = b"page%d!" % i
    expected[-7:] = b"THE END"
    assert path.read_bytes() == expected
    fs_wb.stop()
    check_store(fs_wb)


# ---- fsync of a directory -----------------------------------------------------------


def test_dir_fsync_after_creating_entries_survives_sigkill(fs_wb, tmp_path):
    data = content(3, 200 * KIB)
    (tmp_path / "data").write_bytes(data)
    m = fs_wb.mnt
    run_child("durable_file(sys.argv[1], b'linked\\n')", m / "existing")
    child = Child("""
        mnt, data = sys.argv[1], open(sys.argv[2], "rb").read()
        fd = os.open(mnt + "/synced", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        write_all(fd, data)
        os.fsync(fd)
        empty = os.open(mnt + "/empty", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.mkdir(mnt + "/sub", 0o750)
        os.symlink("synced", mnt + "/symlink")
        os.link(mnt + "/existing", mnt + "/hardlink")
        fsync_dir(mnt)
        done()
    """, m, tmp_path / "data")
    crash(fs_wb, child)
    fs_wb.start()
    assert sorted(os.listdir(m)) == ["empty", "existing", "hardlink", "sub", "symlink", "synced"]
    assert (m / "synced").read_bytes() == data
    assert stat.S_ISREG(os.lstat(m / "empty").st_mode)
    assert stat.S_IMODE(os.lstat(m / "empty").st_mode) == 0o600
    assert stat.S_ISDIR(os.lstat(m / "sub").st_mode)
    assert stat.S_IMODE(os.lstat(m / "sub").st_mode) == 0o750
    assert os.readlink(m / "symlink") == "synced"
    assert (m / "hardlink").read_bytes() == b"linked\n"
    assert os.stat(m / "hardlink").st_nlink == 2
    assert os.stat(m / "hardlink").st_ino == os.stat(m / "existing").st_ino
    fs_wb.stop()
    check_store(fs_wb)


def test_dir_fsync_after_rename_survives_sigkill(fs_wb):
    m = fs_wb.mnt
    (m / "d1").mkdir()
    (m / "d2").mkdir()
    run_child("""
        durable_file(sys.argv[1] + "/d1/old", b"renamed in place\\n")
        durable_file(sys.argv[1] + "/d1/moving", b"moved to d2\\n")
        fsync_dir(sys.argv[1])
    """, m)
    child = Child("""
        mnt = sys.argv[1]
        os.rename(mnt + "/d1/old", mnt + "/d1/new")
        os.rename(mnt + "/d1/moving", mnt + "/d2/moved")
        fsync_dir(mnt + "/d1")
        fsync_dir(mnt + "/d2")
        done()
    """, m)
    crash(fs_wb, child)
    fs_wb.start()
    assert sorted(os.listdir(m / "d1")) == ["new"]
    assert sorted(os.listdir(m / "d2")) == ["moved"]
    assert (m / "d1" / "new").read_bytes() == b"renamed in place\n"
    assert (m / "d2" / "moved").read_bytes() == b"moved to d2\n"
    fs_wb.stop()
    check_store(fs_wb)
    assert fs_wb.cli("get", "d2/moved").stdout == b"moved to d2\n"


def test_rename_over_existing_then_dir_fsync_survives_sigkill(fs_wb, tmp_path):
    old = content(4, 300 * KIB)
    new = content(5, 250 * KIB + 1)
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "new").write_bytes(new)
    m = fs_wb.mnt
    run_child("durable_file(sys.argv[1] + '/target', open(sys.argv[2], 'rb').read())",
              m, tmp_path / "old")
    child = Child("""
        mnt, data = sys.argv[1], open(sys.argv[2], "rb").read()
        fd = os.open(mnt + "/.target.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        write_all(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(mnt + "/.target.tmp", mnt + "/target")
        fsync_dir(mnt)
        done()
    """, m, tmp_path / "new")
    crash(fs_wb, child)
    fs_wb.start()
    assert sorted(os.listdir(m)) == ["target"]
    assert (m / "target").read_bytes() == new
    fs_wb.stop()
    check_store(fs_wb)
    assert fs_wb.cli("get", "target").stdout == new


def test_dir_fsync_after_unlink_and_rmdir_survives_sigkill(fs_wb):
    m = fs_wb.mnt
    (m / "gone-dir").mkdir()
    run_child("""
        durable_file(sys.argv[1] + "/gone", b"x" * 10000)
        durable_file(sys.argv[1] + "/kept", b"kept\\n")
        fsync_dir(sys.argv[1])
    """, m)
    child = Child("""
        os.unlink(sys.argv[1] + "/gone")
        os.rmdir(sys.argv[1] + "/gone-dir")
        fsync_dir(sys.argv[1])
        done()
    """, m)
    crash(fs_wb, child)
    fs_wb.start()
    assert sorted(os.listdir(m)) == ["kept"]
    fs_wb.stop()
    check_store(fs_wb)


# ---- what nobody synced -----------------------------------------------------------------


def test_unsynced_changes_may_be_lost_but_store_stays_sound(fs, tmp_path):
    data = content(6, 2 * MIB)
    (tmp_path / "data").write_bytes(data)
    m = fs.mnt
    run_child("durable_file(sys.argv[1] + '/durable', open(sys.argv[2], 'rb').read())",
              m, tmp_path / "data")
    # Writers still busy when the daemon dies: new files, appends, renames.
    child = Child("""
        import threading
        mnt = sys.argv[1]
        os.makedirs(mnt + "/busy", exist_ok=True)
        started = threading.Event()
        def churn():
            i = 0
            while True:
                try:
                    p = "%s/busy/f%d" % (mnt, i % 40)
                    with open(p + ".tmp", "wb") as f:
                        f.write(os.urandom(1000 + 37 * i % 300000))
                    os.rename(p + ".tmp", p)
                    with open(mnt + "/busy/log", "ab") as f:
                        f.write(b"entry %d\\n" % i)
                except OSError:
                    return
                i += 1
                if i == 60:
                    started.set()
        for _ in range(3):
            threading.Thread(target=churn, daemon=True).start()
        started.wait(60)
        done()
    """, m)
    crash(fs, child)
    fs.start()
    assert (m / "durable").read_bytes() == data
    # every file that survived reads completely, without errors
    for dirpath, dirnames, filenames in os.walk(m):
        for n in filenames:
            with open(os.path.join(dirpath, n), "rb") as f:
                f.read()
    fs.stop()
    check_store(fs)


# ---- a clean shutdown by signal -----------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shutdown_exits_0_and_keeps_everything(fs_wb, tmp_path, sig):
    make_sample_tree(fs_wb.mnt / "tree", seed=7, nfiles=80)
    big = content(8, 5 * MIB)
    with open(fs_wb.mnt / "big", "wb") as f:
        f.write(big)
    expected = tree_snapshot(fs_wb.mnt / "tree")
    fs_wb.proc.send_signal(sig)
    try:
        status = fs_wb.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mindbfs still running 60 s after {sig.name}")
    assert status == 0, fs_wb.stderr_text()
    assert not is_mounted(fs_wb.mnt), f"{fs_wb.mnt} still mounted after the daemon exited"
    fs_wb.stop()
    check_store(fs_wb)
    assert fs_wb.cli("get", "big").stdout == big
    fs_wb.start()
    assert (fs_wb.mnt / "big").read_bytes() == big
    assert_same_tree(expected, fs_wb.mnt / "tree")


def test_sigterm_with_files_and_directories_still_open(fs):
    """The kernel sends no RELEASE for what is open when the daemon stops:
    it must still exit 0 and clean (the sanitizer build fails it on a leak)."""
    (fs.mnt / "d").mkdir()
    dir_fd = os.open(fs.mnt / "d", os.O_RDONLY | os.O_DIRECTORY)
    file_fd = os.open(fs.mnt / "d" / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(file_fd, b"open at shutdown")
        os.fsync(file_fd)  # unsynced pages of an open file may stay in the kernel
        os.listdir(dir_fd)
        fs.proc.send_signal(signal.SIGTERM)
        try:
            status = fs.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("mindbfs still running 60 s after SIGTERM")
        assert status == 0, fs.stderr_text()
    finally:
        for fd in (file_fd, dir_fd):
            try:
                os.close(fd)
            except OSError:
                pass  # the connection is gone
    fs.stop()
    assert fs.cli("get", "d/f").stdout == b"open at shutdown"
