/*
 * The device's side of the host helper link (see link-client.h): what
 * the QEMU device checks of the helper's messages is checked here too,
 * so a client never reads past a message or waits without a limit.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "link-client.h"

/* Tags with this bit are the host owner's requests (docs/protocol.rst). */
#define LINK_CLIENT_OWNER_TAG   (G_GUINT64_CONSTANT(1) << 63)

struct VmaugLinkClient {
    int fd;
    /* The request channel the helper passed, when asked for (-1 without):
     * guest requests go out on it and their answers come back on it. */
    int chan_fd;
    int passed_fd;          /* a descriptor that came with a message */
    /* The upload area the helper shares with a client that takes the
     * channel (docs/protocol.rst, UPLOAD_AREA), NULL until it came; a
     * slot is busy from the chunk put in it until the helper's
     * AREA_RELEASE. */
    guint8 *area;
    gboolean area_busy[VMAUG_HOST_AREA_SLOTS];
    guint area_chunks;
    gboolean area_off;
    guint64 next_tag;
    gboolean owner;
    gchar *peer;
    VmaugLinkClientOtherFunc other;
    gpointer other_user;
};

/* Waits for @fd, or for either the link or the channel (@fd -1): which
 * has something in *@ready. */
static gboolean link_client_wait(VmaugLinkClient *c, int fd, int *ready,
                                 guint timeout_ms, GError **error)
{
    struct pollfd p[2] = {
        { .fd = fd >= 0 ? fd : c->chan_fd, .events = POLLIN },
        { .fd = fd >= 0 ? -1 : c->fd, .events = POLLIN },
    };
    int n;

    do {
        n = poll(p, 2, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                    "waiting for the helper: %s", g_strerror(errno));
        return FALSE;
    }
    if (n == 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                    "the helper did not answer within %u ms", timeout_ms);
        return FALSE;
    }
    if (ready != NULL) {
        *ready = p[0].revents ? p[0].fd : p[1].fd;
    }
    return TRUE;
}

/* Where a message of @type and @tag goes: guest requests and their
 * CANCELs on the channel once there is one (docs/protocol.rst). */
static int link_client_fd_for(VmaugLinkClient *c, guint16 type, guint64 tag)
{
    return c->chan_fd >= 0 &&
           (type == VMAUG_HOST_REQUEST || type == VMAUG_HOST_CANCEL ||
            type == VMAUG_HOST_AREA_REQUEST) &&
           !(tag & LINK_CLIENT_OWNER_TAG) ? c->chan_fd : c->fd;
}

static gboolean link_client_send_fd(int fd, const void *data, gsize len,
                                    GError **error)
{
    gsize done = 0;

    while (done < len) {
        ssize_t n = send(fd, (const guint8 *)data + done, len - done,
                         MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE,
                        "sending to the helper: %s",
                        n < 0 ? g_strerror(errno) : "connection closed");
            return FALSE;
        }
        done += n;
    }
    return TRUE;
}

gboolean vmaug_link_client_send_raw(VmaugLinkClient *c, const void *data,
                                    gsize len, GError **error)
{
    return link_client_send_fd(c->fd, data, len, error);
}

gboolean vmaug_link_client_send_msg(VmaugLinkClient *c, guint16 type,
                                    guint64 tag, const void *data, gsize len,
                                    GError **error)
{
    struct vmaug_host_msg m = {
        .magic = GUINT32_TO_LE(VMAUG_HOST_MAGIC),
        .type = GUINT16_TO_LE(type),
        .len = GUINT32_TO_LE((guint32)len),
        .tag = GUINT64_TO_LE(tag),
    };
    int fd = link_client_fd_for(c, type, tag);

    return link_client_send_fd(fd, &m, sizeof(m), error) &&
           (len == 0 || link_client_send_fd(fd, data, len, error));
}

/* Reads @len bytes of @fd; a descriptor that comes with them is kept in
 * passed_fd. */
