"""benchlib: what the Python benchmarks in tools/ share: mounting a FUSE
daemon in the foreground and always unmounting it, dropping the kernel's
caches, medians of paired rounds and plain tables.

Imported by tools/bench_fs_setup and tools/bench, which find it beside
themselves (a script's own directory is first on sys.path).
"""

import os
import signal
import statistics
import subprocess
import sys
import time

MiB = 1 << 20
MB = 1e6

PROG = os.path.basename(sys.argv[0])


def warn(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def _unescape_mountinfo(field):
    """Mount points in mountinfo escape space, tab, newline and backslash as
    octal (\\040...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and len(field[i + 1:i + 4]) == 3 and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounted_at(path):
    """The filesystem type mounted at path per /proc/self/mountinfo, or
    None."""
    path = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5 and _unescape_mountinfo(fields[4]) == path:
                found = right.split()[0] if right else "?"  # the last one wins
    return found


class Mount:
    """A FUSE daemon started in the foreground (cmd must hold -f and mount
    at path) as a context manager: mounted on entry, unmounted with
    `fusermount3 -u` on exit, after which the daemon is waited for (mindbfs
    commits and checkpoints before it exits, and that is part of its cost).
    The daemon's output goes to log_path."""

    def __init__(self, cmd, path, log_path):
        self.cmd = list(cmd)
        self.path = path
        self.log_path = log_path
        self.proc = None
        self.log = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def __enter__(self):
        if mounted_at(self.path):
            raise RuntimeError(f"{self.path} is already a mount point")
        self.log = open(self.log_path, "w+")
        self.log.write("$ " + " ".join(self.cmd) + "\n")
        self.log.flush()
        # A session of its own: a Ctrl-C at the terminal reaches the script,
        # which unmounts, rather than the daemon.
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        try:
            while not mounted_at(self.path):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.cmd[0]} exited with status "
                                       f"{self.proc.returncode} before mounting:\n"
                                       f"{self.log_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.cmd[0]} did not mount in 30 s:\n"
                                       f"{self.log_text()}")
                time.sleep(0.005)
        except BaseException:
            if self.proc.poll() is None:
                self.unmount()
            else:  # already reported
                self.proc = None
                self.log.close()
            raise
        return self

    def __exit__(self, *exc):
        self.unmount()
        return False

    def log_text(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def memory(self):
        return process_memory(self.proc.pid)

    def unmount(self):
        """fusermount3 -u (retried while busy), then waits for the daemon; a
        daemon that will not go is killed and the mount lazily detached."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        deadline = time.monotonic() + 20
        while mounted_at(self.path) and proc.poll() is None:
            r = subprocess.run(["fusermount3", "-u", self.path], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                warn(f"fusermount3 -u {self.path}: {r.stderr.strip()}; detaching lazily")
                subprocess.run(["fusermount3", "-u", "-z", self.path])
                break
            time.sleep(0.1)
        try:
            status = proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            warn(f"{self.cmd[0]} (pid {proc.pid}) still running 600 s after unmount; killing it")
            proc.send_signal(signal.SIGTERM)
            try:
                status = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                status = proc.wait()
        if mounted_at(self.path):
            subprocess.run(["fusermount3", "-u", "-z", self.path])
        if status != 0:
            warn(f"{self.cmd[0]} exited with status {status}:\n{self.log_text()}")
        self.log.close()


def process_memory(pid):
    """A process's resident set now and at its peak, in bytes, from
    /proc/PID/status: {"VmRSS": ..., "VmHWM": ...}."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def disk_usage(path):
    """Bytes of the blocks allocated to everything under path, each inode
    once; files that vanish meanwhile count nothing."""
    total, seen = 0, set()
    for top, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


DROP_WARNED = False


def drop_caches():
    """Writes back and drops the kernel's page, dentry and inode caches (root
    only); says once when it cannot."""
    global DROP_WARNED
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError as e:
        if not DROP_WARNED:
            warn(f"cannot drop the kernel's caches ({e.strerror}; needs root): "
                 "cold reads only drop the daemons' own caches, by remounting")
            DROP_WARNED = True
        return False


def paired_ratio(num, den):
    """The median over rounds of num[i] / den[i], with the lowest and highest:
    the two runs of a round ran seconds apart, and pairing them cancels the
    machine's drift from round to round."""
    ratios = [a / b for a, b in zip(num, den) if b]
    if not ratios:
        return None, None, None
    return statistics.median(ratios), min(ratios), max(ratios)


def fmt(v):
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(head, rows, right=()):
    """rows of strings as aligned columns under head; the columns whose index
    is in right are right-aligned (numbers)."""
    rows = [tuple(head)] + [tuple(r) for r in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for k, row in enumerate(rows):
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                 for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
