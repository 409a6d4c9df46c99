"""``python conveyor/parentdeath.py PARENT_PID PROGRAM [ARG...]``: runs the program (in
this process, by exec) so that it gets SIGTERM when the process PARENT_PID dies. Run by
its path, not with ``-m``, so that nothing of the package is imported before the exec.

``conveyor dev`` starts its children through this instead of a ``preexec_fn``: a
``preexec_fn`` makes Python fork instead of vfork, and a fork taken while gRPC's poller
threads run can kill the child before it execs (grpc/grpc#43055: the child aborts with
"epoll_wait error: Bad file descriptor"). The death signal outlives exec, and is asked
for here, after the fork, by the child itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with(parent: int) -> None:
    """SIGTERM to this process when ``parent`` dies (Linux; elsewhere nothing), and at once
    if it died already (this process was then adopted by another)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not argv[0].isdigit():
        sys.exit("usage: parentdeath.py PARENT_PID PROGRAM [ARG...]")
    die_with(int(argv[0]))
    os.execvp(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
