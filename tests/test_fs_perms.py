"""Permission checks of mindbfs mounted with allow_other, as the user nobody.

Each case prepares the same files as root on a mindbfs mount and on a tmpfs,
then runs a few lines of Python as nobody (uid/gid 65534, no supplementary
groups, through setpriv) on each and compares the outcome (a value, or the
errno's name) and afterwards the two trees (owners and modes included).
A last test checks that without allow_other nobody cannot even stat the
mount point.
"""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from conftest import require_ci_or_skip
from test_fs_posix import assert_same_tree, slug, write_file

NOBODY = 65534
OTHER = 1000  # a third user, owner of files nobody may not touch

RUNNER = r"""
import errno, json, os, stat, subprocess, sys
R = sys.argv[1]
def P(*parts):
    return os.path.join(R, *parts)
ns = {"os": os, "stat": stat, "subprocess": subprocess, "P": P, "R": R, "result": None}
try:
    exec(sys.argv[2], ns)
    out = ["ok", repr(ns["result"])]
except OSError as e:
    out = ["err", errno.errorcode.get(e.errno, str(e.errno))]
except Exception as e:
    out = ["exception", type(e).__name__ + ": " + str(e)]
print(json.dumps(out))
"""


def as_nobody(root, code):
    """Runs `code` (Python; may set `result`) as nobody with R = root."""
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "/usr/bin/python3", "-I", "-B", "-c", RUNNER, os.fspath(root), code]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0 and r.stdout.strip(), (
        f"the nobody runner failed ({r.returncode}): {r.stderr}")
    kind, value = json.loads(r.stdout.strip().splitlines()[-1])
    return value if kind != "ok" else ("ok", value)