static gboolean link_client_read(VmaugLinkClient *c, int fd, void *buf,
                                 gsize len, guint timeout_ms, GError **error)
{
    gsize done = 0;

    while (done < len) {
        union {
            struct cmsghdr hdr;
            char buf[CMSG_SPACE(sizeof(int))];
        } cm;
        struct iovec iov = { (guint8 *)buf + done, len - done };
        struct msghdr mh = {
            .msg_iov = &iov,
            .msg_iovlen = 1,
            .msg_control = cm.buf,
            .msg_controllen = sizeof(cm.buf),
        };
        struct cmsghdr *cmsg;
        ssize_t n;

        if (!link_client_wait(c, fd, NULL, timeout_ms, error)) {
            return FALSE;
        }
        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        for (cmsg = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL; cmsg != NULL;
             cmsg = CMSG_NXTHDR(&mh, cmsg)) {
            if (cmsg->cmsg_level == SOL_SOCKET &&
                cmsg->cmsg_type == SCM_RIGHTS &&
                cmsg->cmsg_len == CMSG_LEN(sizeof(int))) {
                if (c->passed_fd >= 0) {
                    close(c->passed_fd);
                }
                memcpy(&c->passed_fd, CMSG_DATA(cmsg), sizeof(int));
            }
        }
        if (n <= 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                        "the helper closed the connection%s%s",
                        n < 0 ? ": " : "", n < 0 ? g_strerror(errno) : "");
            return FALSE;
        }
        done += n;
    }
    return TRUE;
}

#define LINK_CLIENT_AREA_SIZE \
    ((gsize)VMAUG_HOST_AREA_SLOTS * VMAUG_CHUNK_MAX_DATA)
#define LINK_CLIENT_AREA_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* The helper's UPLOAD_AREA, checked as the device checks it. */
static gboolean link_client_area(VmaugLinkClient *c, GBytes *body,
                                 GError **error)
{
    struct vmaug_host_upload_area ua;
    struct stat st;
    void *map;
    int seals;

    if (c->chan_fd < 0 || c->area != NULL || c->passed_fd < 0 ||
        g_bytes_get_size(body) != sizeof(ua)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the helper sent an unexpected upload area");
        return FALSE;
    }
    memcpy(&ua, g_bytes_get_data(body, NULL), sizeof(ua));
    /* A file that takes no seals (not a memfd) says -1: every bit. */
    seals = fcntl(c->passed_fd, F_GET_SEALS);
    if (GUINT32_FROM_LE(ua.slots) != VMAUG_HOST_AREA_SLOTS ||
        GUINT32_FROM_LE(ua.slot_size) != VMAUG_CHUNK_MAX_DATA ||
        fstat(c->passed_fd, &st) < 0 ||
        st.st_size != (off_t)LINK_CLIENT_AREA_SIZE || seals < 0 ||
        (seals & LINK_CLIENT_AREA_SEALS) != LINK_CLIENT_AREA_SEALS) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the helper sent a malformed upload area");
        return FALSE;
    }
    map = mmap(NULL, LINK_CLIENT_AREA_SIZE, PROT_READ | PROT_WRITE,
               MAP_SHARED, c->passed_fd, 0);
    close(c->passed_fd);
    c->passed_fd = -1;
    if (map != MAP_FAILED) {
        c->area = map;      /* otherwise chunks keep to the channel */
    }
    return TRUE;
}

/* The helper's AREA_RELEASE, checked as the device checks it. */
static gboolean link_client_area_release(VmaugLinkClient *c, GBytes *body,
                                         GError **error)
{
    struct vmaug_host_area_release rel;
    guint32 slot;

    if (g_bytes_get_size(body) != sizeof(rel)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the helper sent a malformed AREA_RELEASE");
        return FALSE;
    }
    memcpy(&rel, g_bytes_get_data(body, NULL), sizeof(rel));
    slot = GUINT32_FROM_LE(rel.slot);
    if (slot >= VMAUG_HOST_AREA_SLOTS || !c->area_busy[slot]) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the helper released a slot not in use");
        return FALSE;
    }
    c->area_busy[slot] = FALSE;
    return TRUE;
}

static gboolean link_client_recv_one(VmaugLinkClient *c, guint16 *type,
                                     guint64 *tag, GBytes **body,
                                     guint timeout_ms, GError **error);

/*
 * Take a message that is the client's own, not its caller's: the upload
 * area and the releases of its slots (*@taken TRUE).  FALSE when it is
 * malformed.
 */
