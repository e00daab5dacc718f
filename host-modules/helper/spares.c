/*
 * vmaugment-helper: spare module processes.
 *
 * Starting a process, linking it, creating its namespaces and confining
 * it is most of a cold load.  Every module process starts as a spare:
 * confined, knowing nothing yet; a load (module.c) hands one the verified
 * payload over its socket.  Spares are kept ready: one at first; an image
 * start that loads more modules at once raises that to as many, within
 * --spare-processes, so that its next start finds them ready.
 *
 * A spare has run nothing of a module yet, so it is trusted as far as
 * its sandbox (sandbox.h, docs/sandbox.rst) was set up; it is untrusted
 * from the moment a payload reaches it.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "modlink.h"
#include "spares.h"

typedef struct {
    Helper *helper;
    GPid pid;
    int fd;                         /* its end of the module link */
    guint watch;
} SpareProcess;

/*
 * Start vmaugment-module-host in its sandbox (sandbox.h), with its link
 * socket at MODLINK_FD_SOCKET and nothing else of ours.  Returns our end
 * of the link.
 */
static int spares_spawn_host(Helper *h, GPid *pid, GError **error)
{
    g_autofree gchar *mem = g_strdup_printf("%" G_GUINT64_FORMAT,
                                            h->limits.memory_bytes);
    g_autofree gchar *cpu = g_strdup_printf("%" G_GUINT64_FORMAT,
                                            h->limits.cpu_seconds);
    g_autofree gchar *files = g_strdup_printf("%" G_GUINT64_FORMAT,
                                              h->limits.max_files);
    g_autofree gchar *fsize = g_strdup_printf("%" G_GUINT64_FORMAT,
                                              h->limits.max_file_bytes);
    char *argv[] = { h->module_host, mem, cpu, files, fsize, NULL };
    SandboxSpawn sp = {
        .host = &h->sandbox,
        .pieces = h->sandbox_pieces,
        .argv = argv,
        .n_fds = 1,
        /* A module could fill our log through its stderr: only when
         * asked. */
        .stderr_fd = h->module_stderr ? STDERR_FILENO : -1,
    };
    int sv[2];
    pid_t child;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "socketpair: %s", g_strerror(errno));
        return -1;
    }
    sp.fds = &sv[1];
    sp.exe_fd = open(h->module_host, O_PATH | O_CLOEXEC);
    child = sp.exe_fd < 0 ? -errno : sandbox_spawn(&sp);
    if (sp.exe_fd >= 0) {
        close(sp.exe_fd);
    }
    close(sv[1]);
    if (child < 0) {
        close(sv[0]);
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "cannot start %s: %s", h->module_host,
                    g_strerror(-child));
        return -1;
    }
    *pid = child;
    return sv[0];
}

gboolean spares_sandbox_accepted(Helper *h, GError **error)
{
    if ((h->sandbox_pieces & SANDBOX_ALL) == SANDBOX_ALL ||
        h->sandbox_weaker_ok) {
        return TRUE;
    }
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                "this host cannot confine modules fully and the host owner "
                "did not accept a weaker sandbox");
    return FALSE;
}

static void spares_free(SpareProcess *sp)
{
    if (sp->watch != 0) {
        g_source_remove(sp->watch);
    }
    g_free(sp);
}

static void spares_on_exit(GPid pid, gint status, gpointer data)
{
    SpareProcess *sp = data;
    Helper *h = sp->helper;

    /* Died unused: started again only when one is needed. */
    g_spawn_close_pid(pid);
    close(sp->fd);
    sp->watch = 0;
    g_queue_remove(&h->spares, sp);
    spares_free(sp);
    g_message("spare module process ended unused (status 0x%x)", status);
}

static gboolean spares_spawn(Helper *h, GError **error)
{
    SpareProcess *sp;

    if (!spares_sandbox_accepted(h, error)) {
        return FALSE;
    }
    sp = g_new0(SpareProcess, 1);
    sp->helper = h;
    sp->fd = spares_spawn_host(h, &sp->pid, error);
    if (sp->fd < 0) {
        g_free(sp);
        return FALSE;
    }
    sp->watch = g_child_watch_add(sp->pid, spares_on_exit, sp);
    g_queue_push_tail(&h->spares, sp);
    return TRUE;
}

/*
 * The next spares wait for the modules just handed spares to start
 * (spares_load_ended()), at most this long: the helper is idle while it
 * waits for a module's READY, and a spare started then would make that
 * answer wait; but a module slow to start (its init may take up to the
 * call timeout) must not leave every other VM's loads without spares.
 */
#define SPARES_HOLD_MS 50

/* One spare per idle turn, so that a burst of requests goes first. */
static gboolean spares_on_idle(gpointer data)
{
    Helper *h = data;
    g_autoptr(GError) error = NULL;

    if (h->spares.length >= h->spares_wanted || h->spares_hold != 0 ||
        h->quitting) {
        h->spare_idle = 0;
        return G_SOURCE_REMOVE;
    }
    if (!spares_spawn(h, &error)) {
        g_warning("cannot start a spare module process: %s", error->message);
        h->spare_idle = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

void spares_prepare(Helper *h)
{
    /* After the current requests are answered, not on their path. */
    if (h->spares_hold == 0 && !h->quitting &&
        h->spares.length < h->spares_wanted && h->spare_idle == 0 &&
        spares_sandbox_accepted(h, NULL)) {
        h->spare_idle = g_idle_add(spares_on_idle, h);
    }
}

static gboolean spares_on_hold_end(gpointer data)
{
    Helper *h = data;

    h->spares_hold = 0;
    spares_prepare(h);
    return G_SOURCE_REMOVE;
}

void spares_want(Helper *h, guint count)
{
    if (count > h->spares_wanted) {
        h->spares_wanted = MIN(count, h->spares_max);
        spares_prepare(h);
    }
}

void spares_discard(Helper *h)
{
    SpareProcess *sp;

    if (h->spare_idle != 0) {
        g_source_remove(h->spare_idle);
        h->spare_idle = 0;
    }
    if (h->spares_hold != 0) {
        g_source_remove(h->spares_hold);
        h->spares_hold = 0;
    }
    while ((sp = g_queue_pop_head(&h->spares)) != NULL) {
        kill(sp->pid, SIGKILL);
        waitpid(sp->pid, NULL, 0);
        g_spawn_close_pid(sp->pid);
        close(sp->fd);
        spares_free(sp);
    }
}

gboolean spares_take(Helper *h, const gchar *for_module, GPid *pid, int *fd,
                     GError **error)
{
    SpareProcess *sp;

    /* Without a spare ready, one is started for this module now. */
    if (h->spares.length == 0) {
        g_debug("module %s: no spare process ready, starting one for it",
                for_module);
        if (!spares_spawn(h, error)) {
            return FALSE;
        }
    }
    sp = g_queue_pop_head(&h->spares);
    *pid = sp->pid;
    *fd = sp->fd;
    spares_free(sp);
    /* The next load gets a new spare once this one has started. */
    h->spares_loading++;
    if (h->spares_hold == 0) {
        h->spares_hold = g_timeout_add(SPARES_HOLD_MS, spares_on_hold_end, h);
    }
    return TRUE;
}

void spares_load_ended(Helper *h)
{
    g_assert(h->spares_loading > 0);
    if (--h->spares_loading == 0 && h->spares_hold != 0) {
        g_source_remove(h->spares_hold);
        h->spares_hold = 0;
    }
    spares_prepare(h);
}
