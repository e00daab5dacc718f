/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vmaugment: command-line access to the host through /dev/vmaugment.
 *
 * Human output by default, one JSON object per command with --json.
 * Exit status (docs/cli.rst, include/vmaugment/exit-status.h): 0 success,
 * 1 failed (a VMAUG_S_* status of the host, or no answer: device, timeout,
 * I/O), 2 usage error, 4 the host refused by signature or policy
 * (VMAUG_S_DENIED).
 */
#include <endian.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <locale.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmaugment.h"
#include "vmaugment/exit-status.h"

#define EXIT_HOST VMAUG_EXIT_FAILURE
#define EXIT_USAGE VMAUG_EXIT_USAGE
#define EXIT_TRANSPORT VMAUG_EXIT_FAILURE

/* -v: say what is sent, for debugging. */
static bool cli_verbose;

/* Round-trip times ping keeps for its percentiles (the latest ones). */
#define PING_SAMPLES_MAX (1u << 20)

/* Largest input invoke reads from a file or stdin. */
#define INVOKE_INPUT_MAX (VMAUG_MAX_REQ_PAYLOAD - sizeof(struct vmaug_invoke))

typedef struct {
    const char *device;
    bool json;
    unsigned int timeout_ms;
    vmaug_client *client;
} cli_state;

static void cli_json_string(const char *s, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

static void cli_json_str(const char *s)
{
    cli_json_string(s, strlen(s));
}

static void cli_usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "vmaugment: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'vmaugment --help'.\n");
}

/* Report a failed library call and return the exit status for it. */
static int cli_fail(cli_state *st, const char *what, int ret)
{
    const char *message = st->client ? vmaug_client_message(st->client) : "";

    if (st->json) {
        printf("{\"ok\":false,\"command\":");
        cli_json_str(what);
        if (ret > 0) {
            printf(",\"status\":");
            cli_json_str(vmaug_status_name(ret));
        } else {
            printf(",\"errno\":%d", -ret);
        }
        printf(",\"error\":");
        cli_json_str(vmaug_strerror(ret));
        printf(",\"message\":");
        cli_json_str(message);
        printf("}\n");
    }
    if (ret > 0) {
        fprintf(stderr, "vmaugment: %s: %s (%s)%s%s\n", what,
                vmaug_strerror(ret), vmaug_status_name(ret),
                *message ? ": " : "", message);
        return ret == VMAUG_S_DENIED ? VMAUG_EXIT_REFUSED : EXIT_HOST;
    }
    fprintf(stderr, "vmaugment: %s: %s%s\n", what, vmaug_strerror(ret),
            ret == -ETIMEDOUT ? " (no answer from the host in time)" :
            ret == -ENODEV ? " (the vmaugment device was removed)" :
            ret == -EBADMSG ? " (malformed answer from the host)" : "");
    return EXIT_TRANSPORT;
}

static int cli_connect(cli_state *st)
{
    int ret;

    if (cli_verbose) {
        fprintf(stderr, "vmaugment: debug: opening %s, timeout %u ms\n",
                st->device ? st->device : VMAUG_DEVICE_PATH, st->timeout_ms);
    }
    ret = vmaug_client_open(st->device, &st->client);

    if (ret < 0) {
        fprintf(stderr, "vmaugment: cannot open %s: %s%s\n",
                st->device ? st->device : VMAUG_DEVICE_PATH,
                strerror(-ret),
                ret == -ENOENT ? " (is the vmaugment module loaded?)" : "");
        if (st->json) {
            printf("{\"ok\":false,\"command\":\"open\",\"errno\":%d,"
                   "\"error\":", -ret);
            cli_json_str(strerror(-ret));
            printf("}\n");
        }
        return EXIT_TRANSPORT;
    }
    vmaug_client_set_timeout(st->client, st->timeout_ms);
    return 0;
}

/* "name" or "name@version". */
static void cli_split_ref(char *arg, const char **name, const char **version)
{
    char *at = strchr(arg, '@');

    *name = arg;
    *version = NULL;
    if (at) {
        *at = '\0';
        *version = at + 1;
    }
}

static bool cli_parse_uint(const char *s, unsigned long long max,
                           unsigned long long *out)
{
    char *end;

    errno = 0;
    *out = strtoull(s, &end, 0);
    return errno == 0 && end != s && *end == '\0' && s[0] != '-' &&
           *out <= max;
}

static int cli_parse_events(const char *list, uint32_t *mask)
{
    char *copy = strdup(list), *save = NULL;

    if (!copy) {
        return -ENOMEM;
    }
    *mask = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        uint32_t type;

        if (strcmp(tok, "all") == 0) {
            *mask |= ~VMAUG_EVENT_MASK(0);
            continue;
        }
        if (vmaug_event_from_name(tok, &type) < 0) {
            cli_usage_error("unknown event '%s'", tok);
            free(copy);
            return -EINVAL;
        }
        *mask |= VMAUG_EVENT_MASK(type);
    }
    free(copy);
    return 0;
}

