"""Real programs on a mindbfs mount: cp, diff, cat, dd, tar, rsync, an editor's
save, vim, mmap. What they write must come back, byte for byte and with the
metadata they preserve, after an unmount and a fresh mount of the store."""

import hashlib
import mmap
import os
import pathlib
import random
import shutil
import stat
import subprocess

import pytest

from conftest import assert_same_tree, make_sample_tree, require_ci_or_skip, words

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def run(argv, *, cwd=None, input=None, expect=0, shell=False, timeout=600):
    r = subprocess.run(argv, cwd=cwd, input=input, capture_output=True, shell=shell,
                       timeout=timeout)
    assert expect is None or r.returncode == expect, (
        f"{argv!r}: exit {r.returncode}, expected {expect}\n"
        f"stdout: {r.stdout[-3000:].decode(errors='replace')}\n"
        f"stderr: {r.stderr[-3000:].decode(errors='replace')}")
    return r


def need(program):
    """tools/setup installs every program used here: in CI a missing one is a
    failure, not a skip."""
    if shutil.which(program) is None:
        require_ci_or_skip(f"{program} is not installed (tools/setup installs it)")


# ---- cp -a of a real tree, diff -r after a remount -------------------------------

INCLUDE = pathlib.Path("/usr/include")
INCLUDE_BUDGET = 60 * MIB


def include_subset():
    """Top-level entries of /usr/include, leaving out the biggest directories until
    the rest fits in INCLUDE_BUDGET; returns (names, bytes, files, symlinks)."""
    sizes = {}
    counts = {}
    for entry in sorted(os.listdir(INCLUDE)):
        p = INCLUDE / entry
        total, files, links = 0, 0, 0
        if p.is_symlink() or not p.is_dir():
            total = p.lstat().st_size
            files, links = (0, 1) if p.is_symlink() else (1, 0)
        else:
            for dirpath, dirnames, filenames in os.walk(p):
                for n in dirnames + filenames:
                    st = os.lstat(os.path.join(dirpath, n))
                    if stat.S_ISLNK(st.st_mode):
                        links += 1
                    elif stat.S_ISREG(st.st_mode):
                        files += 1
                        total += st.st_size
        sizes[entry] = total
        counts[entry] = (files, links)
    chosen = set(sizes)
    for entry in sorted(sizes, key=sizes.get, reverse=True):
        if sum(sizes[e] for e in chosen) <= INCLUDE_BUDGET:
            break
        chosen.discard(entry)
    return (sorted(chosen), sum(sizes[e] for e in chosen),
            sum(counts[e][0] for e in chosen), sum(counts[e][1] for e in chosen))


def test_cp_a_usr_include_then_diff_after_remount(fs, tmp_path):
    names, nbytes, nfiles, nlinks = include_subset()
    # A fresh Debian with tools/setup's packages has well over 1,000 headers.
    if nfiles < 1000 or nlinks < 1:
        require_ci_or_skip(f"/usr/include is too small here: {nfiles} files, {nlinks} symlinks")
    # A private copy: /usr/include could change under a running test.
    src = tmp_path / "src" / "include"
    src.mkdir(parents=True)
    run(["cp", "-a", "--", *[str(INCLUDE / n) for n in names], str(src)])
    os.utime(src, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))

    run(["cp", "-a", str(src), str(fs.mnt)])
    fs.remount()
    r = run(["diff", "-r", "--no-dereference", str(src), str(fs.mnt / "include")], expect=None)
    assert r.returncode == 0 and r.stdout == b"", r.stdout[:3000].decode(errors="replace")
    assert_same_tree(src, fs.mnt / "include")


# ---- cat ------------------------------------------------------------------------


def test_cat_writes_concatenates_appends_and_reads(fs_wb, tmp_path):
    rng = random.Random(1)
    parts = [words(rng, 70_000), rng.randbytes(200_000), b"", b"last line\n"]
    srcs = []
    for i, data in enumerate(parts):
        p = tmp_path / f"part{i}"
        p.write_bytes(data)
        srcs.append(str(p))
    out = fs_wb.mnt / "cat out"
    run(f"cat {' '.join(srcs)} > '{out}'", shell=True)
    run(f"cat '{srcs[0]}' >> '{out}' && cat '{srcs[3]}' >> '{out}'", shell=True)
    expected = b"".join(parts) + parts[0] + parts[3]
    assert run(["cat", str(out)]).stdout == expected
    run(f"cat '{out}' > '{fs_wb.mnt}/copy'", shell=True)
    fs_wb.remount()
    assert run(["cat", str(out), str(fs_wb.mnt / "copy")]).stdout == expected * 2


# ---- dd of 1 GiB -----------------------------------------------------------------


