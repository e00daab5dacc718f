/*
 * vmaugment-module-host: the process one module runs in.
 *
 *   vmaugment-module-host MEMORY_BYTES CPU_SECONDS MAX_FILES MAX_FILE_BYTES
 *
 * Started by the helper through sandbox_spawn(), in namespaces of its own
 * and under an id of its own, with the module link socket at
 * MODLINK_FD_SOCKET.  Steps, in the order of OpenSSH's ssh_sandbox_child()
 * and before it knows which module it will run: sandbox_confine() (empty
 * root, id, capabilities, rlimits, PR_SET_NO_NEW_PRIVS, seccomp); then it
 * waits for MODLINK_START and its sealed payload memfd.  Only then is the
 * module mapped (its ELF constructors and IFUNC resolvers run inside the
 * sandbox, with nothing more than the dynamic loader needs for that one
 * file), sandbox_lock() takes that away, and the module's init runs.
 * Everything the module may ask of the host travels over the socket.
 *
 * The helper keeps such processes started ahead of need (spares), so
 * that process start-up and namespaces cost nothing when a module loads.
 *
 * GLib-free on purpose: nothing here should need more than libc.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "modlink.h"
#include "sandbox.h"

/* Host API replies are small (a configuration value, a job id, a scan
 * report). */
#define REPLY_MAX   ((VMAUG_MAX_CONFIG_VALUE > VMAUG_MODULE_MAX_SCAN_REPORT ? \
                      VMAUG_MAX_CONFIG_VALUE : \
                      VMAUG_MODULE_MAX_SCAN_REPORT) + 1024)

static int link_fd = MODLINK_FD_SOCKET;
static uint64_t api_tag;
static uint8_t *in_buf;         /* the current call or event */
static uint8_t *out_buf;        /* its result */
static uint8_t reply_buf[REPLY_MAX];

struct vmaug_host {
    const char *name;
};

static struct vmaug_host host;

static void die(int code, const char *what)
{
    fprintf(stderr, "vmaugment-module-host[%s]: %s\n",
            host.name != NULL ? host.name : "?", what);
    _exit(code);
}

static int link_send(uint16_t type, uint64_t tag, const void *a, size_t alen,
                     const void *b, size_t blen)
{
    struct vmaug_host_msg hdr = {
        .magic = htole32(VMAUG_MODLINK_MAGIC),
        .type = htole16(type),
        .len = htole32((uint32_t)(alen + blen)),
        .tag = htole64(tag),
    };
    struct iovec iov[3] = {
        { &hdr, sizeof(hdr) },
        { (void *)a, alen },
        { (void *)b, blen },
    };
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 3 };

    if (alen + blen > MODLINK_MAX_FROM_MODULE) {
        return -EMSGSIZE;
    }
    while (mh.msg_iovlen > 0) {
        ssize_t n = sendmsg(link_fd, &mh, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            die(3, "link write failed");
        }
        while (mh.msg_iovlen > 0 && (size_t)n >= mh.msg_iov[0].iov_len) {
            n -= mh.msg_iov[0].iov_len;
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
        if (mh.msg_iovlen > 0) {
            mh.msg_iov[0].iov_base = (uint8_t *)mh.msg_iov[0].iov_base + n;
            mh.msg_iov[0].iov_len -= n;
        }
    }
    return 0;
}

static void link_read_full(void *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t n = recv(link_fd, (uint8_t *)buf + done, len - done, 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            _exit(n == 0 ? 0 : 3);  /* the helper went away */
        }
        done += n;
    }
}

/* Receive one message into @buf; descriptors passed with it land in
 * fds[0..*n_fds) (at most 2), or are closed when the caller wants none. */
