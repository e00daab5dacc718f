/*
 * Starting the offline worker and reading its report (vo-worker.h): the
 * parent's half.  The report comes from a process that has read a guest's
 * filesystems, so it is checked like any guest input: framing and depth by
 * vo-wire.c, then each member's name and type here, before anything of it
 * reaches the caller.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox.h"
#include "vo-image.h"
#include "vo-wire.h"
#include "vo-worker.h"

/* How long a worker may take to end after its last word. */
#define VO_WORKER_EXIT_GRACE_US (5 * G_USEC_PER_SEC)
/* Stage frames before the result: a worker cannot keep us reading. */
#define VO_WORKER_MAX_STAGES    8

static const char *const vo_worker_jobs[] = {
    [VO_WORKER_INSPECT] = "inspect",
    [VO_WORKER_CHECK] = "check",
    [VO_WORKER_APPLY] = "apply",
    [VO_WORKER_VERIFY] = "verify",
    [VO_WORKER_PACKAGES] = "packages",
    [VO_WORKER_SCAN] = "scan",
    [VO_WORKER_LOCATE] = "locate",
};

/* What each job may report, besides "error". */
static const struct {
    const char *name;
    JsonNodeType type;
    GType value_type;       /* for JSON_NODE_VALUE */
    unsigned jobs;          /* 1 << VoWorkerJob */
} vo_worker_members[] = {
    { "inventory", JSON_NODE_OBJECT, 0, 1 << VO_WORKER_INSPECT },
    /* Checked member by member by vo_configure_result_record(). */
    { "dpkg_configure", JSON_NODE_OBJECT, 0, 1 << VO_WORKER_INSPECT },
    /* Checked member by member by vo_msu_result_record(). */
    { "msu_install", JSON_NODE_OBJECT, 0, 1 << VO_WORKER_INSPECT },
    { "status", JSON_NODE_VALUE, G_TYPE_STRING,
      1 << VO_WORKER_CHECK | 1 << VO_WORKER_APPLY },
    { "rules", JSON_NODE_ARRAY, 0,
      1 << VO_WORKER_CHECK | 1 << VO_WORKER_APPLY },
    { "plan", JSON_NODE_ARRAY, 0,
      1 << VO_WORKER_CHECK | 1 << VO_WORKER_APPLY },
    { "verify", JSON_NODE_ARRAY, 0, 1 << VO_WORKER_APPLY },
    /* A quarantine's scan, checked by vo_scan_check_report() (vo-apply.c). */
    { "quarantine", JSON_NODE_OBJECT, 0,
      1 << VO_WORKER_CHECK | 1 << VO_WORKER_APPLY },
    { "instructions", JSON_NODE_ARRAY, 0, 1 << VO_WORKER_VERIFY },
    { "verified", JSON_NODE_VALUE, G_TYPE_BOOLEAN, 1 << VO_WORKER_VERIFY },
    /* Checked field by field by vo_dpkg_status_from_report(). */
    { "dpkg", JSON_NODE_OBJECT, 0, 1 << VO_WORKER_PACKAGES },
    /* Checked member by member by vo_scan_check_report(). */
    { "scan", JSON_NODE_OBJECT, 0, 1 << VO_WORKER_SCAN },
    /* Checked volume by volume by vo_worker_volumes(). */
    { "volumes", JSON_NODE_ARRAY, 0, 1 << VO_WORKER_LOCATE },
};

/* A key the operator gave (--luks-key). */
typedef struct {
    char *id;               /* a LUKS UUID, or "all" */
    char *file;
} VoWorkerKey;

/* A LUKS volume the worker found and we have a key for. */
typedef struct {
    guint disk;
    VoImageLuks luks;
} VoWorkerVolume;

/* Statuses a decision may end with (vo_patch_decide()), and the worker's
 * own word for a patched and verified overlay. */
static const char *const vo_worker_statuses[] = {
    "already-applied", "not-applicable", "refused", "error", "dry-run",
    "patched",
};

static const char *const vo_worker_stages[] = {
    VO_WORKER_STAGE_DECIDING, VO_WORKER_STAGE_PATCHING,
    VO_WORKER_STAGE_VERIFYING,
};

static gboolean vo_worker_weaker_ok;
static GPtrArray *vo_worker_keys;   /* VoWorkerKey* */
static guint32 vo_worker_id_base = SANDBOX_DEFAULT_ID_BASE;

const char *vo_worker_job_name(VoWorkerJob job)
{
    return vo_worker_jobs[job];
}

gboolean vo_worker_job_has_bundle(VoWorkerJob job)
{
    return job != VO_WORKER_INSPECT && job != VO_WORKER_PACKAGES &&
           job != VO_WORKER_SCAN && job != VO_WORKER_LOCATE;
}

gboolean vo_worker_job_has_scan(VoWorkerJob job)
{
    return job == VO_WORKER_CHECK || job == VO_WORKER_APPLY;
}

int vo_worker_job_fds(VoWorkerJob job)
{
    return vo_worker_job_has_scan(job) || job == VO_WORKER_SCAN ? 4
           : vo_worker_job_has_bundle(job) ? 3 : 2;
}

gboolean vo_worker_job_from_name(const char *name, VoWorkerJob *job)
{
    for (guint i = 0; i < G_N_ELEMENTS(vo_worker_jobs); i++) {
        if (g_str_equal(name, vo_worker_jobs[i])) {
            *job = i;
            return TRUE;
        }
    }
    return FALSE;
}

