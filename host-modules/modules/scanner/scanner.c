/*
 * scanner: scans its VM's disk image for malware at image start, before
 * the guest's first instruction, and refuses the start or reports what
 * it found.
 *
 * The scan itself is the host's (scan_image, capability "image-scan"):
 * the helper runs ClamAV over the image's filesystems in the offline
 * tool's confined worker with the database the host owner keeps; this
 * module only decides.  Its configuration, which the guest sets
 * (CONFIG_SET, read here as "guest.<key>"), like the registration that
 * makes it run, unless the host owner pinned the registration with keys
 * of its own: the helper then answers "guest.<key>" with the host
 * owner's value, whatever the guest set (docs/registrations.rst):
 *
 *   policy          "report" (default): the image starts, the findings
 *                   are shown to the host owner (a UI element, which QMP
 *                   query-vmaugment-ui lists) and to the guest (the
 *                   "report" call, which also sends them as an event);
 *                   "refuse": an infected image does not start, the
 *                   finding named; "quarantine": the host moves it aside
 *                   (quarantine_image) before the start, or it is refused
 *   paths           guest paths to scan, one per line (default: all)
 *   max-file-size   bytes of one file scanned (default: the host's)
 *   timeout         seconds for the whole scan (default: the host's)
 *   on-incomplete   "report-and-continue" (default) or "refuse": what a
 *                   scan that could not finish (time, limits, unreadable
 *                   files, the scanner failed or was not granted) does
 *
 * Everything the module reads (its configuration, the report) is checked
 * and bounded; nothing of it is trusted to be well formed.
 *
 * The "scan" call is a tiny engine of its own, kept for the tests of the
 * host-read broker: hex patterns ("signatures", lines "NAME:HEX") over
 * host files or directories ("host-paths", one per line) below the roots
 * the host owner's policy grants; it finds no malware anyone would use it
 * for.  docs/modules.rst ("scanner") describes both.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/virtio_vmaugment.h>

#include "vmaugment-module.h"

#define SCAN_MAX_FILE       (16 * 1024 * 1024)
#define SCAN_MAX_SIGS       64
#define SCAN_MAX_PATTERN    64

typedef struct {
    char name[32];
    unsigned char pattern[SCAN_MAX_PATTERN];
    size_t len;
} Signature;

typedef struct {
    char *out;
    size_t cap;
    size_t len;
    unsigned count;
} Findings;

static const struct vmaug_host_api *sc_api;
static vmaug_host *sc_host;
static Signature sigs[SCAN_MAX_SIGS];
static size_t n_sigs;
static char *file_buf;

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Parse "NAME:HEX" lines; malformed lines are skipped. */
static void scanner_load_signatures(void)
{
    char text[VMAUG_MAX_CONFIG_VALUE + 1];
    int n = sc_api->config_get(sc_host, "guest.signatures", text,
                               sizeof(text) - 1);
    char *line, *save = NULL;

    n_sigs = 0;
    if (n <= 0) {
        return;
    }
    text[n < (int)sizeof(text) - 1 ? n : (int)sizeof(text) - 1] = '\0';
    for (line = strtok_r(text, "\n", &save); line != NULL && n_sigs <
         SCAN_MAX_SIGS; line = strtok_r(NULL, "\n", &save)) {
        char *colon = strchr(line, ':');
        Signature *s = &sigs[n_sigs];
        size_t hex;

        if (colon == NULL || colon == line ||
            (size_t)(colon - line) >= sizeof(s->name)) {
            continue;
        }
        hex = strlen(colon + 1);
        if (hex == 0 || hex % 2 != 0 || hex / 2 > SCAN_MAX_PATTERN) {
            continue;
        }
        memcpy(s->name, line, colon - line);
        s->name[colon - line] = '\0';
        s->len = 0;
        for (size_t i = 0; i < hex; i += 2) {
            int hi = hexval(colon[1 + i]), lo = hexval(colon[2 + i]);

            if (hi < 0 || lo < 0) {
                s->len = 0;
                break;
            }
            s->pattern[s->len++] = (unsigned char)(hi << 4 | lo);
        }
        if (s->len > 0) {
            n_sigs++;
        }
    }
}

static void findings_add(Findings *f, const char *path, const char *name)
{
    int n;

    f->count++;
    if (f->len >= f->cap) {
        return;
    }
    n = snprintf(f->out + f->len, f->cap - f->len, "%s: %s\n", path, name);
    if (n > 0) {
        f->len += (size_t)n < f->cap - f->len ? (size_t)n : f->cap - f->len;
    }
}

