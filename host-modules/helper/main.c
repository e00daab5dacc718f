/*
 * vmaugment-helper: listens on a unix socket for QEMU vmaugment devices.
 *
 *   vmaugment-helper --socket PATH --store DIR --trust-dir DIR [options]
 *                    [--image-dir DIR...] [--repository URL
 *                    [--repository-ca FILE]] [--vm-*-bytes N ...]
 *   vmaugment-helper --config FILE [options]
 *
 * Every option but --config and --print-config may instead be a key of
 * the configuration file (config.c); the command line overrides it.
 * Under systemd the socket comes from vmaugment-helper.socket and the
 * helper reports readiness (systemd.c, docs/service.rst).
 *
 * QEMU connects with
 *   -chardev socket,id=h,path=PATH,reconnect-ms=1000
 *   -device vmaugment-pci,chardev=h
 * and any number of VMs may be connected at once.  With --supervise a
 * small parent process restarts the helper if it dies; the listening
 * socket survives, so QEMU simply reconnects.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "config.h"
#include "device.h"
#include "image-scan.h"
#include "spares.h"
#include "systemd.h"
#include "vmaug-cli.h"

static gchar *opt_config;
static gboolean opt_print_config;
static gchar *opt_socket;
static gchar *opt_socket_group;
static gchar *opt_store;
static gchar **opt_allow_store;
static gchar *opt_trust_dir;
static gchar *opt_policy;
static gchar *opt_module_host;
static gint opt_timeout_ms = 5000;
static gint opt_spares = 16;
static gint opt_poll_us = 50;
static gint opt_memory_mb = 256;
static gint opt_cpu_seconds = 60;
static gint opt_max_files = 32;
static gboolean opt_no_namespaces;
static gint64 opt_sandbox_id_base = 0x70000000;
static gboolean opt_accept_weaker;
static gchar *opt_cups_queue;
static gboolean opt_supervise;
static gboolean opt_verbose;
static gint opt_listen_fd = -1;
static gchar **opt_image_dir;
static gchar *opt_repository;
static gchar *opt_repository_ca;
static gchar *opt_repository_tool;
static gint opt_repository_timeout_ms = 30000;
static gchar *opt_clamav_database;
static gchar *opt_scan_tool;
static gint opt_scan_timeout_s = 30;
static gint64 opt_vm_config_bytes = VMAUG_VM_CONFIG_BYTES;
static gint64 opt_vm_state_bytes = VMAUG_VM_STATE_BYTES;
static gint64 opt_vm_spool_bytes = VMAUG_VM_SPOOL_BYTES;
static gint64 opt_vm_upload_bytes = VMAUG_STORE_UPLOAD_BYTES;
static gint opt_vm_upload_slots = VMAUG_STORE_UPLOAD_SLOTS;
static gint opt_upload_idle_s = VMAUG_STORE_UPLOAD_IDLE_S;
static gint opt_audit_burst = VMAUG_STORE_AUDIT_BURST;
static gint opt_audit_window_s = VMAUG_STORE_AUDIT_WINDOW_S;

static const GOptionEntry entries[] = {
    { "socket", 0, 0, G_OPTION_ARG_FILENAME, &opt_socket,
      "Unix socket QEMU connects to (unless the service manager passes "
      "one)", "PATH" },
    { "socket-group", 0, 0, G_OPTION_ARG_STRING, &opt_socket_group,
      "Group whose members may connect to the socket the helper makes "
      "(default: only its own user)", "GROUP" },
    { "store", 0, 0, G_OPTION_ARG_FILENAME, &opt_store,
      "Default module store (created if missing)", "DIR" },
    { "allow-store", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_allow_store,
      "Another store a device may name in its HELLO (repeatable)", "DIR" },
    { "trust-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_trust_dir,
      "Trusted administrator certificates and CRLs", "DIR" },
    { "image-dir", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_image_dir,
      "A directory whose disk images a device may name; their "
      "registrations are kept beside them (repeatable)", "DIR" },
    { "repository", 0, 0, G_OPTION_ARG_STRING, &opt_repository,
      "Module repository (https://, or a directory) registered modules "
      "missing from the store are fetched from", "URL" },
    { "repository-ca", 0, 0, G_OPTION_ARG_FILENAME, &opt_repository_ca,
      "PEM CA certificates for the repository's TLS (default: the "
      "system's)", "FILE" },
    { "repository-timeout-ms", 0, 0, G_OPTION_ARG_INT,
      &opt_repository_timeout_ms,
      "Bound on one fetch from the repository", "MS" },
    { "repository-tool", 0, 0, G_OPTION_ARG_FILENAME, &opt_repository_tool,
      "The repository client (default: vmaugment-repo beside this "
      "program, else in PATH)", "PATH" },
    { "clamav-database", 0, 0, G_OPTION_ARG_FILENAME, &opt_clamav_database,
      "ClamAV signature database directory modules with \"image-scan\" "
      "scan their VM's image with (default /var/lib/clamav)", "DIR" },
    { "scan-tool", 0, 0, G_OPTION_ARG_FILENAME, &opt_scan_tool,
      "The image scanner (default: vmaugment-offline beside this "
      "program, else in PATH)", "PATH" },
    { "scan-timeout-s", 0, 0, G_OPTION_ARG_INT, &opt_scan_timeout_s,
      "Bound on one image scan (1..600, default 30)", "S" },
    { "policy", 0, 0, G_OPTION_ARG_FILENAME, &opt_policy,
      "Host owner's policy (JSON): rollback, sizes, capabilities", "FILE" },
    { "module-host", 0, 0, G_OPTION_ARG_FILENAME, &opt_module_host,
      "The sandboxed module runner (default: beside this program)", "PATH" },
    { "spare-processes", 0, 0, G_OPTION_ARG_INT, &opt_spares,
      "Most module processes kept started ahead of need (0..32, "
      "default 16)",
      "N" },
    { "poll-us", 0, 0, G_OPTION_ARG_INT, &opt_poll_us,
      "After answering a guest, poll up to this long for its next request "
      "before sleeping (0..1000, default 50; 0: never)",
      "US" },
    { "call-timeout-ms", 0, 0, G_OPTION_ARG_INT, &opt_timeout_ms,
      "A module answering no call or init within this is killed", "MS" },
    { "memory-mb", 0, 0, G_OPTION_ARG_INT, &opt_memory_mb,
      "Address space limit of each module process", "MB" },
    { "cpu-seconds", 0, 0, G_OPTION_ARG_INT, &opt_cpu_seconds,
      "CPU time limit of each module process", "S" },
    { "max-files", 0, 0, G_OPTION_ARG_INT, &opt_max_files,
      "Open file limit of each module process", "N" },
    { "no-namespaces", 0, 0, G_OPTION_ARG_NONE, &opt_no_namespaces,
      "Do not put modules in namespaces of their own (a weaker sandbox)",
      NULL },
    { "sandbox-id-base", 0, 0, G_OPTION_ARG_INT64, &opt_sandbox_id_base,
      "Module processes run as uid and gid ID_BASE plus their pid "
      "(default 1879048192)", "ID_BASE" },
    { "accept-weaker-sandbox", 0, 0, G_OPTION_ARG_NONE, &opt_accept_weaker,
      "Run modules even where this host cannot confine them fully", NULL },
    { "vm-config-bytes", 0, 0, G_OPTION_ARG_INT64, &opt_vm_config_bytes,
      "Bytes of module configuration one VM may keep (default 1 MiB)",
      "N" },
    { "vm-state-bytes", 0, 0, G_OPTION_ARG_INT64, &opt_vm_state_bytes,
      "Bytes of module state files one VM may keep (default 256 MiB)",
      "N" },
    { "vm-spool-bytes", 0, 0, G_OPTION_ARG_INT64, &opt_vm_spool_bytes,
      "Bytes of printed documents one VM may keep (default 256 MiB)",
      "N" },
    { "vm-upload-bytes", 0, 0, G_OPTION_ARG_INT64, &opt_vm_upload_bytes,
      "Bytes one VM's unfinished uploads may announce together (default "
      "256 MiB, at least the policy's max_package_size)", "N" },
    { "vm-upload-slots", 0, 0, G_OPTION_ARG_INT, &opt_vm_upload_slots,
      "Unfinished uploads one VM may have (default 4)", "N" },
    { "upload-idle-s", 0, 0, G_OPTION_ARG_INT, &opt_upload_idle_s,
      "An upload that took no chunk for this long is dropped (default "
      "600)", "S" },
    { "audit-burst", 0, 0, G_OPTION_ARG_INT, &opt_audit_burst,
      "Audit records of each action one device writes one by one per "
      "window; the rest are counted (default 20)", "N" },
    { "audit-window-s", 0, 0, G_OPTION_ARG_INT, &opt_audit_window_s,
      "The audit window (default 60)", "S" },
    { "cups-queue", 0, 0, G_OPTION_ARG_STRING, &opt_cups_queue,
      "Also send spooled documents to this CUPS queue (lp)", "QUEUE" },
    { "supervise", 0, 0, G_OPTION_ARG_NONE, &opt_supervise,
      "Restart the helper when it dies", NULL },
    { "listen-fd", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &opt_listen_fd,
      "Inherited listening socket", "FD" },
    { "verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose,
      "Log debug messages", NULL },
    { NULL }
};

/* Options of the command line only: not keys of the file. */
static const GOptionEntry config_entries[] = {
    { "config", 0, 0, G_OPTION_ARG_FILENAME, &opt_config,
      "Read options from this file first; the command line overrides "
      "them", "FILE" },
    { "print-config", 0, 0, G_OPTION_ARG_NONE, &opt_print_config,
      "Print the configuration in effect, as a file, and exit", NULL },
    { NULL }
};

