/*
 * A framed, non-blocking message link (see link.h).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>

#include "link.h"

#define LINK_MAX_FDS    2
/* Input buffered for small messages: a request, an answer, an event. */
#define LINK_IN_BUF     ((gsize)16 * 1024)

typedef struct {
    guint8 *data;
    gsize len;
    gsize sent;
    int fds[LINK_MAX_FDS];
    guint n_fds;
} LinkOut;

struct _VmaugLink {
    int fd;
    guint32 magic;
    guint32 max_len;
    gsize max_queued;
    VmaugLinkMessageFunc on_message;
    VmaugLinkClosedFunc on_closed;
    gpointer user_data;
    guint in_source;
    guint out_source;
    guint8 *in;             /* LINK_IN_BUF, and a byte to spare */
    gsize in_start, in_end; /* what it holds not yet dispatched */
    struct vmaug_host_msg hdr;  /* of a body too long for it */
    gboolean in_body;       /* such a body is being read */
    guint8 *body;           /* kept for the next (see link_read()) */
    gsize body_cap;
    gsize body_got;
    GQueue out;
    gsize queued;
    gboolean closed;
    gint busy;              /* inside a callback: free later */
    gboolean free_pending;
};

static void link_out_close_fds(LinkOut *o)
{
    for (guint i = 0; i < o->n_fds; i++) {
        close(o->fds[i]);
    }
    o->n_fds = 0;
}

static void link_out_free(LinkOut *o)
{
    link_out_close_fds(o);
    g_free(o->data);
    g_free(o);
}

static void link_really_free(VmaugLink *link)
{
    g_queue_clear_full(&link->out, (GDestroyNotify)link_out_free);
    g_free(link->in);
    g_free(link->body);
    g_free(link);
}

gboolean vmaug_link_is_open(VmaugLink *link)
{
    return link != NULL && !link->closed;
}

void vmaug_link_close(VmaugLink *link, const gchar *why)
{
    if (link->closed) {
        return;
    }
    link->closed = TRUE;
    if (link->in_source != 0) {
        g_source_remove(link->in_source);
        link->in_source = 0;
    }
    if (link->out_source != 0) {
        g_source_remove(link->out_source);
        link->out_source = 0;
    }
    close(link->fd);
    link->fd = -1;
    link->busy++;
    link->on_closed(link, why, link->user_data);
    link->busy--;
    if (link->free_pending && link->busy == 0) {
        link_really_free(link);
    }
}

void vmaug_link_free(VmaugLink *link)
{
    if (link == NULL) {
        return;
    }
    if (!link->closed) {
        /* No callback for an owner that is going away. */
        link->closed = TRUE;
        if (link->in_source != 0) {
            g_source_remove(link->in_source);
        }
        if (link->out_source != 0) {
            g_source_remove(link->out_source);
        }
        close(link->fd);
    }
    if (link->busy > 0) {
        link->free_pending = TRUE;
        return;
    }
    link_really_free(link);
}

static gboolean link_flush(VmaugLink *link);

/*
 * A watch GLib leaves in its poll set while the callback runs.  By
 * default GLib blocks a source around each dispatch: it takes the
 * descriptor out of the poll set and puts it back, and each of the two
 * changes wakes the loop (an eventfd write), which costs an eventfd read
 * and one more poll() per message on every hop (docs/performance.md).
 * Nothing the callbacks do iterates the main loop, so letting the source
 * "recurse" changes nothing else.
 */
static guint link_watch(int fd, GIOCondition cond, GUnixFDSourceFunc func,
                        VmaugLink *link)
{
    GSource *src = g_unix_fd_source_new(fd, cond);
    guint id;

    g_source_set_callback(src, G_SOURCE_FUNC(func), link, NULL);
    g_source_set_can_recurse(src, TRUE);
    id = g_source_attach(src, NULL);
    g_source_unref(src);
    return id;
}