static double cli_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cli_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void cli_print_module(cli_state *st, const struct vmaug_module_info *m,
                             bool last)
{
    if (st->json) {
        printf("{\"name\":");
        cli_json_str((const char *)m->ref.name);
        printf(",\"version\":");
        cli_json_str((const char *)m->ref.version);
        printf(",\"kind\":\"%s\",\"state\":\"%s\",\"events\":%" PRIu32 "}%s",
               vmaug_kind_name(le32toh(m->kind)),
               vmaug_module_state_name(le32toh(m->state)),
               le32toh(m->events), last ? "" : ",");
    } else {
        printf("%-24s %-12s %-14s %s\n", (const char *)m->ref.name,
               *m->ref.version ? (const char *)m->ref.version : "-",
               vmaug_kind_name(le32toh(m->kind)),
               vmaug_module_state_name(le32toh(m->state)));
    }
}

static int cmd_ping(cli_state *st, int argc, char **argv)
{
    static const struct option opts[] = {
        { "count", required_argument, NULL, 'c' },
        { "size", required_argument, NULL, 's' },
        { NULL, 0, NULL, 0 },
    };
    unsigned long long count = 1, size = 16;
    uint8_t payload[VMAUG_MAX_PING_PAYLOAD];
    double *rtt, total = 0;
    size_t samples;
    int opt, ret = 0;

    while ((opt = getopt_long(argc, argv, "c:s:", opts, NULL)) != -1) {
        if (opt == 'c' && cli_parse_uint(optarg, 100000000, &count) &&
            count > 0) {
            continue;
        }
        if (opt == 's' && cli_parse_uint(optarg, VMAUG_MAX_PING_PAYLOAD,
                                         &size) && size >= 16) {
            continue;
        }
        /* Name the limits: the first 16 bytes carry the caller's tag, and
         * the device echoes at most VMAUG_MAX_PING_PAYLOAD. */
        if (opt == 's') {
            cli_usage_error("ping --size takes 16..%u bytes, not '%s'",
                            VMAUG_MAX_PING_PAYLOAD, optarg);
            return EXIT_USAGE;
        }
        cli_usage_error("ping [--count N] [--size 16..%u]",
                        VMAUG_MAX_PING_PAYLOAD);
        return EXIT_USAGE;
    }
    if (optind != argc) {
        cli_usage_error("ping takes no arguments");
        return EXIT_USAGE;
    }
    ret = cli_connect(st);
    if (ret) {
        return ret;
    }
    samples = count < PING_SAMPLES_MAX ? (size_t)count : PING_SAMPLES_MAX;
    rtt = calloc(samples, sizeof(*rtt));
    if (!rtt) {
        return cli_fail(st, "ping", -ENOMEM);
    }
    for (size_t i = 0; i < size; i++) {
        payload[i] = (uint8_t)(i * 31 + 7);
    }
    for (unsigned long long i = 0; i < count; i++) {
        /* Every ping names its caller, so a crossed echo is caught. */
        uint64_t tag[2] = { (uint64_t)getpid(), i };
        double t0, t;

        memcpy(payload, tag, sizeof(tag));
        t0 = cli_now();
        ret = vmaug_ping(st->client, payload, size);
        t = cli_now() - t0;
        rtt[i % samples] = t;
        if (ret != 0) {
            char what[64];

            snprintf(what, sizeof(what), "ping %llu of %llu", i + 1, count);
            free(rtt);
            return cli_fail(st, what, ret == -EBADMSG ? -EBADMSG : ret);
        }
        total += t;
    }
    qsort(rtt, samples, sizeof(*rtt), cli_cmp_double);
    if (st->json) {
        printf("{\"ok\":true,\"command\":\"ping\",\"count\":%llu,"
               "\"size\":%llu,\"seconds\":%.6f,\"p50_us\":%.1f,"
               "\"p99_us\":%.1f,\"max_us\":%.1f}\n", count, size, total,
               rtt[samples / 2] * 1e6, rtt[(samples * 99) / 100] * 1e6,
               rtt[samples - 1] * 1e6);
    } else {
        printf("%llu ping(s) of %llu bytes echoed correctly: "
               "p50 %.1f us, p99 %.1f us, max %.1f us\n", count, size,
               rtt[samples / 2] * 1e6, rtt[(samples * 99) / 100] * 1e6,
               rtt[samples - 1] * 1e6);
    }
    free(rtt);
    return 0;
}

static int cmd_version(cli_state *st, int argc, char **argv)
{
    struct vmaug_version_info info;
    int ret;

    if (argc != 1) {
        cli_usage_error("version takes no arguments");
        return EXIT_USAGE;
    }
    ret = cli_connect(st);
    if (ret) {
        return ret;
    }
    ret = vmaug_version(st->client, &info);
    if (ret != 0) {
        return cli_fail(st, "version", ret);
    }
    if (st->json) {
        printf("{\"ok\":true,\"command\":\"version\",\"protocol\":%" PRIu32
               ",\"helper\":\"%s\",\"max_request\":%" PRIu32
               ",\"max_response\":%" PRIu32 ",\"device\":",
               le32toh(info.proto_version),
               le32toh(info.helper_state) == VMAUG_HELPER_CONNECTED ?
               "connected" : "disconnected",
               le32toh(info.max_req_payload), le32toh(info.max_resp_payload));
        cli_json_str((const char *)info.device);
        printf("}\n");
    } else {
        printf("device:       %s\nprotocol:     %" PRIu32 "\n"
               "host helper:  %s\nmax request:  %" PRIu32 " bytes\n"
               "max response: %" PRIu32 " bytes\n", (const char *)info.device,
               le32toh(info.proto_version),
               le32toh(info.helper_state) == VMAUG_HELPER_CONNECTED ?
               "connected" : "disconnected",
               le32toh(info.max_req_payload), le32toh(info.max_resp_payload));
    }
    return 0;
}

