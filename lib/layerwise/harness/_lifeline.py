"""Worker processes that end with the process that started them.

This module imports nothing heavy on purpose: a spawned worker unpickles its pool initializer
(:func:`die_with_parent`) before anything else, so the death signal is armed before the worker
spends seconds importing torch -- a sweep killed during that time leaves no worker behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 1.0  # how often a worker polls its parent where prctl is not available


def die_with_parent(parent: int) -> None:
    """Pool initializer: end this worker when the process that started it dies, even by
    SIGKILL, so a killed sweep leaves no worker training on.

    Linux: the kernel sends the worker SIGKILL when its parent exits (``PR_SET_PDEATHSIG``;
    the pool starts its workers from the thread that submits, which outlives the pool).
    Elsewhere a daemon thread polls ``os.getppid()`` every ``PARENT_POLL_S`` seconds.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)
