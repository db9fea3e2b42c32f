"""Tests of `cmake --install`: what a user of an installed mindb gets.

Installs the build in $MINDB_BUILD_DIR (default: the repository's build/)
into a temporary prefix, then checks the installed tree as a user would meet
it: the programs run, a C program builds against the installed mindb.h with
the flags `pkg-config` gives, linked with libmindb.so and with the static
libraries, and uses a store; the man pages render; the shared library exports
the public API and nothing else.

For a sanitizer build (MINDB_SANITIZE=ON in the build's CMakeCache.txt) the
installed libraries need the sanitizer runtime, so the test program is
compiled with -fsanitize=address,undefined too.
"""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("MINDB_BUILD_DIR", REPO / "build")).resolve()

# What a program using the store needs of the API, and nothing private.
PROGRAM = r"""
#include <mindb.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, int err)
{
    fprintf(stderr, "%s: %s\n", what, mindb_strerror(err));
    return 1;
}

int main(int argc, char **argv)
{
    static const char key[] = "docs/hello.txt";
    static const char value[] = "hello from an installed libmindb";
    struct mindb_options o;
    mindb *db;
    void *got;
    size_t len;
    int err;

    if (argc != 3) {
        fprintf(stderr, "usage: %s STORE VERSION\n", argv[0]);
        return 2;
    }
    if (strcmp(mindb_version(), argv[2]) != 0) {
        fprintf(stderr, "mindb_version() is %s, expected %s\n", mindb_version(), argv[2]);
        return 1;
    }
    mindb_options_init(&o);
    o.create = 1;
    if ((err = mindb_open(argv[1], &o, &db)))
        return fail("mindb_open", err);
    if ((err = mindb_create(db, "docs", 4, 040755, 0, 0, NULL, 0)))
        return fail("mindb_create", err);
    if ((err = mindb_put(db, key, strlen(key), value, strlen(value))))
        return fail("mindb_put", err);
    if ((err = mindb_sync(db)))
        return fail("mindb_sync", err);
    if ((err = mindb_close(db)))
        return fail("mindb_close", err);

    /* Read it back from a second opening: it went through the disk. */
    o.create = 0;
    if ((err = mindb_open(argv[1], &o, &db)))
        return fail("mindb_open again", err);
    if ((err = mindb_get(db, key, strlen(key), &got, &len)))
        return fail("mindb_get", err);
    if (len != strlen(value) || memcmp(got, value, len) != 0) {
        fprintf(stderr, "mindb_get: got %zu bytes \"%.*s\"\n", len, (int)len, (char *)got);
        return 1;
    }
    free(got);
    if ((err = mindb_close(db)))
        return fail("mindb_close again", err);
    printf("ok %s\n", mindb_version());
    return 0;
}
"""


def run(argv, *, env=None, expect=0, timeout=300):
    r = subprocess.run([os.fspath(a) for a in argv], capture_output=True, text=True, env=env,
                       timeout=timeout)
    assert r.returncode == expect, (
        f"{' '.join(map(os.fspath, argv))}: exit {r.returncode}, expected {expect}\n"
        f"stdout: {r.stdout[-4000:]}\nstderr: {r.stderr[-4000:]}")
    return r


def cache_entries():
    """The build's CMakeCache.txt as NAME -> value."""
    path = BUILD / "CMakeCache.txt"
    if not path.is_file():
        pytest.fail(f"{path} is missing: configure and build first "
                    f"(cmake -S . -B {BUILD} && cmake --build {BUILD}), "
                    "or point MINDB_BUILD_DIR at a build directory")
    entries = {}
    for line in path.read_text().splitlines():
        m = re.match(r"([^#/][^:=]*):[A-Z]+=(.*)$", line)
        if m:
            entries[m.group(1)] = m.group(2)
    return entries