static int cmd_module(cli_state *st, const char *what, char *arg,
                      int (*fn)(vmaug_client *, const char *, const char *,
                                struct vmaug_module_info *))
{
    struct vmaug_module_info info;
    const char *name, *version;
    int ret;

    cli_split_ref(arg, &name, &version);
    ret = cli_connect(st);
    if (ret) {
        return ret;
    }
    ret = fn(st->client, name, version, &info);
    if (ret != 0) {
        return cli_fail(st, what, ret);
    }
    if (st->json) {
        printf("{\"ok\":true,\"command\":\"%s\",\"module\":", what);
        cli_print_module(st, &info, true);
        printf("}\n");
    } else {
        cli_print_module(st, &info, true);
    }
    return 0;
}

static int cmd_query(cli_state *st, int argc, char **argv)
{
    if (argc != 2) {
        cli_usage_error("query NAME[@VERSION]");
        return EXIT_USAGE;
    }
    return cmd_module(st, "query", argv[1], vmaug_query);
}

typedef struct {
    bool tty;
    double start;
} cli_progress;

static void cli_progress_cb(uint64_t done, uint64_t total, void *user)
{
    cli_progress *p = user;
    int width = 30, fill = total ? (int)(done * width / total) : width;
    double secs = cli_now() - p->start;

    if (!p->tty) {
        return;
    }
    fprintf(stderr, "\r[%.*s%*s] %3d%% %7.1f/%.1f MiB %6.1f MiB/s",
            fill, "##############################", width - fill, "",
            total ? (int)(done * 100 / total) : 100,
            done / 1048576.0, total / 1048576.0,
            secs > 0 ? done / 1048576.0 / secs : 0.0);
    if (done == total) {
        fputc('\n', stderr);
    }
}

static int cli_upload(cli_state *st, const char *path, const char *name,
                      const char *version, struct vmaug_module_info *info,
                      double *secs, uint64_t *bytes)
{
    cli_progress progress = {
        .tty = !st->json && isatty(STDERR_FILENO),
        .start = cli_now(),
    };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t size;
    int ret;

    if (fd < 0) {
        fprintf(stderr, "vmaugment: cannot open %s: %s\n", path,
                strerror(errno));
        return -errno;
    }
    size = lseek(fd, 0, SEEK_END);
    ret = vmaug_upload_fd(st->client, fd, name, version, cli_progress_cb,
                          &progress, info);
    *secs = cli_now() - progress.start;
    *bytes = size > 0 ? (uint64_t)size : 0;
    close(fd);
    return ret;
}

static int cmd_upload(cli_state *st, int argc, char **argv)
{
    static const struct option opts[] = {
        { "name", required_argument, NULL, 'n' },
        { "module-version", required_argument, NULL, 'm' },
        { NULL, 0, NULL, 0 },
    };
    struct vmaug_module_info info;
    const char *name = NULL, *version = NULL;
    uint64_t bytes = 0;
    double secs = 0;
    int opt, ret;

    while ((opt = getopt_long(argc, argv, "n:m:", opts, NULL)) != -1) {
        switch (opt) {
        case 'n':
            name = optarg;
            break;
        case 'm':
            version = optarg;
            break;
        default:
            cli_usage_error("upload FILE --name NAME --module-version V");
            return EXIT_USAGE;
        }
    }
    /* The host files packages under name and version. */
    if (optind != argc - 1 || !name || !version || !*version) {
        cli_usage_error("upload FILE --name NAME --module-version V");
        return EXIT_USAGE;
    }
    ret = cli_connect(st);
    if (ret) {
        return ret;
    }
    ret = cli_upload(st, argv[optind], name, version, &info, &secs, &bytes);
    if (ret != 0) {
        return cli_fail(st, "upload", ret);
    }
    if (st->json) {
        printf("{\"ok\":true,\"command\":\"upload\",\"bytes\":%" PRIu64
               ",\"seconds\":%.6f,\"mib_per_s\":%.1f,\"module\":", bytes,
               secs, secs > 0 ? bytes / 1048576.0 / secs : 0.0);
        cli_print_module(st, &info, true);
        printf("}\n");
    } else {
        printf("uploaded %" PRIu64 " bytes in %.3f s (%.1f MiB/s)\n", bytes,
               secs, secs > 0 ? bytes / 1048576.0 / secs : 0.0);
        cli_print_module(st, &info, true);
    }
    return 0;
}