static uint32_t link_recv_fds(struct vmaug_host_msg *hdr, uint8_t *buf,
                              size_t cap, int *fds, unsigned *n_fds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(2 * sizeof(int))];
    } cm;
    struct iovec iov = { hdr, sizeof(*hdr) };
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1,
        .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf),
    };
    struct cmsghdr *c;
    unsigned got = 0;
    ssize_t n;
    uint32_t len;

    do {
        n = recvmsg(link_fd, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        _exit(n == 0 ? 0 : 3);
    }
    for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

            for (size_t i = 0; i < k; i++) {
                int fd;

                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (fds != NULL && got < *n_fds) {
                    fds[got++] = fd;
                } else {
                    close(fd);
                }
            }
        }
    }
    if (n_fds != NULL) {
        *n_fds = got;
    }
    if ((size_t)n < sizeof(*hdr)) {
        link_read_full((uint8_t *)hdr + n, sizeof(*hdr) - n);
    }
    len = le32toh(hdr->len);
    if (le32toh(hdr->magic) != VMAUG_MODLINK_MAGIC || len > cap) {
        die(3, "bad message from the helper");
    }
    link_read_full(buf, len);
    return len;
}

static uint32_t link_recv(struct vmaug_host_msg *hdr, uint8_t *buf,
                          size_t cap, int *fd)
{
    unsigned n = 1;
    int fds[1] = { -1 };
    uint32_t len = link_recv_fds(hdr, buf, cap, fd != NULL ? fds : NULL,
                                 fd != NULL ? &n : NULL);

    if (fd != NULL) {
        *fd = n > 0 ? fds[0] : -1;
    }
    return len;
}

/* One host API request and its reply. */
static int api_request(uint32_t op, const void *a, size_t alen,
                       const void *b, size_t blen, size_t *reply_len,
                       int *fd)
{
    uint8_t head[4 + VMAUG_MODULE_MAX_PATH + 1];
    struct vmaug_host_msg hdr;
    uint64_t tag = ++api_tag;
    uint32_t len;
    int32_t rc;
    uint32_t le_op = htole32(op);

    if (alen > sizeof(head) - 4) {
        return -EINVAL;
    }
    memcpy(head, &le_op, 4);
    memcpy(head + 4, a, alen);
    if (link_send(MODLINK_API, tag, head, 4 + alen, b, blen) < 0) {
        return -EMSGSIZE;
    }
    len = link_recv(&hdr, reply_buf, sizeof(reply_buf), fd);
    if (le16toh(hdr.type) != MODLINK_REPLY || le64toh(hdr.tag) != tag ||
        len < 4) {
        die(3, "unexpected reply from the helper");
    }
    memcpy(&rc, reply_buf, 4);
    if (reply_len != NULL) {
        *reply_len = len - 4;
    }
    return (int32_t)le32toh((uint32_t)rc);
}

static void host_log(vmaug_host *h, int level, const char *message)
{
    uint32_t le_level = htole32((uint32_t)level);
    size_t len = strnlen(message, VMAUG_MODULE_MAX_LOG);

    link_send(MODLINK_LOG, 0, &le_level, 4, message, len);
}

static int host_config_get(vmaug_host *h, const char *key, void *value,
                           size_t cap)
{
    size_t klen = strnlen(key, VMAUG_CONFIG_KEY_MAX);
    size_t got = 0;
    int rc;

    if (klen == 0 || klen >= VMAUG_CONFIG_KEY_MAX) {
        return -EINVAL;
    }
    rc = api_request(MODLINK_OP_CONFIG_GET, key, klen, NULL, 0, &got, NULL);
    if (rc >= 0) {
        memcpy(value, reply_buf + 4, got < cap ? got : cap);
        rc = (int)got;
    }
    return rc;
}

static int host_config_set(vmaug_host *h, const char *key, const void *value,
                           size_t len)
{
    size_t klen = strnlen(key, VMAUG_CONFIG_KEY_MAX);

    if (klen == 0 || klen >= VMAUG_CONFIG_KEY_MAX ||
        len > VMAUG_MAX_CONFIG_VALUE) {
        return -EINVAL;
    }
    /* key, NUL, value */
    return api_request(MODLINK_OP_CONFIG_SET, key, klen + 1, value, len,
                       NULL, NULL);
}