/*
 * Find --config among ARGV, leaving every other option to the real parse,
 * and load the file, so that the command line parsed next overrides it.
 */
static gboolean main_load_config(char **argv, GError **error)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
    g_auto(GStrv) args = g_strdupv(argv);

    g_option_context_set_ignore_unknown_options(ctx, TRUE);
    g_option_context_set_help_enabled(ctx, FALSE);
    g_option_context_add_main_entries(ctx, config_entries, NULL);
    if (!g_option_context_parse_strv(ctx, &args, error)) {
        return FALSE;
    }
    return opt_config == NULL || config_load(opt_config, entries, error);
}

/* Let members of GROUP, and nobody else, connect to the socket at PATH. */
static gboolean main_socket_group(const gchar *path, const gchar *group,
                                  GError **error)
{
    struct group *gr = getgrnam(group);

    if (gr == NULL) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "--socket-group %s: no such group", group);
        return FALSE;
    }
    if (chown(path, -1, gr->gr_gid) < 0 || chmod(path, 0660) < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "%s: %s", path, g_strerror(errno));
        return FALSE;
    }
    return TRUE;
}

static int main_listen(const gchar *path, GError **error)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct stat st;
    mode_t old;
    int fd;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NAMETOOLONG,
                    "socket path too long");
        return -1;
    }
    strcpy(addr.sun_path, path);
    /* A stale socket from a previous run; never remove anything else. */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        g_unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                    "socket: %s", g_strerror(errno));
        return -1;
    }
    /* Only our user (QEMU's) may connect. */
    old = umask(0077);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(fd, 16) < 0) {
        int saved = errno;

        umask(old);
        close(fd);
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(saved),
                    "%s: %s", path, g_strerror(saved));
        return -1;
    }
    umask(old);
    return fd;
}