static gboolean link_client_take(VmaugLinkClient *c, guint16 type,
                                 GBytes *body, gboolean *taken,
                                 GError **error)
{
    *taken = TRUE;
    switch (type) {
    case VMAUG_HOST_UPLOAD_AREA:
        return link_client_area(c, body, error);
    case VMAUG_HOST_AREA_RELEASE:
        return link_client_area_release(c, body, error);
    default:
        *taken = FALSE;
        return TRUE;
    }
}

/* The next message for the caller. */
static gboolean link_client_recv(VmaugLinkClient *c, guint16 *type,
                                 guint64 *tag, GBytes **body,
                                 guint timeout_ms, GError **error)
{
    for (;;) {
        gboolean taken;

        if (!link_client_recv_one(c, type, tag, body, timeout_ms, error) ||
            !link_client_take(c, *type, *body, &taken, error)) {
            return FALSE;
        }
        if (!taken) {
            return TRUE;
        }
        g_clear_pointer(body, g_bytes_unref);
    }
}

/* One message, checked like the device checks it before using it. */
static gboolean link_client_recv_one(VmaugLinkClient *c, guint16 *type,
                                     guint64 *tag, GBytes **body,
                                     guint timeout_ms, GError **error)
{
    struct vmaug_host_msg m;
    g_autofree guint8 *buf = NULL;
    guint32 len;
    int fd = c->fd;

    /* A message is read whole from the side it began on. */
    if (c->chan_fd >= 0 && !link_client_wait(c, -1, &fd, timeout_ms, error)) {
        return FALSE;
    }
    if (!link_client_read(c, fd, &m, sizeof(m), timeout_ms, error)) {
        return FALSE;
    }
    len = GUINT32_FROM_LE(m.len);
    if (GUINT32_FROM_LE(m.magic) != VMAUG_HOST_MAGIC ||
        len > VMAUG_HOST_MAX_MSG) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the helper sent a malformed message (magic 0x%x, "
                    "%u bytes)", GUINT32_FROM_LE(m.magic), len);
        return FALSE;
    }
    buf = g_malloc(len + 1);
    if (!link_client_read(c, fd, buf, len, timeout_ms, error)) {
        return FALSE;
    }
    *type = GUINT16_FROM_LE(m.type);
    *tag = GUINT64_FROM_LE(m.tag);
    *body = g_bytes_new_take(g_steal_pointer(&buf), len);
    return TRUE;
}

/* An EVENT, LIFECYCLE_DONE or IMAGE_ACCESS, to the other-message
 * function. */
static gboolean link_client_other(VmaugLinkClient *c, guint16 type,
                                  guint64 tag, GBytes *body, GError **error)
{
    gsize len = g_bytes_get_size(body);
    gboolean ok;

    switch (type) {
    case VMAUG_HOST_EVENT:
        ok = len >= sizeof(struct virtio_vmaugment_event);
        break;
    case VMAUG_HOST_LIFECYCLE_DONE:
        ok = len >= sizeof(struct vmaug_host_lifecycle_done) &&
             len - sizeof(struct vmaug_host_lifecycle_done) <=
             VMAUG_HOST_MESSAGE_MAX;
        break;
    case VMAUG_HOST_IMAGE_ACCESS:
        ok = len == sizeof(struct vmaug_host_image_access);
        break;
    default:
        ok = FALSE;
    }
    if (!ok) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the helper sent an unexpected message (type %u, "
                    "%" G_GSIZE_FORMAT " bytes)", type, len);
        return FALSE;
    }
    if (c->other != NULL) {
        c->other(type, tag, body, c->other_user);
    }
    return TRUE;
}

gboolean vmaug_link_client_pump(VmaugLinkClient *c, guint timeout_ms,
                                GError **error)
{
    g_autoptr(GBytes) body = NULL;
    guint16 type;
    guint64 tag;

    return link_client_recv(c, &type, &tag, &body, timeout_ms, error) &&
           link_client_other(c, type, tag, body, error);
}

