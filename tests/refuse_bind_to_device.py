"""Run a command on a system that refuses ``SO_BINDTODEVICE`` to its user, as Linux before 5.7
does for a user without CAP_NET_RAW (and some sandboxes still do).

    python tests/refuse_bind_to_device.py COMMAND [ARG ...]

A seccomp filter (classic BPF) answers ``setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, …)`` with
EPERM and lets every other call through; it is kept across ``execve``. ``no_new_privs`` is set
first, as seccomp requires of callers without CAP_SYS_ADMIN. Before running the command the
filter is checked on a real socket: if a bind still succeeds, this exits 3 instead of running a
command that would then test nothing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket
import struct
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06  # BPF_RET | BPF_K
# struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (little endian:
# an argument's low 32 bits sit at its own offset).
NR_OFFSET, ARCH_OFFSET = 0, 4
LEVEL_OFFSET, OPTNAME_OFFSET = 16 + 8, 16 + 16  # args[1], args[2]
# machine → (AUDIT_ARCH_*, __NR_setsockopt)
ARCHITECTURES = {"x86_64": (0xC000003E, 54), "aarch64": (0xC00000B7, 208)}
SO_BINDTODEVICE = 25


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def filter_program(machine: str) -> bytes:
    """The BPF program: EPERM for setsockopt(SOL_SOCKET, SO_BINDTODEVICE), allow the rest."""
    arch, setsockopt = ARCHITECTURES[machine]
    allow = 9  # the index of the last instruction; jumps count from the next instruction

    def load(offset: int) -> bytes:
        return struct.pack("HBBI", BPF_LD_W_ABS, 0, 0, offset)

    def unless_equal_allow(index: int, value: int) -> bytes:
        return struct.pack("HBBI", BPF_JEQ_K, 0, allow - (index + 1), value)

    return b"".join(
        [
            load(ARCH_OFFSET),
            unless_equal_allow(1, arch),
            load(NR_OFFSET),
            unless_equal_allow(3, setsockopt),
            load(LEVEL_OFFSET),
            unless_equal_allow(5, socket.SOL_SOCKET),
            load(OPTNAME_OFFSET),
            unless_equal_allow(7, SO_BINDTODEVICE),
            struct.pack("HBBI", BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.EPERM),
            struct.pack("HBBI", BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        ]
    )


def install() -> None:
    machine = platform.machine()
    if machine not in ARCHITECTURES:
        raise SystemExit(f"refuse_bind_to_device: no seccomp filter for {machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    program = ctypes.create_string_buffer(filter_program(machine))
    fprog = _SockFprog(len(program.raw) // 8, ctypes.cast(program, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def refused() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, b"lo\0")
        except PermissionError:
            return True
    return False


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    install()
    if not refused():
        print("refuse_bind_to_device: the filter did not refuse a bind", file=sys.stderr)
        raise SystemExit(3)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
