/* calyx-cni and calyx-ipam on the host: a tiny static client of calyx-cni-server (the warm
 * plugin in the calyx-node pod), so nodes without Python (Flatcar, Bottlerocket) run Calyx's
 * CNI plugins and an ADD does not pay for an interpreter starting.
 *
 * It sends its program name (argv[0]'s basename), the CNI_* environment and stdin over the
 * unix socket (CALYX_CNI_SOCKET, else "cni_socket" in the network configuration, else
 * /run/calyx/cni.sock), prints the answer and exits with its code. Wire format: felix/cni/wire.py.
 * If the server cannot be reached it prints the CNI error object (code 11, try again later).
 * VERSION it answers itself. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/calyx/cni.sock"
#define SUPPORTED_VERSIONS "\"0.3.1\", \"0.4.0\", \"1.0.0\", \"1.1.0\""
#define SUPPORTED_LATEST "1.1.0"
#define MAX_STDIN (1 << 20)
#define ANSWER_TIMEOUT_SECONDS 300 /* longer than any ADD's own bounded wait */

extern char **environ;

static void fail(const char *socket_path, const char *what) {
    /* what comes from strerror or our own text: no quotes or backslashes to escape */
    printf("{\"cniVersion\": \"1.0.0\", \"code\": 11, \"msg\": \"is calyx-node running on this node? "
           "cannot reach %s: %s\", \"details\": \"calyx-cni-server answers there; see its log\"}\n",
           socket_path, what);
    exit(1);
}

static int put(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n, len -= (size_t)n;
    }
    return 0;
}

static int put_field(int fd, const void *data, uint32_t len) {
    uint32_t be = htonl(len);
    return put(fd, &be, 4) || put(fd, data, len);
}

static int get(int fd, void *data, size_t len) {
    char *p = data;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n, len -= (size_t)n;
    }
    return 0;
}

/* A bad "cni_socket": the configuration's error (code 7), as calyx-cni-server would say it. */
static void bad_config(const char *why) {
    printf("{\"cniVersion\": \"1.0.0\", \"code\": 7, \"msg\": \"invalid network configuration: cni_socket: %s\"}\n",
           why);
    exit(1);
}

/* Where the string value of "key" starts in the JSON text (after its quote), at the key's first
 * occurrence; NULL when the key is absent, NOT_A_STRING when its value is something else. The
 * first occurrence is the plugin's own: libcni writes keys sorted, so prevResult comes later. */
static char not_a_string;
#define NOT_A_STRING (&not_a_string)
static char *string_value(char *conf, const char *key) {
    char quoted[64];
    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    char *p = strstr(conf, quoted);
    if (!p) return NULL;
    for (p += strlen(quoted); *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'; p++) {}
    if (*p++ != ':') return NOT_A_STRING;
    for (; *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'; p++) {}
    return *p == '"' ? p + 1 : NOT_A_STRING;
}

/* "cni_socket": "PATH", or NULL; paths hold no quotes or backslashes (the server refuses them too). */
static const char *configured_socket(char *conf) {
    static char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char *p = string_value(conf, "cni_socket");
    if (!p) return NULL;
    if (p == NOT_A_STRING) bad_config("must be a string");
    size_t n = strcspn(p, "\"\\");
    if (p[n] != '"') bad_config("must not contain quotes or backslashes (the C client reads it unescaped)");
    if (n == 0 || *p != '/') bad_config("must be an absolute path (e.g. /run/calyx/cni.sock)");
    if (n >= sizeof(path)) bad_config("is too long for a unix socket path (at most 107 bytes)");
    memcpy(path, p, n);
    path[n] = '\0';
    return path;
}

/* VERSION needs no server, so a runtime loading the conflist before calyx-node runs (libcni asks
 * every plugin) sees it: the same answer as felix/cni/protocol.py's version_result. */
static int version(char *conf) {
    char *p = string_value(conf, "cniVersion");
    size_t n = p && p != NOT_A_STRING ? strcspn(p, "\"\\") : 0;
    if (!n || n > 16 || p[n] != '"') p = SUPPORTED_LATEST, n = strlen(SUPPORTED_LATEST);
    printf("{\"cniVersion\": \"%.*s\", \"supportedVersions\": [%s]}\n", (int)n, p, SUPPORTED_VERSIONS);
    return 0;
}

int main(int argc, char **argv) {
    (void)argc;
    const char *program = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    char *conf = malloc(MAX_STDIN + 1);
    size_t len = 0;
    ssize_t n;
    if (!conf) fail(DEFAULT_SOCKET, "out of memory");
    while (len < MAX_STDIN && ((n = read(0, conf + len, MAX_STDIN - len)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0) len += (size_t)n;
    conf[len] = '\0';

    const char *command = getenv("CNI_COMMAND");
    if (command && strcmp(command, "VERSION") == 0) return version(conf);
    const char *path = getenv("CALYX_CNI_SOCKET");
    if (!path || !*path) path = configured_socket(conf);
    if (!path) path = DEFAULT_SOCKET;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) fail(path, "the socket path is too long");
    strcpy(addr.sun_path, path);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) fail(path, strerror(errno));
    struct timeval timeout = {.tv_sec = ANSWER_TIMEOUT_SECONDS};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));

    uint32_t count = 0;
    for (char **e = environ; *e; e++) count += strncmp(*e, "CNI_", 4) == 0;
    uint32_t count_be = htonl(count);
    int bad = put(fd, "CXC1", 4) || put_field(fd, program, (uint32_t)strlen(program)) || put(fd, &count_be, 4);
    for (char **e = environ; *e && !bad; e++)
        if (strncmp(*e, "CNI_", 4) == 0) bad = put_field(fd, *e, (uint32_t)strlen(*e));
    bad = bad || put_field(fd, conf, (uint32_t)len);
    int write_errno = errno; /* a server that turns us away answers before reading: read it */

    char magic[4];
    uint32_t code, size;
    if (get(fd, magic, 4) || memcmp(magic, "CXC1", 4) || get(fd, &code, 4) || get(fd, &size, 4))
        fail(path, bad ? strerror(write_errno)
                       : errno == EAGAIN ? "no answer in time" : "the server closed the connection without an answer");
    size = ntohl(size);
    char *out = malloc(size ? size : 1);
    if (!out || get(fd, out, size)) fail(path, "the answer was cut short");
    fwrite(out, 1, size, stdout);
    return (int)ntohl(code);
}