static gboolean main_on_accept(gint fd, GIOCondition cond, gpointer data)
{
    Helper *h = data;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (c < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            g_warning("accept: %s", g_strerror(errno));
        }
        return G_SOURCE_CONTINUE;
    }
    if (g_list_length(h->devices) >= HELPER_MAX_DEVICES) {
        g_warning("refusing a device: %d connected", HELPER_MAX_DEVICES);
        close(c);
        return G_SOURCE_CONTINUE;
    }
    device_new(h, c);
    return G_SOURCE_CONTINUE;
}

/* Counts of audit records held back are written once their window
 * ended, even if the device that caused them went quiet. */
static gboolean main_on_audit_timer(gpointer data)
{
    Helper *h = data;
    GHashTableIter it;
    VmaugStore *store;

    g_hash_table_iter_init(&it, h->stores);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&store)) {
        vmaug_store_audit_flush(store, NULL);
    }
    return G_SOURCE_CONTINUE;
}

static gboolean main_on_signal(gpointer data)
{
    Helper *h = data;

    /* Again while it stops: it is stopping. */
    if (!h->quitting) {
        g_main_loop_quit(h->loop);
    }
    return G_SOURCE_CONTINUE;
}

static gchar *main_find_module_host(const gchar *argv0)
{
    g_autofree gchar *self = g_file_read_link("/proc/self/exe", NULL);
    g_autofree gchar *dir = g_path_get_dirname(self != NULL ? self : argv0);
    gchar *beside = g_build_filename(dir, "vmaugment-module-host", NULL);

    if (g_file_test(beside, G_FILE_TEST_IS_EXECUTABLE)) {
        return beside;
    }
    g_free(beside);
    return g_build_filename(LIBEXECDIR, "vmaugment-module-host", NULL);
}