static gboolean link_client_hello(VmaugLinkClient *c, const gchar *name,
                                  const gchar *store, const gchar *image,
                                  gboolean channel, GError **error)
{
    struct vmaug_host_hello hello = {
        .proto_version = GUINT32_TO_LE(VMAUG_PROTO_VERSION),
        .flags = GUINT32_TO_LE(channel ? VMAUG_HOST_HELLO_F_CHANNEL |
                                         VMAUG_HOST_HELLO_F_UPLOAD_AREA
                                       : 0),
    };
    gsize store_len = store != NULL ? strlen(store) : 0;
    gsize image_len = image != NULL ? strlen(image) : 0;
    g_autoptr(GByteArray) h = g_byte_array_new();
    g_autoptr(GBytes) body = NULL;
    guint16 type;
    guint64 tag;

    if (store_len > VMAUG_HOST_PATH_MAX || image_len > VMAUG_HOST_PATH_MAX) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
                    "a path longer than the link allows");
        return FALSE;
    }
    g_strlcpy((gchar *)hello.name, name, sizeof(hello.name));
    hello.store_len = GUINT16_TO_LE(store_len);
    hello.image_len = GUINT16_TO_LE(image_len);
    g_byte_array_append(h, (const guint8 *)&hello, sizeof(hello));
    g_byte_array_append(h, (const guint8 *)(store ? store : ""), store_len);
    g_byte_array_append(h, (const guint8 *)(image ? image : ""), image_len);
    if (!vmaug_link_client_send_msg(c, VMAUG_HOST_HELLO, 0, h->data, h->len,
                                    error) ||
        !link_client_recv(c, &type, &tag, &body, 20000, error)) {
        return FALSE;
    }
    if (type != VMAUG_HOST_HELLO || g_bytes_get_size(body) < sizeof(hello)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the helper did not answer with a HELLO");
        return FALSE;
    }
    memcpy(&hello, g_bytes_get_data(body, NULL), sizeof(hello));
    if (GUINT32_FROM_LE(hello.proto_version) != VMAUG_PROTO_VERSION) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "the helper speaks protocol %u, not %u",
                    GUINT32_FROM_LE(hello.proto_version),
                    VMAUG_PROTO_VERSION);
        return FALSE;
    }
    c->peer = g_utf8_make_valid((const gchar *)hello.name,
                                strnlen((const gchar *)hello.name,
                                        sizeof(hello.name)));
    if (channel) {
        if (!(GUINT32_FROM_LE(hello.flags) & VMAUG_HOST_HELLO_F_CHANNEL) ||
            c->passed_fd < 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                        "the helper passed no request channel");
            return FALSE;
        }
        c->chan_fd = c->passed_fd;
        c->passed_fd = -1;
    }
    return TRUE;
}

VmaugLinkClient *vmaug_link_client_connect(const gchar *socket_path,
                                           const gchar *name,
                                           const gchar *store,
                                           const gchar *image,
                                           guint retry_ms, GError **error)
{
    return vmaug_link_client_connect_full(socket_path, name, store, image,
                                          retry_ms, FALSE, error);
}

VmaugLinkClient *vmaug_link_client_connect_full(const gchar *socket_path,
                                                const gchar *name,
                                                const gchar *store,
                                                const gchar *image,
                                                guint retry_ms,
                                                gboolean channel,
                                                GError **error)
{
    g_autoptr(VmaugLinkClient) c = g_new0(VmaugLinkClient, 1);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    gint64 deadline = g_get_monotonic_time() + (gint64)retry_ms * 1000;

    c->fd = c->chan_fd = c->passed_fd = -1;
    c->next_tag = 1;
    if (strlen(socket_path) >= sizeof(addr.sun_path)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
                    "%s: socket path too long", socket_path);
        return NULL;
    }
    g_strlcpy(addr.sun_path, socket_path, sizeof(addr.sun_path));
    for (;;) {
        int saved;

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            saved = errno;
        } else if (connect(c->fd, (struct sockaddr *)&addr,
                           sizeof(addr)) == 0) {
            break;
        } else {
            saved = errno;
            close(c->fd);
            c->fd = -1;
        }
        if (g_get_monotonic_time() >= deadline) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved),
                        "%s: %s", socket_path, g_strerror(saved));
            return NULL;
        }
        g_usleep(10000);
    }
    if (!link_client_hello(c, name, store, image, channel, error)) {
        return NULL;
    }
    return g_steal_pointer(&c);
}

