/* Racer for tests/integration/test_attacks_fs.py, run inside a busybox container (no renameat2
 * there): `racer swap DIR N HOSTDIR NAME` makes DIR/d0..d{N-1} (each holding a file NAME) and
 * DIR/l0.. (symlinks to HOSTDIR, a host directory that holds a NAME too), then exchanges each pair
 * forever with renameat2(RENAME_EXCHANGE), so a reader walking by path sees a directory turn into
 * a link and reads the host's NAME for the container's.
 * `racer churn DIR` creates, fills and unlinks files in DIR forever. Built static at test time. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv) {
    char a[4096], b[4096];
    if (argc >= 6 && strcmp(argv[1], "swap") == 0) {
        int n = atoi(argv[3]);
        for (int i = 0; i < n; i++) {
            snprintf(a, sizeof a, "%s/d%d", argv[2], i);
            mkdir(a, 0755);
            snprintf(b, sizeof b, "%s/d%d/%s", argv[2], i, argv[5]);
            close(open(b, O_CREAT | O_WRONLY, 0644));
            snprintf(b, sizeof b, "%s/l%d", argv[2], i);
            symlink(argv[4], b);
        }
        printf("ready\n");
        fflush(stdout);
        for (;;)
            for (int i = 0; i < n; i++) {
                snprintf(a, sizeof a, "%s/d%d", argv[2], i);
                snprintf(b, sizeof b, "%s/l%d", argv[2], i);
                syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
            }
    }
    if (argc >= 3 && strcmp(argv[1], "churn") == 0) {
        static char buf[65536];
        for (unsigned long i = 0;; i++) {
            snprintf(a, sizeof a, "%s/f%lu", argv[2], i % 64);
            int fd = open(a, O_CREAT | O_WRONLY | O_TRUNC, 0644);
            if (fd >= 0) {
                (void)!write(fd, buf, sizeof buf);
                close(fd);
            }
            unlink(a);
        }
    }
    fprintf(stderr, "usage: racer swap DIR N HOSTDIR NAME | racer churn DIR\n");
    return 2;
}