static void scanner_file(int fd, const char *path, Findings *f)
{
    size_t len = 0;

    while (len < SCAN_MAX_FILE) {
        ssize_t n = read(fd, file_buf + len, SCAN_MAX_FILE - len);

        if (n <= 0) {
            break;
        }
        len += n;
    }
    for (size_t i = 0; i < n_sigs; i++) {
        if (memmem(file_buf, len, sigs[i].pattern, sigs[i].len) != NULL) {
            findings_add(f, path, sigs[i].name);
        }
    }
}

static void scanner_dir(int fd, const char *path, Findings *f)
{
    char buf[8192];

    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));

        if (n <= 0) {
            return;
        }
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            char child[VMAUG_MODULE_MAX_HOST_PATH + 1];
            int cfd;

            off += d->d_reclen;
            if (d->d_type != DT_REG ||
                snprintf(child, sizeof(child), "%s/%s", path, d->d_name) >=
                (int)sizeof(child)) {
                continue;
            }
            cfd = sc_api->host_open(sc_host, child);
            if (cfd >= 0) {
                scanner_file(cfd, child, f);
                close(cfd);
            }
        }
    }
}

static unsigned scanner_run(char *out, size_t cap, size_t *out_len)
{
    char paths[VMAUG_MAX_CONFIG_VALUE + 1];
    Findings f = { out, cap, 0, 0 };
    char *line, *save = NULL;
    int n;

    scanner_load_signatures();
    n = sc_api->config_get(sc_host, "guest.host-paths", paths,
                           sizeof(paths) - 1);
    if (n > 0 && n_sigs > 0) {
        paths[n < (int)sizeof(paths) - 1 ? n : (int)sizeof(paths) - 1] = 0;
        for (line = strtok_r(paths, "\n", &save); line != NULL;
             line = strtok_r(NULL, "\n", &save)) {
            struct stat st;
            int fd = sc_api->host_open(sc_host, line);

            if (fd < 0) {
                findings_add(&f, line, "(not readable)");
                continue;
            }
            if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
                scanner_dir(fd, line, &f);
            } else if (S_ISREG(st.st_mode)) {
                scanner_file(fd, line, &f);
            }
            close(fd);
        }
    }
    *out_len = f.len;
    {
        char msg[32];

        snprintf(msg, sizeof(msg), "findings %u", f.count);
        (void)sc_api->post_event(sc_host, msg, strlen(msg));
    }
    return f.count;
}

/* ---- The image scan ---- */

#define SC_POLICY_REPORT        0
#define SC_POLICY_REFUSE        1
#define SC_POLICY_QUARANTINE    2

/* The last image scan of this run, for the "report" call. */
/* The scan's report, and a quarantine's after it. */
static char last_report[2 * VMAUG_MODULE_MAX_SCAN_REPORT + 1];
static int last_result = -1;

/* A guest key as a string: 0 and @out "" when unset. */
static int scanner_config(const char *key, char *out, size_t cap)
{
    char name[VMAUG_CONFIG_KEY_MAX];
    int n;

    snprintf(name, sizeof(name), "guest.%s", key);
    n = sc_api->config_get(sc_host, name, out, cap - 1);
    if (n < 0) {
        out[0] = '\0';
        return n == -ENOENT ? 0 : n;
    }
    out[(size_t)n < cap - 1 ? (size_t)n : cap - 1] = '\0';
    /* A trailing newline is what "echo" leaves. */
    n = (int)strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) {
        out[--n] = '\0';
    }
    return 0;
}