class Install:
    """The tree `cmake --install` made under `prefix`."""

    def __init__(self, prefix, cache):
        self.prefix = prefix
        self.version = cache["CMAKE_PROJECT_VERSION"]
        self.sanitized = cache.get("MINDB_SANITIZE", "OFF").upper() in ("ON", "1", "TRUE", "YES")
        libdir = cache.get("CMAKE_INSTALL_LIBDIR") or "lib"
        assert not os.path.isabs(libdir), (
            f"CMAKE_INSTALL_LIBDIR is absolute ({libdir}): --prefix cannot relocate it")
        self.bin = prefix / "bin"
        self.lib = prefix / libdir
        self.include = prefix / "include"
        self.man = prefix / "share" / "man"
        self.pkgconfig_dir = self.lib / "pkgconfig"

    def env(self, **extra):
        env = dict(os.environ)
        env["PKG_CONFIG_PATH"] = os.fspath(self.pkgconfig_dir)
        env.pop("PKG_CONFIG_LIBDIR", None)
        env.update(extra)
        return env

    def pkg_config(self, *args):
        return run(["pkg-config", *args, "mindb"], env=self.env()).stdout.split()


@pytest.fixture(scope="module")
def inst(tmp_path_factory):
    cache = cache_entries()
    prefix = tmp_path_factory.mktemp("prefix")
    run(["cmake", "--install", BUILD, "--prefix", prefix])
    return Install(prefix, cache)


def test_files_are_installed(inst):
    for name in ("mindb", "mindbfs"):
        path = inst.bin / name
        assert path.is_file() and os.access(path, os.X_OK), f"{path} is missing"
    major = inst.version.split(".")[0]
    real = inst.lib / f"libmindb.so.{inst.version}"
    assert real.is_file() and not real.is_symlink(), f"{real} is missing"
    assert os.readlink(inst.lib / f"libmindb.so.{major}") == real.name
    assert os.readlink(inst.lib / "libmindb.so") == f"libmindb.so.{major}"
    assert (inst.lib / "libmindb.a").is_file()
    assert (inst.pkgconfig_dir / "mindb.pc").is_file()
    assert (inst.man / "man1" / "mindb.1").is_file()
    assert (inst.man / "man8" / "mindbfs.8").is_file()
    # The public header, and no private one.
    assert sorted(p.name for p in inst.include.iterdir()) == ["mindb.h"]
    assert (inst.include / "mindb.h").read_bytes() == (REPO / "store" / "mindb.h").read_bytes()


def test_installed_programs_run(inst):
    for name in ("mindb", "mindbfs"):
        r = run([inst.bin / name, "--version"])
        assert inst.version in r.stdout + r.stderr, f"{name} --version: {r.stdout!r}"


def test_shared_library_soname(inst):
    major = inst.version.split(".")[0]
    dyn = run(["readelf", "-d", inst.lib / "libmindb.so"]).stdout
    assert f"Library soname: [libmindb.so.{major}]" in dyn


def test_pkg_config_file(inst):
    text = (inst.pkgconfig_dir / "mindb.pc").read_text()
    assert f"prefix={inst.prefix}\n" in text, text
    assert inst.pkg_config("--modversion") == [inst.version]
    assert inst.pkg_config("--cflags") == [f"-I{inst.include}"]
    libs = inst.pkg_config("--libs")
    assert f"-L{inst.lib}" in libs and "-lmindb" in libs, libs
    # Linking the static library needs what libmindb itself links with.
    static = inst.pkg_config("--static", "--libs")
    for flag in ("-lmindb", "-lzstd", "-lxxhash", "-lpthread"):
        assert flag in static, static


def compile_program(inst, tmp_path, link_flags):
    """Builds PROGRAM against the installed header; returns the executable."""
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    src = tmp_path / "use_mindb.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "use_mindb"
    flags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-Wstrict-prototypes", "-g"]
    if inst.sanitized:
        flags.append("-fsanitize=address,undefined")
    run([cc, *flags, *inst.pkg_config("--cflags"), src, "-o", exe, *link_flags],
        env=inst.env())
    return exe


def needed_libraries(exe):
    dyn = run(["readelf", "-d", exe]).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)


def test_program_links_with_shared_library(inst, tmp_path):
    exe = compile_program(inst, tmp_path, inst.pkg_config("--libs"))
    major = inst.version.split(".")[0]
    assert f"libmindb.so.{major}" in needed_libraries(exe)
    env = inst.env(LD_LIBRARY_PATH=os.fspath(inst.lib))
    r = run([exe, tmp_path / "store", inst.version], env=env)
    assert r.stdout == f"ok {inst.version}\n"
    # The program loaded the installed library, not another one.
    ldd = run(["ldd", exe], env=env).stdout
    assert re.search(rf"libmindb\.so\.{major} => {re.escape(os.fspath(inst.lib))}/", ldd), ldd