/* @name beside this program, else found in PATH when run. */
static gchar *main_find_tool(const gchar *name)
{
    g_autofree gchar *self = g_file_read_link("/proc/self/exe", NULL);
    g_autofree gchar *dir = self != NULL ? g_path_get_dirname(self) : NULL;
    g_autofree gchar *beside = dir != NULL ?
        g_build_filename(dir, name, NULL) : NULL;

    if (beside != NULL && g_file_test(beside, G_FILE_TEST_IS_EXECUTABLE)) {
        return g_steal_pointer(&beside);
    }
    return g_strdup(name);
}

/* The host owner's image directories, symlinks resolved: a device's image
 * is compared with them the same way. */
static gboolean main_image_dirs(Helper *h)
{
    h->image_dirs = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; opt_image_dir != NULL && opt_image_dir[i]; i++) {
        gchar *real = realpath(opt_image_dir[i], NULL);

        if (real == NULL || !g_file_test(real, G_FILE_TEST_IS_DIR)) {
            g_printerr("vmaugment-helper: --image-dir %s: %s\n",
                       opt_image_dir[i], real == NULL ? g_strerror(errno) :
                       "not a directory");
            free(real);
            return FALSE;
        }
        g_ptr_array_add(h->image_dirs, g_strdup(real));
        free(real);
    }
    return TRUE;
}

/*
 * What this host can confine modules with, said once at start; modules
 * run in a weaker sandbox only if the host owner accepted it.
 */
static void main_sandbox(Helper *h)
{
    g_autoptr(GString) missing = g_string_new(NULL);

    h->sandbox.id_base = (guint32)opt_sandbox_id_base;
    h->sandbox.namespaces = !opt_no_namespaces;
    h->sandbox_pieces = sandbox_probe(&h->sandbox);
    h->sandbox_weaker_ok = opt_accept_weaker;
    for (unsigned bit = 1; bit & SANDBOX_ALL; bit <<= 1) {
        if (!(h->sandbox_pieces & bit)) {
            g_string_append_printf(missing, "%s%s", missing->len ? ", " : "",
                                   sandbox_piece_name(bit));
        }
    }
    if (missing->len == 0) {
        return;
    }
    if (!h->sandbox_weaker_ok) {
        g_warning("this host cannot give module processes: %s; modules "
                  "will be refused (--accept-weaker-sandbox runs them "
                  "anyway)", missing->str);
    } else {
        g_warning("module processes run without: %s (accepted with "
                  "--accept-weaker-sandbox)", missing->str);
    }
}

static volatile sig_atomic_t main_stop;

static void main_on_stop_signal(int sig)
{
    main_stop = sig;
}

/*
 * --supervise: keep a helper running.  The parent owns the listening
 * socket, so connections wait in its backlog while a new helper starts.
 */