int vo_worker_disk_fd(VoWorkerJob job, guint disk)
{
    if (disk == 0) {
        return VO_WORKER_FD_DISK;
    }
    /* After the report, and the bundle or request where there is one. */
    return VO_WORKER_FD_DISK + vo_worker_job_fds(job) - 1 + disk;
}

void vo_worker_set_accept_weaker(gboolean accept)
{
    vo_worker_weaker_ok = accept;
}

/* What blkid and cryptsetup print as a LUKS UUID, in either case. */
static gboolean vo_worker_is_uuid(const char *text)
{
    gsize len = strlen(text);

    if (len == 0 || len > 64) {
        return FALSE;
    }
    for (const char *p = text; *p; p++) {
        if (!g_ascii_isxdigit(*p) && *p != '-') {
            return FALSE;
        }
    }
    return TRUE;
}

gboolean vo_worker_add_key(const char *selector, GError **error)
{
    g_auto(GStrv) parts = g_strsplit(selector, ":", 3);
    VoWorkerKey *key;
    int fd;

    /* virt-v2v's and guestfish's form, the one libvirt users know. */
    if (g_strv_length(parts) != 3 ||
        (!g_str_equal(parts[0], "all") && !vo_worker_is_uuid(parts[0]))) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "--luks-key %s: the form is UUID:file:FILE or "
                    "all:file:FILE (UUID: the LUKS volume's, as cryptsetup "
                    "luksUUID prints it)", parts[0] ? parts[0] : "");
        return FALSE;
    }
    if (g_str_equal(parts[1], "key")) {
        /* Every user of the host can read a command line. */
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "--luks-key %s:key:... would show the key to every user "
                    "of this host (ps); put it in a file and give "
                    "%s:file:FILE", parts[0], parts[0]);
        return FALSE;
    }
    if (!g_str_equal(parts[1], "file") || !*parts[2]) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "--luks-key %s:%s: only keys in files are taken "
                    "(%s:file:FILE)", parts[0], parts[1], parts[0]);
        return FALSE;
    }
    /* Said now rather than after the guest's disks were read. */
    fd = open(parts[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "--luks-key: cannot read %s: %s", parts[2],
                    g_strerror(errno));
        return FALSE;
    }
    close(fd);
    if (!vo_worker_keys) {
        vo_worker_keys = g_ptr_array_new();
    }
    key = g_new0(VoWorkerKey, 1);
    key->id = g_strdup(parts[0]);
    key->file = g_canonicalize_filename(parts[2], NULL);
    g_ptr_array_add(vo_worker_keys, key);
    return TRUE;
}

/* The key for a volume: the one naming its UUID, else one for all. */
static const char *vo_worker_key_for(const char *uuid)
{
    const char *any = NULL;

    for (guint i = 0; vo_worker_keys && i < vo_worker_keys->len; i++) {
        VoWorkerKey *key = vo_worker_keys->pdata[i];

        if (uuid && g_ascii_strcasecmp(key->id, uuid) == 0) {
            return key->file;
        }
        if (!any && g_str_equal(key->id, "all")) {
            any = key->file;
        }
    }
    return any;
}

void vo_worker_set_id_base(guint32 base)
{
    vo_worker_id_base = base;
}

/*
 * The worker program: $VMAUGMENT_OFFLINE_WORKER, else next to this
 * program (a build tree, or an install that keeps them together), else
 * where it is installed.
 */
static char *vo_worker_path(void)
{
    const char *env = g_getenv("VMAUGMENT_OFFLINE_WORKER");
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);

    if (env && *env) {
        return g_strdup(env);
    }
    if (self) {
        g_autofree char *dir = g_path_get_dirname(self);
        g_autofree char *near = g_build_filename(dir,
                                                 "vmaugment-offline-worker",
                                                 NULL);

        if (g_file_test(near, G_FILE_TEST_IS_EXECUTABLE)) {
            return g_steal_pointer(&near);
        }
    }
    return g_build_filename(VMAUGMENT_LIBEXECDIR, "vmaugment-offline-worker",
                            NULL);
}

/*
 * What the worker gets.  Until a spawn fails, what a host whose
 * namespaces work gives (sandbox_expected()), without the probe's child;
 * after a failed spawn, and for good, what sandbox_probe() finds.
 */
static unsigned vo_worker_pieces(const SandboxHost *host, gboolean probe)
{
    static unsigned pieces;
    static gboolean probed;

    if (probe && !probed) {
        pieces = sandbox_probe(host);
        probed = TRUE;
    }
    return probed ? pieces : sandbox_expected(host);
}

static gboolean vo_worker_confinement_ok(unsigned pieces, GError **error)
{
    g_autoptr(GString) missing = g_string_new(NULL);

    if ((pieces & SANDBOX_ALL) == SANDBOX_ALL || vo_worker_weaker_ok) {
        return TRUE;
    }
    for (unsigned bit = 1; bit & SANDBOX_ALL; bit <<= 1) {
        if (!(pieces & bit)) {
            g_string_append_printf(missing, "%s%s", missing->len ? ", " : "",
                                   sandbox_piece_name(bit));
        }
    }
    g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                "this host cannot confine the offline worker fully (missing: "
                "%s); --accept-weaker-sandbox runs it anyway", missing->str);
    return FALSE;
}

