"""Docker's default seccomp policy, kept as data, and the resolver that turns it into an OCI
`linux.seccomp` section for the host architecture and the container's capability set.

The facts (syscall lists, argument filters, capability gates) follow moby's
profiles/seccomp/default.json: an allowlist with EPERM for everything else.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any

# Syscalls every container may make.
ALWAYS_ALLOWED: tuple[str, ...] = tuple("""
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64
fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs
fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd
getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32
getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter io_uring_register
io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat
mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv
msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open
openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect
poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom
recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid
setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid
setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat
shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall
socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs
sysinfo tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime
utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
""".split())

# clone(2) flags that create namespaces (CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP):
# without CAP_SYS_ADMIN, clone is only allowed when none of them is set.
CLONE_NS_FLAGS = 0x7E020000
AF_VSOCK = 40


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: str = "SCMP_ACT_ALLOW"
    args: tuple[tuple[int, int, str], ...] = ()  # (index, value, op)
    errno: int | None = None
    caps: tuple[str, ...] = ()  # rule applies only when one of these caps is granted
    not_caps: tuple[str, ...] = ()  # rule applies only when none of these caps is granted
    arches: tuple[str, ...] = ()  # Go arch names the rule applies to
    not_arches: tuple[str, ...] = ()
    min_kernel: tuple[int, int] | None = None


def _r(names: str, **kw: Any) -> Rule:
    return Rule(tuple(names.split()), **kw)


RULES: tuple[Rule, ...] = (
    Rule(ALWAYS_ALLOWED),
    _r("process_vm_readv process_vm_writev ptrace", min_kernel=(4, 8)),
    _r("socket", args=((0, AF_VSOCK, "SCMP_CMP_NE"),)),
    *(_r("personality", args=((0, v, "SCMP_CMP_EQ"),)) for v in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)),
    _r("sync_file_range2 swapcontext", arches=("ppc64le",)),
    _r("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
       arches=("arm", "arm64")),
    _r("arch_prctl", arches=("amd64", "x32")),
    _r("modify_ldt", arches=("amd64", "x32", "x86")),
    _r("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr", arches=("s390", "s390x")),
    _r("riscv_flush_icache", arches=("riscv64",)),
    _r("open_by_handle_at", caps=("CAP_DAC_READ_SEARCH",)),
    _r("bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr "
       "move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog "
       "umount umount2 unshare", caps=("CAP_SYS_ADMIN",)),
    _r("clone", args=((0, CLONE_NS_FLAGS, "SCMP_CMP_MASKED_EQ"),), not_caps=("CAP_SYS_ADMIN",),
       not_arches=("s390", "s390x")),
    _r("clone", args=((1, CLONE_NS_FLAGS, "SCMP_CMP_MASKED_EQ"),), not_caps=("CAP_SYS_ADMIN",),
       arches=("s390", "s390x")),
    # ENOSYS makes libc fall back to clone(2), whose flags the rule above can inspect.
    _r("clone3", action="SCMP_ACT_ERRNO", errno=38, not_caps=("CAP_SYS_ADMIN",)),
    _r("reboot", caps=("CAP_SYS_BOOT",)),
    _r("chroot", caps=("CAP_SYS_CHROOT",)),
    _r("delete_module init_module finit_module", caps=("CAP_SYS_MODULE",)),
    _r("acct", caps=("CAP_SYS_PACCT",)),
    _r("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace", caps=("CAP_SYS_PTRACE",)),
    _r("iopl ioperm", caps=("CAP_SYS_RAWIO",)),
    _r("settimeofday stime clock_settime clock_settime64", caps=("CAP_SYS_TIME",)),
    _r("vhangup", caps=("CAP_SYS_TTY_CONFIG",)),
    _r("get_mempolicy mbind set_mempolicy set_mempolicy_home_node", caps=("CAP_SYS_NICE",)),
    _r("syslog", caps=("CAP_SYSLOG",)),
    _r("bpf", caps=("CAP_BPF",)),
    _r("perf_event_open", caps=("CAP_PERFMON",)),
)

# Native architecture -> (Go arch name, seccomp architectures the filter covers).
ARCHES: dict[str, tuple[str, list[str]]] = {
    "x86_64": ("amd64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    "aarch64": ("arm64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
}


@dataclass
class _Ctx:
    goarch: str
    caps: set[str] = field(default_factory=set)
    kernel: tuple[int, int] = (0, 0)


def _kernel_version() -> tuple[int, int]:
    parts = os.uname().release.split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def _applies(rule: Rule, ctx: _Ctx) -> bool:
    if rule.caps and not ctx.caps.intersection(rule.caps):
        return False
    if rule.not_caps and ctx.caps.intersection(rule.not_caps):
        return False
    if rule.arches and ctx.goarch not in rule.arches:
        return False
    if rule.not_arches and ctx.goarch in rule.not_arches:
        return False
    return not (rule.min_kernel and ctx.kernel < rule.min_kernel)


def default_profile(caps: list[str] | set[str], machine: str | None = None) -> dict[str, Any]:
    """OCI `linux.seccomp` for a container holding `caps` on `machine` (default: this host)."""
    machine = machine or platform.machine()
    goarch, arches = ARCHES.get(machine, (machine, []))
    ctx = _Ctx(goarch=goarch, caps=set(caps), kernel=_kernel_version())
    syscalls: list[dict[str, Any]] = []
    for rule in RULES:
        if not _applies(rule, ctx):
            continue
        entry: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
        if rule.errno is not None:
            entry["errnoRet"] = rule.errno
        if rule.args:
            entry["args"] = [{"index": i, "value": v, "valueTwo": 0, "op": op} for i, v, op in rule.args]
        syscalls.append(entry)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,  # EPERM
        "architectures": arches,
        "syscalls": syscalls,
    }


def load_profile(text: str) -> dict[str, Any]:
    """A user profile (`--security-opt seccomp=FILE`) in Docker's format → OCI `linux.seccomp`.

    Docker profiles may carry `archMap`; the OCI form wants a flat `architectures` list for this host.
    Conditional rules (includes/excludes) are kept when they have no condition we can't evaluate.
    """
    import json

    from dockyard.errors import InvalidParameter

    try:
        prof = json.loads(text)
    except ValueError as e:
        raise InvalidParameter(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(prof, dict):
        raise InvalidParameter("Decoding seccomp profile failed: not a JSON object")
    out: dict[str, Any] = {"defaultAction": prof.get("defaultAction", "SCMP_ACT_ERRNO")}
    if "defaultErrnoRet" in prof:
        out["defaultErrnoRet"] = prof["defaultErrnoRet"]
    arches = list(prof.get("architectures") or [])
    if not arches and prof.get("archMap"):
        native = ARCHES.get(platform.machine(), ("", []))[1][:1]
        for m in prof["archMap"]:
            if m.get("architecture") in native:
                arches = [m["architecture"], *(m.get("subArchitectures") or [])]
    out["architectures"] = arches
    syscalls = []
    for s in prof.get("syscalls") or []:
        names = s.get("names") or ([s["name"]] if s.get("name") else [])
        if not names:
            continue
        entry = {"names": names, "action": s["action"]}
        if s.get("args"):
            entry["args"] = s["args"]
        if s.get("errnoRet") is not None:
            entry["errnoRet"] = s["errnoRet"]
        syscalls.append(entry)
    out["syscalls"] = syscalls
    return out