static int host_state_open(vmaug_host *h, const char *path, int flags)
{
    uint8_t args[4 + VMAUG_MODULE_MAX_PATH];
    uint32_t le_flags = htole32((uint32_t)flags);
    size_t plen = strnlen(path, VMAUG_MODULE_MAX_PATH + 1);
    int fd = -1;
    int rc;

    if (plen == 0 || plen > VMAUG_MODULE_MAX_PATH) {
        return -EINVAL;
    }
    memcpy(args, &le_flags, 4);
    memcpy(args + 4, path, plen);
    rc = api_request(MODLINK_OP_STATE_OPEN, args, 4 + plen, NULL, 0, NULL,
                     &fd);
    if (rc < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return rc;
    }
    return fd >= 0 ? fd : -EIO;
}

static int host_spool_submit(vmaug_host *h, const char *title,
                             const void *data, size_t len, char *job,
                             size_t job_cap)
{
    size_t tlen = strnlen(title, 256);
    size_t got = 0;
    int rc;

    if (tlen >= 256 || len == 0 || len > VMAUG_MODULE_MAX_SPOOL ||
        job_cap == 0) {
        return -EINVAL;
    }
    rc = api_request(MODLINK_OP_SPOOL, title, tlen + 1, data, len, &got,
                     NULL);
    if (rc >= 0) {
        size_t n = got < job_cap - 1 ? got : job_cap - 1;

        memcpy(job, reply_buf + 4, n);
        job[n] = '\0';
    }
    return rc;
}

static int host_post_event(vmaug_host *h, const void *data, size_t len)
{
    if (len > VMAUG_MAX_EVENT_PAYLOAD) {
        return -EINVAL;
    }
    return api_request(MODLINK_OP_POST_EVENT, NULL, 0, data, len, NULL, NULL);
}

static int host_post_ui(vmaug_host *h, const char *json)
{
    size_t len = strnlen(json, VMAUG_MODULE_MAX_UI + 1);

    if (len > VMAUG_MODULE_MAX_UI) {
        return -EINVAL;
    }
    return api_request(MODLINK_OP_POST_UI, NULL, 0, json, len, NULL, NULL);
}

static int host_request_restart(vmaug_host *h, int what)
{
    uint32_t le_what = htole32((uint32_t)what);

    return api_request(MODLINK_OP_RESTART, &le_what, 4, NULL, 0, NULL, NULL);
}

static int host_install_module(vmaug_host *h, const void *package,
                               size_t len)
{
    if (len == 0 || len > VMAUG_MODULE_MAX_SPOOL) {
        return -EINVAL;
    }
    return api_request(MODLINK_OP_INSTALL, NULL, 0, package, len, NULL, NULL);
}

static int host_open(vmaug_host *h, const char *path)
{
    size_t plen = strnlen(path, VMAUG_MODULE_MAX_HOST_PATH + 1);
    int fd = -1;
    int rc;

    if (plen == 0 || plen > VMAUG_MODULE_MAX_HOST_PATH) {
        return -EINVAL;
    }
    rc = api_request(MODLINK_OP_HOST_OPEN, NULL, 0, path, plen, NULL, &fd);
    if (rc < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return rc;
    }
    return fd >= 0 ? fd : -EIO;
}

/* The @got bytes of text a reply carried, into the module's @report. */
static void host_copy_report(size_t got, char *report, size_t cap,
                             size_t *report_len)
{
    if (report_len != NULL) {
        *report_len = 0;
    }
    if (report != NULL && cap > 0) {
        size_t n = got < cap - 1 ? got : cap - 1;

        memcpy(report, reply_buf + 4, n);
        report[n] = '\0';
        if (report_len != NULL) {
            *report_len = n;
        }
    }
}