/* Writes @bytes, then @more (or NULL), into the memfd @fd, and seals it
 * against any change; FALSE with errno otherwise. */
static gboolean vo_worker_seal(int fd, GBytes *bytes, GBytes *more)
{
    return vo_wire_write_all(fd, g_bytes_get_data(bytes, NULL),
                             g_bytes_get_size(bytes), NULL) &&
           (!more || vo_wire_write_all(fd, g_bytes_get_data(more, NULL),
                                       g_bytes_get_size(more), NULL)) &&
           fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
                                  F_SEAL_WRITE | F_SEAL_SEAL) == 0;
}

/* The verified bundle (or the scan's request: @bytes, then @more, which
 * may be NULL), sealed: the worker can neither change it nor see it
 * change. */
static int vo_worker_sealed_fd(GBytes *bytes, GBytes *more, GError **error)
{
    int fd = memfd_create("vmaugment-bundle", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0 || !vo_worker_seal(fd, bytes, more)) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot hand the bundle over: %s", g_strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

/* @disk_fds: one per disk of the guest, the first one's first, then one
 * per opened LUKS volume (@volumes). */
static pid_t vo_worker_spawn(const VoWorkerRequest *req, const int *disk_fds,
                             GArray *volumes, int report_fd, int bundle_fd,
                             int scan_fd, GError **error)
{
    SandboxHost host = {
        .id_base = vo_worker_id_base,
        .namespaces = TRUE,
    };
    unsigned pieces = vo_worker_pieces(&host, FALSE);
    g_autofree char *path = vo_worker_path();
    /* Its disks' formats are ours to know, and to report: their number. */
    g_autofree char *n_disks = g_strdup_printf("%u", req->n_more + 1);
    g_autoptr(GString) opened = g_string_new(NULL);
    char *argv[] = {
        path, (char *)vo_worker_job_name(req->job),
        /* A spare's image is named in its later request. */
        (char *)(req->image ? req->image : "-"), n_disks,
        /* Where each opened LUKS volume lies: "DISK:OFFSET,...". */
        NULL,
        /* Who signed the bundle, for the marker it writes (servicing.h). */
        req->bundle ? req->bundle->signer : NULL,
        req->bundle ? req->bundle->signer_fingerprint : NULL,
        NULL,
    };
    int fds[4 + VO_WORKER_MAX_DISKS + VO_WORKER_MAX_LUKS];
    SandboxSpawn sp = {
        .host = &host,
        .pieces = pieces,
        .argv = argv,
        .fds = fds,
        /* Its messages could carry anything the guest wrote: it speaks
         * only through its report. */
        .stderr_fd = -1,
    };
    pid_t pid;

    for (guint i = 0; i < volumes->len; i++) {
        VoWorkerVolume *v = &g_array_index(volumes, VoWorkerVolume, i);

        g_string_append_printf(opened, "%s%u:%" G_GUINT64_FORMAT,
                               i ? "," : "", v->disk, v->luks.offset);
    }
    argv[4] = opened->len ? opened->str : "-";
    fds[sp.n_fds++] = disk_fds[0];
    fds[sp.n_fds++] = report_fd;
    if (bundle_fd >= 0) {
        fds[sp.n_fds++] = bundle_fd;
    }
    if (scan_fd >= 0) {
        fds[sp.n_fds++] = scan_fd;
    }
    for (guint i = 0; i < req->n_more; i++) {
        g_assert(vo_worker_disk_fd(req->job, i + 1) == 3 + (int)sp.n_fds);
        fds[sp.n_fds++] = disk_fds[i + 1];
    }
    for (guint i = 0; i < volumes->len; i++) {
        fds[sp.n_fds++] = disk_fds[req->n_more + 1 + i];
    }
    sp.exe_fd = open(path, O_PATH | O_CLOEXEC);
    if (sp.exe_fd < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot find the offline worker %s: %s", path,
                    g_strerror(errno));
        return -1;
    }
    /*
     * Unprobed pieces that would be refused, or a spawn with them that
     * failed (a host without user namespaces, say): what the probe finds
     * decides, exactly as if it had been asked first.
     */
    pid = vo_worker_confinement_ok(pieces, NULL) ? sandbox_spawn(&sp) : -1;
    if (pid < 0) {
        sp.pieces = vo_worker_pieces(&host, TRUE);
        if (!vo_worker_confinement_ok(sp.pieces, error)) {
            close(sp.exe_fd);
            return -1;
        }
        pid = sandbox_spawn(&sp);
    }
    close(sp.exe_fd);
    if (pid < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot start the offline worker: %s", g_strerror(-pid));
        return -1;
    }
    return pid;
}

/*
 * The worker's messages may quote what the guest wrote and end up on the
 * operator's terminal: control characters (escape sequences among them)
 * become '?'.  The text is valid UTF-8 (vo-wire.c checked it).
 */
static void vo_worker_sanitize(char *text)
{
    for (char *p = text; *p; p = g_utf8_next_char(p)) {
        gunichar c = g_utf8_get_char(p);

        if (g_unichar_iscntrl(c)) {
            memset(p, '?', g_utf8_next_char(p) - p);
        }
    }
}

static gboolean vo_worker_check_status(JsonObject *report, GError **error)
{
    const char *status;

    if (!json_object_has_member(report, "status")) {
        return TRUE;
    }
    status = json_object_get_string_member(report, "status");
    for (guint i = 0; i < G_N_ELEMENTS(vo_worker_statuses); i++) {
        if (g_str_equal(status, vo_worker_statuses[i])) {
            return TRUE;
        }
    }
    return vo_wire_malformed(error, "unknown status");
}

