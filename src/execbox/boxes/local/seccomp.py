"""The seccomp deny-list every local box runs under, compiled once to BPF by libseccomp.

A deny-list (not an allow-list) keeps ordinary Python and its C extensions working while closing
the kernel surface that sandbox escapes and host probes use: namespaces and mounts, tracing,
keyrings, BPF, perf, userfaultfd, io_uring, modules, kexec, and sockets of the families that
reach past the network namespace (vsock reaches the hypervisor on Firecracker guests).
Non-native architectures (i386, x32 on x86_64) are killed outright by libseccomp's default.
"""

from __future__ import annotations

import errno
import functools
import os

__all__ = ["DENIED_SYSCALLS", "available", "filter_bpf", "open_filter_fd"]

DENIED_SYSCALLS = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd", "fanotify_init", "lookup_dcookie",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "acct", "swapon", "swapoff", "reboot", "syslog", "quotactl", "nfsservctl",
    "open_by_handle_at", "name_to_handle_at", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "iopl", "ioperm", "personality", "vhangup",
)  # fmt: skip

_AF_INET, _AF_INET6, _AF_PACKET, _AF_VSOCK = 2, 10, 17, 40
_SOCK_RAW, _SOCK_TYPE_MASK = 3, 0xF
_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


def available() -> bool:
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


@functools.cache
def filter_bpf() -> bytes:
    """The compiled filter; raises ImportError/OSError when libseccomp is missing."""
    import pyseccomp as sc

    deny = sc.ERRNO(errno.EPERM)
    rules = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            rules.add_rule(deny, name)
        except (ValueError, RuntimeError, OSError):
            continue  # not a syscall on this architecture
    # clone() with namespace flags; clone3 hides its flags in memory, so it reports ENOSYS and
    # libc falls back to clone(), where the flags can be seen.
    for flag in _NAMESPACE_FLAGS:
        rules.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    no_family = sc.ERRNO(errno.EAFNOSUPPORT)
    for family in (_AF_PACKET, _AF_VSOCK):
        rules.add_rule(no_family, "socket", sc.Arg(0, sc.EQ, family))
        rules.add_rule(no_family, "socketpair", sc.Arg(0, sc.EQ, family))
    # Raw IP sockets only: netlink is SOCK_RAW too, and getifaddrs() (ZMQ, psutil) needs it.
    for family in (_AF_INET, _AF_INET6):
        raw = sc.Arg(1, sc.MASKED_EQ, _SOCK_TYPE_MASK, _SOCK_RAW)
        rules.add_rule(deny, "socket", sc.Arg(0, sc.EQ, family), raw)

    with os.fdopen(os.memfd_create("execbox-bpf", os.MFD_CLOEXEC), "w+b") as sink:
        rules.export_bpf(sink)
        sink.seek(0)
        return sink.read()


def open_filter_fd() -> int:
    """A fresh readable fd holding the filter, for ``bwrap --seccomp FD`` (which consumes it)."""
    fd = os.memfd_create("execbox-seccomp", os.MFD_CLOEXEC)
    os.write(fd, filter_bpf())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