static int cmd_load(cli_state *st, int argc, char **argv)
{
    static const struct option opts[] = {
        { "file", required_argument, NULL, 'f' },
        { NULL, 0, NULL, 0 },
    };
    struct vmaug_module_info info;
    const char *file = NULL, *name, *version;
    uint64_t bytes;
    double secs;
    int opt, ret;

    while ((opt = getopt_long(argc, argv, "f:", opts, NULL)) != -1) {
        if (opt != 'f') {
            cli_usage_error("load NAME[@VERSION] [--file PACKAGE]");
            return EXIT_USAGE;
        }
        file = optarg;
    }
    if (optind != argc - 1) {
        cli_usage_error("load NAME[@VERSION] [--file PACKAGE]");
        return EXIT_USAGE;
    }
    cli_split_ref(argv[optind], &name, &version);
    if (file && (!version || !*version)) {
        cli_usage_error("load --file needs NAME@VERSION: the upload names "
                        "its version");
        return EXIT_USAGE;
    }
    ret = cli_connect(st);
    if (ret) {
        return ret;
    }
    ret = vmaug_load(st->client, name, version, &info);
    if (ret == VMAUG_S_NOT_FOUND && file) {
        /* The host lacks it: hand it the local package, then retry. */
        if (!st->json) {
            fprintf(stderr, "vmaugment: %s not on the host, uploading %s\n",
                    name, file);
        }
        ret = cli_upload(st, file, name, version, &info, &secs, &bytes);
        if (ret != 0) {
            return cli_fail(st, "upload", ret);
        }
        ret = vmaug_load(st->client, name, version, &info);
    }
    if (ret != 0) {
        return cli_fail(st, "load", ret);
    }
    if (st->json) {
        printf("{\"ok\":true,\"command\":\"load\",\"module\":");
        cli_print_module(st, &info, true);
        printf("}\n");
    } else {
        cli_print_module(st, &info, true);
    }
    return 0;
}

static int cli_simple_result(cli_state *st, const char *what, int ret)
{
    if (ret != 0) {
        return cli_fail(st, what, ret);
    }
    if (st->json) {
        printf("{\"ok\":true,\"command\":\"%s\"}\n", what);
    }
    return 0;
}

static int cmd_unload(cli_state *st, int argc, char **argv)
{
    const char *name, *version;
    int ret;

    if (argc != 2) {
        cli_usage_error("unload NAME[@VERSION]");
        return EXIT_USAGE;
    }
    cli_split_ref(argv[1], &name, &version);
    ret = cli_connect(st);
    if (ret) {
        return ret;
    }
    return cli_simple_result(st, "unload",
                             vmaug_unload(st->client, name, version));
}

/* Read all of @path ("-" is stdin) up to @max bytes. */
static int cli_read_input(const char *path, size_t max, uint8_t **data,
                          size_t *len)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO :
             open(path, O_RDONLY | O_CLOEXEC);
    uint8_t *buf;
    size_t have = 0;

    if (fd < 0) {
        return -errno;
    }
    buf = malloc(max + 1);
    if (!buf) {
        if (fd != STDIN_FILENO) {
            close(fd);
        }
        return -ENOMEM;
    }
    for (;;) {
        ssize_t n = read(fd, buf + have, max + 1 - have);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int err = -errno;

            free(buf);
            if (fd != STDIN_FILENO) {
                close(fd);
            }
            return err;
        }
        if (n == 0) {
            break;
        }
        have += (size_t)n;
        if (have > max) {
            free(buf);
            if (fd != STDIN_FILENO) {
                close(fd);
            }
            return -EMSGSIZE;
        }
    }
    if (fd != STDIN_FILENO) {
        close(fd);
    }
    *data = buf;
    *len = have;
    return 0;
}

static void cli_json_hex(const uint8_t *data, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++) {
        printf("%02x", data[i]);
    }
    putchar('"');
}

static int cmd_invoke(cli_state *st, int argc, char **argv)
{
    static const struct option opts[] = {
        { "input", required_argument, NULL, 'i' },
        { NULL, 0, NULL, 0 },
    };
    const char *input = NULL;
    uint8_t *in = NULL;
    void *out = NULL;
    size_t in_len = 0, out_len = 0;
    int opt, ret;

    while ((opt = getopt_long(argc, argv, "i:", opts, NULL)) != -1) {
        if (opt != 'i') {
            cli_usage_error("invoke MODULE FUNCTION [--input FILE|-]");
            return EXIT_USAGE;
        }
        input = optarg;
    }
    if (optind != argc - 2) {
        cli_usage_error("invoke MODULE FUNCTION [--input FILE|-]");
        return EXIT_USAGE;
    }
    if (input) {
        ret = cli_read_input(input, INVOKE_INPUT_MAX, &in, &in_len);
        if (ret < 0) {
            fprintf(stderr, "vmaugment: cannot read %s: %s\n", input,
                    ret == -EMSGSIZE ? "input too large for one call" :
                    strerror(-ret));
            return EXIT_USAGE;
        }
    }
    ret = cli_connect(st);
    if (ret) {
        free(in);
        return ret;
    }
    ret = vmaug_invoke(st->client, argv[optind], argv[optind + 1], in, in_len,
                       &out, &out_len);
    free(in);
    if (ret != 0) {
        return cli_fail(st, "invoke", ret);
    }
    if (st->json) {
        printf("{\"ok\":true,\"command\":\"invoke\",\"output_hex\":");
        cli_json_hex(out, out_len);
        printf("}\n");
    } else if (out_len && fwrite(out, 1, out_len, stdout) != out_len) {
        free(out);
        return cli_fail(st, "invoke: writing the output", -EIO);
    }
    free(out);
    return 0;
}