static int host_scan_image(vmaug_host *h, const char *paths,
                           const struct vmaug_scan_limits *limits,
                           char *report, size_t cap, size_t *report_len)
{
    struct vmaug_scan_limits le = { 0 };
    size_t plen = paths != NULL ?
                  strnlen(paths, VMAUG_MODULE_MAX_SCAN_PATHS + 1) : 0;
    size_t got = 0;
    int rc;

    if (plen > VMAUG_MODULE_MAX_SCAN_PATHS ||
        (limits != NULL && limits->reserved != 0)) {
        return -EINVAL;
    }
    if (limits != NULL) {
        le.max_file_size = htole64(limits->max_file_size);
        le.timeout_s = htole32(limits->timeout_s);
    }
    rc = api_request(MODLINK_OP_SCAN_IMAGE, &le, sizeof(le), paths, plen,
                     &got, NULL);
    host_copy_report(got, report, cap, report_len);
    return rc;
}

static int host_quarantine_image(vmaug_host *h, const char *paths,
                                 char *report, size_t cap,
                                 size_t *report_len)
{
    size_t plen = paths != NULL ?
                  strnlen(paths, VMAUG_MODULE_MAX_SCAN_PATHS + 1) : 0;
    size_t got = 0;
    int rc;

    if (plen > VMAUG_MODULE_MAX_SCAN_PATHS) {
        return -EINVAL;
    }
    rc = api_request(MODLINK_OP_QUARANTINE_IMAGE, NULL, 0, paths, plen,
                     &got, NULL);
    host_copy_report(got, report, cap, report_len);
    return rc;
}

static int host_set_reason(vmaug_host *h, const char *reason)
{
    size_t len = strnlen(reason, VMAUG_MODULE_MAX_REASON + 1);

    if (len > VMAUG_MODULE_MAX_REASON) {
        len = VMAUG_MODULE_MAX_REASON;
    }
    return api_request(MODLINK_OP_SET_REASON, NULL, 0, reason, len, NULL,
                       NULL);
}

static const struct vmaug_host_api host_api = {
    .abi_version = VMAUG_MODULE_ABI_VERSION,
    .size = sizeof(struct vmaug_host_api),
    .log = host_log,
    .config_get = host_config_get,
    .config_set = host_config_set,
    .state_open = host_state_open,
    .spool_submit = host_spool_submit,
    .post_event = host_post_event,
    .post_ui = host_post_ui,
    .request_restart = host_request_restart,
    .install_module = host_install_module,
    .host_open = host_open,
    .scan_image = host_scan_image,
    .set_reason = host_set_reason,
    .quarantine_image = host_quarantine_image,
};

static uint64_t arg_u64(const char *s)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s) {
        die(2, "bad argument");
    }
    return v;
}

static void serve(const struct vmaug_module *mod, void *priv)
{
    for (;;) {
        struct vmaug_host_msg hdr;
        uint32_t len = link_recv(&hdr, in_buf, MODLINK_MAX_TO_MODULE, NULL);
        uint64_t tag = le64toh(hdr.tag);
        uint32_t status;
        size_t out_len = 0;

        switch (le16toh(hdr.type)) {
        case MODLINK_CALL: {
            const uint8_t *nul = memchr(in_buf, 0,
                                        len < VMAUG_FUNCTION_MAX ?
                                        len : VMAUG_FUNCTION_MAX);
            size_t flen;

            if (nul == NULL) {
                die(3, "call without a function name");
            }
            flen = nul - in_buf;
            status = (uint32_t)mod->call(priv, (const char *)in_buf,
                                         in_buf + flen + 1,
                                         len - flen - 1, out_buf,
                                         VMAUG_MAX_RESP_PAYLOAD, &out_len);
            /* A module cannot make us send more than it was given. */
            if (out_len > VMAUG_MAX_RESP_PAYLOAD) {
                out_len = 0;
                status = VMAUG_S_INTERNAL;
            }
            break;
        }
        case MODLINK_EVENT: {
            uint32_t type;

            if (len < 4) {
                die(3, "short event");
            }
            memcpy(&type, in_buf, 4);
            status = mod->event != NULL ?
                     (uint32_t)mod->event(priv, le32toh(type), in_buf + 4,
                                          len - 4) : 0;
            break;
        }
        case MODLINK_FINI:
            if (mod->fini != NULL) {
                mod->fini(priv);
            }
            _exit(0);
        default:
            die(3, "unknown message from the helper");
        }
        status = htole32(status);
        link_send(MODLINK_RESULT, tag, &status, 4, out_buf, out_len);
    }
}