static int main_supervise(int listen_fd, int argc, char **argv)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    g_autofree gchar *fd_arg = g_strdup_printf("--listen-fd=%d", listen_fd);
    gint64 last_start = 0;

    for (int i = 0; i < argc; i++) {
        if (g_strcmp0(argv[i], "--supervise") != 0) {
            g_ptr_array_add(args, g_strdup(argv[i]));
        }
    }
    g_ptr_array_add(args, g_strdup(fd_arg));
    g_ptr_array_add(args, NULL);
    struct sigaction sa = { .sa_handler = main_on_stop_signal };

    /* No SA_RESTART: waitpid() returns so we can pass the signal on. */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* The child must inherit it. */
    fcntl(listen_fd, F_SETFD, 0);
    for (;;) {
        int status;
        pid_t pid;

        /* Do not spin on a helper that cannot start. */
        if (g_get_monotonic_time() - last_start < G_USEC_PER_SEC) {
            g_usleep(G_USEC_PER_SEC / 2);
        }
        last_start = g_get_monotonic_time();
        pid = fork();
        if (pid < 0) {
            g_printerr("vmaugment-helper: fork: %s\n", g_strerror(errno));
            return 1;
        }
        if (pid == 0) {
            /* Never outlive the supervisor. */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            execv("/proc/self/exe", (char **)args->pdata);
            _exit(127);
        }
        while (waitpid(pid, &status, 0) < 0) {
            if (errno == EINTR && main_stop) {
                kill(pid, SIGTERM);
            } else if (errno != EINTR) {
                return 1;
            }
        }
        if (main_stop || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
            return 0;
        }
        g_printerr("vmaugment-helper: helper died (status 0x%x); "
                   "restarting\n", status);
    }
}

