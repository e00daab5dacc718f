/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvmaugment: requests to the host through /dev/vmaugment.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "vmaugment.h"
#include "vmaugment/protocol-names.h"

/* Room for the host's explanation of an error status. */
#define VMAUG_MESSAGE_MAX 1024
/* Buffer for reading a file that cannot be mapped. */
#define VMAUG_READ_CHUNK VMAUG_CHUNK_MAX_DATA

struct vmaug_client {
    int fd;
    unsigned int timeout_ms;
    char message[VMAUG_MESSAGE_MAX];
};

const char *vmaug_status_name(int status)
{
    const struct vmaug_proto_status *st =
        status < 0 ? NULL : vmaug_proto_status(status);

    return st ? st->name : "UNKNOWN";
}

const char *vmaug_strerror(int ret)
{
    if (ret < 0) {
        return strerror(-ret);
    }
    if (ret > VMAUG_S_MAX) {
        return "unknown host status";
    }
    return vmaug_proto_status(ret)->text;
}

const char *vmaug_event_name(uint32_t type)
{
    const char *name = vmaug_proto_event_name(type);

    return name ? name : "unknown";
}

int vmaug_event_from_name(const char *name, uint32_t *type)
{
    uint32_t found = vmaug_proto_event_type(name);

    if (!found) {
        return -EINVAL;
    }
    *type = found;
    return 0;
}

const char *vmaug_kind_name(uint32_t kind)
{
    const char *name = vmaug_proto_kind_name(kind);

    return name ? name : "unknown";
}

const char *vmaug_module_state_name(uint32_t state)
{
    switch (state) {
    case VMAUG_MODULE_STORED:
        return "stored";
    case VMAUG_MODULE_LOADED:
        return "loaded";
    case VMAUG_MODULE_CRASHED:
        return "crashed";
    default:
        return "unknown";
    }
}

/* Copy @src into a NUL-padded field that must keep at least one NUL. */
static int vmaug_set_field(uint8_t *field, size_t size, const char *src)
{
    size_t len = src ? strlen(src) : 0;

    if (len >= size) {
        return -ENAMETOOLONG;
    }
    memset(field, 0, size);
    memcpy(field, src ? src : "", len);
    return 0;
}

int vmaug_module_ref_set(struct vmaug_module_ref *ref, const char *name,
                         const char *version)
{
    int ret;

    if (!name || !*name) {
        return -EINVAL;
    }
    ret = vmaug_set_field(ref->name, sizeof(ref->name), name);
    if (ret == 0) {
        ret = vmaug_set_field(ref->version, sizeof(ref->version), version);
    }
    return ret;
}

int vmaug_client_open(const char *path, vmaug_client **client)
{
    vmaug_client *c = calloc(1, sizeof(*c));

    if (!c) {
        return -ENOMEM;
    }
    c->fd = open(path ? path : VMAUG_DEVICE_PATH, O_RDWR | O_CLOEXEC);
    if (c->fd < 0) {
        int err = -errno;

        free(c);
        return err;
    }
    *client = c;
    return 0;
}

void vmaug_client_close(vmaug_client *client)
{
    if (client) {
        close(client->fd);
        free(client);
    }
}

int vmaug_client_fd(const vmaug_client *client)
{
    return client->fd;
}

void vmaug_client_set_timeout(vmaug_client *client, unsigned int timeout_ms)
{
    client->timeout_ms = timeout_ms;
}

const char *vmaug_client_message(const vmaug_client *client)
{
    return client->message;
}

static void vmaug_set_message(vmaug_client *client, const void *text,
                              size_t len)
{
    const unsigned char *p = text;
    size_t n = 0;

    /* The host's text is shown to people: keep it printable. */
    for (size_t i = 0; i < len && n < sizeof(client->message) - 1; i++) {
        client->message[n++] = (p[i] >= 0x20 && p[i] != 0x7f) ||
                               p[i] == '\t' ? (char)p[i] : '?';
    }
    client->message[n] = '\0';
}