def test_program_links_statically(inst, tmp_path):
    # Every library pkg-config names is taken from its .a (libc stays
    # shared): the flags of `--static` must be complete, and libmindb.a must
    # hold everything of mindb itself (the write-ahead log included).
    libs = inst.pkg_config("--static", "--libs")
    exe = compile_program(inst, tmp_path, ["-Wl,-Bstatic", *libs, "-Wl,-Bdynamic"])
    needed = needed_libraries(exe)
    assert not [n for n in needed if re.match(r"lib(mindb|zstd|xxhash)\.", n)], needed
    env = inst.env()
    env.pop("LD_LIBRARY_PATH", None)
    r = run([exe, tmp_path / "store", inst.version], env=env)
    assert r.stdout == f"ok {inst.version}\n"


@pytest.mark.parametrize("page", ["man1/mindb.1", "man8/mindbfs.8"])
def test_man_page_renders(inst, page):
    path = inst.man / page
    r = run(["man", "-l", "--warnings", path], env=inst.env(MANWIDTH="80"))
    assert r.stderr == "", f"man -l --warnings {page}:\n{r.stderr}"
    name, section = path.stem.upper(), path.suffix[1:]
    assert f"{name}({section})" in r.stdout.splitlines()[0]
    # man finds it by name and section under the prefix.
    where = run(["man", "-M", inst.man, "-w", section, path.stem], env=inst.env()).stdout
    assert where.strip() == os.fspath(path)


def public_functions(header):
    """Functions mindb.h declares, and those among them not marked MINDB_API."""
    text = re.sub(r"/\*.*?\*/", "", header.read_text(), flags=re.S)
    text = re.sub(r"^\s*#.*$", "", text, flags=re.M)
    declared, unmarked = set(), set()
    for decl in text.split(";"):
        decl = decl.strip()
        m = re.match(r"(?:MINDB_API\s+)?[A-Za-z_][\w\s\*]*?\b(mindb_\w+)\s*\(", decl)
        if m and not decl.startswith(("#", "typedef", "struct", "enum")):
            declared.add(m.group(1))
            if not decl.startswith("MINDB_API"):
                unmarked.add(m.group(1))
    return declared, unmarked


def test_shared_library_exports_public_api_only(inst):
    out = run(["nm", "-D", "--defined-only", inst.lib / "libmindb.so"]).stdout
    exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
    private = sorted(s for s in exported if not s.startswith("mindb_"))
    assert not private, f"libmindb.so exports symbols outside mindb_*: {private}"
    declared, unmarked = public_functions(inst.include / "mindb.h")
    assert not unmarked, f"mindb.h declares functions without MINDB_API: {sorted(unmarked)}"
    assert exported == declared, (
        f"exported but not in mindb.h: {sorted(exported - declared)}; "
        f"in mindb.h but not exported: {sorted(declared - exported)}")


def test_concurrent_installs_to_different_prefixes(tmp_path):
    # Two packagers (or two pytest workers) installing one build tree at once
    # must not trip over each other: nothing is staged in the build tree.
    cache = cache_entries()
    prefixes = [tmp_path / f"prefix{i}" for i in range(8)]
    procs = [subprocess.Popen(["cmake", "--install", os.fspath(BUILD), "--prefix", os.fspath(p)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for p in prefixes]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    for prefix, proc, out in zip(prefixes, procs, outputs):
        assert proc.returncode == 0, f"install to {prefix}: exit {proc.returncode}\n{out[-4000:]}"
        pc = (Install(prefix, cache).pkgconfig_dir / "mindb.pc").read_text()
        assert f"prefix={prefix}\n" in pc


def test_destdir_stays_out_of_pkg_config_file(tmp_path):
    cache = cache_entries()
    env = dict(os.environ, DESTDIR=os.fspath(tmp_path / "stage"))
    run(["cmake", "--install", BUILD, "--prefix", "/opt/mindb"], env=env)
    staged = Install(tmp_path / "stage" / "opt" / "mindb", cache)
    pc = (staged.pkgconfig_dir / "mindb.pc").read_text()
    assert "prefix=/opt/mindb\n" in pc
    assert os.fspath(tmp_path) not in pc
