"""tools/bench end to end, at its smallest: it must mount every kind of
target, run real workloads on them, check targets, write its JSON, and
leave no mount and no scratch directory behind, also when it fails.

The figures themselves are not judged here (speed is the benchmark's
business, never a test's); only that they exist and are sane.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, build_dir, mount_entries, require_ci_or_skip

BENCH = REPO / "tools" / "bench"


@pytest.fixture
def bench_env(tmp_path):
    for tool in ("fio", "fs_mark", "cc", "pkg-config", "fusermount3"):
        if shutil.which(tool) is None:
            require_ci_or_skip(f"{tool} not installed (tools/setup installs it)")
    if not os.path.exists("/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c"):
        require_ci_or_skip("libfuse3-dev's examples not installed")
    if not os.path.exists("/dev/fuse") or os.geteuid() != 0:
        require_ci_or_skip("needs root and /dev/fuse")
    return tmp_path


def run_bench(tmp_path, *args):
    cmd = [sys.executable, str(BENCH), "--build", str(build_dir()), "--dir", str(tmp_path),
           "--out", str(tmp_path / "out"), "--quick", "--rounds", "1", "--no-kv",
           "--no-mount"] + list(args)
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=600)


def leftovers(tmp_path):
    mounts = [e[0] for e in mount_entries() if str(tmp_path) in e[0]]
    scratch = [p.name for p in tmp_path.iterdir() if p.name.startswith("bench.")]
    return mounts, scratch


def test_bench_runs_every_kind_of_target(bench_env):
    tmp_path = bench_env
    r = run_bench(tmp_path, "--workloads", "fsync1,smallfiles",
                  "--targets", "mindb,ext4,pt,pt-wb")
    assert r.returncode == 0, f"tools/bench failed ({r.returncode}):\n{r.stderr[-4000:]}"
    results = list((tmp_path / "out").glob("bench-*.json"))
    assert len(results) == 1, f"expected one JSON result in out/, found {results}"
    doc = json.loads(results[0].read_text())
    fs = doc["filesystem"]
    for metric in ("fsync1", "create", "read", "rm"):
        assert metric in fs, f"metric {metric} missing from {sorted(fs)}"
        for target in ("mindb", "ext4", "pt", "pt-wb"):
            values = fs[metric]["values"].get(target)
            assert values and all(v > 0 for v in values), \
                f"{metric} on {target}: expected one positive figure, got {values}"
        for peer in ("ext4", "pt", "pt-wb"):
            ratio = fs[metric]["ratio"][peer][0]
            assert ratio and ratio > 0, f"{metric}: mindb/{peer} ratio is {ratio}"
    labels = [c["target"] for c in doc["checks"]]
    for want in ("fsync1 >= 1.3 x ext4", "smallfiles create >= 3 x pt",
                 "mindbfs peak RSS <= 128 MiB"):
        assert want in labels, f"check {want!r} missing from {labels}"
    rss = [m["VmHWM"] for m in doc["memory"]]
    assert rss and all(v > 1 << 20 for v in rss), f"mindbfs peak RSS figures: {rss}"
    assert "target" in r.stdout and "met" in r.stdout, f"no check table printed:\n{r.stdout}"
    assert leftovers(tmp_path) == ([], []), f"left behind: {leftovers(tmp_path)}"
    strays = [p for p in os.listdir(REPO) if p.endswith(".log") or p == "fs_log.txt"]
    assert not strays, f"files left in the source tree: {strays}"


def test_bench_cleans_up_after_a_failing_workload(bench_env, monkeypatch):
    """fio refusing its job (here: made to fail by a missing fio binary on
    PATH) must end the run with an error, and still unmount and remove."""
    tmp_path = bench_env
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    fake = fakebin / "fio"
    fake.write_text("#!/bin/sh\necho 'fio: simulated failure' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fakebin}:{os.environ['PATH']}")
    r = run_bench(tmp_path, "--workloads", "fsync1", "--targets", "mindb")
    assert r.returncode != 0, "tools/bench succeeded although fio failed"
    assert "simulated failure" in r.stderr, f"fio's message not passed on:\n{r.stderr[-2000:]}"
    assert leftovers(tmp_path) == ([], []), f"left behind: {leftovers(tmp_path)}"


def test_bench_refuses_unknown_names(bench_env):
    r = run_bench(bench_env, "--workloads", "fsync1,nosuch")
    assert r.returncode == 2 and "nosuch" in r.stderr, \
        f"expected a usage error naming 'nosuch', got {r.returncode}:\n{r.stderr}"
    r = run_bench(bench_env, "--targets", "mindb,btrfs")
    assert r.returncode == 2 and "btrfs" in r.stderr, \
        f"expected a usage error naming 'btrfs', got {r.returncode}:\n{r.stderr}"
    assert leftovers(bench_env) == ([], []), f"left behind: {leftovers(bench_env)}"