/*
 * Every member known for the job and of its type; "error" an object with
 * a known code and a bounded message, which becomes @job_error.
 */
static gboolean vo_worker_check_report(const VoWorkerRequest *req,
                                       JsonObject *report,
                                       GError **job_error, GError **error)
{
    VoWorkerJob job = req->job;
    g_autoptr(GList) names = json_object_get_members(report);

    for (GList *l = names; l; l = l->next) {
        const char *name = l->data;
        JsonNode *node = json_object_get_member(report, name);
        gboolean known = FALSE;

        if (g_str_equal(name, "error")) {
            g_autofree char *text = NULL;
            JsonObject *e;
            JsonNode *code, *message;

            if (!JSON_NODE_HOLDS_OBJECT(node)) {
                return vo_wire_malformed(error, "\"error\" is not an object");
            }
            e = json_node_get_object(node);
            code = json_object_get_member(e, "code");
            message = json_object_get_member(e, "message");
            if (json_object_get_size(e) != 2 || !code || !message ||
                json_node_get_value_type(code) != G_TYPE_INT64 ||
                json_node_get_value_type(message) != G_TYPE_STRING ||
                json_node_get_int(code) < VO_ERROR_FAILED ||
                json_node_get_int(code) > VO_ERROR_TIMEOUT ||
                strlen(json_node_get_string(message)) >
                    VO_WORKER_MAX_MESSAGE) {
                return vo_wire_malformed(error, "bad \"error\"");
            }
            text = g_strdup(json_node_get_string(message));
            vo_worker_sanitize(text);
            g_set_error_literal(job_error, VO_ERROR, json_node_get_int(code),
                                text);
            continue;
        }
        for (guint i = 0; i < G_N_ELEMENTS(vo_worker_members); i++) {
            if (!g_str_equal(name, vo_worker_members[i].name) ||
                !(vo_worker_members[i].jobs & (1u << job))) {
                continue;
            }
            if (JSON_NODE_TYPE(node) != vo_worker_members[i].type ||
                (vo_worker_members[i].value_type &&
                 json_node_get_value_type(node) !=
                     vo_worker_members[i].value_type)) {
                return vo_wire_malformed(error, "\"%s\" has the wrong type",
                                     vo_worker_members[i].name);
            }
            known = TRUE;
        }
        if (!known) {
            return vo_wire_malformed(error, "unexpected member");
        }
    }
    return vo_worker_check_status(report, error);
}

/* Stage frames, then the result, then the end of the stream. */
static JsonObject *vo_worker_read(const VoWorkerRequest *req, int fd,
                                  gint64 deadline, GError **error)
{
    for (guint n = 0; n <= VO_WORKER_MAX_STAGES; n++) {
        g_autoptr(JsonObject) body = NULL;
        VoWireType type;
        const char *stage;
        gboolean known = FALSE;

        body = vo_wire_receive(fd, deadline, &type, error);
        if (!body) {
            return NULL;
        }
        if (type == VO_WIRE_RESULT) {
            if (!vo_wire_expect_end(fd, deadline, error)) {
                return NULL;
            }
            return g_steal_pointer(&body);
        }
        stage = json_object_get_size(body) == 1
                    ? json_object_get_string_member_with_default(body, "stage",
                                                                 NULL)
                    : NULL;
        for (guint i = 0; stage && i < G_N_ELEMENTS(vo_worker_stages); i++) {
            known = known || g_str_equal(stage, vo_worker_stages[i]);
        }
        if (!known) {
            vo_wire_malformed(error, "unknown stage");
            return NULL;
        }
        /* Only names from our list reach the log. */
        g_debug("%s: %s", req->image, stage);
    }
    vo_wire_malformed(error, "too many stages");
    return NULL;
}

static void vo_worker_describe_end(const VoWorkerRequest *req, int status,
                                   GError **error)
{
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);

        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the worker reading %s ended by signal %d (%s)%s; %s was "
                    "not changed", req->image, sig, g_strsignal(sig),
                    sig == SIGSYS ? ", a system call its sandbox forbids" :
                    sig == SIGXCPU ? ", its CPU time limit" : "",
                    req->image);
    } else {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the worker reading %s ended with status %d and no "
                    "report; %s was not changed", req->image,
                    WEXITSTATUS(status), req->image);
    }
}

JsonObject *vo_worker_read_report(const VoWorkerRequest *req, int fd,
                                  gint64 deadline, GError **job_error,
                                  GError **error)
{
    g_autoptr(JsonObject) report = vo_worker_read(req, fd, deadline, error);

    if (!report ||
        !vo_worker_check_report(req, report, job_error, error)) {
        return NULL;
    }
    return g_steal_pointer(&report);
}

/*
 * One qemu-nbd per disk of the guest, or a qemu-storage-daemon for a disk
 * with LUKS volumes to open (@volumes, in the order of the disks); the
 * worker's ends of their connections in @disk_fds, the disks' first.
 */
