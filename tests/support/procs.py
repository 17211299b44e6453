"""Which process serves a connection, read from Linux's ``/proc`` (no psutil).

* :func:`child_pids`: the children of a process (``/proc/*/stat``, field 4 is the ppid);
* :func:`spawned_children`: those started by multiprocessing's ``spawn`` method;
* :func:`socket_owner`: the process (and fd) holding the server end of a loopback TCP
  connection: the ``/proc/net/tcp`` inode of that end, found among ``/proc/PID/fd``;
* :func:`peer_sockopt`: a socket option read on another process's socket, through a
  copy of its descriptor (``pidfd_getfd``, Linux 5.6+; None where it is not allowed).
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture


def child_pids(parent: int) -> list[int]:
    """The pids whose parent is ``parent`` (processes that end meanwhile are skipped)."""
    children = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            children.append(int(entry.name))
    return sorted(children)


def cmdline(pid: int) -> str:
    """A process's command line, arguments joined by spaces ("" once it ended)."""
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def spawned_children(parent: int) -> list[int]:
    """The children of ``parent`` started by multiprocessing ``spawn`` (no resource tracker)."""
    return [pid for pid in child_pids(parent) if "multiprocessing.spawn" in cmdline(pid)]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _server_end_inode(client: socket.socket) -> int | None:
    """The socket inode of the other (server) end of a loopback IPv4 connection."""
    client_host, client_port = client.getsockname()[:2]
    server_host, server_port = client.getpeername()[:2]

    def address(host: str, port: int) -> str:
        # /proc/net/tcp prints the address as a host-order integer, the port plainly
        return f"{int.from_bytes(socket.inet_aton(host), sys.byteorder):08X}:{port:04X}"

    local, remote = address(server_host, server_port), address(client_host, client_port)
    for line in (PROC / "net" / "tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return int(fields[9])
    return None


def socket_owner(client: socket.socket, pids: Iterable[int]) -> tuple[int, int] | None:
    """``(pid, fd)`` of the process among ``pids`` that holds the server end of ``client``."""
    inode = _server_end_inode(client)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = PROC / str(pid) / "fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                if os.readlink(fd_dir / name) == target:
                    return pid, int(name)
            except OSError:
                continue
    return None


def peer_sockopt(pid: int, fd: int, level: int, option: int) -> int | None:
    """``getsockopt`` on descriptor ``fd`` of process ``pid``; None if it cannot be copied."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            return None
        with socket.socket(fileno=copy) as sock:
            return sock.getsockopt(level, option)
    finally:
        os.close(pidfd)


def write_own_pid(_settings: object, path: str) -> None:
    """A job-running callable for the local executor: writes its process id to ``path``."""
    Path(path).write_text(str(os.getpid()))