static int cmd_list(cli_state *st, int argc, char **argv)
{
    uint32_t what = VMAUG_LIST_MODULES;
    void *entries = NULL;
    size_t count = 0;
    int ret;

    if (argc > 2 || (argc == 2 && strcmp(argv[1], "modules") != 0 &&
                     strcmp(argv[1], "registrations") != 0)) {
        cli_usage_error("list [modules|registrations]");
        return EXIT_USAGE;
    }
    if (argc == 2 && strcmp(argv[1], "registrations") == 0) {
        what = VMAUG_LIST_REGISTRATIONS;
    }
    ret = cli_connect(st);
    if (ret) {
        return ret;
    }
    ret = vmaug_list(st->client, what, &entries, &count);
    if (ret != 0) {
        return cli_fail(st, "list", ret);
    }
    if (st->json) {
        printf("{\"ok\":true,\"command\":\"list\",\"what\":\"%s\","
               "\"entries\":[", what == VMAUG_LIST_MODULES ? "modules" :
               "registrations");
    }
    for (size_t i = 0; i < count; i++) {
        if (what == VMAUG_LIST_MODULES) {
            cli_print_module(st, (struct vmaug_module_info *)entries + i,
                             i + 1 == count);
            continue;
        }
        const struct vmaug_registration *r =
            (struct vmaug_registration *)entries + i;
        if (st->json) {
            printf("{\"name\":");
            cli_json_str((const char *)r->ref.name);
            printf(",\"version\":");
            cli_json_str((const char *)r->ref.version);
            printf(",\"events\":%" PRIu32 ",\"required\":%s}%s",
                   le32toh(r->events),
                   le32toh(r->flags) & VMAUG_REG_F_REQUIRED ? "true" :
                   "false", i + 1 == count ? "" : ",");
        } else {
            printf("%-24s %-12s events 0x%08" PRIx32 "%s\n",
                   (const char *)r->ref.name,
                   *r->ref.version ? (const char *)r->ref.version : "-",
                   le32toh(r->events),
                   le32toh(r->flags) & VMAUG_REG_F_REQUIRED ?
                   " required" : "");
        }
    }
    if (st->json) {
        printf("]}\n");
    } else if (count == 0) {
        printf("(none)\n");
    }
    free(entries);
    return 0;
}