static gboolean vo_worker_serve(const VoWorkerRequest *req, GArray *volumes,
                                GPtrArray *servers, int *disk_fds,
                                GError **error)
{
    guint next = 0;

    gboolean writable = req->job == VO_WORKER_APPLY;

    for (guint i = 0; i <= req->n_more; i++) {
        /* Set before the start (vo_worker_formats()). */
        const char *format = req->probe ? NULL
                             : i ? req->more_formats[i - 1] : req->format;
        VoImageServer *server;
        VoImageLuks luks[VO_IMAGE_MAX_LUKS];
        guint first = next, n = 0;

        while (next < volumes->len &&
               g_array_index(volumes, VoWorkerVolume, next).disk == i) {
            luks[n++] = g_array_index(volumes, VoWorkerVolume, next++).luks;
        }
        server = n ? vo_image_server_new_luks(
                         i ? req->more_disks[i - 1] : req->disk,
                         i ? req->more_images[i - 1] : req->image, format,
                         writable, luks, n, first, error)
                   : vo_image_server_new(
                         i ? req->more_disks[i - 1] : req->disk,
                         i ? req->more_images[i - 1] : req->image, format,
                         writable, error);
        if (!server) {
            return FALSE;
        }
        g_ptr_array_add(servers, server);
        disk_fds[i] = vo_image_server_take_client(server);
        for (guint k = 0; k < n; k++) {
            disk_fds[req->n_more + 1 + first + k] =
                vo_image_server_take_volume(server, k);
        }
    }
    return TRUE;
}

/*
 * Each disk's format into @formats, and onto its server in @servers
 * (unless NULL): the request's, or with @req->probe what the probe of the
 * disk finds (added to @probed, which holds them).  A format is one of
 * QEMU's driver names: it becomes part of qemu-nbd's options.
 */
static gboolean vo_worker_formats(const VoWorkerRequest *req,
                                  GPtrArray *servers, GPtrArray *probed,
                                  const char **formats, GError **error)
{
    for (guint i = 0; i <= req->n_more; i++) {
        const char *format = i ? req->more_formats[i - 1] : req->format;

        if (req->probe) {
            char *found = vo_image_open_format(
                i ? req->more_disks[i - 1] : req->disk, format,
                req->job == VO_WORKER_APPLY, error);

            if (!found) {
                return FALSE;
            }
            g_ptr_array_add(probed, found);
            format = found;
        }
        if (!*format || format[strspn(format, "abcdefghijklmnopqrstuvwxyz"
                                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                              "0123456789_-")]) {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "no image format is called '%s'", format);
            return FALSE;
        }
        formats[i] = format;
        if (servers) {
            vo_image_server_set_format(servers->pdata[i], format);
        }
    }
    return TRUE;
}

/*
 * The inventory's formats are the ones its disks were served in, which
 * we know and the worker was not told: each of the @n disks of "disks",
 * one object each in the guest's order, the first one's also at the top.
 * "disks" listing anything else is a malformed report.
 */
static gboolean vo_worker_report_formats(JsonObject *report,
                                         const char *const *formats,
                                         guint n, GError **error)
{
    JsonNode *inv = json_object_get_member(report, "inventory");
    JsonNode *disks;
    JsonArray *list;

    if (!inv || !JSON_NODE_HOLDS_OBJECT(inv)) {
        return TRUE;
    }
    json_object_set_string_member(json_node_get_object(inv), "format",
                                  formats[0]);
    disks = json_object_get_member(json_node_get_object(inv), "disks");
    if (!disks) {
        return TRUE;
    }
    list = JSON_NODE_HOLDS_ARRAY(disks) ? json_node_get_array(disks) : NULL;
    if (!list || json_array_get_length(list) != n) {
        return vo_wire_malformed(error, "\"disks\" is not one object per "
                                 "disk");
    }
    for (guint i = 0; i < n; i++) {
        JsonNode *d = json_array_get_element(list, i);

        if (!JSON_NODE_HOLDS_OBJECT(d)) {
            return vo_wire_malformed(error, "\"disks\" is not one object "
                                     "per disk");
        }
        json_object_set_string_member(json_node_get_object(d), "format",
                                      formats[i]);
    }
    return TRUE;
}

/* ---- The locate job's volumes ---- */

static gboolean vo_worker_vol_uint(JsonObject *o, const char *name,
                                   guint64 *out)
{
    JsonNode *n = json_object_get_member(o, name);

    if (!n || json_node_get_value_type(n) != G_TYPE_INT64 ||
        json_node_get_int(n) < 0) {
        return FALSE;
    }
    *out = json_node_get_int(n);
    return TRUE;
}

static gboolean vo_worker_vol_str(JsonObject *o, const char *name, char **out)
{
    JsonNode *n = json_object_get_member(o, name);

    if (!n) {
        return TRUE;
    }
    if (json_node_get_value_type(n) != G_TYPE_STRING ||
        strlen(json_node_get_string(n)) > 1024) {
        return FALSE;
    }
    *out = g_strdup(json_node_get_string(n));
    return TRUE;
}

/*
 * One volume the worker reported, checked as untrusted input (known
 * members of their types, one of the guest's disks, a byte range inside
 * it aligned to sectors, that a copy or a QEMU window may trust), added
 * to @layout.
 */