void vmaug_link_client_free(VmaugLinkClient *c)
{
    if (c == NULL) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    if (c->chan_fd >= 0) {
        close(c->chan_fd);
    }
    if (c->passed_fd >= 0) {
        close(c->passed_fd);
    }
    if (c->area != NULL) {
        munmap(c->area, LINK_CLIENT_AREA_SIZE);
    }
    g_free(c->peer);
    g_free(c);
}

const gchar *vmaug_link_client_get_peer(VmaugLinkClient *c)
{
    return c->peer;
}

int vmaug_link_client_get_fd(VmaugLinkClient *c)
{
    return c->fd;
}

int vmaug_link_client_get_channel_fd(VmaugLinkClient *c)
{
    return c->chan_fd;
}

gboolean vmaug_link_client_wait_area(VmaugLinkClient *c, guint timeout_ms,
                                     GError **error)
{
    while (c->area == NULL) {
        g_autoptr(GBytes) body = NULL;
        gboolean taken;
        guint16 type;
        guint64 tag;

        if (!link_client_recv_one(c, &type, &tag, &body, timeout_ms, error) ||
            !link_client_take(c, type, body, &taken, error) ||
            (!taken && !link_client_other(c, type, tag, body, error))) {
            return FALSE;
        }
        if (type == VMAUG_HOST_UPLOAD_AREA && c->area == NULL) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                        "cannot map the upload area");
            return FALSE;
        }
    }
    return TRUE;
}

guint vmaug_link_client_area_chunks(VmaugLinkClient *c)
{
    return c->area_chunks;
}

void vmaug_link_client_use_area(VmaugLinkClient *c, gboolean use)
{
    c->area_off = !use;
}

void vmaug_link_client_set_other_func(VmaugLinkClient *c,
                                      VmaugLinkClientOtherFunc func,
                                      gpointer user)
{
    c->other = func;
    c->other_user = user;
}

void vmaug_link_client_set_host_owner(VmaugLinkClient *c, gboolean owner)
{
    c->owner = owner;
}

guint64 vmaug_link_client_request(VmaugLinkClient *c, guint16 opcode,
                                  const void *a, gsize alen,
                                  const void *b, gsize blen, GError **error)
{
    struct virtio_vmaugment_req req = {
        .opcode = GUINT16_TO_LE(opcode),
        .len = GUINT32_TO_LE((guint32)(alen + blen)),
    };
    g_autoptr(GByteArray) msg = g_byte_array_new();
    guint64 tag = c->next_tag++ | (c->owner ? LINK_CLIENT_OWNER_TAG : 0);
    guint32 slot = 0;

    req.id = GUINT64_TO_LE(tag);
    /* An upload chunk's data in a free slot of the area, as the device
     * puts it there. */
    while (slot < VMAUG_HOST_AREA_SLOTS && c->area_busy[slot]) {
        slot++;
    }
    if (c->area != NULL && !c->area_off && !c->owner &&
        opcode == VMAUG_OP_UPLOAD_CHUNK &&
        alen == sizeof(struct vmaug_upload_chunk) && blen > 0 &&
        blen <= VMAUG_CHUNK_MAX_DATA && slot < VMAUG_HOST_AREA_SLOTS) {
        struct vmaug_host_area_request ar = {
            .slot = GUINT32_TO_LE(slot),
        };

        memcpy(c->area + (gsize)slot * VMAUG_CHUNK_MAX_DATA, b, blen);
        g_byte_array_append(msg, (const guint8 *)&ar, sizeof(ar));
        g_byte_array_append(msg, (const guint8 *)&req, sizeof(req));
        g_byte_array_append(msg, a, alen);
        if (!vmaug_link_client_send_msg(c, VMAUG_HOST_AREA_REQUEST, tag,
                                        msg->data, msg->len, error)) {
            return 0;
        }
        c->area_busy[slot] = TRUE;
        c->area_chunks++;
        return tag;
    }
    g_byte_array_append(msg, (const guint8 *)&req, sizeof(req));
    if (alen > 0) {
        g_byte_array_append(msg, a, alen);
    }
    if (blen > 0) {
        g_byte_array_append(msg, b, blen);
    }
    if (!vmaug_link_client_send_msg(c, VMAUG_HOST_REQUEST, tag, msg->data,
                                    msg->len, error)) {
        return 0;
    }
    return tag;
}