static int cmd_register(cli_state *st, int argc, char **argv)
{
    static const struct option opts[] = {
        { "events", required_argument, NULL, 'e' },
        { "required", no_argument, NULL, 'r' },
        { NULL, 0, NULL, 0 },
    };
    const char *name, *version;
    uint32_t events = 0, flags = 0;
    int opt, ret;

    while ((opt = getopt_long(argc, argv, "e:r", opts, NULL)) != -1) {
        if (opt == 'e') {
            if (cli_parse_events(optarg, &events) < 0) {
                return EXIT_USAGE;
            }
        } else if (opt == 'r') {
            flags |= VMAUG_REG_F_REQUIRED;
        } else {
            cli_usage_error("register NAME[@VERSION] [--events LIST] "
                            "[--required]");
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        cli_usage_error("register NAME[@VERSION] [--events LIST] "
                        "[--required]");
        return EXIT_USAGE;
    }
    cli_split_ref(argv[optind], &name, &version);
    ret = cli_connect(st);
    if (ret) {
        return ret;
    }
    return cli_simple_result(st, "register",
                             vmaug_register(st->client, name, version, events,
                                            flags));
}

static int cmd_unregister(cli_state *st, int argc, char **argv)
{
    const char *name, *version;
    int ret;

    if (argc != 2) {
        cli_usage_error("unregister NAME[@VERSION]");
        return EXIT_USAGE;
    }
    cli_split_ref(argv[1], &name, &version);
    ret = cli_connect(st);
    if (ret) {
        return ret;
    }
    return cli_simple_result(st, "unregister",
                             vmaug_unregister(st->client, name, version));
}

static int cmd_watch(cli_state *st, int argc, char **argv)
{
    static const struct option opts[] = {
        { "events", required_argument, NULL, 'e' },
        { "count", required_argument, NULL, 'c' },
        { "wait", required_argument, NULL, 'w' },
        { NULL, 0, NULL, 0 },
    };
    uint32_t mask = ~VMAUG_EVENT_MASK(0);
    unsigned long long count = 0, wait_s = 0, seen = 0;
    vmaug_event ev;
    int opt, ret;

    while ((opt = getopt_long(argc, argv, "e:c:w:", opts, NULL)) != -1) {
        if (opt == 'e') {
            if (cli_parse_events(optarg, &mask) < 0) {
                return EXIT_USAGE;
            }
        } else if (!((opt == 'c' && cli_parse_uint(optarg, ~0ULL, &count)) ||
                     (opt == 'w' && cli_parse_uint(optarg, 86400, &wait_s)))) {
            cli_usage_error("watch [--events LIST] [--count N] "
                            "[--wait SECONDS]");
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        cli_usage_error("watch [--events LIST] [--count N] [--wait SECONDS]");
        return EXIT_USAGE;
    }
    ret = cli_connect(st);
    if (ret) {
        return ret;
    }
    ret = vmaug_subscribe(st->client, mask);
    if (ret != 0) {
        return cli_fail(st, "subscribe", ret);
    }
    /* From here on no event is missed; scripts can wait for this line. */
    fprintf(stderr, "vmaugment: watching for events\n");
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (count == 0 || seen < count) {
        ret = vmaug_read_event(st->client, &ev,
                               wait_s ? (int)(wait_s * 1000) : -1);
        if (ret == -ETIMEDOUT) {
            break;
        }
        if (ret < 0) {
            return cli_fail(st, "watch", ret);
        }
        seen++;
        if (st->json) {
            printf("{\"seq\":%" PRIu64 ",\"type\":\"%s\",\"lost\":%s,",
                   ev.seq, vmaug_event_name(ev.type),
                   ev.flags & VMAUG_EVENT_F_LOST ? "true" : "false");
            /* Module events start with the module's reference. */
            if (ev.type >= VMAUG_EVENT_MODULE_LOADED &&
                ev.len >= sizeof(struct vmaug_module_ref)) {
                struct vmaug_module_ref ref;

                memcpy(&ref, ev.data, sizeof(ref));
                ref.name[sizeof(ref.name) - 1] = '\0';
                ref.version[sizeof(ref.version) - 1] = '\0';
                printf("\"module\":");
                cli_json_str((const char *)ref.name);
                printf(",\"version\":");
                cli_json_str((const char *)ref.version);
                printf(",");
            }
            printf("\"data_hex\":");
            cli_json_hex(ev.data, ev.len);
            printf("}\n");
        } else {
            printf("%" PRIu64 " %s%s", ev.seq, vmaug_event_name(ev.type),
                   ev.flags & VMAUG_EVENT_F_LOST ? " (earlier events lost)" :
                   "");
            if (ev.len >= sizeof(struct vmaug_module_ref)) {
                struct vmaug_module_ref ref;

                memcpy(&ref, ev.data, sizeof(ref));
                ref.name[sizeof(ref.name) - 1] = '\0';
                printf(" %s", (const char *)ref.name);
            }
            printf("\n");
        }
    }
    /* Asked for N events and got fewer within the wait: that is a failure. */
    if (count && seen < count) {
        fprintf(stderr, "vmaugment: watch: %llu of %llu events before the "
                "wait ended\n", seen, count);
        return EXIT_TRANSPORT;
    }
    return 0;
}

static int cmd_config(cli_state *st, int argc, char **argv)
{
    int ret;

    if (argc == 4 && strcmp(argv[1], "get") == 0) {
        void *value = NULL;
        size_t len = 0;

        ret = cli_connect(st);
        if (ret) {
            return ret;
        }
        ret = vmaug_config_get(st->client, argv[2], argv[3], &value, &len);
        if (ret != 0) {
            return cli_fail(st, "config get", ret);
        }
        if (st->json) {
            printf("{\"ok\":true,\"command\":\"config get\",\"value\":");
            cli_json_string(value, len);
            printf("}\n");
        } else {
            fwrite(value, 1, len, stdout);
            printf("\n");
        }
        free(value);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "set") == 0) {
        ret = cli_connect(st);
        if (ret) {
            return ret;
        }
        return cli_simple_result(st, "config set",
                                 vmaug_config_set(st->client, argv[2],
                                                  argv[3], argv[4],
                                                  strlen(argv[4])));
    }
    cli_usage_error("config get MODULE KEY | config set MODULE KEY VALUE");
    return EXIT_USAGE;
}

/* Where bundles applied offline leave their records (docs/offline.rst). */
#define SERVICING_DIR "/var/lib/vmaugment/offline"
/* A record is one small JSON object written by vmaugment-offline. */
#define SERVICING_RECORD_MAX 4096

/*
 * The string member @key of the record @text, copied to @out when it is
 * made of @alphabet only (the record's writer never escapes anything, so
 * neither may its reader accept escapes).
 */
static bool servicing_member(const char *text, const char *key,
                             const char *alphabet, char *out, size_t cap)
{
    char quoted[64];
    const char *p, *end;

    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    p = strstr(text, quoted);
    if (!p) {
        return false;
    }
    p += strlen(quoted);
    p += strspn(p, " \t\n");
    if (*p++ != ':') {
        return false;
    }
    p += strspn(p, " \t\n");
    if (*p++ != '"') {
        return false;
    }
    end = strchr(p, '"');
    if (!end || end == p || (size_t)(end - p) >= cap ||
        strspn(p, alphabet) != (size_t)(end - p)) {
        return false;
    }
    memcpy(out, p, end - p);
    out[end - p] = '\0';
    return true;
}

/* Report the record @path; rename it to PATH.confirmed (or .failed) once
 * the host holds the report.  Returns the exit status. */
static int servicing_one(cli_state *st, const char *path, uint32_t outcome,
                         const char *message)
{
    static const char names[] = "abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-";
    char text[SERVICING_RECORD_MAX + 1], bundle[VMAUG_NAME_MAX];
    char version[VMAUG_VERSION_MAX], hex[65], done[4096 + 16];
    uint8_t sha[32];
    uint32_t boot = 0;
    ssize_t n;
    int fd, ret;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "vmaugment: %s: %s\n", path, strerror(errno));
        return EXIT_TRANSPORT;
    }
    n = read(fd, text, sizeof(text));
    close(fd);
    if (n < 0 || n > SERVICING_RECORD_MAX) {
        fprintf(stderr, "vmaugment: %s: unreadable or too large\n", path);
        return EXIT_TRANSPORT;
    }
    text[n] = '\0';
    if (!servicing_member(text, "bundle", names, bundle, sizeof(bundle)) ||
        !servicing_member(text, "version", names, version,
                          sizeof(version)) ||
        !servicing_member(text, "manifest_sha256", "0123456789abcdef", hex,
                          sizeof(hex)) || strlen(hex) != 64) {
        fprintf(stderr, "vmaugment: %s: not a servicing record\n", path);
        return EXIT_USAGE;
    }
    for (int i = 0; i < 32; i++) {
        sscanf(hex + 2 * i, "%2hhx", &sha[i]);
    }
    ret = vmaug_servicing_report(st->client, bundle, version, sha, outcome,
                                 message, &boot);
    /* Already reported: the host has it, the record is done as well. */
    if (ret != 0 && ret != VMAUG_S_EXISTS) {
        return cli_fail(st, "servicing", ret);
    }
    if ((size_t)snprintf(done, sizeof(done), "%s.%s", path,
                         outcome == VMAUG_SERVICING_CONFIRMED ?
                         "confirmed" : "failed") >= sizeof(done)) {
        fprintf(stderr, "vmaugment: %s: path too long\n", path);
        return EXIT_USAGE;
    }
    if (rename(path, done) < 0) {
        fprintf(stderr, "vmaugment: %s: %s\n", done, strerror(errno));
        return EXIT_TRANSPORT;
    }
    if (st->json) {
        printf("{\"ok\":true,\"command\":\"servicing\",\"bundle\":");
        cli_json_str(bundle);
        printf(",\"version\":");
        cli_json_str(version);
        printf(",\"outcome\":\"%s\",\"boot\":%" PRIu32 ",\"already\":%s}\n",
               outcome == VMAUG_SERVICING_CONFIRMED ? "confirmed" : "failed",
               boot, ret == VMAUG_S_EXISTS ? "true" : "false");
    } else if (ret == VMAUG_S_EXISTS) {
        printf("%s %s: already reported (%s)\n", bundle, version,
               vmaug_client_message(st->client));
    } else {
        printf("%s %s: %s at boot %" PRIu32 "\n", bundle, version,
               outcome == VMAUG_SERVICING_CONFIRMED ? "confirmed" : "failed",
               boot);
    }
    return 0;
}