static gboolean vo_worker_volume(JsonNode *node, const guint64 *sizes,
                                 guint n_disks, VoLayout *layout,
                                 GError **error)
{
    VoPartition *p = g_new0(VoPartition, 1);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node)
                                                 : NULL;
    guint64 disk, number, size;

    /* The layout owns it from here, whatever follows. */
    g_ptr_array_add(layout->partitions, p);
    if (!o || !vo_worker_vol_uint(o, "disk", &disk) || disk >= n_disks ||
        !vo_worker_vol_uint(o, "number", &number) || number > G_MAXINT ||
        !vo_worker_vol_uint(o, "offset", &p->offset) ||
        !vo_worker_vol_uint(o, "size", &p->size) ||
        !vo_worker_vol_str(o, "fstype", &p->fstype) ||
        !vo_worker_vol_str(o, "fs_uuid", &p->fs_uuid) ||
        !vo_worker_vol_str(o, "fs_label", &p->fs_label) ||
        !vo_worker_vol_str(o, "part_uuid", &p->part_uuid) ||
        !vo_worker_vol_str(o, "part_label", &p->part_label) ||
        !vo_worker_vol_str(o, "volume", &p->volume)) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the worker reported a malformed volume");
        return FALSE;
    }
    p->number = number;
    p->disk = disk;
    size = sizes[disk];
    if (p->size == 0 || p->offset % 512 || p->size % 512 ||
        p->offset > size || p->size > size - p->offset) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the worker placed a volume at %" G_GUINT64_FORMAT
                    " (%" G_GUINT64_FORMAT " bytes), not whole sectors "
                    "inside the disk of %" G_GUINT64_FORMAT " bytes",
                    p->offset, p->size, size);
        return FALSE;
    }
    return TRUE;
}

VoLayout *vo_worker_volumes(JsonObject *result, const guint64 *sizes,
                            guint n_disks, GError **error)
{
    g_autoptr(VoLayout) layout = vo_layout_new();
    JsonNode *node = json_object_get_member(result, "volumes");
    JsonArray *volumes;

    if (!node || !JSON_NODE_HOLDS_ARRAY(node) ||
        json_array_get_length(json_node_get_array(node)) >
            VO_WORKER_MAX_VOLUMES) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the worker reported no list of volumes");
        return NULL;
    }
    volumes = json_node_get_array(node);
    for (guint i = 0; i < json_array_get_length(volumes); i++) {
        if (!vo_worker_volume(json_array_get_element(volumes, i), sizes,
                              n_disks, layout, error)) {
            return NULL;
        }
    }
    return g_steal_pointer(&layout);
}

/*
 * The LUKS volumes of @layout (vo_worker_volumes()) that we have a key
 * for, in the disks' order.
 */
static gboolean vo_worker_luks_volumes(const VoWorkerRequest *req,
                                       VoLayout *layout, GArray *volumes,
                                       GError **error)
{
    for (guint i = 0; i < layout->partitions->len; i++) {
        VoPartition *p = layout->partitions->pdata[i];
        VoWorkerVolume v = {
            .disk = p->disk,
            .luks.offset = p->offset,
            .luks.size = p->size,
        };

        if (g_strcmp0(p->fstype, "crypto_LUKS") != 0) {
            continue;
        }
        /* A UUID of another form names no key: "all" may still open it. */
        v.luks.key_file = vo_worker_key_for(
            p->fs_uuid && vo_worker_is_uuid(p->fs_uuid) ? p->fs_uuid : NULL);
        if (!v.luks.key_file) {
            /* The worker refuses it, naming --luks-key, if the guest
             * needs it. */
            continue;
        }
        if (volumes->len == VO_WORKER_MAX_LUKS) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "%s: more than %d LUKS volumes to open", req->image,
                        VO_WORKER_MAX_LUKS);
            return FALSE;
        }
        g_array_append_val(volumes, v);
    }
    return TRUE;
}

/* @fds: NULL, or per disk the file held open (prepare()). */
static gboolean vo_worker_start_servers(GPtrArray *servers, const int *fds,
                                        GError **error)
{
    for (guint i = 0; i < servers->len; i++) {
        if (!vo_image_server_start(servers->pdata[i], fds ? fds[i] : -1,
                                   error)) {
            return FALSE;
        }
    }
    return TRUE;
}

/* The memfd a spare's later request will be written into: empty, and
 * sealed only once it is written (vo_worker_await()). */
static int vo_worker_later_fd(GError **error)
{
    int fd = memfd_create("vmaugment-scan", MFD_CLOEXEC | MFD_ALLOW_SEALING);

    if (fd < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot hand the scan request over: %s",
                    g_strerror(errno));
    }
    return fd;
}

/* Into @spare, a spare's request once @req->await gave its image. */
static gboolean vo_worker_awaited(const VoWorkerRequest *req,
                                  VoWorkerRequest *spare, GError **error)
{
    *spare = *req;
    spare->await = NULL;
    if (!req->await(req->await_data, spare, error)) {
        return FALSE;
    }
    if (!spare->image || !spare->disk || !spare->request) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "a spare scan was given no image");
        return FALSE;
    }
    return TRUE;
}

/*
 * A spare, its worker started: waits for its image and request (@await),
 * names the image to its server, and writes and seals the request into
 * @later_fd (which it closes), before the server starts.  Into @spare,
 * the request as the job then runs it.
 */
static gboolean vo_worker_await(const VoWorkerRequest *req,
                                VoWorkerRequest *spare, GPtrArray *servers,
                                int later_fd, GError **error)
{
    gboolean ok = vo_worker_awaited(req, spare, error);

    if (ok) {
        vo_image_server_set_image(servers->pdata[0], spare->disk,
                                  spare->image);
        ok = vo_worker_seal(later_fd, spare->request, spare->request_keys);
        if (!ok) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "cannot hand the scan request over: %s",
                        g_strerror(errno));
        }
    }
    close(later_fd);
    return ok;
}

