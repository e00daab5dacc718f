/*
 * vmaugment-helper: a package fetched from the configured repository.
 *
 * A fetch runs in its own process (vmaugment-repo fetch): the helper
 * serves many VMs and must neither block on the network nor parse what a
 * server sends.  The package it writes is hostile until the store
 * verified it again (signature, trust, rollback) before keeping it.
 * docs/repository.rst is normative for the client.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "repo-fetch.h"

/* Bytes of a fetch's complaint kept for messages. */
#define REPO_FETCH_MAX_REASON   300

struct _RepoFetch {
    Helper *helper;
    VmaugStore *store;              /* lives as long as the helper */
    gchar *actor;
    gchar *name;
    gchar *version;                 /* "" for the newest */
    gchar *dir;
    GSubprocess *proc;
    GCancellable *cancel;
    guint timer;
    RepoFetchDoneFunc done;
    gpointer done_data;
};

static const gchar *repo_fetch_version(const RepoFetch *f)
{
    return *f->version != '\0' ? f->version : "(newest)";
}

/* Whatever the fetch left goes before anyone is told how it ended. */
static void repo_fetch_cleanup(RepoFetch *f)
{
    if (f->timer != 0) {
        g_source_remove(f->timer);
        f->timer = 0;
    }
    if (f->dir != NULL) {
        g_autoptr(GDir) d = g_dir_open(f->dir, 0, NULL);
        const gchar *e;

        /* Whatever the fetch left, nothing partial stays behind. */
        while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
            g_autofree gchar *p = g_build_filename(f->dir, e, NULL);

            g_unlink(p);
        }
        g_rmdir(f->dir);
        g_clear_pointer(&f->dir, g_free);
    }
}

static void repo_fetch_free(RepoFetch *f)
{
    repo_fetch_cleanup(f);
    g_clear_object(&f->proc);
    g_clear_object(&f->cancel);
    g_free(f->actor);
    g_free(f->name);
    g_free(f->version);
    g_free(f);
}

/* The fetch ended: installed (@ok), or why not. */
static void repo_fetch_finish(RepoFetch *f, gboolean ok, const gchar *reason)
{
    g_autoptr(GError) refusal = NULL;

    repo_fetch_cleanup(f);
    if (ok) {
        g_message("device %s: fetched %s %s from %s", f->actor, f->name,
                  repo_fetch_version(f), f->helper->repo_url);
    } else {
        refusal = g_error_new_literal(VMAUG_HOST_ERROR,
                                      VMAUG_HOST_ERROR_NOT_FOUND, reason);
    }
    vmaug_store_audit(f->store, f->actor, "repo-fetch", f->name,
                      *f->version != '\0' ? f->version : NULL, NULL, NULL,
                      refusal);
    f->done(ok, reason, f->done_data);
    repo_fetch_free(f);
}

static void repo_fetch_on_installed(GObject *source, GAsyncResult *res,
                                    gpointer data)
{
    RepoFetch *f = data;
    g_autoptr(VmaugManifest) m = NULL;
    g_autoptr(GError) error = NULL;

    m = vmaug_store_install_finish(f->store, res, NULL, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CLOSED)) {
        /* The store is gone (the helper stops): nothing more to record. */
        repo_fetch_cleanup(f);
        f->done(FALSE, error->message, f->done_data);
        repo_fetch_free(f);
        return;
    }
    /* Another VM may have fetched the same package meanwhile: that is
     * success too (already stored). */
    repo_fetch_finish(f, m != NULL, error != NULL ? error->message : NULL);
}

/* The one package the fetch wrote, installed into the store (which
 * verifies it again and applies its rollback rule) on the store's own
 * thread; FALSE when there is none to install. */
static gboolean repo_fetch_install(RepoFetch *f, GError **error)
{
    g_autoptr(GDir) d = g_dir_open(f->dir, 0, error);
    g_autoptr(GBytes) pkg = NULL;
    g_autofree gchar *path = NULL;
    const gchar *e;

    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        if (g_str_has_suffix(e, ".vmod") && path == NULL) {
            path = g_build_filename(f->dir, e, NULL);
        }
    }
    if (path == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "the repository client wrote no package");
        return FALSE;
    }
    pkg = vmaug_trust_read_file(path, f->helper->policy->max_package_size,
                                error);
    if (pkg == NULL) {
        return FALSE;
    }
    vmaug_store_install_async(f->store, pkg, f->actor,
                              repo_fetch_on_installed, f);
    return TRUE;
}

/* The client's last complaint, without its program name. */
static gchar *repo_fetch_reason(const gchar *err)
{
    g_auto(GStrv) lines = g_strsplit(err != NULL ? err : "", "\n", -1);
    const gchar *last = NULL;
    g_autofree gchar *valid = NULL;

    for (guint i = 0; lines[i] != NULL; i++) {
        if (*g_strstrip(lines[i]) != '\0') {
            last = lines[i];
        }
    }
    if (last == NULL) {
        return g_strdup("the repository client failed");
    }
    /* "vmaugment-repo: fetch: why" (docs/cli.rst): the why. */
    if (g_str_has_prefix(last, "vmaugment-repo: ")) {
        last += strlen("vmaugment-repo: ");
    }
    if (g_str_has_prefix(last, "fetch: ")) {
        last += strlen("fetch: ");
    }
    valid = g_utf8_make_valid(last, -1);
    if (g_utf8_strlen(valid, -1) > REPO_FETCH_MAX_REASON) {
        *g_utf8_offset_to_pointer(valid, REPO_FETCH_MAX_REASON) = '\0';
    }
    return g_steal_pointer(&valid);
}