/* Wait, confined, for the module to run; returns its payload memfd. */
static int start_wait(void)
{
    static char name[VMAUG_NAME_MAX];
    struct modlink_start st;
    struct vmaug_host_msg hdr;
    int fds[1] = { -1 };
    unsigned n = 1;

    if (link_recv_fds(&hdr, (uint8_t *)&st, sizeof(st), fds, &n) !=
        sizeof(st) || le16toh(hdr.type) != MODLINK_START || n != 1) {
        die(2, "bad START");
    }
    memcpy(name, st.name, sizeof(name));
    name[sizeof(name) - 1] = '\0';
    host.name = name;
    return fds[0];
}

static void load_failed(const char *why)
{
    int32_t rc = (int32_t)htole32((uint32_t)-ENOEXEC);

    link_send(MODLINK_READY, 0, &rc, 4, NULL, 0);
    die(4, why);
}

int main(int argc, char **argv)
{
    static const int io_fds[] = { MODLINK_FD_SOCKET };
    const struct vmaug_module *mod;
    SandboxPolicy policy = {
        .io_fds = io_fds,
        .n_io_fds = 1,
        .code_fd = MODLINK_FD_CODE,
    };
    char path[64];
    void *handle;
    void *priv = NULL;
    int payload_fd;
    int seals;
    int32_t rc;

    if (argc != 5) {
        die(2, "usage: vmaugment-module-host MEMORY CPU FILES FILE_BYTES");
    }
    policy.limits.memory_bytes = arg_u64(argv[1]);
    policy.limits.cpu_seconds = arg_u64(argv[2]);
    policy.limits.max_files = arg_u64(argv[3]);
    policy.limits.max_file_bytes = arg_u64(argv[4]);
    /* Before anything of a module exists here. */
    rc = sandbox_confine(&policy, MODLINK_FD_SANDBOX);
    if (rc < 0) {
        fprintf(stderr, "vmaugment-module-host: cannot apply the sandbox: "
                "%s\n", strerror(-rc));
        _exit(5);
    }
    in_buf = malloc(MODLINK_MAX_TO_MODULE + 1);
    out_buf = malloc(VMAUG_MAX_RESP_PAYLOAD);
    if (in_buf == NULL || out_buf == NULL) {
        die(4, "out of memory");
    }

    payload_fd = start_wait();
    /* The helper verified these bytes; only a sealed memfd guarantees
     * they are still the bytes it verified. */
    seals = fcntl(payload_fd, F_GET_SEALS);
    if (seals < 0 || (seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW |
                               F_SEAL_SEAL)) !=
        (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
        die(2, "payload is not a sealed memfd");
    }
    if (sandbox_code_file(payload_fd, path, sizeof(path)) < 0) {
        load_failed("cannot place the payload");
    }
    /* RTLD_NOW: every relocation now, nothing lazy after the lock. */
    handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        const char *why = dlerror();

        load_failed(why != NULL ? why : "dlopen failed");
    }
    /* No more files, no more executable memory. */
    if (sandbox_lock() < 0) {
        die(5, "cannot lock the sandbox");
    }
    mod = dlsym(handle, VMAUG_MODULE_SYMBOL);
    if (mod == NULL || mod->abi_version != VMAUG_MODULE_ABI_VERSION ||
        mod->size < sizeof(struct vmaug_module) || mod->init == NULL ||
        mod->call == NULL) {
        load_failed("no usable " VMAUG_MODULE_SYMBOL);
    }

    rc = mod->init(&host_api, &host, &priv);
    {
        int32_t le = (int32_t)htole32((uint32_t)rc);

        link_send(MODLINK_READY, 0, &le, 4, NULL, 0);
    }
    if (rc != 0) {
        _exit(1);
    }
    serve(mod, priv);
    return 0;
}