int vmaug_call(vmaug_client *client, uint16_t opcode,
               const void *req, size_t req_len,
               void *resp, size_t resp_cap, size_t *resp_len)
{
    uint8_t scratch[VMAUG_MESSAGE_MAX];
    struct vmaug_ioctl_call call = {
        .opcode = opcode,
        .timeout_ms = client->timeout_ms,
        .req_addr = (uintptr_t)req,
        .req_len = (uint32_t)req_len,
    };
    bool use_scratch = resp_cap < sizeof(scratch);

    if (req_len > VMAUG_MAX_REQ_PAYLOAD) {
        return -EMSGSIZE;
    }
    /* A small buffer still gets the host's error text. */
    call.resp_addr = (uintptr_t)(use_scratch ? scratch : resp);
    call.resp_len = use_scratch ? sizeof(scratch) :
                    (uint32_t)(resp_cap > VMAUG_MAX_RESP_PAYLOAD ?
                               VMAUG_MAX_RESP_PAYLOAD : resp_cap);
    client->message[0] = '\0';
    if (ioctl(client->fd, VMAUG_IOC_CALL, &call) < 0) {
        return -errno;
    }
    if (call.status != VMAUG_S_OK) {
        if (call.status != VMAUG_S_NO_SPACE) {
            vmaug_set_message(client, use_scratch ? scratch : resp,
                              call.resp_len);
        }
        if (resp_len) {
            *resp_len = call.resp_len;
        }
        return call.status;
    }
    if (use_scratch && call.resp_len > resp_cap) {
        /* The answer is larger than the caller's buffer. */
        if (resp_len) {
            *resp_len = call.resp_len;
        }
        return VMAUG_S_NO_SPACE;
    }
    if (use_scratch && call.resp_len) {
        memcpy(resp, scratch, call.resp_len);
    }
    if (resp_len) {
        *resp_len = call.resp_len;
    }
    return 0;
}

/* A call whose answer must be exactly @resp_size bytes. */
static int vmaug_call_fixed(vmaug_client *client, uint16_t opcode,
                            const void *req, size_t req_len,
                            void *resp, size_t resp_size)
{
    size_t len = 0;
    int ret;

    ret = vmaug_call(client, opcode, req, req_len, resp, resp_size, &len);
    if (ret == 0 && len != resp_size) {
        return -EBADMSG;
    }
    return ret;
}

/* A call whose answer may be of any size up to VMAUG_MAX_RESP_PAYLOAD. */
static int vmaug_call_alloc(vmaug_client *client, uint16_t opcode,
                            const void *req, size_t req_len,
                            void **out, size_t *out_len)
{
    size_t cap = 4096;

    for (;;) {
        void *buf = malloc(cap);
        size_t len = 0;
        int ret;

        if (!buf) {
            return -ENOMEM;
        }
        ret = vmaug_call(client, opcode, req, req_len, buf, cap, &len);
        if (ret == VMAUG_S_NO_SPACE && len > cap &&
            len <= VMAUG_MAX_RESP_PAYLOAD) {
            free(buf);
            cap = len;
            continue;
        }
        if (ret != 0) {
            free(buf);
            return ret;
        }
        *out = buf;
        *out_len = len;
        return 0;
    }
}

int vmaug_ping(vmaug_client *client, const void *data, size_t len)
{
    uint8_t echo[VMAUG_MAX_PING_PAYLOAD];
    size_t echo_len = 0;
    int ret;

    if (len > sizeof(echo)) {
        return -EMSGSIZE;
    }
    ret = vmaug_call(client, VMAUG_OP_PING, data, len, echo, sizeof(echo),
                     &echo_len);
    if (ret == 0 && (echo_len != len || memcmp(echo, data, len) != 0)) {
        return -EBADMSG;
    }
    return ret;
}

int vmaug_version(vmaug_client *client, struct vmaug_version_info *info)
{
    int ret = vmaug_call_fixed(client, VMAUG_OP_VERSION, NULL, 0, info,
                               sizeof(*info));

    if (ret == 0) {
        info->device[sizeof(info->device) - 1] = '\0';
    }
    return ret;
}