def test_dd_1gib_fsync_then_sha256_after_remount(fs, tmp_path):
    # A pseudo-random pattern whose length is not a power of two: every MiB of
    # the file differs, so a block written to the wrong place changes the hash.
    pattern = random.Random(1234).randbytes(MIB + 4093)
    pfile = tmp_path / "pattern"
    pfile.write_bytes(pattern)
    expected = hashlib.sha256()
    left = GIB
    while left:
        piece = pattern[:left]
        expected.update(piece)
        left -= len(piece)
    big = fs.mnt / "big"
    r = run(f"(while cat '{pfile}'; do :; done) 2>/dev/null | head -c {GIB} | "
            f"dd of='{big}' bs=1M iflag=fullblock conv=fsync status=none", shell=True)
    assert os.stat(big).st_size == GIB
    fs.remount()
    assert os.stat(big).st_size == GIB
    r = run(["sha256sum", str(big)])
    got = r.stdout.split()[0].decode()
    if got != expected.hexdigest():
        # Name the first MiB that differs, for the report.
        with open(big, "rb") as f:
            for i in range(GIB // MIB):
                want = bytes((pattern * 2)[(i * MIB) % len(pattern):][:MIB])
                if f.read(MIB) != want:
                    pytest.fail(f"sha256 differs; first differing MiB: {i}")
        pytest.fail("sha256 differs")
    r = run(f"dd if='{big}' bs=1M skip=1000 count=24 status=none | sha256sum", shell=True)
    tail = hashlib.sha256()
    for i in range(1000, 1024):
        start = (i * MIB) % len(pattern)
        tail.update(((pattern * 2)[start:] + pattern)[:MIB])
    assert r.stdout.split()[0].decode() == tail.hexdigest()


# ---- tar ---------------------------------------------------------------------------

TAR_XATTRS = ["--xattrs", "--xattrs-include=user.*"]


def test_tar_extract_into_mount_and_archive_back_out(fs_wb, tmp_path):
    tree = make_sample_tree(tmp_path / "tree", seed=2)
    archive = tmp_path / "in.tar"
    run(["tar", "--format=posix", *TAR_XATTRS, "-cf", str(archive), "-C", str(tree), "."])
    dest = fs_wb.mnt / "x"
    dest.mkdir()
    run(["tar", *TAR_XATTRS, "-xpf", str(archive), "-C", str(dest)])
    # tar's own comparison: contents, mode, owner, mtime, link targets
    run(["tar", "-df", str(archive), "-C", str(dest)])
    assert_same_tree(tree, dest)
    fs_wb.remount()
    assert_same_tree(tree, dest)
    run(["tar", "-df", str(archive), "-C", str(dest)])
    out_archive = tmp_path / "out.tar"
    run(["tar", "--format=posix", *TAR_XATTRS, "-cf", str(out_archive), "-C", str(dest), "."])
    out = tmp_path / "out"
    out.mkdir()
    run(["tar", *TAR_XATTRS, "-xpf", str(out_archive), "-C", str(out)])
    assert_same_tree(tree, out)


# ---- rsync --------------------------------------------------------------------------


def test_rsync_in_and_out_then_nothing_to_do(fs_wb, tmp_path):
    need("rsync")
    tree = make_sample_tree(tmp_path / "tree", seed=3)
    dest = fs_wb.mnt / "r"
    run(["rsync", "-aHX", f"{tree}/", f"{dest}/"])
    assert_same_tree(tree, dest)
    fs_wb.remount()
    assert_same_tree(tree, dest)
    r = run(["rsync", "-aHX", "--checksum", "-n", "-i", f"{tree}/", f"{dest}/"])
    assert r.stdout == b"", "rsync finds work after a full copy:\n" + r.stdout.decode(
        errors="replace")[:3000]
    out = tmp_path / "out"
    run(["rsync", "-aHX", f"{dest}/", f"{out}/"])
    assert_same_tree(tree, out)

    # An update: two files change (same size, new mtime), one goes, one is new.
    # (rsync -H relinks hard-linked files last, after it set the directory's
    # mtime, so the changed files are ones with a single name.)
    changed = [p for p in sorted(tree.glob("*/f*")) if os.stat(p).st_nlink == 1][:2]
    for p in changed:
        data = bytearray(p.read_bytes() or b"x")
        data[len(data) // 2] ^= 0xFF
        os.chmod(p, 0o644)
        p.write_bytes(bytes(data))
    gone = [p for p in sorted(tree.glob("many/f*")) if os.stat(p).st_nlink == 1][0]
    gone.unlink()
    (tree / "a" / "brand new").write_bytes(b"new file\n" * 1000)
    r = run(["rsync", "-aHX", "--delete", "-i", f"{tree}/", f"{dest}/"])
    assert r.stdout, "rsync saw no change"
    fs_wb.remount()
    # (rsync leaves the mtime of a directory whose entries it changed as the
    # change made it, on any filesystem.)
    assert_same_tree(tree, dest, dir_mtime=False)
    r = run(["rsync", "-aHX", "--checksum", "--delete", "-n", "-i", f"{tree}/", f"{dest}/"])
    assert r.stdout == b"", r.stdout.decode(errors="replace")[:3000]


# ---- editors -------------------------------------------------------------------------


def test_editor_save_by_rename_over(fs_wb):
    d = fs_wb.mnt / "docs"
    d.mkdir()
    doc = d / "doc.txt"
    old = b"first version\n" * 500
    new = b"second, longer version\n" * 700
    doc.write_bytes(old)
    os.chmod(doc, 0o640)
    os.chown(doc, 1000, 1000)
    old_ino = os.stat(doc).st_ino
    reader = os.open(doc, os.O_RDONLY)  # someone still has the old file open
    try:
        # what editors do: write a temporary file next to it, fsync, rename over
        tmp = d / ".doc.txt.swp-save"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            assert os.write(fd, new) == len(new)
            os.fchmod(fd, 0o640)
            os.fchown(fd, 1000, 1000)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, doc)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        assert doc.read_bytes() == new
        assert os.pread(reader, len(old) + 10, 0) == old
    finally:
        os.close(reader)
    st = os.stat(doc)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1000, 1000)
    assert st.st_ino != old_ino
    assert sorted(os.listdir(d)) == ["doc.txt"]
    fs_wb.remount()
    assert doc.read_bytes() == new
    assert sorted(os.listdir(d)) == ["doc.txt"]