static void repo_fetch_on_done(GObject *source, GAsyncResult *res,
                               gpointer data)
{
    RepoFetch *f = data;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *err = NULL;
    g_autofree gchar *reason = NULL;
    gboolean ok;

    ok = g_subprocess_communicate_utf8_finish(G_SUBPROCESS(source), res,
                                              NULL, &err, &error) &&
         g_subprocess_get_if_exited(f->proc) &&
         g_subprocess_get_exit_status(f->proc) == 0;
    if (ok) {
        if (repo_fetch_install(f, &error)) {
            return;     /* repo_fetch_on_installed() goes on */
        }
        reason = g_strdup(error->message);
    } else if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
        reason = g_strdup("the VM went away");
    } else if (error != NULL) {
        reason = g_strdup(error->message);
    } else if (!g_subprocess_get_if_exited(f->proc)) {
        reason = g_strdup("the repository client was stopped (time bound)");
    } else {
        reason = repo_fetch_reason(err);
    }
    repo_fetch_finish(f, FALSE, reason);
}

/* The client has its own time bound; this one covers a client stuck
 * before it applies it. */
static gboolean repo_fetch_on_timeout(gpointer data)
{
    RepoFetch *f = data;

    f->timer = 0;
    g_subprocess_force_exit(f->proc);
    return G_SOURCE_REMOVE;
}

RepoFetch *repo_fetch_start(Helper *h, VmaugStore *store, const gchar *actor,
                            const gchar *name, const gchar *version,
                            RepoFetchDoneFunc done, gpointer data,
                            GError **error)
{
    g_autofree gchar *state = g_build_filename(vmaug_store_get_dir(store),
                                               "repository", NULL);
    g_autofree gchar *downloads = g_build_filename(state, "downloads", NULL);
    g_autofree gchar *timeout = g_strdup_printf("%u", h->repo_timeout_ms);
    g_autofree gchar *max = g_strdup_printf("%" G_GUINT64_FORMAT,
                                            h->policy->max_package_size);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    RepoFetch *f;

    if (g_mkdir_with_parents(downloads, 0700) < 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "%s: %s", downloads, g_strerror(errno));
        return NULL;
    }
    f = g_new0(RepoFetch, 1);
    f->helper = h;
    f->store = store;
    f->actor = g_strdup(actor);
    f->name = g_strdup(name);
    f->version = g_strdup(version);
    f->done = done;
    f->done_data = data;
    /* A directory of its own: two fetches never meet, and whatever one
     * leaves is removed with it. */
    f->dir = g_build_filename(downloads, "fetch-XXXXXX", NULL);
    if (g_mkdtemp_full(f->dir, 0700) == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_IO,
                    "%s: %s", downloads, g_strerror(errno));
        g_clear_pointer(&f->dir, g_free);
        repo_fetch_free(f);
        return NULL;
    }
    g_ptr_array_add(argv, h->repo_tool);
    g_ptr_array_add(argv, (gpointer)"fetch");
    g_ptr_array_add(argv, (gpointer)"--url");
    g_ptr_array_add(argv, h->repo_url);
    g_ptr_array_add(argv, (gpointer)"--trust-dir");
    g_ptr_array_add(argv, h->trust_dir);
    g_ptr_array_add(argv, (gpointer)"--state-dir");
    g_ptr_array_add(argv, state);
    g_ptr_array_add(argv, (gpointer)"--dest");
    g_ptr_array_add(argv, f->dir);
    g_ptr_array_add(argv, (gpointer)"--timeout-ms");
    g_ptr_array_add(argv, timeout);
    g_ptr_array_add(argv, (gpointer)"--max-size");
    g_ptr_array_add(argv, max);
    if (h->repo_ca != NULL) {
        g_ptr_array_add(argv, (gpointer)"--ca-file");
        g_ptr_array_add(argv, h->repo_ca);
    }
    /* Checked names and versions: neither can pass for an option. */
    g_ptr_array_add(argv, f->name);
    if (*f->version != '\0') {
        g_ptr_array_add(argv, f->version);
    }
    g_ptr_array_add(argv, NULL);
    f->proc = g_subprocess_newv((const gchar *const *)argv->pdata,
                                G_SUBPROCESS_FLAGS_STDOUT_SILENCE |
                                G_SUBPROCESS_FLAGS_STDERR_PIPE, error);
    if (f->proc == NULL) {
        repo_fetch_free(f);
        return NULL;
    }
    f->cancel = g_cancellable_new();
    f->timer = g_timeout_add(h->repo_timeout_ms + 5000,
                             repo_fetch_on_timeout, f);
    g_message("device %s: %s %s is not in the store; fetching it from %s",
              actor, name, repo_fetch_version(f), h->repo_url);
    g_subprocess_communicate_utf8_async(f->proc, NULL, f->cancel,
                                        repo_fetch_on_done, f);
    return f;
}

void repo_fetch_cancel(RepoFetch *f)
{
    g_cancellable_cancel(f->cancel);
    g_subprocess_force_exit(f->proc);
}