int main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) saved_argv = g_strdupv(argv);
    Helper h = { 0 };
    int listen_fd, activated_fd;
    guint accept_id;

    static const char *const examples[] = {
        "vmaugment-helper --config /etc/vmaugment/helper.conf",
        "vmaugment-helper --socket /run/vmaugment/helper.sock --store "
        "/var/lib/vmaugment/store --trust-dir /etc/vmaugment/trust",
        "vmaugment-helper --config /etc/vmaugment/helper.conf "
        "--print-config",
        NULL
    };
    int status;

    vmaug_cli_init("vmaugment-helper");
    if (!main_load_config(argv, &error)) {
        g_printerr("vmaugment-helper: config: %s\n", error->message);
        return VMAUG_EXIT_USAGE;
    }
    ctx = g_option_context_new("- serve vmaugment modules to QEMU");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_add_main_entries(ctx, config_entries, NULL);
    vmaug_cli_setup_daemon(ctx, examples);
    if ((status = vmaug_cli_parse(ctx, &argc, &argv)) >= 0) {
        return status;
    }
    /* Before anything else reads the environment or forks. */
    activated_fd = systemd_take_environment(&error);
    if (error != NULL) {
        g_printerr("vmaugment-helper: %s\n", error->message);
        return 2;
    }
    if ((opt_socket == NULL && activated_fd < 0 && opt_listen_fd < 0) ||
        opt_store == NULL || opt_trust_dir == NULL) {
        g_printerr("vmaugment-helper: --socket, --store and --trust-dir are "
                   "required\n");
        return 2;
    }
    if (opt_timeout_ms < 10 || opt_memory_mb < 16 || opt_cpu_seconds < 1 ||
        opt_max_files < 8 || opt_spares < 0 || opt_spares > 32 ||
        opt_poll_us < 0 || opt_poll_us > 1000) {
        g_printerr("vmaugment-helper: limits out of range\n");
        return 2;
    }
    if (opt_vm_config_bytes < 0 || opt_vm_state_bytes < 0 ||
        opt_vm_spool_bytes < 0 || opt_vm_upload_bytes < 0 ||
        opt_vm_upload_slots < 1 || opt_vm_upload_slots > 64 ||
        opt_upload_idle_s < 0 || opt_audit_burst < 1 ||
        opt_audit_window_s < 1) {
        g_printerr("vmaugment-helper: VM quotas or audit limits out of "
                   "range\n");
        return 2;
    }
    /* Room for every pid (pid_max is at most 2^22), below the invalid
     * id (uint32_t)-1, and never root's. */
    if (opt_sandbox_id_base < 1 ||
        opt_sandbox_id_base > (gint64)G_MAXUINT32 - (1 << 22) - 1) {
        g_printerr("vmaugment-helper: --sandbox-id-base out of range\n");
        return 2;
    }
    /* The repository tool checks the rest (docs/repository.rst). */
    if (opt_repository != NULL &&
        ((!g_str_has_prefix(opt_repository, "https://") &&
          !g_str_has_prefix(opt_repository, "file:///") &&
          opt_repository[0] != '/') ||
         strlen(opt_repository) > 2048)) {
        g_printerr("vmaugment-helper: --repository must be an https:// "
                   "URL or a directory (/path or file:///path)\n");
        return 2;
    }
    if (opt_repository_timeout_ms < 100 ||
        opt_repository_timeout_ms > VMAUG_MAX_TIMEOUT_MS) {
        g_printerr("vmaugment-helper: --repository-timeout-ms out of "
                   "range\n");
        return 2;
    }
    if (opt_scan_timeout_s < 1 ||
        opt_scan_timeout_s > VMAUG_MAX_TIMEOUT_MS / 1000) {
        g_printerr("vmaugment-helper: --scan-timeout-s out of range\n");
        return 2;
    }
    if (opt_clamav_database == NULL) {
        opt_clamav_database = g_strdup("/var/lib/clamav");
    }
    if (opt_print_config) {
        g_autofree gchar *text = config_dump(entries);

        g_print("%s", text);
        return 0;
    }
    if (opt_verbose) {
        g_setenv("G_MESSAGES_DEBUG", "all", TRUE);
    }
    signal(SIGPIPE, SIG_IGN);

    if (opt_listen_fd >= 0) {
        listen_fd = opt_listen_fd;
        fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
    } else if (activated_fd >= 0) {
        /* systemd keeps the socket, and restarts us (Restart=). */
        listen_fd = activated_fd;
    } else {
        listen_fd = main_listen(opt_socket, &error);
        if (listen_fd < 0) {
            g_printerr("vmaugment-helper: %s\n", error->message);
            return 1;
        }
        if (opt_socket_group != NULL &&
            !main_socket_group(opt_socket, opt_socket_group, &error)) {
            g_printerr("vmaugment-helper: %s\n", error->message);
            return 1;
        }
        if (opt_supervise) {
            return main_supervise(listen_fd, g_strv_length(saved_argv),
                                  saved_argv);
        }
    }

    h.socket_path = opt_socket != NULL ? opt_socket :
                    "the service manager's socket";
    h.default_store = g_canonicalize_filename(opt_store, NULL);
    h.allowed_stores = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; opt_allow_store != NULL && opt_allow_store[i]; i++) {
        g_ptr_array_add(h.allowed_stores,
                        g_canonicalize_filename(opt_allow_store[i], NULL));
    }
    if (!main_image_dirs(&h)) {
        return 1;
    }
    h.trust_dir = g_canonicalize_filename(opt_trust_dir, NULL);
    h.repo_url = opt_repository;
    h.repo_ca = opt_repository_ca != NULL ?
                g_canonicalize_filename(opt_repository_ca, NULL) : NULL;
    h.repo_tool = opt_repository_tool != NULL ?
                  g_strdup(opt_repository_tool) :
                  main_find_tool("vmaugment-repo");
    h.repo_timeout_ms = opt_repository_timeout_ms;
    /* Absolute, so that the scanner cannot take it for an option. */
    h.clamav_database = g_canonicalize_filename(opt_clamav_database, NULL);
    h.scan_tool = opt_scan_tool != NULL ? g_strdup(opt_scan_tool) :
                  main_find_tool("vmaugment-offline");
    h.scan_timeout_s = opt_scan_timeout_s;
    h.trust = vmaug_trust_store_new_from_dir(opt_trust_dir, &error);
    if (h.trust == NULL) {
        g_printerr("vmaugment-helper: trust store: %s\n", error->message);
        return 1;
    }
    if (vmaug_trust_store_get_n_certificates(h.trust) == 0) {
        g_warning("the trust store is empty: every module will be refused");
    }
    /* A signer the host owner removes or revokes while we run stops
     * verifying at the next load, not at our next start. */
    vmaug_trust_store_follow_dir(h.trust);
    h.policy = opt_policy != NULL ? vmaug_policy_load(opt_policy, &error) :
               vmaug_policy_new_default();
    if (h.policy == NULL) {
        g_printerr("vmaugment-helper: policy: %s\n", error->message);
        return 1;
    }
    h.module_host = opt_module_host != NULL ? g_strdup(opt_module_host) :
                    main_find_module_host(argv[0]);
    h.call_timeout_ms = opt_timeout_ms;
    h.limits.memory_bytes = (guint64)opt_memory_mb * 1024 * 1024;
    h.limits.cpu_seconds = opt_cpu_seconds;
    h.limits.max_files = opt_max_files;
    h.limits.max_file_bytes = 64 * 1024 * 1024;
    main_sandbox(&h);
    h.cups_queue = opt_cups_queue;
    /* A module could fill our log through its stderr: only when asked. */
    h.module_stderr = opt_verbose;
    h.vm_quota.config_bytes = opt_vm_config_bytes;
    h.vm_quota.state_bytes = opt_vm_state_bytes;
    h.vm_quota.spool_bytes = opt_vm_spool_bytes;
    h.upload_limits.slots = opt_vm_upload_slots;
    h.upload_limits.bytes = opt_vm_upload_bytes;
    h.upload_limits.idle_us = (gint64)opt_upload_idle_s * G_USEC_PER_SEC;
    h.audit_limits.burst = opt_audit_burst;
    h.audit_limits.window_us = (gint64)opt_audit_window_s * G_USEC_PER_SEC;
    helper_caches_init(&h);
    device_writes_init(&h, TRUE);
    /* Open the default store now: a broken one should fail at start. */
    if (helper_store_open(&h, h.default_store, &error) == NULL) {
        g_printerr("vmaugment-helper: store: %s\n", error->message);
        return 1;
    }
    h.spares_max = opt_spares;
    h.spares_wanted = MIN(1, h.spares_max);
    spares_prepare(&h);
    h.loop = g_main_loop_new(NULL, FALSE);
    helper_poll_init(&h.poll, opt_poll_us);
    helper_poll_install(&h.poll);
    accept_id = g_unix_fd_add(listen_fd, G_IO_IN, main_on_accept, &h);
    g_unix_signal_add(SIGTERM, main_on_signal, &h);
    g_unix_signal_add(SIGINT, main_on_signal, &h);
    g_timeout_add_seconds(opt_audit_window_s, main_on_audit_timer, &h);
    g_message("listening on %s (store %s, module host %s)", h.socket_path,
              h.default_store, h.module_host);
    systemd_notify("READY=1");
    g_main_loop_run(h.loop);
    systemd_notify("STOPPING=1");
    h.quitting = TRUE;
    /* No device comes now (the wait for writes below turns the loop). */
    g_source_remove(accept_id);

    while (h.devices != NULL) {
        Device *dev = h.devices->data;

        device_free(dev);
    }
    /* Waiting turns the loop: spares that starts are discarded after. */
    device_writes_end(&h);
    spares_discard(&h);
    image_scan_spare_stop(&h);
    helper_caches_clear(&h);
    g_main_loop_unref(h.loop);
    vmaug_policy_free(h.policy);
    vmaug_trust_store_free(h.trust);
    g_ptr_array_unref(h.allowed_stores);
    g_ptr_array_unref(h.image_dirs);
    g_free(h.trust_dir);
    g_free(h.repo_ca);
    g_free(h.repo_tool);
    g_free(h.scan_tool);
    g_free(h.clamav_database);
    g_free(h.default_store);
    g_free(h.module_host);
    return 0;
}
