"""Root ignores file permission bits (capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), and CI runs as root: a
read-only folder or an unreadable file would mean nothing there. `as_plain_user()` drops those two capabilities from
the calling thread's effective set for a block and raises them again after it (they stay in the permitted set), so the
permission tests run, and mean the same, for root and for everyone else."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from contextlib import contextmanager

_VERSION_3 = 0x20080522  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
_DAC = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    for name in ("capget", "capset"):
        getattr(libc, name).argtypes = [ctypes.POINTER(_Header), ctypes.POINTER(_Data)]
    return libc


def _call(libc, name: str, data) -> None:
    header = _Header(_VERSION_3, 0)
    if getattr(libc, name)(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


@contextmanager
def as_plain_user():
    """Within the block, this thread obeys permission bits even as root (a no-op for other users)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        yield
        return
    libc = _libc()
    data = (_Data * 2)()
    _call(libc, "capget", data)
    saved = data[0].effective
    data[0].effective = saved & ~_DAC
    _call(libc, "capset", data)
    try:
        yield
    finally:
        data[0].effective = saved
        _call(libc, "capset", data)


def obeys_permission_bits(path) -> bool:
    """True when `path` (a chmod 0 file, or a read-only folder) refuses us: the check that the block above works."""
    try:
        if os.path.isdir(path):
            os.close(os.open(os.path.join(path, ".probe"), os.O_CREAT | os.O_WRONLY, 0o600))
            os.unlink(os.path.join(path, ".probe"))
        else:
            with open(path, "rb"):
                pass
        return False
    except PermissionError:
        return True
