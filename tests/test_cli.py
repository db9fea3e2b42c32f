"""Tests of the mindb command-line tool (tools/mindb*.c).

Runs the binary at $MINDB_BUILD_DIR/tools/mindb (default: the repository's
build/) on stores under pytest's tmp_path, as a user would: values go in
through files and pipes, come back through stdout, and every exit status
and error line is checked.
"""

import fcntl
import os
import pathlib
import random
import re
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("MINDB_BUILD_DIR", REPO / "build"))
MINDB = BUILD / "tools" / "mindb"

COMMANDS = ["init", "put", "get", "rm", "ls", "stat", "check", "compact", "wal-dump"]
KIB = 1024
MIB = 1024 * KIB


@pytest.fixture(scope="module", autouse=True)
def binary():
    if not MINDB.is_file():
        pytest.fail(f"{MINDB} is missing: build the mindb_cli target first")


def mindb(*args, input=b"", expect=0, pass_fds=()):
    """Runs mindb with args (str, bytes or paths); checks the exit status."""
    argv = [os.fspath(MINDB)] + [a if isinstance(a, bytes) else os.fspath(a) for a in args]
    r = subprocess.run(argv, input=input, capture_output=True, timeout=300, pass_fds=pass_fds)
    assert r.returncode == expect, (
        f"mindb {args!r}: exit {r.returncode}, expected {expect}\n"
        f"stderr: {r.stderr.decode(errors='replace')}"
    )
    return r


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store"
    mindb("init", path)
    return path


def put(store, key, value):
    """Puts through stdin."""
    return mindb("put", store, key, "-", input=value)


def get(store, key):
    return mindb("get", store, key).stdout


def words(seed, size):
    """Compressible, distinct text: random words from a small vocabulary."""
    rng = random.Random(seed)
    vocab = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(300)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(vocab) + (b"\n" if rng.random() < 0.1 else b" ")
    return bytes(out[:size])


def stats(store):
    """`mindb stat STORE` as a dict of name -> exact number."""
    out = mindb("stat", store).stdout.decode()
    result = {}
    for line in out.splitlines():
        name, _, rest = line.partition(": ")
        m = re.match(r"(\d+(?:\.\d+)?)", rest)
        assert m, f"unparsable stat line: {line!r}"
        result[name] = float(m.group(1)) if "." in m.group(1) else int(m.group(1))
    return result


def segment_files(store):
    return sorted((store / "data").glob("*.seg"))


def segment_bytes_on_disk(store):
    return sum(p.stat().st_size for p in segment_files(store))


# ---- the program explains itself ----------------------------------------


def test_version():
    out = mindb("--version").stdout.decode()
    assert re.fullmatch(r"mindb \d+\.\d+\.\d+\n", out), out


def test_help_lists_every_command():
    out = mindb("--help").stdout.decode()
    for cmd in COMMANDS:
        assert cmd in out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_command_help(cmd):
    out = mindb(cmd, "--help").stdout.decode()
    assert f"mindb {cmd}" in out
    assert "--quiet" in out
    assert mindb("help", cmd).stdout.decode() == out


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate", "x"],
        ["--bogus"],
        ["ls", "--bogus", "s"],
        ["ls", "-Z", "s"],
        ["put"],
        ["put", "s"],
        ["get", "s"],
        ["get", "s", "a", "b"],
        ["rm", "s"],
        ["init"],
        ["stat", "s", "a", "b"],
        ["compact", "--live", "0", "s"],
        ["compact", "--live", "abc", "s"],
        ["compact", "s", "--live"],
        ["put", "--compression", "99", "s", "k"],
        ["get", "--cache-mb", "-1", "s", "k"],
    ],
)
def test_usage_errors_exit_2(args):
    r = mindb(*args, expect=2)
    err = r.stderr.decode()
    assert "mindb" in err
    if args and args[0] in COMMANDS:
        assert f"Try 'mindb {args[0]} --help'" in err
    assert r.stdout == b""


# ---- init, put, get --------------------------------------------------------