/* A decimal number of at most 19 digits, or -1. */
static long long scanner_number(const char *s)
{
    long long v = 0;

    if (*s == '\0' || strlen(s) > 18) {
        return -1;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return -1;
        }
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* The first line of @report starting with @tag and a blank, or NULL. */
static const char *scanner_line(const char *report, const char *tag)
{
    size_t n = strlen(tag);

    for (const char *l = report; l != NULL && *l != '\0';) {
        const char *nl = strchr(l, '\n');

        if (strncmp(l, tag, n) == 0 && l[n] == ' ') {
            return l + n + 1;
        }
        l = nl != NULL ? nl + 1 : NULL;
    }
    return NULL;
}

/* How many lines of @report start with @tag. */
static unsigned scanner_count(const char *report, const char *tag)
{
    size_t n = strlen(tag);
    unsigned count = 0;

    for (const char *l = report; l != NULL && *l != '\0';) {
        const char *nl = strchr(l, '\n');

        if (strncmp(l, tag, n) == 0 && l[n] == ' ') {
            count++;
        }
        l = nl != NULL ? nl + 1 : NULL;
    }
    return count;
}

/* One line: @what, then the first line tagged @tag (its tabs as blanks)
 * and how many more there are. */
static void scanner_summary(char *out, size_t cap, const char *what,
                            const char *report, const char *tag)
{
    const char *first = scanner_line(report, tag);
    unsigned count = scanner_count(report, tag);
    size_t len;

    snprintf(out, cap, "%s", what);
    len = strlen(out);
    if (first != NULL && len + 2 < cap) {
        size_t i = 0;

        out[len++] = ':';
        out[len++] = ' ';
        while (first[i] != '\0' && first[i] != '\n' && len + 1 < cap) {
            out[len++] = first[i] == '\t' ? ' ' : first[i];
            i++;
        }
        out[len] = '\0';
        if (count > 1) {
            snprintf(out + len, cap - len, " (and %u more)", count - 1);
        }
    }
}

/* @text as the "text" of a JSON UI element. */
static void scanner_post_ui(const char *text)
{
    char json[VMAUG_MODULE_MAX_UI];
    size_t len;

    len = (size_t)snprintf(json, sizeof(json),
                           "{\"id\":\"image-scan\",\"type\":\"label\","
                           "\"text\":\"");
    for (const unsigned char *c = (const unsigned char *)text;
         *c != '\0' && len + 8 < sizeof(json); c++) {
        if (*c == '"' || *c == '\\') {
            json[len++] = '\\';
            json[len++] = (char)*c;
        } else if (*c < 0x20) {
            len += (size_t)snprintf(json + len, sizeof(json) - len,
                                    "\\u%04x", *c);
        } else {
            json[len++] = (char)*c;
        }
    }
    snprintf(json + len, sizeof(json) - len, "\"}");
    (void)sc_api->post_ui(sc_host, json);
}

/*
 * The scan of @paths found @finding (its summary line): have the host
 * move it aside, looking where the scan looked, and say what moved.  The
 * image must not start infected: a quarantine that fails refuses the
 * start.
 */
static int scanner_quarantine(const char *paths, const char *finding,
                              size_t scan_len)
{
    char line[VMAUG_MODULE_MAX_REASON];
    char why[2 * VMAUG_MODULE_MAX_REASON + 8];
    size_t len = 0;
    int rc = -ENOSYS;

    if (sc_api->size >= offsetof(struct vmaug_host_api, quarantine_image) +
        sizeof(sc_api->quarantine_image)) {
        rc = sc_api->quarantine_image(sc_host, paths, last_report + scan_len,
                                      sizeof(last_report) - scan_len, &len);
    }
    if (rc < 0) {
        if (rc == -EPERM) {
            snprintf(last_report + scan_len, sizeof(last_report) - scan_len,
                     "failure the host owner did not grant "
                     "image-quarantine\n");
        } else if (rc == -ENOSYS) {
            snprintf(last_report + scan_len, sizeof(last_report) - scan_len,
                     "failure the host has no quarantine\n");
        } else if (scanner_line(last_report + scan_len, "failure") == NULL) {
            snprintf(last_report + scan_len, sizeof(last_report) - scan_len,
                     "failure error %d\n", -rc);
        }
        scanner_summary(line, sizeof(line), "quarantine failed",
                        last_report + scan_len, "failure");
        scanner_post_ui(line);
        snprintf(why, sizeof(why), "%s; %s", line, finding);
        sc_api->set_reason(sc_host, why);
        return rc == -ENOSYS ? -EACCES : rc;
    }
    scanner_summary(line, sizeof(line), "quarantined",
                    last_report + scan_len, "moved");
    scanner_post_ui(line);
    return 0;
}

static int scanner_image_start(void)
{
    char policy_s[32], incomplete_s[32], num[32];
    char paths[VMAUG_MAX_CONFIG_VALUE + 1];
    char line[VMAUG_MODULE_MAX_REASON];
    struct vmaug_scan_limits limits = { 0 };
    int policy, refuse_incomplete;
    long long v;
    size_t len = 0;
    int rc;

    if (scanner_config("policy", policy_s, sizeof(policy_s)) < 0 ||
        scanner_config("on-incomplete", incomplete_s,
                       sizeof(incomplete_s)) < 0 ||
        scanner_config("paths", paths, sizeof(paths)) < 0) {
        sc_api->set_reason(sc_host, "its configuration cannot be read");
        return -EIO;
    }
    if (policy_s[0] == '\0' || strcmp(policy_s, "report") == 0) {
        policy = SC_POLICY_REPORT;
    } else if (strcmp(policy_s, "refuse") == 0) {
        policy = SC_POLICY_REFUSE;
    } else if (strcmp(policy_s, "quarantine") == 0) {
        policy = SC_POLICY_QUARANTINE;
    } else {
        /* What the owner meant cannot be known: never less than asked. */
        sc_api->set_reason(sc_host, "policy is none of report, refuse, "
                           "quarantine");
        return -EINVAL;
    }
    if (incomplete_s[0] == '\0' ||
        strcmp(incomplete_s, "report-and-continue") == 0) {
        refuse_incomplete = 0;
    } else if (strcmp(incomplete_s, "refuse") == 0) {
        refuse_incomplete = 1;
    } else {
        sc_api->set_reason(sc_host, "on-incomplete is neither "
                           "report-and-continue nor refuse");
        return -EINVAL;
    }
    if (scanner_config("max-file-size", num, sizeof(num)) == 0 &&
        num[0] != '\0') {
        if ((v = scanner_number(num)) <= 0) {
            sc_api->set_reason(sc_host, "max-file-size is not a number "
                               "of bytes");
            return -EINVAL;
        }
        limits.max_file_size = (uint64_t)v;
    }
    if (scanner_config("timeout", num, sizeof(num)) == 0 && num[0] != '\0') {
        if ((v = scanner_number(num)) <= 0 || v > 86400) {
            sc_api->set_reason(sc_host, "timeout is not a number of "
                               "seconds");
            return -EINVAL;
        }
        limits.timeout_s = (uint32_t)v;
    }

    rc = sc_api->scan_image(sc_host, paths, &limits, last_report,
                            VMAUG_MODULE_MAX_SCAN_REPORT + 1, &len);
    last_result = rc;
    if (rc == VMAUG_SCAN_CLEAN) {
        scanner_summary(line, sizeof(line), "clean", last_report, "files");
        scanner_post_ui(line);
        return 0;
    }
    if (rc == VMAUG_SCAN_INFECTED) {
        scanner_summary(line, sizeof(line), "infected", last_report,
                        "finding");
        scanner_post_ui(line);
        if (policy == SC_POLICY_REPORT) {
            return 0;
        }
        if (policy == SC_POLICY_QUARANTINE) {
            return scanner_quarantine(paths, line, len);
        }
        sc_api->set_reason(sc_host, line);
        return -EACCES;
    }
    if (rc == VMAUG_SCAN_INCOMPLETE) {
        scanner_summary(line, sizeof(line), "scan incomplete", last_report,
                        "error");
    } else {
        if (rc == -EPERM) {
            snprintf(last_report, sizeof(last_report),
                     "failure the host owner did not grant image-scan\n");
        } else if (rc == -ENODEV) {
            snprintf(last_report, sizeof(last_report),
                     "failure the VM names no disk image\n");
        } else if (scanner_line(last_report, "failure") == NULL) {
            snprintf(last_report, sizeof(last_report),
                     "failure error %d\n", -rc);
        }
        scanner_summary(line, sizeof(line), "scan failed", last_report,
                        "failure");
    }
    scanner_post_ui(line);
    if (refuse_incomplete) {
        sc_api->set_reason(sc_host, line);
        return rc < 0 ? rc : -EAGAIN;
    }
    return 0;
}

/* The last scan's report to the caller, and to every guest program
 * watching module messages. */
static int scanner_report(char *out, size_t out_cap, size_t *out_len)
{
    const char *text = last_result == -1 && last_report[0] == '\0' ?
                       "result none\n" : last_report;
    size_t len = strlen(text);

    if (len > out_cap) {
        len = out_cap;
    }
    memcpy(out, text, len);
    *out_len = len;
    /* Room for the module's reference in front of it. */
    (void)sc_api->post_event(sc_host, text,
                             len < VMAUG_MAX_EVENT_PAYLOAD - 64 ? len :
                             VMAUG_MAX_EVENT_PAYLOAD - 64);
    return VMAUG_S_OK;
}

static int scanner_init(const struct vmaug_host_api *api, vmaug_host *h,
                        void **priv)
{
    /* scan_image and set_reason came with the host API's growth. */
    if (api->size < offsetof(struct vmaug_host_api, set_reason) +
        sizeof(api->set_reason)) {
        return -ENOSYS;
    }
    sc_api = api;
    sc_host = h;
    *priv = NULL;
    file_buf = malloc(SCAN_MAX_FILE);
    return file_buf != NULL ? 0 : -ENOMEM;
}

static int scanner_event(void *priv, uint32_t type, const void *data,
                         size_t len)
{
    if (type == VMAUG_EVENT_IMAGE_START) {
        return scanner_image_start();
    }
    return 0;
}

static int scanner_call(void *priv, const char *function, const void *in,
                        size_t in_len, void *out, size_t out_cap,
                        size_t *out_len)
{
    if (strcmp(function, "scan") == 0) {
        scanner_run(out, out_cap, out_len);
        return VMAUG_S_OK;
    }
    if (strcmp(function, "report") == 0) {
        return scanner_report(out, out_cap, out_len);
    }
    return VMAUG_S_NOT_FOUND;
}

VMAUG_MODULE_DEFINE(
    .init = scanner_init,
    .event = scanner_event,
    .call = scanner_call,
);