@pytest.mark.parametrize("backupcopy", ["yes", "no"])
def test_vim_edit_with_backup(fs_wb, backupcopy):
    need("vim")
    d = fs_wb.mnt / "vim"
    d.mkdir()
    f = d / "notes.txt"
    old = b"".join(b"line %d: old text\n" % i for i in range(2000))
    f.write_bytes(old)
    os.chmod(f, 0o604)
    ino = os.stat(f).st_ino
    env = dict(os.environ, HOME=str(d), TERM="dumb")
    r = subprocess.run(
        ["vim", "-u", "NONE", "-i", "NONE", "-N", "-es",
         "-c", f"set backup writebackup backupcopy={backupcopy} backupskip= backupdir=. "
         "directory=. fsync",
         "-c", "%s/old/new/", "-c", "wq", str(f)],
        cwd=d, env=env, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    new = old.replace(b"old", b"new")
    assert f.read_bytes() == new
    assert (d / "notes.txt~").read_bytes() == old
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o604
    assert sorted(os.listdir(d)) == ["notes.txt", "notes.txt~"]  # no swap file left
    # backupcopy=yes copies the file and rewrites it in place; =no renames it
    # to the backup name and writes a new file.
    if backupcopy == "yes":
        assert os.stat(f).st_ino == ino
    else:
        assert os.stat(d / "notes.txt~").st_ino == ino
    fs_wb.remount()
    assert f.read_bytes() == new
    assert (d / "notes.txt~").read_bytes() == old


# ---- mmap ------------------------------------------------------------------------------


def test_mmap_write_and_read_visible_after_remount(fs_wb):
    page = mmap.PAGESIZE
    f = fs_wb.mnt / "mapped"
    original = bytes(random.Random(5).randbytes(3 * page + 100))
    f.write_bytes(original)
    expected = bytearray(original)
    with open(f, "r+b") as fh:
        with mmap.mmap(fh.fileno(), 0) as m:
            assert m[:] == original
            for off in (0, page - 1, page, 2 * page + 17, 3 * page + 99):
                m[off] = (m[off] + 1) % 256
                expected[off] = (expected[off] + 1) % 256
            m[page + 10:page + 20] = b"0123456789"
            expected[page + 10:page + 20] = b"0123456789"
            m.flush()
    assert f.read_bytes() == expected
    # a file grown with ftruncate and filled through a mapping
    g = fs_wb.mnt / "grown"
    grown = (bytes(range(256)) * (2 * page // 256 + 1))[:2 * page + 10]
    fd = os.open(g, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, len(grown))
        with mmap.mmap(fd, len(grown)) as m:
            m[:] = grown
            m.flush()
    finally:
        os.close(fd)
    fs_wb.remount()
    assert f.read_bytes() == expected
    assert g.read_bytes() == grown
    with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ) as m:
        assert m[:] == expected
    # a private mapping's writes stay private
    with open(f, "r+b") as fh, mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_PRIVATE) as m:
        m[0:4] = b"PRIV"
    assert f.read_bytes() == expected

