/* Syscall probe for tests/integration/test_hardening.py: tries one privileged operation and prints
 * "OK" or the errno's name (EPERM, ENOSYS...). Built static at test time and copied into a busybox
 * container, which has no compiler or ctypes. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

static int report(long rc) {
    if (rc < 0) {
        const char *name = strerrorname_np(errno);
        printf("%s\n", name ? name : "E?");
        return 1;
    }
    printf("OK\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: probe OP [ARG]\n");
        return 2;
    }
    const char *op = argv[1];
    if (!strcmp(op, "mount"))
        return report(mount("none", "/tmp", "tmpfs", 0, NULL));
    if (!strcmp(op, "unshare-user"))
        return report(unshare(CLONE_NEWUSER));
    if (!strcmp(op, "unshare-mount"))
        return report(unshare(CLONE_NEWNS));
    if (!strcmp(op, "clone-newuser"))  /* raw clone(2) with CLONE_NEWUSER: the flag filter must refuse it */
    {
        long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0)
            _exit(0);
        return report(pid < 0 ? -1 : 0);
    }
    if (!strcmp(op, "kexec_load"))
        return report(syscall(SYS_kexec_load, 0, 0, NULL, 0));
    if (!strcmp(op, "init_module"))
        return report(syscall(SYS_init_module, NULL, 0, ""));
    if (!strcmp(op, "finit_module"))
        return report(syscall(SYS_finit_module, 0, "", 0));
    if (!strcmp(op, "keyctl"))  /* KEYCTL_GET_KEYRING_ID of the session keyring */
        return report(syscall(SYS_keyctl, 0, -3, 0));
    if (!strcmp(op, "add_key"))
        return report(syscall(SYS_add_key, "user", "dockyard", "x", 1, -3));
    if (!strcmp(op, "bpf"))  /* BPF_MAP_CREATE with an empty attr */
        return report(syscall(SYS_bpf, 0, NULL, 0));
    if (!strcmp(op, "ptrace") && argc > 2)
        return report(ptrace(PTRACE_ATTACH, atoi(argv[2]), NULL, NULL));
    if (!strcmp(op, "swapon"))
        return report(syscall(SYS_swapon, "/dev/null", 0));
    if (!strcmp(op, "settimeofday"))
        return report(syscall(SYS_settimeofday, NULL, NULL));
    fprintf(stderr, "probe: unknown op %s\n", op);
    return 2;
}
