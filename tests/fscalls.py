"""System calls Python lacks, and outcomes told by errno name.

Shared by the differential suites (test_fs_posix.py, fsrandom.py), which
compare what two filesystems answer: a return value, or the name of the
errno ("ENOENT"...) of the OSError raised.
"""

import ctypes
import errno
import os

libc = ctypes.CDLL(None, use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                           ctypes.c_uint]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(Timespec), ctypes.c_int]
libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
libc.getxattr.restype = ctypes.c_ssize_t
libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
libc.listxattr.restype = ctypes.c_ssize_t


def _check(ret):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret


def renameat2(old, new, flags):
    ctypes.set_errno(0)
    _check(libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags))


def fallocate(fd, mode, offset, length):
    ctypes.set_errno(0)
    _check(libc.fallocate(fd, mode, offset, length))


def utimensat(path, atime, mtime, flags=0):
    """atime/mtime: (sec, nsec) pairs; nsec may be UTIME_NOW or UTIME_OMIT."""
    ts = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    ctypes.set_errno(0)
    _check(libc.utimensat(AT_FDCWD, os.fsencode(path), ts, flags))


def getxattr_sized(path, name, size):
    """getxattr(2) with a buffer of `size` bytes: (returned length, bytes)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    n = _check(libc.getxattr(os.fsencode(path), os.fsencode(name), buf if size else None, size))
    return n, buf.raw[:n] if size else b""


def listxattr_sized(path, size):
    buf = ctypes.create_string_buffer(max(size, 1))
    n = _check(libc.listxattr(os.fsencode(path), buf if size else None, size))
    return n, buf.raw[:n] if size else b""


def errname(e):
    if e.errno == errno.EOPNOTSUPP:  # == ENOTSUP on Linux
        return "EOPNOTSUPP"
    return errno.errorcode.get(e.errno, str(e.errno))


def attempt(fn, *args, **kwargs):
    """fn's return value, or the errno name ("ENOENT"...) of the OSError it raised."""
    try:
        return fn(*args, **kwargs)
    except OSError as e:
        return errname(e)


libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
AT_SYMLINK_FOLLOW = 0x400


def linkat(src, dst, follow):
    """link(2) of src, or with `follow` of what the symlink src names (os.link
    calls link(2), which never follows, unless it is given a dir_fd)."""
    ctypes.set_errno(0)
    _check(libc.linkat(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst),
                       AT_SYMLINK_FOLLOW if follow else 0))