/*
 * servicing confirm: report every pending record of bundles applied to
 * this image while it was switched off.  Run early at boot (the systemd
 * unit vmaugment-servicing.service).
 */
static int cmd_servicing(cli_state *st, int argc, char **argv)
{
    static const struct option opts[] = {
        { "root", required_argument, NULL, 'r' },
        { "dir", required_argument, NULL, 'D' },
        { "failed", required_argument, NULL, 'f' },
        { "message", required_argument, NULL, 'm' },
        { NULL, 0, NULL, 0 },
    };
    static const char usage[] = "servicing confirm [--root DIR] [--dir DIR] "
                                "[--message TEXT | --failed TEXT]";
    const char *root = "", *dir = SERVICING_DIR, *message = NULL;
    uint32_t outcome = VMAUG_SERVICING_CONFIRMED;
    char path[4096];
    struct dirent **names = NULL;
    int opt, n, ret = 0, found = 0;

    while ((opt = getopt_long(argc, argv, "r:D:f:m:", opts, NULL)) != -1) {
        if (opt == 'r') {
            root = optarg;
        } else if (opt == 'D') {
            dir = optarg;
        } else if (opt == 'f' || opt == 'm') {
            message = optarg;
            outcome = opt == 'f' ? VMAUG_SERVICING_FAILED : outcome;
        } else {
            cli_usage_error(usage);
            return EXIT_USAGE;
        }
    }
    if (optind != argc - 1 || strcmp(argv[optind], "confirm") != 0) {
        cli_usage_error(usage);
        return EXIT_USAGE;
    }
    if (message && strlen(message) > VMAUG_SERVICING_MESSAGE_MAX) {
        cli_usage_error("the message is longer than %u bytes",
                        VMAUG_SERVICING_MESSAGE_MAX);
        return EXIT_USAGE;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s%s", root, dir) >=
        sizeof(path)) {
        cli_usage_error("the directory's path is too long");
        return EXIT_USAGE;
    }
    n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        if (errno == ENOENT) {
            printf("nothing to report\n");
            return 0;
        }
        fprintf(stderr, "vmaugment: %s: %s\n", path, strerror(errno));
        return EXIT_TRANSPORT;
    }
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        size_t len = strlen(name);

        if (ret == 0 && name[0] != '.' && len > 5 &&
            strcmp(name + len - 5, ".json") == 0) {
            char file[4096 + 256];

            if (!st->client && (ret = cli_connect(st)) != 0) {
                free(names[i]);
                continue;
            }
            if ((size_t)snprintf(file, sizeof(file), "%s/%s", path,
                                 name) >= sizeof(file)) {
                fprintf(stderr, "vmaugment: %s/%s: path too long\n", path,
                        name);
                ret = EXIT_USAGE;
            } else {
                ret = servicing_one(st, file, outcome, message);
            }
            found++;
        }
        free(names[i]);
    }
    free(names);
    if (ret == 0 && found == 0) {
        printf("nothing to report\n");
    }
    return ret;
}