@pytest.fixture
def base_dir():
    """A 0755 directory of its own under /tmp, which nobody can reach.

    Not pytest's tmp_path: pytest's base temporary directory is 0700, and a
    pytest session starting meanwhile sets it back to 0700 if a test opened it."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="mindbfs-perms-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield base
    mounted = [p for p in base.iterdir() if os.path.ismount(p)]
    for p in mounted:
        subprocess.run(["umount", "-l", str(p)], capture_output=True)
    if not any(os.path.ismount(p) for p in base.iterdir()):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_tmpfs(base_dir):
    d = base_dir / "tmpfs"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        require_ci_or_skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", str(d)], capture_output=True)


class PermPair:
    def __init__(self, fs, ref):
        self.fs = fs
        self.mnt = fs.mnt
        self.ref = pathlib.Path(ref)

    def setup(self, fn):
        fn(self.ref)
        fn(self.mnt)

    def nobody(self, what, code, expect):
        want = as_nobody(self.ref, code)
        assert want == expect, (
            f"{what}: tmpfs answered {want!r} to nobody, the test expects {expect!r}")
        got = as_nobody(self.mnt, code)
        assert got == want, f"{what} (as nobody): tmpfs {want!r}, mindbfs {got!r}"
        return got

    def check(self):
        assert_same_tree(self.ref, self.mnt)


@pytest.fixture
def perm_pair(base_dir, own_tmpfs, mount_factory):
    fs = mount_factory(base_dir / "store", base_dir / "mnt", options=["allow_other"])
    for root in (fs.mnt, own_tmpfs):
        os.chown(root, 0, 0)
        os.chmod(root, 0o755)
    pair = PermPair(fs, own_tmpfs)
    # the control: nobody reaches both roots at all
    pair.nobody("stat the root", "result = oct(os.stat(R).st_mode)", ("ok", "'0o40755'"))
    return pair


def _file(name, data=b"root's data\n", mode=0o644, uid=0, gid=0):
    def make(r):
        write_file(r / name, data)
        os.chown(r / name, uid, gid)
        os.chmod(r / name, mode)
    return make


def _dir(name, mode=0o755, uid=0, gid=0):
    def make(r):
        os.mkdir(r / name)
        os.chown(r / name, uid, gid)
        os.chmod(r / name, mode)
    return make


def _all(*fns):
    def make(r):
        for fn in fns:
            fn(r)
    return make


OK_NONE = ("ok", "None")

CASES = {
    # name: (setup as root, code as nobody, what tmpfs answers)
    "read a 0600 root file": (
        _file("f", mode=0o600), "result = open(P('f'), 'rb').read()", "EACCES"),
    "read a 0644 root file": (
        _file("f", mode=0o644), "result = open(P('f'), 'rb').read()",
        ("ok", "b\"root's data\\n\"")),
    "write a 0644 root file": (
        _file("f"), "os.open(P('f'), os.O_WRONLY)", "EACCES"),
    "append to a 0644 root file": (
        _file("f"), "os.open(P('f'), os.O_WRONLY | os.O_APPEND)", "EACCES"),
    "write a 0666 root file": (
        _file("f", mode=0o666),
        "fd = os.open(P('f'), os.O_WRONLY | os.O_APPEND); os.write(fd, b'nobody'); os.close(fd)",
        OK_NONE),
    "O_TRUNC a 0644 root file": (
        _file("f"), "os.open(P('f'), os.O_RDONLY | os.O_TRUNC)", "EACCES"),
    "create in a 0755 root dir": (
        _dir("d"), "os.open(P('d', 'new'), os.O_CREAT | os.O_WRONLY, 0o644)", "EACCES"),
    "mkdir in a 0755 root dir": (_dir("d"), "os.mkdir(P('d', 'new'))", "EACCES"),
    "symlink in a 0755 root dir": (_dir("d"), "os.symlink('x', P('d', 'new'))", "EACCES"),
    "unlink in a 0755 root dir": (
        _all(_dir("d"), _file("d/f", mode=0o666)), "os.unlink(P('d', 'f'))", "EACCES"),
    "rmdir in a 0755 root dir": (
        _all(_dir("d"), _dir("d/sub", mode=0o777)), "os.rmdir(P('d', 'sub'))", "EACCES"),
    "rename out of a 0755 root dir": (
        _all(_dir("d"), _dir("w", mode=0o777), _file("d/f", mode=0o666)),
        "os.rename(P('d', 'f'), P('w', 'f'))", "EACCES"),
    "rename into a 0755 root dir": (
        _all(_dir("d"), _dir("w", mode=0o777), _file("w/f", uid=NOBODY, gid=NOBODY)),
        "os.rename(P('w', 'f'), P('d', 'f'))", "EACCES"),
    "create in a 0777 dir": (
        _dir("d", mode=0o777),
        "fd = os.open(P('d', 'new'), os.O_CREAT | os.O_WRONLY, 0o640); os.write(fd, b'mine');"
        "os.close(fd); os.mkdir(P('d', 'sub')); os.symlink('new', P('d', 'link'));"
        "result = [(s.st_uid, s.st_gid) for s in map(os.lstat, [P('d', n) for n in "
        "('new', 'sub', 'link')])]",
        ("ok", "[(65534, 65534), (65534, 65534), (65534, 65534)]")),
    "sticky dir: delete another user's file": (
        _all(_dir("t", mode=0o1777), _file("t/other", mode=0o666, uid=OTHER, gid=OTHER)),
        "os.unlink(P('t', 'other'))", "EPERM"),
    "sticky dir: rename another user's file": (
        _all(_dir("t", mode=0o1777), _file("t/other", mode=0o666, uid=OTHER, gid=OTHER)),
        "os.rename(P('t', 'other'), P('t', 'mine'))", "EPERM"),
    "sticky dir: rename over another user's file": (
        _all(_dir("t", mode=0o1777), _file("t/other", mode=0o666, uid=OTHER, gid=OTHER),
             _file("t/mine", uid=NOBODY, gid=NOBODY)),
        "os.rename(P('t', 'mine'), P('t', 'other'))", "EPERM"),
    "sticky dir: delete one's own file": (
        _all(_dir("t", mode=0o1777), _file("t/mine", uid=NOBODY, gid=NOBODY)),
        "os.unlink(P('t', 'mine'))", OK_NONE),
    "sticky dir: rmdir another user's dir": (
        _all(_dir("t", mode=0o1777), _dir("t/sub", mode=0o777, uid=OTHER, gid=OTHER)),
        "os.rmdir(P('t', 'sub'))", "EPERM"),
    "chmod a root file": (_file("f", mode=0o666), "os.chmod(P('f'), 0o777)", "EPERM"),
    "chmod one's own file": (
        _file("f", uid=NOBODY, gid=NOBODY),
        "os.chmod(P('f'), 0o4700); result = oct(os.stat(P('f')).st_mode)", ("ok", "'0o104700'")),
    "chmod setgid with a foreign group": (
        _file("f", uid=NOBODY, gid=4242),
        "os.chmod(P('f'), 0o2755); result = oct(os.stat(P('f')).st_mode)", ("ok", "'0o100755'")),
    "chown one's own file to root": (
        _file("f", uid=NOBODY, gid=NOBODY), "os.chown(P('f'), 0, -1)", "EPERM"),
    "chown one's own file to a foreign group": (
        _file("f", uid=NOBODY, gid=NOBODY), "os.chown(P('f'), -1, 4242)", "EPERM"),
    "chown a root file to nobody": (
        _file("f", mode=0o666), f"os.chown(P('f'), {NOBODY}, {NOBODY})", "EPERM"),
    "chown one's own file to itself": (
        _file("f", uid=NOBODY, gid=NOBODY), f"os.chown(P('f'), {NOBODY}, {NOBODY})", OK_NONE),
    "utime explicit on a 0666 root file": (
        _file("f", mode=0o666), "os.utime(P('f'), ns=(1, 2))", "EPERM"),
    "UTIME_NOW on a 0666 root file": (
        _file("f", mode=0o666), "os.utime(P('f'))", OK_NONE),
    "UTIME_NOW on a 0644 root file": (_file("f"), "os.utime(P('f'))", "EACCES"),
    "utime explicit on one's own file": (
        _file("f", uid=NOBODY, gid=NOBODY),
        "os.utime(P('f'), ns=(1, 123456789)); result = os.stat(P('f')).st_mtime_ns",
        ("ok", "123456789")),
    "truncate a 0644 root file": (_file("f"), "os.truncate(P('f'), 0)", "EACCES"),
    "truncate a 0666 root file": (
        _file("f", mode=0o666), "os.truncate(P('f'), 3); result = os.stat(P('f')).st_size",
        ("ok", "3")),
    "setxattr user.* on a 0644 root file": (
        _file("f"), "os.setxattr(P('f'), 'user.x', b'v')", "EACCES"),
    "setxattr user.* on a 0666 root file": (
        _file("f", mode=0o666),
        "os.setxattr(P('f'), 'user.x', b'v'); result = os.getxattr(P('f'), 'user.x')",
        ("ok", "b'v'")),
    "getxattr user.* on a 0600 root file": (
        _all(_file("f", mode=0o600), lambda r: os.setxattr(r / "f", "user.x", b"v")),
        "os.getxattr(P('f'), 'user.x')", "EACCES"),
    "setxattr trusted.* on one's own file": (
        _file("f", uid=NOBODY, gid=NOBODY), "os.setxattr(P('f'), 'trusted.x', b'v')", "EPERM"),
    "0711 dir: stat a known child": (
        _all(_dir("d", mode=0o711), _file("d/known")),
        "result = os.stat(P('d', 'known')).st_size", ("ok", "12")),
    "0711 dir: read a known child": (
        _all(_dir("d", mode=0o711), _file("d/known")),
        "result = open(P('d', 'known'), 'rb').read()", ("ok", "b\"root's data\\n\"")),
    "0711 dir: list it": (
        _all(_dir("d", mode=0o711), _file("d/known")), "os.listdir(P('d'))", "EACCES"),
    "0700 dir: stat a child": (
        _all(_dir("d", mode=0o700), _file("d/known")), "os.stat(P('d', 'known'))", "EACCES"),
    "group bits decide for the group": (
        _file("f", mode=0o604, gid=NOBODY), "open(P('f'), 'rb').read()", "EACCES"),
    "group read": (
        _file("f", mode=0o640, gid=NOBODY), "result = len(open(P('f'), 'rb').read())",
        ("ok", "12")),
    "access()": (
        _file("f"),
        "result = (os.access(P('f'), os.R_OK), os.access(P('f'), os.W_OK), "
        "os.access(P('f'), os.X_OK), os.access(R, os.W_OK))",
        ("ok", "(True, False, False, False)")),
    "setgid dir: new entries take its group": (
        _dir("g", mode=0o2777, gid=4242),
        "os.close(os.open(P('g', 'f'), os.O_CREAT | os.O_WRONLY, 0o644)); os.mkdir(P('g', 'sub'));"
        "result = [(s.st_uid, s.st_gid, oct(s.st_mode)) for s in "
        "(os.stat(P('g', 'f')), os.stat(P('g', 'sub')))]",
        ("ok", "[(65534, 4242, '0o100644'), (65534, 4242, '0o42755')]")),
    "exec a 0644 script": (
        _file("s", b"#!/bin/sh\necho ran\n", mode=0o644),
        "result = subprocess.run([P('s')], capture_output=True).stdout", "EACCES"),
    "exec a 0755 script": (
        _file("s", b"#!/bin/sh\necho ran\n", mode=0o755),
        "result = subprocess.run([P('s')], capture_output=True).stdout", ("ok", "b'ran\\n'")),
    "exec a 0700 root script": (
        _file("s", b"#!/bin/sh\necho ran\n", mode=0o700),
        "result = subprocess.run([P('s')], capture_output=True).stdout", "EACCES"),
    "a write clears setuid and setgid": (
        _file("f", mode=0o6777),
        "fd = os.open(P('f'), os.O_WRONLY | os.O_APPEND); os.write(fd, b'x'); os.close(fd);"
        "result = oct(os.stat(P('f')).st_mode)", ("ok", "'0o100777'")),
    "a truncate clears setuid and setgid": (
        _file("f", mode=0o6777),
        "os.truncate(P('f'), 1); result = oct(os.stat(P('f')).st_mode)", ("ok", "'0o100777'")),
    "hard link to a root 0600 file": (
        _all(_file("f", mode=0o600), _dir("w", mode=0o777)),
        "os.link(P('f'), P('w', 'l'))", "EPERM"),
}


@pytest.mark.parametrize("case", list(CASES), ids=slug)
def test_as_nobody(perm_pair, case):
    setup, code, expect = CASES[case]
    perm_pair.setup(setup)
    perm_pair.nobody(case, code, expect)
    perm_pair.check()


def test_without_allow_other_nobody_is_refused(base_dir, mount_factory):
    fs = mount_factory(base_dir / "store", base_dir / "mnt")
    os.chmod(fs.mnt, 0o755)
    write_file(fs.mnt / "f", b"x")
    os.chmod(fs.mnt / "f", 0o644)
    # nobody reaches the directory holding the mount point ...
    listing = as_nobody(base_dir, "result = 'mnt' in os.listdir(R)")
    assert listing == ("ok", "True"), listing
    # ... but not the mount itself
    assert as_nobody(base_dir, "os.stat(P('mnt'))") == "EACCES"
    assert as_nobody(base_dir, "os.listdir(P('mnt'))") == "EACCES"
    assert as_nobody(base_dir, "open(P('mnt', 'f'), 'rb').read()") == "EACCES"
    # root still can
    assert os.listdir(fs.mnt) == ["f"]