static int vmaug_module_call(vmaug_client *client, uint16_t opcode,
                             const char *name, const char *version,
                             struct vmaug_module_info *info)
{
    struct vmaug_module_ref ref;
    struct vmaug_module_info tmp;
    int ret = vmaug_module_ref_set(&ref, name, version);

    if (ret < 0) {
        return ret;
    }
    ret = vmaug_call_fixed(client, opcode, &ref, sizeof(ref),
                           info ? info : &tmp, sizeof(tmp));
    if (ret == 0 && info) {
        /* The strings are shown and compared: make sure they end. */
        info->ref.name[sizeof(info->ref.name) - 1] = '\0';
        info->ref.version[sizeof(info->ref.version) - 1] = '\0';
    }
    return ret;
}

int vmaug_query(vmaug_client *client, const char *name, const char *version,
                struct vmaug_module_info *info)
{
    return vmaug_module_call(client, VMAUG_OP_QUERY, name, version, info);
}

int vmaug_load(vmaug_client *client, const char *name, const char *version,
               struct vmaug_module_info *info)
{
    return vmaug_module_call(client, VMAUG_OP_LOAD, name, version, info);
}

static int vmaug_ref_call(vmaug_client *client, uint16_t opcode,
                          const char *name, const char *version)
{
    struct vmaug_module_ref ref;
    int ret = vmaug_module_ref_set(&ref, name, version);

    if (ret < 0) {
        return ret;
    }
    return vmaug_call(client, opcode, &ref, sizeof(ref), NULL, 0, NULL);
}

int vmaug_unload(vmaug_client *client, const char *name, const char *version)
{
    return vmaug_ref_call(client, VMAUG_OP_UNLOAD, name, version);
}

int vmaug_unregister(vmaug_client *client, const char *name,
                     const char *version)
{
    return vmaug_ref_call(client, VMAUG_OP_UNREGISTER, name, version);
}

/* The bytes of @fd, mapped when possible, else read into memory. */
typedef struct {
    uint8_t *data;
    size_t size;
    bool mapped;
} vmaug_file_data;

