"""Whether a dropped file's writer has closed it: the inbox's shortcut past the settle time.

A file in a local inbox that no process holds open for writing, and whose size and modification
time do not move over a short second look, is complete: it need not wait the full settle time
(``LeadHomeResource.settle_seconds``). The kernel answers "does anyone hold it open for
writing?": a read lease (``fcntl(F_SETLEASE, F_RDLCK)``, Linux) is refused with EAGAIN while any
process of this machine, in any container, has the file open for writing, and is released at
once. Whenever the answer cannot be had (not Linux, a network file system that has no leases:
NFS or SMB written from another host, a file this process neither owns nor has CAP_LEASE for)
it is "unknown" and the settle time applies. A writer that closes and reopens the file between
writes is caught by the second look only if it reopens within it, which is why the shortcut is
a setting (``LEAD_ASSETS_SETTLE_CLOSED_FILES``, on in ``make dev``) and not the default.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

SECOND_LOOK_SECONDS = 0.2


def has_writer(path: str) -> bool | None:
    """True while some process has ``path`` open for writing, False when none has; None when the
    kernel cannot say (no leases here, or not allowed to take one)."""
    try:
        import fcntl

        lease, read_lease, unlock = fcntl.F_SETLEASE, fcntl.F_RDLCK, fcntl.F_UNLCK
    except (ImportError, AttributeError):  # not Linux
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, lease, read_lease)
    except OSError as error:
        return True if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK) else None
    else:
        fcntl.fcntl(fd, lease, unlock)
        return False
    finally:
        os.close(fd)


def closed_by_their_writers(files: dict[str, tuple[int, float]],
                            writer: Callable[[str], bool | None] = has_writer,
                            sleep: Callable[[float], None] = time.sleep) -> set[str]:
    """The paths of ``files`` (path -> size, mtime as listed) that no process writes and that still
    have that size and mtime after one short second look shared by all of them, and still no writer
    (one that closes and reopens between writes is caught if it writes or reopens within the look)."""
    unwritten = {path: stamp for path, stamp in files.items() if writer(path) is False}
    if not unwritten:
        return set()
    sleep(SECOND_LOOK_SECONDS)
    closed = set()
    for path, stamp in unwritten.items():
        try:
            info = os.stat(path)
        except FileNotFoundError:
            continue
        if (info.st_size, info.st_mtime) == tuple(stamp) and writer(path) is False:
            closed.add(path)
    return closed