static const struct {
    const char *name;
    int (*fn)(cli_state *st, int argc, char **argv);
    const char *help;
} cli_commands[] = {
    { "ping", cmd_ping,
      "[--count N] [--size BYTES]  echo through the device" },
    { "version", cmd_version,
      "                  device, protocol, helper state" },
    { "query", cmd_query, "NAME[@VERSION]      what the host has of a module" },
    { "load", cmd_load,
      "NAME[@VERSION] [--file PACKAGE]  load; upload first if missing\n"
      "                                  (--file needs NAME@VERSION)" },
    { "upload", cmd_upload, "FILE --name NAME --module-version V" },
    { "unload", cmd_unload, "NAME[@VERSION]" },
    { "invoke", cmd_invoke,
      "MODULE FUNCTION [--input FILE|-]  output to stdout" },
    { "list", cmd_list, "[modules|registrations]" },
    { "register", cmd_register, "NAME[@VERSION] [--events LIST] [--required]" },
    { "unregister", cmd_unregister, "NAME[@VERSION]" },
    { "watch", cmd_watch, "[--events LIST] [--count N] [--wait SECONDS]" },
    { "config", cmd_config, "get MODULE KEY | set MODULE KEY VALUE" },
    { "servicing", cmd_servicing,
      "confirm [--root DIR] [--dir DIR] "
      "[--message TEXT | --failed TEXT]\n"
      "                                  report updates applied offline" },
};

/* The event names of the protocol's vocabulary, so that none is left out
 * of the help. */
static void cli_help_events(void)
{
    const char *sep = " ";
    int col = printf("\nEvents: all, or a comma-separated list of") - 1;

    for (uint32_t type = 1; type <= VMAUG_EVENT_MAX; type++) {
        const char *name = vmaug_event_name(type);

        if (strcmp(name, "unknown") == 0) {
            continue;
        }
        if (col + strlen(sep) + strlen(name) + 1 > 72) {
            col = printf("%s\n  %s", *sep == ',' ? "," : "", name) - 2;
        } else {
            col += printf("%s%s", sep, name);
        }
        sep = ", ";
    }
    printf("\n");
}

static void cli_help(void)
{
    printf("Usage: vmaugment [--device PATH] [--json] [--timeout MS] "
           "COMMAND [ARGS]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof(cli_commands) / sizeof(cli_commands[0]);
         i++) {
        printf("  %-10s %s\n", cli_commands[i].name, cli_commands[i].help);
    }
    cli_help_events();
    printf("\nExamples:\n"
           "  vmaugment ping --count 10\n"
           "  vmaugment --json version\n"
           "  vmaugment load printer@1.1 --file printer-1.1.vmod\n"
           "  vmaugment invoke echo echo --input -\n"
           "\nOptions: -v/--verbose, --version, --help.\n"
           "Exit status: %d ok, %d failed (a refusal of the host, or no "
           "answer),\n%d usage, %d refused by signature or policy "
           "(DENIED); see docs/cli.rst.\n",
           VMAUG_EXIT_OK, VMAUG_EXIT_FAILURE, VMAUG_EXIT_USAGE,
           VMAUG_EXIT_REFUSED);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "device", required_argument, NULL, 'd' },
        { "json", no_argument, NULL, 'j' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "verbose", no_argument, NULL, 'v' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    cli_state st = { 0 };
    unsigned long long timeout;
    int opt, ret;

    setlocale(LC_ALL, "");
    while ((opt = getopt_long(argc, argv, "+d:jt:hv", opts, NULL)) != -1) {
        switch (opt) {
        case 'd':
            st.device = optarg;
            break;
        case 'j':
            st.json = true;
            break;
        case 't':
            if (!cli_parse_uint(optarg, VMAUG_MAX_TIMEOUT_MS, &timeout)) {
                cli_usage_error("--timeout takes 0..%u milliseconds",
                                VMAUG_MAX_TIMEOUT_MS);
                return EXIT_USAGE;
            }
            st.timeout_ms = (unsigned int)timeout;
            break;
        case 'h':
            cli_help();
            return 0;
        case 'v':
            cli_verbose = true;
            break;
        case 'V':
            printf("vmaugment %s\n", VMAUGMENT_VERSION);
            return 0;
        default:
            cli_usage_error("unknown option");
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        cli_usage_error("no command given");
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof(cli_commands) / sizeof(cli_commands[0]);
         i++) {
        if (strcmp(argv[optind], cli_commands[i].name) == 0) {
            int sub_argc = argc - optind;
            char **sub_argv = argv + optind;

            /* Each command parses its own options from its own argv. */
            optind = 0;
            ret = cli_commands[i].fn(&st, sub_argc, sub_argv);
            vmaug_client_close(st.client);
            if (fflush(stdout) != 0 && ret == 0) {
                ret = EXIT_TRANSPORT;
            }
            return ret;
        }
    }
    cli_usage_error("unknown command '%s'", argv[optind]);
    return EXIT_USAGE;
}