static gboolean link_on_out(gint fd, GIOCondition cond, gpointer data)
{
    VmaugLink *link = data;
    gboolean alive;

    link->busy++;
    alive = link_flush(link);
    link->busy--;
    if (link->free_pending && link->busy == 0) {
        link_really_free(link);
        return G_SOURCE_REMOVE;
    }
    if (!alive) {
        link->out_source = 0;
        return G_SOURCE_REMOVE;
    }
    if (g_queue_is_empty(&link->out)) {
        link->out_source = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

/* Write what the socket takes now; FALSE when the link was closed. */
static gboolean link_flush(VmaugLink *link)
{
    LinkOut *o;

    while (!link->closed && (o = g_queue_peek_head(&link->out)) != NULL) {
        struct iovec iov = {
            .iov_base = o->data + o->sent,
            .iov_len = o->len - o->sent,
        };
        union {
            struct cmsghdr align;
            char buf[CMSG_SPACE(LINK_MAX_FDS * sizeof(int))];
        } cm;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (o->n_fds > 0 && o->sent == 0) {
            struct cmsghdr *c;

            memset(&cm, 0, sizeof(cm));
            mh.msg_control = cm.buf;
            mh.msg_controllen = CMSG_SPACE(o->n_fds * sizeof(int));
            c = CMSG_FIRSTHDR(&mh);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(o->n_fds * sizeof(int));
            memcpy(CMSG_DATA(c), o->fds, o->n_fds * sizeof(int));
        }
        n = sendmsg(link->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (link->out_source == 0) {
                link->out_source = link_watch(link->fd, G_IO_OUT,
                                              link_on_out, link);
            }
            return TRUE;
        }
        if (n <= 0) {
            vmaug_link_close(link, "write failed");
            return FALSE;
        }
        link_out_close_fds(o);  /* delivered with the first byte */
        o->sent += n;
        link->queued -= n;
        if (o->sent == o->len) {
            link_out_free(g_queue_pop_head(&link->out));
        }
    }
    return !link->closed;
}

void vmaug_link_send(VmaugLink *link, guint16 type, guint64 tag,
                     const void *a, gsize alen, const void *b, gsize blen,
                     int pass_fd)
{
    vmaug_link_send_fds(link, type, tag, a, alen, b, blen, &pass_fd,
                        pass_fd >= 0 ? 1 : 0);
}

void vmaug_link_send_fds(VmaugLink *link, guint16 type, guint64 tag,
                         const void *a, gsize alen, const void *b, gsize blen,
                         const int *fds, guint n_fds)
{
    LinkOut *o;
    struct vmaug_host_msg hdr = {
        .magic = GUINT32_TO_LE(link->magic),
        .type = GUINT16_TO_LE(type),
        .len = GUINT32_TO_LE((guint32)(alen + blen)),
        .tag = GUINT64_TO_LE(tag),
    };

    g_assert(n_fds <= LINK_MAX_FDS);
    if (link->closed) {
        for (guint i = 0; i < n_fds; i++) {
            close(fds[i]);
        }
        return;
    }
    o = g_new0(LinkOut, 1);
    o->len = sizeof(hdr) + alen + blen;
    o->data = g_malloc(o->len);
    memcpy(o->fds, fds, n_fds * sizeof(int));
    o->n_fds = n_fds;
    memcpy(o->data, &hdr, sizeof(hdr));
    if (alen > 0) {
        memcpy(o->data + sizeof(hdr), a, alen);
    }
    if (blen > 0) {
        memcpy(o->data + sizeof(hdr) + alen, b, blen);
    }
    g_queue_push_tail(&link->out, o);
    link->queued += o->len;
    if (link->queued > link->max_queued) {
        link->busy++;
        vmaug_link_close(link, "peer does not read its messages");
        link->busy--;
        if (link->free_pending && link->busy == 0) {
            link_really_free(link);
        }
        return;
    }
    if (link->out_source == 0) {
        link->busy++;
        link_flush(link);
        link->busy--;
        if (link->free_pending && link->busy == 0) {
            link_really_free(link);
        }
    }
}

/*
 * Hand one whole message to the owner; FALSE when the link was closed or
 * dropped.  @body has a byte to spare after @len: a terminator for text,
 * never counted, put there for the call only (in the input buffer that
 * byte may be the next message's first).
 */
static gboolean link_dispatch(VmaugLink *link,
                              const struct vmaug_host_msg *hdr, guint8 *body)
{
    guint32 len = GUINT32_FROM_LE(hdr->len);
    const gchar *why = NULL;
    guint8 spare = body[len];
    gboolean ok;

    body[len] = 0;
    ok = link->on_message(link, GUINT16_FROM_LE(hdr->type),
                          GUINT64_FROM_LE(hdr->tag), body, len,
                          link->user_data, &why);
    body[len] = spare;
    /* The caller holds busy and frees a link its owner dropped. */
    if (link->free_pending || link->closed) {
        return FALSE;
    }
    if (!ok) {
        vmaug_link_close(link, why != NULL ? why : "protocol error");
        return FALSE;
    }
    return TRUE;
}

/* Size and magic are judged before a body is taken. */
static gboolean link_check_header(VmaugLink *link,
                                  const struct vmaug_host_msg *hdr)
{
    if (GUINT32_FROM_LE(hdr->magic) != link->magic) {
        vmaug_link_close(link, "bad magic");
        return FALSE;
    }
    if (GUINT32_FROM_LE(hdr->len) > link->max_len) {
        vmaug_link_close(link, "message too long");
        return FALSE;
    }
    return TRUE;
}

/*
 * recv() what the socket holds, up to @want bytes, into @dst: its count,
 * 0 when there is nothing now, -1 when the link was closed.  Without a
 * control buffer: descriptors a hostile peer passes are closed by the
 * kernel, never installed here.
 */
static gssize link_recv(VmaugLink *link, guint8 *dst, gsize want)
{
    for (;;) {
        ssize_t n = recv(link->fd, dst, want, MSG_DONTWAIT);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 0;
        }
        if (n <= 0) {
            vmaug_link_close(link, n == 0 ? "peer closed" : "read failed");
            return -1;
        }
        return n;
    }
}

/*
 * Read and dispatch what is available; FALSE when the link was closed.
 * Small messages come through one buffer, as many as one recv() brings:
 * a message then costs one system call, not a header's, a body's and
 * the one that finds nothing more (three, each dear on a virtual
 * machine).  A body too long for the buffer is read into its own, which
 * is kept for the next (at most the link's longest message): a buffer
 * allocated for each upload chunk was memory touched for the first time
 * at every chunk, which costs a fault per page, dear on a virtual
 * machine (docs/performance.md).  A recv() that did not fill what it
 * was offered most likely took all there was: the watch, not another
 * recv(), says when more comes.
 */
static gboolean link_read(VmaugLink *link)
{
    gboolean drained = FALSE;

    while (!link->closed) {
        struct vmaug_host_msg hdr;
        gsize avail = link->in_end - link->in_start;
        gsize room;
        gssize n;

        if (link->in_body) {
            gsize len = GUINT32_FROM_LE(link->hdr.len);

            if (link->body_got < len) {
                n = link_recv(link, link->body + link->body_got,
                              len - link->body_got);
                if (n <= 0) {
                    return n == 0;
                }
                link->body_got += n;
                if (link->body_got < len) {
                    continue;
                }
            }
            link->in_body = FALSE;
            link->body_got = 0;
            if (!link_dispatch(link, &link->hdr, link->body)) {
                return FALSE;
            }
            continue;
        }
        if (avail >= sizeof(hdr)) {
            guint8 *head = link->in + link->in_start;
            gsize len;

            memcpy(&hdr, head, sizeof(hdr));
            if (!link_check_header(link, &hdr)) {
                return FALSE;
            }
            len = GUINT32_FROM_LE(hdr.len);
            if (avail - sizeof(hdr) >= len) {
                link->in_start += sizeof(hdr) + len;
                if (!link_dispatch(link, &hdr, head + sizeof(hdr))) {
                    return FALSE;
                }
                continue;
            }
            if (sizeof(hdr) + len > LINK_IN_BUF) {
                if (link->body_cap < len + 1) {
                    link->body_cap = MAX(len + 1,
                                         MIN(2 * link->body_cap,
                                             (gsize)link->max_len + 1));
                    g_free(link->body);
                    link->body = g_malloc(link->body_cap);
                }
                link->hdr = hdr;
                link->in_body = TRUE;
                link->body_got = avail - sizeof(hdr);
                memcpy(link->body, head + sizeof(hdr), link->body_got);
                link->in_start = link->in_end = 0;
                continue;
            }
        }
        if (drained) {
            return TRUE;
        }
        /* More is needed: what is left goes to the front, then recv(). */
        if (link->in == NULL) {
            link->in = g_malloc(LINK_IN_BUF + 1);
        }
        if (link->in_start > 0) {
            memmove(link->in, link->in + link->in_start, avail);
            link->in_start = 0;
            link->in_end = avail;
        }
        room = LINK_IN_BUF - link->in_end;
        n = link_recv(link, link->in + link->in_end, room);
        if (n <= 0) {
            return n == 0;
        }
        link->in_end += n;
        drained = (gsize)n < room;
    }
    return FALSE;
}

static gboolean link_on_in(gint fd, GIOCondition cond, gpointer data)
{
    VmaugLink *link = data;
    gboolean alive;

    link->busy++;
    alive = link_read(link);
    link->busy--;
    if (link->free_pending && link->busy == 0) {
        link_really_free(link);
        return G_SOURCE_REMOVE;
    }
    if (!alive) {
        link->in_source = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

VmaugLink *vmaug_link_new(int fd, guint32 magic, guint32 max_len,
                          gsize max_queued, VmaugLinkMessageFunc on_message,
                          VmaugLinkClosedFunc on_closed, gpointer user_data)
{
    VmaugLink *link = g_new0(VmaugLink, 1);

    g_unix_set_fd_nonblocking(fd, TRUE, NULL);
    link->fd = fd;
    link->magic = magic;
    link->max_len = max_len;
    link->max_queued = max_queued;
    link->on_message = on_message;
    link->on_closed = on_closed;
    link->user_data = user_data;
    g_queue_init(&link->out);
    link->in_source = link_watch(fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
                                 link_on_in, link);
    return link;
}
