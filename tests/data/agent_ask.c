/* A tiny ssh-agent client for tests/integration/test_build_ssh.py (busybox has no ssh-add): connects
 * to $SSH_AUTH_SOCK, lists the identities, and has the agent sign "dockyard" with each (RSA with
 * rsa-sha2-256). Prints one line per key: "<key blob hex> <signature blob hex>". Built static at test
 * time and copied into the build's busybox. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fd;

static void put32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void readn(unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) { fprintf(stderr, "agent closed\n"); exit(3); }
        got += r;
    }
}

/* Sends one message and returns the answer's body (type byte first); *len gets its length. */
static unsigned char *ask(const unsigned char *msg, uint32_t n, uint32_t *len) {
    unsigned char head[4];
    put32(head, n);
    if (write(fd, head, 4) != 4 || write(fd, msg, n) != (ssize_t)n) { perror("write"); exit(3); }
    readn(head, 4);
    *len = get32(head);
    unsigned char *out = malloc(*len);
    readn(out, *len);
    return out;
}

static void hex(const unsigned char *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) printf("%02x", p[i]);
}

int main(void) {
    const char *path = getenv("SSH_AUTH_SOCK");
    if (!path) { fprintf(stderr, "SSH_AUTH_SOCK not set\n"); return 2; }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, path, sizeof(sa.sun_path) - 1);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) { perror("connect"); return 2; }
    unsigned char req = 11;
    uint32_t len;
    unsigned char *ans = ask(&req, 1, &len);
    if (len < 5 || ans[0] != 12) { fprintf(stderr, "not an identities answer\n"); return 4; }
    uint32_t nkeys = get32(ans + 1), pos = 5;
    for (uint32_t k = 0; k < nkeys; k++) {
        uint32_t blen = get32(ans + pos);
        const unsigned char *blob = ans + pos + 4;
        pos += 4 + blen;
        pos += 4 + get32(ans + pos); /* the comment */
        const char *data = "dockyard";
        uint32_t dlen = strlen(data), mlen = 1 + 4 + blen + 4 + dlen + 4;
        unsigned char *m = malloc(mlen), *p = m;
        *p++ = 13;
        put32(p, blen); memcpy(p + 4, blob, blen); p += 4 + blen;
        put32(p, dlen); memcpy(p + 4, data, dlen); p += 4 + dlen;
        /* SSH_AGENT_RSA_SHA2_256 for RSA keys only, as ssh asks (Go's keyring refuses it for others) */
        put32(p, blen >= 11 && memcmp(blob + 4, "ssh-rsa", 7) == 0 ? 2 : 0);
        uint32_t slen;
        unsigned char *sig = ask(m, mlen, &slen);
        hex(blob, blen);
        printf(" ");
        if (slen > 5 && sig[0] == 14) hex(sig + 5, get32(sig + 1)); else printf("failure");
        printf("\n");
        free(m);
        free(sig);
    }
    return 0;
}