/* @fds: NULL, or the disks prepare() made, held open (it then is not
 * called again). */
static gboolean vo_worker_run_opened(const VoWorkerRequest *req,
                                     GArray *volumes, const int *fds,
                                     JsonObject **result, GError **error)
{
    g_autoptr(GPtrArray) servers = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_image_server_free);
    g_autoptr(JsonObject) report = NULL;
    g_autoptr(GBytes) empty = g_bytes_new_static("", 0);
    g_autoptr(GError) read_error = NULL;
    g_autoptr(GError) job_error = NULL;
    g_autoptr(GError) server_error = NULL;
    int sv[2] = { -1, -1 };
    int disk_fds[VO_WORKER_MAX_DISKS + VO_WORKER_MAX_LUKS];
    int made[VO_WORKER_MAX_DISKS];
    g_autoptr(GPtrArray) probed = g_ptr_array_new_with_free_func(g_free);
    const char *formats[VO_WORKER_MAX_DISKS];
    guint n_fds;
    int bundle_fd = -1;
    int scan_fd = -1;
    VoWorkerRequest spare;
    gboolean report_ok;
    bool killed;
    pid_t pid;
    int status;

    *result = NULL;
    for (guint i = 0; i < G_N_ELEMENTS(disk_fds); i++) {
        disk_fds[i] = -1;
    }
    n_fds = req->n_more + 1 + volumes->len;
    if (!vo_worker_serve(req, volumes, servers, disk_fds, error)) {
        for (guint i = 0; i < n_fds; i++) {
            if (disk_fds[i] >= 0) {
                close(disk_fds[i]);
            }
        }
        return FALSE;
    }
    if ((req->bundle || req->request) &&
        (bundle_fd = vo_worker_sealed_fd(
             req->bundle ? req->bundle->bytes : req->request,
             req->bundle ? NULL : req->request_keys, error)) < 0) {
        pid = -1;
    } else if (vo_worker_job_has_scan(req->job) &&
               (scan_fd = vo_worker_sealed_fd(
                    req->request ? req->request : empty,
                    req->request ? req->request_keys : NULL, error)) < 0) {
        pid = -1;
    } else if (req->job == VO_WORKER_SCAN &&
               (scan_fd = req->await
                              ? vo_worker_later_fd(error)
                              : vo_worker_sealed_fd(empty, NULL, error)) < 0) {
        pid = -1;
    } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "socketpair: %s",
                    g_strerror(errno));
        pid = -1;
    } else {
        pid = vo_worker_spawn(req, disk_fds, volumes, sv[1], bundle_fd,
                              scan_fd, error);
    }
    /* Ours no longer: when the worker ends, so do the servers and the
     * report stream. */
    for (guint i = 0; i < n_fds; i++) {
        close(disk_fds[i]);
    }
    if (sv[1] >= 0) {
        close(sv[1]);
    }
    if (bundle_fd >= 0) {
        close(bundle_fd);
    }
    /* A spare's later request is still to be written. */
    if (scan_fd >= 0 && (!req->await || pid < 0)) {
        close(scan_fd);
    }
    if (pid < 0) {
        if (sv[0] >= 0) {
            close(sv[0]);
        }
        return FALSE;
    }
    if (req->await) {
        struct pollfd gone = { .fd = sv[0], .events = POLLIN };
        bool unused;

        /* It loads the database meanwhile, however long the wait. */
        if (!vo_worker_await(req, &spare, servers, scan_fd, error)) {
            close(sv[0]);
            sandbox_reap(pid, 0, &unused);
            return FALSE;
        }
        /* Until its disk answers it says nothing: anything on its stream
         * now is its end. */
        if (poll(&gone, 1, 0) != 0) {
            close(sv[0]);
            sandbox_reap(pid, 0, &unused);
            if (req->spare_lost) {
                *req->spare_lost = TRUE;
            }
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "the spare's worker ended before its image came");
            return FALSE;
        }
        req = &spare;
    }
    /*
     * The worker starts (loads, confines itself, waits for qemu-nbd's
     * greeting on its connection) while the disks are probed or made and
     * their servers start: neither waits for the other.
     */
    if (req->prepare) {
        fds = made;
    }
    if (!vo_worker_formats(req, servers, probed, formats, error) ||
        (req->prepare && !req->prepare(req->prepare_data, made, error)) ||
        !vo_worker_start_servers(servers, fds, error)) {
        bool unused;

        close(sv[0]);
        sandbox_reap(pid, 0, &unused);
        return FALSE;
    }
    report = vo_worker_read(req, sv[0],
                            g_get_monotonic_time() +
                                (gint64)(req->timeout_s ? req->timeout_s
                                                        : VO_WORKER_TIMEOUT_S) *
                                    G_USEC_PER_SEC,
                            &read_error);
    close(sv[0]);
    /* Past our deadline it gets no grace; otherwise its stream ended
     * and so does it, now. */
    status = sandbox_reap(pid,
                          g_error_matches(read_error, VO_ERROR,
                                          VO_ERROR_TIMEOUT)
                              ? 0 : VO_WORKER_EXIT_GRACE_US,
                          &killed);
    /* qemu-nbd's own failure (a lock, a corrupt image) says most. */
    for (guint i = 0; i < servers->len; i++) {
        /* Each one ends; the first failure is reported. */
        vo_image_server_finish(servers->pdata[i],
                               server_error ? NULL : &server_error);
    }
    if (server_error) {
        g_propagate_error(error, g_steal_pointer(&server_error));
        return FALSE;
    }
    if (!report) {
        /* Silent: how it ended says why.  Anything it did send, however
         * malformed, says more. */
        if (!killed &&
            g_error_matches(read_error, VO_ERROR, VO_ERROR_NOT_FOUND) &&
            (WIFSIGNALED(status) || WEXITSTATUS(status) != 0)) {
            vo_worker_describe_end(req, status, error);
        } else {
            g_propagate_error(error, g_steal_pointer(&read_error));
        }
        return FALSE;
    }
    if (killed || WIFSIGNALED(status)) {
        /* Whatever it said before, a worker that crashed or outstayed
         * its grace did not finish as its report claims. */
        vo_worker_describe_end(req, status, error);
        return FALSE;
    }
    report_ok = vo_worker_check_report(req, report, &job_error, error);
    if (!report_ok) {
        return FALSE;
    }
    if (req->job == VO_WORKER_INSPECT &&
        !vo_worker_report_formats(report, formats, req->n_more + 1, error)) {
        return FALSE;
    }
    *result = g_steal_pointer(&report);
    if (job_error) {
        /* What the job found is about the image the user named (never
         * the overlay it ran on). */
        g_propagate_prefixed_error(error, g_steal_pointer(&job_error), "%s: ",
                                   req->image);
        return FALSE;
    }
    return TRUE;
}