def test_init_refuses_existing_and_foreign(tmp_path, store):
    r = mindb("init", store, expect=1)
    assert "already" in r.stderr.decode()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    r = mindb("init", foreign, expect=1)
    assert "not a mindb store" in r.stderr.decode()
    assert (foreign / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    mindb("init", empty)
    assert mindb("ls", empty).stdout == b""


def test_put_get_file_and_stdin(tmp_path, store):
    binary_value = bytes(range(256)) * 400 + os.urandom(5000)
    f = tmp_path / "value.bin"
    f.write_bytes(binary_value)
    mindb("put", store, "from/file", f)
    assert get(store, "from/file") == binary_value

    mindb("put", store, "from/stdin", input=binary_value)  # FILE missing: stdin
    assert get(store, "from/stdin") == binary_value
    mindb("put", store, "from/dash", "-", input=b"dash\n")
    assert get(store, "from/dash") == b"dash\n"

    # A pipe named as FILE has no size to map: read like stdin.
    r_fd, w_fd = os.pipe()
    os.write(w_fd, b"through a pipe")
    os.close(w_fd)
    try:
        mindb("put", store, "from/pipe", f"/dev/fd/{r_fd}", pass_fds=(r_fd,))
    finally:
        os.close(r_fd)
    assert get(store, "from/pipe") == b"through a pipe"

    # Stdin redirected from a file: all of it, or what is left after a read.
    fd = os.open(f, os.O_RDONLY)
    try:
        subprocess.run([MINDB, "put", store, "from/redirect"], stdin=fd, check=True)
        os.lseek(fd, 10, os.SEEK_SET)
        subprocess.run([MINDB, "put", store, "from/rest"], stdin=fd, check=True)
    finally:
        os.close(fd)
    assert get(store, "from/redirect") == binary_value
    assert get(store, "from/rest") == binary_value[10:]

    # Overwrite: the new value replaces the old one whole.
    mindb("put", store, "from/file", input=b"short")
    assert get(store, "from/file") == b"short"


def test_empty_values(tmp_path, store):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    mindb("put", store, "empty/file", empty)
    mindb("put", store, "empty/stdin", input=b"")
    assert get(store, "empty/file") == b""
    assert get(store, "empty/stdin") == b""
    assert "size: 0 " in mindb("stat", store, "empty/file").stdout.decode()


def test_large_value_20mib(tmp_path, store):
    # Half random, half text: both the raw and the compressed paths.
    value = os.urandom(10 * MIB) + words(7, 10 * MIB)
    f = tmp_path / "big"
    f.write_bytes(value)
    mindb("put", store, "big/file", f)
    mindb("put", store, "big/stdin", input=value)
    assert get(store, "big/file") == value
    assert get(store, "big/stdin") == value
    st = stats(store)
    assert st["logical bytes"] == 2 * len(value)


def test_put_missing_file(tmp_path, store):
    r = mindb("put", store, "k", tmp_path / "nope", expect=1)
    err = r.stderr.decode()
    assert "nope" in err and "No such file" in err
    assert len(err.splitlines()) == 1
    mindb("get", store, "k", expect=1)


def test_get_missing_key(store):
    r = mindb("get", store, "no/such/key", expect=1)
    err = r.stderr.decode()
    assert "no/such/key" in err
    assert len(err.splitlines()) == 1
    assert r.stdout == b""


def test_get_into_closed_pipe_is_an_error(tmp_path, store):
    f = tmp_path / "big"
    f.write_bytes(os.urandom(4 * MIB))
    mindb("put", store, "big", f)
    p = subprocess.Popen([MINDB, "get", store, "big"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    p.stdout.close()  # the reader goes away before the value is written
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 1
    assert "stdout" in err and "Broken pipe" in err


def test_compression_and_cache_options(store):
    value = words(3, 300 * KIB)
    mindb("put", "--compression", "19", store, "k", input=value)
    assert mindb("get", "--cache-mb", "1", store, "k").stdout == value
    assert mindb("get", "-q", store, "k").stdout == value


# ---- rm --------------------------------------------------------------------


def test_rm(store):
    for k in ["a", "b", "c"]:
        put(store, k, k.encode())
    mindb("rm", store, "a", "b")
    mindb("get", store, "a", expect=1)
    mindb("get", store, "b", expect=1)
    assert get(store, "c") == b"c"
    r = mindb("rm", store, "a", expect=1)
    assert "a" in r.stderr.decode()
    mindb("rm", "-f", store, "a")
    # One missing key does not stop the others.
    mindb("rm", store, "missing", "c", expect=1)
    mindb("get", store, "c", expect=1)


def test_rm_recursive(store):
    keys = ["d/a", "d/sub/b", "d/sub/c/e", "d/z", "dx", "d-sibling/k"]
    for k in keys:
        put(store, k, k.encode())
    # Without -r "d" is not a key of its own.
    mindb("rm", store, "d", expect=1)
    assert get(store, "d/a") == b"d/a"
    mindb("rm", "-r", store, "d/")
    listing = mindb("ls", "-R", store).stdout.decode().splitlines()
    assert listing == ["d-sibling/k", "dx"]
    # -r on a plain key removes just it.
    mindb("rm", "-r", store, "dx")
    assert mindb("ls", "-R", store).stdout.decode().splitlines() == ["d-sibling/k"]


def test_rm_recursive_more_than_a_batch(store):
    # rm -r deletes in batches of 256 keys between iterations.
    n = 300
    for i in range(n):
        put(store, f"t/{i // 100}/{i:04d}", b"x")
    put(store, "u", b"stays")
    assert len(mindb("ls", "-R", store, "t").stdout.splitlines()) == n
    mindb("rm", "-r", store, "t")
    assert mindb("ls", "-R", store).stdout == b"u\n"


# ---- ls --------------------------------------------------------------------

ODD_KEYS = {
    b"a": "a",
    b"b/c": "b/c",
    b"b/d/e": "b/d/e",
    b"b/d/f": "b/d/f",
    b"back\\slash": "back\\x5cslash",
    b"bin\xff\xfe": "bin\\xff\\xfe",
    b"c d": "c d",
    b"new\nline": "new\\x0aline",
    b"tab\there": "tab\\x09here",
    "utf8 é".encode(): "utf8 é",
}


@pytest.fixture
def odd_store(store):
    for k in ODD_KEYS:
        mindb("put", store, k, input=k * 3)
    return store


def test_ls_children_vs_recursive(odd_store):
    top = mindb("ls", odd_store).stdout.decode().splitlines()
    # Key order is bytewise: "b/" (0x2f) sorts before "back".
    assert top == ["a", "b/", "back\\x5cslash", "bin\\xff\\xfe", "c d", "new\\x0aline",
                   "tab\\x09here", "utf8 é"]
    assert mindb("ls", odd_store, "b").stdout.decode().splitlines() == ["b/c", "b/d/"]
    assert mindb("ls", odd_store, "b/").stdout.decode().splitlines() == ["b/c", "b/d/"]
    assert mindb("ls", "-R", odd_store, "b").stdout.decode().splitlines() == [
        "b/c", "b/d/e", "b/d/f"]
    assert mindb("ls", odd_store, "b/d").stdout.decode().splitlines() == ["b/d/e", "b/d/f"]
    everything = mindb("ls", "-R", odd_store).stdout.decode().splitlines()
    assert everything == [ODD_KEYS[k] for k in sorted(ODD_KEYS)]


def test_ls_one_key_per_line(odd_store):
    out = mindb("ls", "-R", odd_store).stdout
    assert len(out.splitlines()) == len(ODD_KEYS)
    assert b"\xff" not in out and b"\t" not in out


def test_ls_file_and_missing(odd_store):
    assert mindb("ls", odd_store, "a").stdout == b"a\n"
    r = mindb("ls", odd_store, "zzz", expect=1)
    assert "zzz" in r.stderr.decode()


def test_ls_long(odd_store, tmp_path):
    out = mindb("ls", "-l", "-R", odd_store).stdout.decode()
    lines = out.splitlines()
    assert len(lines) == len(ODD_KEYS)
    by_key = {}
    for line in lines:
        m = re.fullmatch(
            r"([-dl?][-rwxsStT]{9}) +(\d+) +(\d+) +(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) (.+)", line)
        assert m, line
        by_key[m.group(5)] = m
    for raw, shown in ODD_KEYS.items():
        m = by_key[shown]
        assert m.group(1) == "-rw-r--r--"
        assert int(m.group(2)) == 3 * len(raw)
        assert int(m.group(3)) > 0
    # Options after the operands work too.
    top = mindb("ls", odd_store, "-l").stdout.decode().splitlines()
    assert any(line.endswith(" b/") and line.startswith("d") for line in top)


# ---- stat ------------------------------------------------------------------


def test_stat_store_numbers(store, tmp_path):
    sizes = {"s/one": 1, "s/kib": KIB, "s/text": 300 * KIB, "s/rand": 200 * KIB}
    for i, (k, n) in enumerate(sizes.items()):
        value = os.urandom(n) if k == "s/rand" else words(i, n)
        put(store, k, value)
    st = stats(store)
    assert st["keys"] == len(sizes)
    assert st["objects"] == len(sizes)
    assert st["logical bytes"] == sum(sizes.values())
    assert 0 < st["stored bytes"] < st["logical bytes"]  # the text compresses
    assert st["segment bytes"] >= st["stored bytes"]
    assert st["compression ratio"] > 1.0
    out = mindb("stat", store).stdout.decode()
    total = sum(sizes.values())
    assert f"logical bytes: {total} (" in out
    for name in ["dirty bytes", "WAL bytes", "checkpoints", "cache hits", "cache misses",
                 "fdatasyncs"]:
        assert name in st
    # Overwrite and delete: the numbers follow.
    put(store, "s/kib", b"12345")
    mindb("rm", store, "s/one")
    st = stats(store)
    assert st["keys"] == len(sizes) - 1
    assert st["logical bytes"] == total - 1 - KIB + 5


def test_stat_human_sizes(store):
    put(store, "m", words(1, MIB))
    out = mindb("stat", store, "m").stdout.decode()
    assert "size: 1048576 (1.0 MiB)" in out


def test_stat_key(store):
    put(store, "dir/key", b"hello world")
    out = mindb("stat", store, "dir/key").stdout.decode()
    fields = dict(line.split(": ", 1) for line in out.splitlines())
    assert fields["key"] == "dir/key"
    assert fields["type"] == "regular file"
    assert fields["mode"] == "0644 (-rw-r--r--)"
    assert fields["size"].startswith("11 ")
    assert fields["links"] == "1"
    assert int(fields["id"]) > 0
    for t in ["atime", "mtime", "ctime"]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}", fields[t]), fields[t]
    assert fields["xattrs"] == "0"
    r = mindb("stat", store, "dir/missing", expect=1)
    assert "dir/missing" in r.stderr.decode()


# ---- check -----------------------------------------------------------------


def test_check_clean(store):
    for i in range(5):
        put(store, f"k{i}", words(i, 50 * KIB))
    r = mindb("check", store)
    assert "damaged:" not in r.stdout.decode()
    assert "0 damaged" in r.stdout.decode()
    # Not a terminal: no progress line.
    assert r.stderr == b""


def stderr_on_a_terminal(*args):
    """Runs mindb with stderr on a pseudo-terminal; returns (exit, stdout,
    what the terminal received)."""
    master, slave = os.openpty()
    try:
        r = subprocess.run([MINDB, *args], stdout=subprocess.PIPE, stderr=slave, timeout=120)
    finally:
        os.close(slave)
    seen = b""
    try:
        while chunk := os.read(master, 65536):
            seen += chunk
    except OSError:  # EIO: every copy of the slave side is closed
        pass
    finally:
        os.close(master)
    return r.returncode, r.stdout, seen


def test_progress_only_on_a_terminal(store):
    for i in range(3):
        put(store, f"k{i}", words(i, 100 * KIB))
    status, out, tty = stderr_on_a_terminal("check", store)
    assert status == 0
    assert b"\rcheck:" in tty and b"%" in tty
    assert b"%" not in out  # the summary alone goes to stdout
    status, out, tty = stderr_on_a_terminal("check", "-q", store)
    assert status == 0 and tty == b""
    status, out, tty = stderr_on_a_terminal("compact", store)
    assert status == 0 and b"segment bytes" in out


def test_check_finds_a_flipped_byte(store):
    values = {f"v/{i}": words(100 + i, 200 * KIB) for i in range(8)}
    for k, v in values.items():
        put(store, k, v)
    # Each put closed the store, and closing checkpoints: the values are in
    # the data segments now.
    segs = segment_files(store)
    assert segs, "no data segment after close"
    largest = max(segs, key=lambda p: p.stat().st_size)
    with open(largest, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    r = mindb("check", store, expect=1)
    out = r.stdout.decode()
    damaged = set(re.findall(r"^damaged: (\S+): .+$", out, re.M))
    assert damaged, out
    assert damaged <= set(values), out
    assert re.search(r"[1-9]\d* damaged", out), out
    for k, v in values.items():
        if k in damaged:
            g = mindb("get", store, k, expect=1)
            assert k in g.stderr.decode()
            assert len(g.stderr.decode().splitlines()) >= 1
        else:
            assert get(store, k) == v


# ---- compact ---------------------------------------------------------------


def test_compact_reclaims_a_sealed_segment(store, tmp_path):
    # Data segments are closed at 64 MiB: 40 + 30 MiB of incompressible data
    # fill the first and start a second. Removing the 40 MiB value leaves
    # the first mostly dead.
    a, b = os.urandom(40 * MIB), os.urandom(30 * MIB)
    for name, value in [("a", a), ("b", b)]:
        f = tmp_path / name
        f.write_bytes(value)
        mindb("put", store, name, f)
        f.unlink()
    assert len(segment_files(store)) >= 2
    mindb("rm", store, "a")
    before = stats(store)["segment bytes"]
    assert before == segment_bytes_on_disk(store)
    assert before > 64 * MIB
    r = mindb("compact", store)
    m = re.search(r"segment bytes: before (\d+) \(.*\), after (\d+) \(", r.stdout.decode())
    assert m, r.stdout
    assert int(m.group(1)) == before
    after = stats(store)["segment bytes"]
    assert int(m.group(2)) == after
    assert segment_bytes_on_disk(store) == after
    # What is left is about the live 30 MiB.
    assert after < 32 * MIB
    assert get(store, "b") == b
    mindb("check", store)


def test_compact_reclaims_small_store(store, tmp_path):
    values = {f"c/{i}": os.urandom(200 * KIB) for i in range(10)}
    f = tmp_path / "v"
    for k, v in values.items():
        f.write_bytes(v)
        mindb("put", store, k, f)
    for i in range(4):
        k = f"c/{i}"
        values[k] = os.urandom(200 * KIB)
        f.write_bytes(values[k])
        mindb("put", store, k, f)
    mindb("rm", store, "c/8", "c/9")
    del values["c/8"], values["c/9"]
    before = stats(store)["segment bytes"]
    mindb("compact", store)
    after = stats(store)["segment bytes"]
    for k, v in values.items():
        assert get(store, k) == v
    assert after < before
    # Live data is 8 values of 200 KiB, incompressible.
    assert after < 8 * 200 * KIB * 1.2


def test_compact_live_option(store):
    put(store, "k", b"v" * 1000)
    r = mindb("compact", "--live", "50", "-q", store)
    assert "segment bytes: before" in r.stdout.decode()
    assert get(store, "k") == b"v" * 1000


# ---- wal-dump --------------------------------------------------------------


def test_wal_dump(store):
    put(store, "w", b"value")
    out = mindb("wal-dump", store).stdout.decode()
    lines = out.splitlines()
    assert re.fullmatch(r"records: \d+", lines[-1]), out
    n = int(lines[-1].split()[1])
    assert len(lines) == n + 1
    for line in lines[:-1]:
        assert re.fullmatch(r"\d+ .+", line), line


# ---- refusing what is not a usable store -----------------------------------


def test_not_a_store(tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    (d / "file").write_text("x")
    for args in [["ls", d], ["get", d, "k"], ["put", d, "k", "-"], ["stat", d]]:
        r = mindb(*args, expect=1)
        err = r.stderr.decode()
        assert f"{d} is not a mindb store" in err
        assert f"mindb init {d}" in err
        assert len(err.splitlines()) == 1
    assert sorted(os.listdir(d)) == ["file"]


def test_empty_dir_is_not_a_store(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    r = mindb("ls", d, expect=1)
    assert "not a mindb store" in r.stderr.decode()


def test_missing_store(tmp_path):
    d = tmp_path / "nowhere"
    for args in [["ls", d], ["get", d, "k"], ["put", d, "k", "-"], ["check", d]]:
        r = mindb(*args, expect=1)
        err = r.stderr.decode()
        assert f"{d} does not exist" in err and "mindb init" in err
        assert len(err.splitlines()) == 1
    assert not d.exists()


def lock_file(store):
    """The file the library locks (store/lock.c): STORE/LOCK, held with
    flock(LOCK_EX), with the holder's pid in it as text."""
    return store / "LOCK"


def test_store_in_use(store):
    put(store, "k", b"old")
    fd = os.open(lock_file(store), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        for args in [["get", store, "k"], ["put", store, "k", "-"], ["ls", store],
                     ["check", store]]:
            r = mindb(*args, input=b"new", expect=1)
            err = r.stderr.decode()
            assert f"{store} is in use by process {os.getpid()}" in err, err
            assert len(err.splitlines()) == 1, err
    finally:
        os.close(fd)
    assert get(store, "k") == b"old"


def test_key_starting_with_dash(store):
    mindb("put", store, "--", "-dash", input=b"v")
    assert mindb("get", store, "--", "-dash").stdout == b"v"
    assert mindb("ls", store).stdout == b"-dash\n"
    mindb("rm", store, "--", "-dash")
    assert mindb("ls", store).stdout == b""


@pytest.mark.parametrize("cmd", [["get", "k"], ["ls"], ["stat"]])
def test_output_to_a_full_disk_fails(store, cmd):
    put(store, "k", b"value")
    with open("/dev/full", "wb") as full:
        r = subprocess.run([MINDB, cmd[0], store, *cmd[1:]], stdout=full,
                           stderr=subprocess.PIPE, timeout=60)
    assert r.returncode == 1
    assert b"stdout: No space left on device" in r.stderr
