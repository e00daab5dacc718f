/*
 * scanner: scans host paths against a signature list at image start (and
 * on request) and reports what it finds.
 *
 * Configuration, which the guest sets (CONFIG_SET, read here as
 * "guest.<key>"): "paths", host files or directories one per line;
 * "signatures", lines "NAME:HEX" naming a byte pattern.  Both are guest
 * input: the host owner's policy decides which directories the module may
 * read at all (read_roots), and the helper opens nothing else for it.
 *
 * Calls: "scan" returns the findings, one "path: NAME" line each, and
 * sends "findings N" to the guest; the "image-start" event does the same
 * without a caller.  Files are read up to SCAN_MAX_FILE bytes,
 * directories one level deep.
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
    n = sc_api->config_get(sc_host, "guest.paths", paths, sizeof(paths) - 1);
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

static int scanner_init(const struct vmaug_host_api *api, vmaug_host *h,
                        void **priv)
{
    sc_api = api;
    sc_host = h;
    *priv = NULL;
    file_buf = malloc(SCAN_MAX_FILE);
    return file_buf != NULL ? 0 : -ENOMEM;
}

static int scanner_event(void *priv, uint32_t type, const void *data,
                         size_t len)
{
    char out[4096];
    size_t out_len;

    if (type == VMAUG_EVENT_IMAGE_START) {
        scanner_run(out, sizeof(out), &out_len);
    }
    return 0;
}

static int scanner_call(void *priv, const char *function, const void *in,
                        size_t in_len, void *out, size_t out_cap,
                        size_t *out_len)
{
    if (strcmp(function, "scan") != 0) {
        return VMAUG_S_NOT_FOUND;
    }
    scanner_run(out, out_cap, out_len);
    return VMAUG_S_OK;
}

VMAUG_MODULE_DEFINE(
    .init = scanner_init,
    .event = scanner_event,
    .call = scanner_call,
);