gboolean vo_worker_run(const VoWorkerRequest *req, JsonObject **result,
                       GError **error)
{
    g_autoptr(GArray) volumes = g_array_new(FALSE, FALSE,
                                            sizeof(VoWorkerVolume));
    g_autoptr(JsonObject) located = NULL;
    g_autoptr(VoLayout) layout = NULL;
    g_autoptr(GPtrArray) probed = g_ptr_array_new_with_free_func(g_free);
    const char *formats[VO_WORKER_MAX_DISKS];
    VoWorkerRequest find;
    VoWorkerRequest job = *req;
    VoWorkerRequest waited;
    guint64 sizes[VO_WORKER_MAX_DISKS];
    int made[VO_WORKER_MAX_DISKS];
    const int *fds = NULL;

    *result = NULL;
    /* LUKS volumes are located on the image before the job's worker
     * starts: no spare then, the job waits for its image first. */
    if (req->await && vo_worker_keys) {
        if (!vo_worker_awaited(req, &waited, error)) {
            return FALSE;
        }
        req = &waited;
        job = waited;
    }
    /* Before anything is counted out per disk. */
    if (req->n_more >= VO_WORKER_MAX_DISKS) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s: a guest of %u disks; at most %d are read together",
                    req->image, req->n_more + 1, VO_WORKER_MAX_DISKS);
        return FALSE;
    }
    if (vo_worker_keys && req->job != VO_WORKER_LOCATE) {
        /*
         * Where the LUKS volumes lie is read by a locate job of its own,
         * from the disks as the job will see them (made first, then) and
         * read-only, before the job: their keys then open them for it.
         * Both need the disks' formats: probed first, then.
         */
        if (req->probe) {
            if (!vo_worker_formats(req, NULL, probed, formats, error)) {
                return FALSE;
            }
            job.format = formats[0];
            job.more_formats = formats + 1;
            job.probe = FALSE;
        }
        /* The formats known: the job's request from here on. */
        req = &job;
        find = job;
        if (req->prepare) {
            if (!req->prepare(req->prepare_data, made, error)) {
                return FALSE;
            }
            fds = made;
        }
        job.prepare = NULL;
        find.job = VO_WORKER_LOCATE;
        find.bundle = NULL;
        find.request = NULL;
        find.request_keys = NULL;
        find.prepare = NULL;
        if (!vo_worker_run_opened(&find, volumes, fds, &located, error)) {
            return FALSE;
        }
        for (guint i = 0; i <= req->n_more; i++) {
            if (!vo_image_virtual_size(i ? req->more_disks[i - 1] : req->disk,
                                       fds ? fds[i] : -1,
                                       i ? req->more_formats[i - 1]
                                         : req->format,
                                       &sizes[i], error)) {
                return FALSE;
            }
        }
        layout = vo_worker_volumes(located, sizes, req->n_more + 1, error);
        if (!layout || !vo_worker_luks_volumes(req, layout, volumes, error)) {
            return FALSE;
        }
        if (volumes->len == 0) {
            g_message("%s: no LUKS volume that a --luks-key given opens",
                      req->image);
        }
    }
    return vo_worker_run_opened(&job, volumes, fds, result, error);
}

void vo_worker_add_error(JsonBuilder *b, GError *error)
{
    if (strlen(error->message) > VO_WORKER_MAX_MESSAGE) {
        *g_utf8_find_prev_char(error->message,
                               error->message + VO_WORKER_MAX_MESSAGE) = '\0';
    }
    json_builder_set_member_name(b, "error");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "code");
    json_builder_add_int_value(b, error->domain == VO_ERROR ? error->code
                                                            : VO_ERROR_FAILED);
    json_builder_set_member_name(b, "message");
    json_builder_add_string_value(b, error->message);
    json_builder_end_object(b);
}