static int vmaug_file_data_get(int fd, vmaug_file_data *fdata)
{
    struct stat st;
    size_t got = 0;

    if (fstat(fd, &st) < 0) {
        return -errno;
    }
    if (!S_ISREG(st.st_mode)) {
        return -EINVAL;
    }
    if (st.st_size <= 0 || (uint64_t)st.st_size > VMAUG_MAX_UPLOAD_SIZE) {
        return -EFBIG;
    }
    fdata->size = (size_t)st.st_size;
    fdata->data = mmap(NULL, fdata->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (fdata->data != MAP_FAILED) {
        fdata->mapped = true;
        return 0;
    }
    fdata->mapped = false;
    fdata->data = malloc(fdata->size);
    if (!fdata->data) {
        return -ENOMEM;
    }
    while (got < fdata->size) {
        ssize_t n = pread(fd, fdata->data + got, fdata->size - got,
                          (off_t)got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            int err = n < 0 ? -errno : -EIO;

            free(fdata->data);
            return err;
        }
        got += (size_t)n;
    }
    return 0;
}

static void vmaug_file_data_put(vmaug_file_data *fdata)
{
    if (fdata->mapped) {
        munmap(fdata->data, fdata->size);
    } else {
        free(fdata->data);
    }
}

static int vmaug_upload_chunks(vmaug_client *client, uint64_t upload_id,
                               uint64_t offset, const vmaug_file_data *fdata,
                               vmaug_progress_fn progress, void *user)
{
    while (offset < fdata->size) {
        uint64_t left = fdata->size - offset;
        struct vmaug_ioctl_chunk chunk = {
            .upload_id = upload_id,
            .offset = offset,
            .data_addr = (uintptr_t)(fdata->data + offset),
            .data_len = left > VMAUG_CHUNK_MAX_DATA ? VMAUG_CHUNK_MAX_DATA :
                        (uint32_t)left,
            .timeout_ms = client->timeout_ms,
        };

        if (ioctl(client->fd, VMAUG_IOC_UPLOAD_CHUNK, &chunk) < 0) {
            return -errno;
        }
        if (chunk.status != VMAUG_S_OK) {
            client->message[0] = '\0';
            return chunk.status;
        }
        /* The host must move forward and stay within the file. */
        if (chunk.offset <= offset || chunk.offset > fdata->size) {
            return -EBADMSG;
        }
        offset = chunk.offset;
        if (progress) {
            progress(offset, fdata->size, user);
        }
    }
    return 0;
}

int vmaug_upload_fd(vmaug_client *client, int fd, const char *name,
                    const char *version, vmaug_progress_fn progress,
                    void *user, struct vmaug_module_info *info)
{
    struct vmaug_upload_begin begin;
    struct vmaug_upload_state state;
    struct vmaug_upload_ref ref;
    struct vmaug_module_info tmp;
    struct sha256_ctx sha;
    vmaug_file_data fdata = { 0 };
    int ret;

    memset(&begin, 0, sizeof(begin));
    ret = vmaug_module_ref_set(&begin.ref, name, version);
    if (ret < 0) {
        return ret;
    }
    ret = vmaug_file_data_get(fd, &fdata);
    if (ret < 0) {
        return ret;
    }
    sha256_init(&sha);
    sha256_update(&sha, fdata.size, fdata.data);
    sha256_digest(&sha, sizeof(begin.sha256), begin.sha256);
    begin.total_size = htole64(fdata.size);

    ret = vmaug_call_fixed(client, VMAUG_OP_UPLOAD_BEGIN, &begin,
                           sizeof(begin), &state, sizeof(state));
    if (ret != 0) {
        goto out;
    }
    /* BEGIN may resume an earlier upload of the same package. */
    if (le64toh(state.offset) > fdata.size) {
        ret = -EBADMSG;
        goto out;
    }
    if (progress) {
        progress(le64toh(state.offset), fdata.size, user);
    }
    ret = vmaug_upload_chunks(client, le64toh(state.upload_id),
                              le64toh(state.offset), &fdata, progress, user);
    ref.upload_id = state.upload_id;
    if (ret == 0) {
        ret = vmaug_call_fixed(client, VMAUG_OP_UPLOAD_COMMIT, &ref,
                               sizeof(ref), info ? info : &tmp, sizeof(tmp));
    } else if (ret != VMAUG_S_UNAVAILABLE && ret != VMAUG_S_INTERRUPTED) {
        /*
         * Without the helper the upload stays resumable; otherwise tell
         * the host to drop the partial data (best effort).
         */
        char saved[VMAUG_MESSAGE_MAX];

        memcpy(saved, client->message, sizeof(saved));
        vmaug_call(client, VMAUG_OP_UPLOAD_ABORT, &ref, sizeof(ref), NULL, 0,
                   NULL);
        memcpy(client->message, saved, sizeof(saved));
    }
    if (ret == 0 && info) {
        info->ref.name[sizeof(info->ref.name) - 1] = '\0';
        info->ref.version[sizeof(info->ref.version) - 1] = '\0';
    }
out:
    vmaug_file_data_put(&fdata);
    return ret;
}

int vmaug_invoke(vmaug_client *client, const char *module,
                 const char *function, const void *in, size_t in_len,
                 void **out, size_t *out_len)
{
    struct vmaug_invoke hdr;
    uint8_t *req;
    int ret;

    if (in_len > VMAUG_MAX_REQ_PAYLOAD - sizeof(hdr)) {
        return -EMSGSIZE;
    }
    if (vmaug_set_field(hdr.module, sizeof(hdr.module), module) < 0 ||
        vmaug_set_field(hdr.function, sizeof(hdr.function), function) < 0) {
        return -ENAMETOOLONG;
    }
    req = malloc(sizeof(hdr) + in_len);
    if (!req) {
        return -ENOMEM;
    }
    memcpy(req, &hdr, sizeof(hdr));
    if (in_len) {
        memcpy(req + sizeof(hdr), in, in_len);
    }
    ret = vmaug_call_alloc(client, VMAUG_OP_INVOKE, req, sizeof(hdr) + in_len,
                           out, out_len);
    free(req);
    return ret;
}

static int vmaug_config_ref_set(struct vmaug_config_ref *ref,
                                const char *module, const char *key)
{
    if (!module || !*module || !key || !*key) {
        return -EINVAL;
    }
    if (vmaug_set_field(ref->module, sizeof(ref->module), module) < 0 ||
        vmaug_set_field(ref->key, sizeof(ref->key), key) < 0) {
        return -ENAMETOOLONG;
    }
    return 0;
}

int vmaug_config_get(vmaug_client *client, const char *module,
                     const char *key, void **value, size_t *value_len)
{
    struct vmaug_config_ref ref;
    int ret = vmaug_config_ref_set(&ref, module, key);

    if (ret < 0) {
        return ret;
    }
    ret = vmaug_call_alloc(client, VMAUG_OP_CONFIG_GET, &ref, sizeof(ref),
                           value, value_len);
    if (ret == 0 && *value_len > VMAUG_MAX_CONFIG_VALUE) {
        free(*value);
        return -EBADMSG;
    }
    return ret;
}

int vmaug_config_set(vmaug_client *client, const char *module,
                     const char *key, const void *value, size_t value_len)
{
    uint8_t req[sizeof(struct vmaug_config_ref) + VMAUG_MAX_CONFIG_VALUE];
    struct vmaug_config_ref ref;
    int ret = vmaug_config_ref_set(&ref, module, key);

    if (ret < 0) {
        return ret;
    }
    if (value_len > VMAUG_MAX_CONFIG_VALUE) {
        return -EMSGSIZE;
    }
    memcpy(req, &ref, sizeof(ref));
    if (value_len) {
        memcpy(req + sizeof(ref), value, value_len);
    }
    return vmaug_call(client, VMAUG_OP_CONFIG_SET, req,
                      sizeof(ref) + value_len, NULL, 0, NULL);
}

int vmaug_register(vmaug_client *client, const char *name,
                   const char *version, uint32_t events, uint32_t flags)
{
    struct vmaug_registration reg;
    int ret;

    memset(&reg, 0, sizeof(reg));
    ret = vmaug_module_ref_set(&reg.ref, name, version);
    if (ret < 0) {
        return ret;
    }
    reg.events = htole32(events);
    reg.flags = htole32(flags);
    return vmaug_call(client, VMAUG_OP_REGISTER, &reg, sizeof(reg), NULL, 0,
                      NULL);
}

int vmaug_servicing_report(vmaug_client *client, const char *bundle,
                           const char *version,
                           const uint8_t manifest_sha256[32],
                           uint32_t outcome, const char *message,
                           uint32_t *boot)
{
    uint8_t req[sizeof(struct vmaug_servicing_report) +
                VMAUG_SERVICING_MESSAGE_MAX];
    struct vmaug_servicing_report rep, answer;
    size_t mlen = message ? strlen(message) : 0;
    size_t alen = 0;
    int ret;

    memset(&rep, 0, sizeof(rep));
    if (strlen(bundle) >= sizeof(rep.bundle) ||
        strlen(version) >= sizeof(rep.version)) {
        return -ENAMETOOLONG;
    }
    if (mlen > VMAUG_SERVICING_MESSAGE_MAX) {
        return -EMSGSIZE;
    }
    memcpy(rep.bundle, bundle, strlen(bundle));
    memcpy(rep.version, version, strlen(version));
    memcpy(rep.manifest_sha256, manifest_sha256,
           sizeof(rep.manifest_sha256));
    rep.outcome = htole32(outcome);
    memcpy(req, &rep, sizeof(rep));
    if (mlen) {
        memcpy(req + sizeof(rep), message, mlen);
    }
    ret = vmaug_call(client, VMAUG_OP_SERVICING_REPORT, req,
                     sizeof(rep) + mlen, &answer, sizeof(answer), &alen);
    if (ret != 0) {
        return ret;
    }
    /* The host's answer is the report with the boot filled in. */
    if (alen != sizeof(answer)) {
        return -EBADMSG;
    }
    if (boot) {
        *boot = le32toh(answer.boot);
    }
    return 0;
}

int vmaug_list(vmaug_client *client, uint32_t what, void **entries,
               size_t *count)
{
    size_t entry_size = what == VMAUG_LIST_MODULES ?
                        sizeof(struct vmaug_module_info) :
                        sizeof(struct vmaug_registration);
    size_t resp_size = sizeof(struct vmaug_list_resp) +
                       VMAUG_LIST_MAX_ENTRIES * entry_size;
    uint8_t *all = NULL, *resp;
    size_t have = 0;
    int ret = 0;

    if (what != VMAUG_LIST_MODULES && what != VMAUG_LIST_REGISTRATIONS) {
        return -EINVAL;
    }
    resp = malloc(resp_size);
    if (!resp) {
        return -ENOMEM;
    }
    for (;;) {
        struct vmaug_list_req req = {
            .what = htole32(what),
            .start = htole32((uint32_t)have),
        };
        struct vmaug_list_resp head;
        size_t len = 0, n;
        uint8_t *grown;

        ret = vmaug_call(client, VMAUG_OP_LIST, &req, sizeof(req), resp,
                         resp_size, &len);
        if (ret != 0) {
            break;
        }
        if (len < sizeof(head)) {
            ret = -EBADMSG;
            break;
        }
        memcpy(&head, resp, sizeof(head));
        n = le32toh(head.count);
        /* The count must agree with the bytes that came with it. */
        if (n > VMAUG_LIST_MAX_ENTRIES ||
            len != sizeof(head) + n * entry_size ||
            le32toh(head.total) > 1u << 20) {
            ret = -EBADMSG;
            break;
        }
        if (n) {
            grown = realloc(all, (have + n) * entry_size);
            if (!grown) {
                ret = -ENOMEM;
                break;
            }
            all = grown;
            memcpy(all + have * entry_size, resp + sizeof(head),
                   n * entry_size);
            have += n;
        }
        if (n == 0 || have >= le32toh(head.total)) {
            break;
        }
    }
    free(resp);
    if (ret != 0) {
        free(all);
        return ret;
    }
    /* The strings are shown and compared: make sure they end. */
    for (size_t i = 0; i < have; i++) {
        struct vmaug_module_ref *ref = (void *)(all + i * entry_size);

        ref->name[sizeof(ref->name) - 1] = '\0';
        ref->version[sizeof(ref->version) - 1] = '\0';
    }
    *entries = all;
    *count = have;
    return 0;
}

int vmaug_subscribe(vmaug_client *client, uint32_t mask)
{
    struct vmaug_ioctl_subscribe sub = { .mask = mask };

    if (ioctl(client->fd, VMAUG_IOC_SUBSCRIBE, &sub) < 0) {
        return -errno;
    }
    return 0;
}

int vmaug_read_event(vmaug_client *client, vmaug_event *event,
                     int timeout_ms)
{
    uint8_t buf[sizeof(struct virtio_vmaugment_event) +
                VMAUG_MAX_EVENT_PAYLOAD];
    struct virtio_vmaugment_event hdr;
    struct pollfd pfd = { .fd = client->fd, .events = POLLIN };
    ssize_t n;
    int ret;

    do {
        ret = poll(&pfd, 1, timeout_ms);
    } while (ret < 0 && errno == EINTR);
    if (ret < 0) {
        return -errno;
    }
    if (ret == 0) {
        return -ETIMEDOUT;
    }
    if (pfd.revents & (POLLHUP | POLLERR)) {
        return -ENODEV;
    }
    n = read(client->fd, buf, sizeof(buf));
    if (n < 0) {
        return -errno;
    }
    if ((size_t)n < sizeof(hdr)) {
        return -EBADMSG;
    }
    memcpy(&hdr, buf, sizeof(hdr));
    event->seq = le64toh(hdr.seq);
    event->type = le32toh(hdr.type);
    event->flags = le32toh(hdr.flags);
    event->len = le32toh(hdr.len);
    if (event->len != (size_t)n - sizeof(hdr)) {
        return -EBADMSG;
    }
    memcpy(event->data, buf + sizeof(hdr), event->len);
    return 0;
}
