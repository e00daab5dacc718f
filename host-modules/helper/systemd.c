/*
 * The helper and its service manager, through the two plain protocols of
 * sd_listen_fds(3) (LISTEN_PID, LISTEN_FDS; the first socket is fd 3) and
 * sd_notify(3) (a datagram to $NOTIFY_SOCKET), so that the helper needs
 * no libsystemd and runs the same without systemd.
 *
 * The environment is read once and cleared: the helper's children are
 * module processes, which must not inherit a channel to the service
 * manager.  docs/service.rst is normative.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gio/gio.h>

#include "systemd.h"

/* sd_listen_fds(3): passed sockets start at this descriptor. */
#define SYSTEMD_LISTEN_FDS_START 3

static struct sockaddr_un systemd_notify_addr;
static socklen_t systemd_notify_len;

static void systemd_take_notify_socket(void)
{
    const gchar *path = g_getenv("NOTIFY_SOCKET");
    gsize n;

    if (path == NULL) {
        return;
    }
    n = strlen(path);
    /* '@' names an abstract socket; anything else must be absolute. */
    if ((path[0] != '/' && path[0] != '@') || n < 2 ||
        n >= sizeof(systemd_notify_addr.sun_path)) {
        g_warning("ignoring NOTIFY_SOCKET: not a usable socket address");
        g_unsetenv("NOTIFY_SOCKET");
        return;
    }
    systemd_notify_addr.sun_family = AF_UNIX;
    memcpy(systemd_notify_addr.sun_path, path, n);
    if (path[0] == '@') {
        systemd_notify_addr.sun_path[0] = '\0';
    }
    systemd_notify_len = offsetof(struct sockaddr_un, sun_path) + n;
    g_unsetenv("NOTIFY_SOCKET");
}

int systemd_take_environment(GError **error)
{
    const gchar *pid = g_getenv("LISTEN_PID");
    const gchar *fds = g_getenv("LISTEN_FDS");
    int fd = SYSTEMD_LISTEN_FDS_START, type = 0, listening = 0;
    socklen_t len = sizeof(int);
    struct sockaddr_un addr;
    socklen_t alen = sizeof(addr);
    gboolean ours;

    systemd_take_notify_socket();
    /* Sockets meant for another process of ours are not ours to take. */
    ours = pid != NULL && fds != NULL &&
           g_ascii_strtoll(pid, NULL, 10) == (gint64)getpid();
    if (!ours) {
        return -1;
    }
    if (g_strcmp0(fds, "1") != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "the service manager passed %s sockets; the helper "
                    "listens on exactly one", fds);
        return -1;
    }
    g_unsetenv("LISTEN_PID");
    g_unsetenv("LISTEN_FDS");
    g_unsetenv("LISTEN_FDNAMES");
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &alen) < 0 ||
        addr.sun_family != AF_UNIX || type != SOCK_STREAM || !listening) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "the socket the service manager passed is not a "
                    "listening unix stream socket (ListenStream=PATH)");
        return -1;
    }
    /* Not for the module processes. */
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

void systemd_notify(const gchar *state)
{
    int fd;

    if (systemd_notify_len == 0) {
        return;
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        g_warning("notify: socket: %s", g_strerror(errno));
        return;
    }
    /* Best effort: a service manager that missed READY=1 times us out. */
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
               (struct sockaddr *)&systemd_notify_addr,
               systemd_notify_len) < 0) {
        g_warning("notify: %s", g_strerror(errno));
    }
    close(fd);
}