gboolean vmaug_link_client_wait_response(VmaugLinkClient *c, guint64 tag,
                                         guint timeout_ms, guint16 *status,
                                         GBytes **data, GError **error)
{
    for (;;) {
        g_autoptr(GBytes) body = NULL;
        struct virtio_vmaugment_resp resp;
        guint16 type;
        guint64 got;
        gsize len;

        if (!link_client_recv(c, &type, &got, &body, timeout_ms, error)) {
            return FALSE;
        }
        if (type != VMAUG_HOST_RESPONSE) {
            if (!link_client_other(c, type, got, body, error)) {
                return FALSE;
            }
            continue;
        }
        len = g_bytes_get_size(body);
        if (len < sizeof(resp)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "the helper sent a short response");
            return FALSE;
        }
        memcpy(&resp, g_bytes_get_data(body, NULL), sizeof(resp));
        /* The device checks this agreement; so do we. */
        if (GUINT32_FROM_LE(resp.len) != len - sizeof(resp) || got != tag) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "the helper sent a response that does not match "
                        "its request");
            return FALSE;
        }
        *status = GUINT16_FROM_LE(resp.status);
        if (data != NULL) {
            *data = g_bytes_new_from_bytes(body, sizeof(resp),
                                           len - sizeof(resp));
        }
        return TRUE;
    }
}

gboolean vmaug_link_client_call(VmaugLinkClient *c, guint16 opcode,
                                const void *a, gsize alen,
                                const void *b, gsize blen, guint timeout_ms,
                                guint16 *status, GBytes **data,
                                GError **error)
{
    guint64 tag = vmaug_link_client_request(c, opcode, a, alen, b, blen,
                                            error);

    return tag != 0 &&
           vmaug_link_client_wait_response(c, tag, timeout_ms, status, data,
                                           error);
}

void vmaug_link_client_ref(struct vmaug_module_ref *ref, const gchar *name,
                           const gchar *version)
{
    memset(ref, 0, sizeof(*ref));
    g_strlcpy((gchar *)ref->name, name, sizeof(ref->name));
    if (version != NULL) {
        g_strlcpy((gchar *)ref->version, version, sizeof(ref->version));
    }
}

gboolean vmaug_link_client_ref_call(VmaugLinkClient *c, guint16 opcode,
                                    const gchar *name, const gchar *version,
                                    guint timeout_ms, guint16 *status,
                                    struct vmaug_module_info *info,
                                    GError **error)
{
    struct vmaug_module_ref ref;
    g_autoptr(GBytes) data = NULL;

    vmaug_link_client_ref(&ref, name, version);
    if (!vmaug_link_client_call(c, opcode, &ref, sizeof(ref), NULL, 0,
                                timeout_ms, status, &data, error)) {
        return FALSE;
    }
    if (*status == VMAUG_S_OK && info != NULL) {
        if (g_bytes_get_size(data) != sizeof(*info)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "the helper sent a module record of %" G_GSIZE_FORMAT
                        " bytes", g_bytes_get_size(data));
            return FALSE;
        }
        memcpy(info, g_bytes_get_data(data, NULL), sizeof(*info));
    }
    return TRUE;
}

gboolean vmaug_link_client_invoke(VmaugLinkClient *c, const gchar *module,
                                  const gchar *function, const void *in,
                                  gsize len, guint timeout_ms,
                                  guint16 *status, GBytes **out,
                                  GError **error)
{
    struct vmaug_invoke inv = { 0 };

    g_strlcpy((gchar *)inv.module, module, sizeof(inv.module));
    g_strlcpy((gchar *)inv.function, function, sizeof(inv.function));
    return vmaug_link_client_call(c, VMAUG_OP_INVOKE, &inv, sizeof(inv),
                                  in, len, timeout_ms, status, out, error);
}
