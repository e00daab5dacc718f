/*
 * vmaugment module repository: the client (libcurl over GnuTLS).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE             /* O_TMPFILE, AT_EMPTY_PATH */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <glib/gstdio.h>

#include "host-common.h"
#include "repo-private.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(CURL, curl_easy_cleanup)

/* Where a body goes while it arrives: memory, or a file descriptor. */
typedef struct {
    const gchar *what;          /* for messages: "index of https://..." */
    guint64 limit;              /* more than this is refused */
    const gchar *limit_reason;  /* "the index says", "the hard cap" */
    guint64 received;
    GByteArray *mem;
    int fd;
    GChecksum *sum;
    GError *error;              /* why the callback stopped the transfer */
} RepoSink;

typedef struct {
    const VmaugRepoOptions *opts;
    gchar *base;                /* the URL without trailing '/' */
    gboolean local;             /* a directory of this host (file://) */
    gint64 deadline;            /* monotonic, microseconds */
} RepoSession;

void vmaug_repo_options_init(VmaugRepoOptions *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->timeout_ms = VMAUG_REPO_DEFAULT_TIMEOUT_MS;
    opts->connect_timeout_ms = VMAUG_REPO_DEFAULT_CONNECT_MS;
    opts->low_speed_bps = VMAUG_REPO_DEFAULT_LOW_SPEED_BPS;
    opts->low_speed_s = VMAUG_REPO_DEFAULT_LOW_SPEED_S;
    opts->max_package_size = VMAUG_REPO_DEFAULT_MAX_PACKAGE;
}

void vmaug_repo_result_free(VmaugRepoResult *result)
{
    if (result == NULL) {
        return;
    }
    g_free(result->name);
    g_free(result->version);
    g_free(result->sha256);
    g_free(result->path);
    g_free(result->signer);
    g_free(result);
}

static void repo_curl_init(void)
{
    static gsize done;

    /* curl_global_init() is not thread-safe everywhere: once, guarded. */
    if (g_once_init_enter(&done)) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        g_once_init_leave(&done, 1);
    }
}

static gboolean repo_session_init(RepoSession *s, const VmaugRepoOptions *opts,
                                  GError **error)
{
    const gchar *url = opts->url;
    gsize len;

    memset(s, 0, sizeof(*s));
    s->opts = opts;
    if (url == NULL || opts->trust_dir == NULL || opts->state_dir == NULL) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_INVALID,
                    "repository URL, trust directory and state directory "
                    "are required");
        return FALSE;
    }
    /*
     * Plain HTTP would let anyone on the path withhold updates unseen;
     * the index signature alone does not stop a freeze within expiry.  A
     * directory of this host (an absolute path, or file:///path: a mirror
     * for air-gapped hosts) has no path to attack; it gets every check of
     * the index and packages all the same.  No '%': libcurl would decode
     * escapes in a file URL.
     */
    if (url[0] == '/') {
        s->base = g_strconcat("file://", url, NULL);
    } else {
        s->base = g_strdup(url);
    }
    s->local = g_str_has_prefix(s->base, "file:///");
    len = strlen(s->base);
    if ((!g_str_has_prefix(s->base, "https://") && !s->local) ||
        len > VMAUG_REPO_MAX_URL ||
        len <= strlen(s->local ? "file:///" : "https://") ||
        strpbrk(s->base, s->local ? "?#%\t\r\n" : "?# \t\r\n") != NULL ||
        !g_utf8_validate(s->base, len, NULL)) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_INVALID,
                    "repository URL \"%s\" is neither a plain https:// URL "
                    "nor a directory (/path or file:///path)", url);
        g_clear_pointer(&s->base, g_free);
        return FALSE;
    }
    while (len > strlen("file:///") && s->base[len - 1] == '/') {
        s->base[--len] = '\0';
    }
    s->deadline = g_get_monotonic_time() +
                  (gint64)(opts->timeout_ms ? opts->timeout_ms :
                           VMAUG_REPO_DEFAULT_TIMEOUT_MS) * 1000;
    repo_curl_init();
    return TRUE;
}

static void repo_session_clear(RepoSession *s)
{
    g_clear_pointer(&s->base, g_free);
}

static size_t repo_sink_write(char *ptr, size_t size, size_t nmemb,
                              void *data)
{
    RepoSink *sink = data;
    gsize n = size * nmemb;

    /* Checked as the bytes arrive, before any is stored: a server cannot
     * make us hold more than the index promised. */
    if (n > sink->limit || sink->received > sink->limit - n) {
        g_set_error(&sink->error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_TOO_BIG,
                    "%s: body larger than %" G_GUINT64_FORMAT " bytes (%s)",
                    sink->what, sink->limit, sink->limit_reason);
        return 0;
    }
    if (sink->sum != NULL) {
        g_checksum_update(sink->sum, (const guchar *)ptr, n);
    }
    if (sink->mem != NULL) {
        g_byte_array_append(sink->mem, (const guint8 *)ptr, n);
    } else {
        for (gsize done = 0; done < n;) {
            ssize_t w = write(sink->fd, ptr + done, n - done);

            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                g_set_error(&sink->error, VMAUG_REPO_ERROR,
                            VMAUG_REPO_ERROR_FAILED, "%s: cannot write: %s",
                            sink->what, g_strerror(w < 0 ? errno : ENOSPC));
                return 0;
            }
            done += w;
        }
    }
    sink->received += n;
    return n;
}

static VmaugRepoError repo_curl_error_code(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return VMAUG_REPO_ERROR_TIMEOUT;
    case CURLE_FILESIZE_EXCEEDED:
        return VMAUG_REPO_ERROR_TOO_BIG;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
        return VMAUG_REPO_ERROR_TLS;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return VMAUG_REPO_ERROR_INVALID;
    default:
        return VMAUG_REPO_ERROR_NETWORK;
    }
}

/* GET @rel below the repository into @sink; TRUE only for a complete 200
 * response.  @http_status receives the status when the server answered. */
static gboolean repo_get(RepoSession *s, const gchar *rel, RepoSink *sink,
                         long *http_status, GError **error)
{
    const VmaugRepoOptions *o = s->opts;
    g_autoptr(CURL) curl = curl_easy_init();
    g_autofree gchar *url = g_strconcat(s->base, "/", rel, NULL);
    gchar errbuf[CURL_ERROR_SIZE] = "";
    gint64 left_ms = (s->deadline - g_get_monotonic_time()) / 1000;
    gint64 connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms :
                        VMAUG_REPO_DEFAULT_CONNECT_MS;
    long status = 0;
    CURLcode rc;

    *http_status = 0;
    if (curl == NULL) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                    "%s: cannot initialise libcurl", sink->what);
        return FALSE;
    }
    if (left_ms <= 0) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_TIMEOUT,
                    "%s: time bound of %u ms used up", sink->what,
                    o->timeout_ms);
        return FALSE;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    /* HTTPS only (or the local directory), no redirects: the repository
     * is the URL configured. */
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, s->local ? "file" : "https");
    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (o->ca_file != NULL) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, o->ca_file);
        /* Only the owner's CA file, not the system store beside it. */
        curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
    }
    /* Signals would interrupt the host helper's other threads. */
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)left_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)MIN(left_ms, connect_ms));
    if (o->low_speed_bps > 0 && o->low_speed_s > 0) {
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT,
                         (long)o->low_speed_bps);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)o->low_speed_s);
    }
    /* Refused early when the server announces a larger body; the write
     * callback enforces it when it does not. */
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)sink->limit);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, repo_sink_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_USERAGENT,
                     "vmaugment-repo/" VMAUG_HOST_VERSION);

    rc = curl_easy_perform(curl);
    if (sink->error != NULL) {
        g_propagate_error(error, g_steal_pointer(&sink->error));
        return FALSE;
    }
    if (rc == CURLE_FILESIZE_EXCEEDED) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_TOO_BIG,
                    "%s: the server announced a body larger than %"
                    G_GUINT64_FORMAT " bytes (%s)", sink->what, sink->limit,
                    sink->limit_reason);
        return FALSE;
    }
    if (s->local && rc == CURLE_FILE_COULDNT_READ_FILE) {
        /* What a server says with 404. */
        *http_status = 404;
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_NOT_FOUND,
                    "%s: no such file in the repository", sink->what);
        return FALSE;
    }
    if (rc != CURLE_OK) {
        VmaugRepoError code = repo_curl_error_code(rc);

        /* libcurl's detail often repeats its summary: say it once. */
        g_set_error(error, VMAUG_REPO_ERROR, code, "%s: %s%s%s%s",
                    sink->what, code == VMAUG_REPO_ERROR_TLS ?
                    "TLS connection refused: " : "",
                    strstr(errbuf, curl_easy_strerror(rc)) ? "" :
                    curl_easy_strerror(rc),
                    errbuf[0] && !strstr(errbuf, curl_easy_strerror(rc)) ?
                    ": " : "", errbuf);
        return FALSE;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (s->local) {
        status = 200;       /* a file read whole */
    }
    *http_status = status;
    if (status != 200) {
        g_set_error(error, VMAUG_REPO_ERROR,
                    status == 404 ? VMAUG_REPO_ERROR_NOT_FOUND :
                    VMAUG_REPO_ERROR_NETWORK,
                    "%s: the server answered HTTP %ld", sink->what, status);
        return FALSE;
    }
    return TRUE;
}

static GBytes *repo_get_small(RepoSession *s, const gchar *rel,
                              const gchar *what, guint64 limit,
                              long *http_status, GError **error)
{
    g_autoptr(GByteArray) mem = g_byte_array_new();
    RepoSink sink = {
        .what = what, .limit = limit, .limit_reason = "the hard cap",
        .mem = mem, .fd = -1,
    };

    if (!repo_get(s, rel, &sink, http_status, error)) {
        return NULL;
    }
    return g_byte_array_free_to_bytes(g_steal_pointer(&mem));
}

static VmaugRepoIndex *repo_session_index(RepoSession *s,
                                          VmaugTrustStore *trust,
                                          GError **error)
{
    g_autofree gchar *what = g_strdup_printf("index of %s", s->base);
    g_autofree gchar *sig_what = g_strdup_printf("index signature of %s",
                                                 s->base);
    g_autofree gchar *sig_rel = NULL;
    g_autofree gchar *sha = NULL;
    g_autoptr(GBytes) json = NULL;
    g_autoptr(GBytes) sig = NULL;
    g_autoptr(GBytes) signed_bytes = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;
    g_autoptr(VmaugRepoIndex) index = NULL;
    g_autoptr(GError) local = NULL;
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;
    long status;

    json = repo_get_small(s, VMAUG_REPO_INDEX_FILE, what,
                          VMAUG_REPO_MAX_INDEX_SIZE, &status, error);
    if (json == NULL) {
        return NULL;
    }
    /* The signature is named by the index's hash, so a publisher can
     * replace both without a reader ever pairing old and new. */
    sha = repo_sha256_hex(g_bytes_get_data(json, NULL),
                          g_bytes_get_size(json));
    sig_rel = g_strdup_printf(VMAUG_REPO_SIGNATURE_DIR "/index-%s.p7s", sha);
    sig = repo_get_small(s, sig_rel, sig_what, VMAUG_TRUST_MAX_SIGNATURE_SIZE,
                         &status, &local);
    if (sig == NULL) {
        if (status == 404) {
            g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_SIGNATURE,
                        "%s: signature refused: the index is not signed "
                        "(no %s)", what, sig_rel);
        } else {
            g_propagate_error(error, g_steal_pointer(&local));
        }
        return NULL;
    }
    signed_bytes = repo_index_signed_bytes(json);
    /* Nothing of the index is parsed before its signature verified. */
    signer = vmaug_trust_store_verify(trust, signed_bytes, sig, &local);
    if (signer == NULL) {
        repo_propagate_signature_error(error, local, what);
        return NULL;
    }
    index = repo_index_parse(json, error);
    if (index == NULL) {
        g_prefix_error(error, "%s: ", what);
        return NULL;
    }
    index->signer = g_strdup(signer->common_name);
    /* A frozen index (a mirror or attacker replaying old signed files)
     * stops being accepted once it expires. */
    if (now >= index->expires) {
        g_autoptr(GDateTime) dt = g_date_time_new_from_unix_utc(index->expires);
        g_autofree gchar *when = g_date_time_format(dt, "%Y-%m-%dT%H:%M:%SZ");

        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_EXPIRED,
                    "%s: metadata version %" G_GINT64_FORMAT
                    " expired at %s", what, index->version, when);
        return NULL;
    }
    if (!repo_state_admit(s->opts->state_dir, s->base, index, error)) {
        return NULL;
    }
    return g_steal_pointer(&index);
}

static VmaugTrustStore *repo_trust_load(const gchar *dir, GError **error)
{
    g_autoptr(GError) local = NULL;
    VmaugTrustStore *trust = vmaug_trust_store_new_from_dir(dir, &local);

    if (trust == NULL) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                    "trust store %s: %s", dir, local->message);
    }
    return trust;
}

VmaugRepoIndex *vmaug_repo_fetch_index(const VmaugRepoOptions *opts,
                                       GError **error)
{
    g_autoptr(VmaugTrustStore) trust = NULL;
    RepoSession s;
    VmaugRepoIndex *index;

    if (!repo_session_init(&s, opts, error)) {
        return NULL;
    }
    trust = repo_trust_load(opts->trust_dir, error);
    index = trust ? repo_session_index(&s, trust, error) : NULL;
    repo_session_clear(&s);
    return index;
}

/* Check the downloaded package itself: its signature and manifest, and
 * that it is what the index calls it. */
static VmaugPackage *repo_check_package(int fd, const VmaugRepoEntry *e,
                                        VmaugTrustStore *trust,
                                        guint64 max_size, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autoptr(GMappedFile) map = g_mapped_file_new_from_fd(fd, FALSE, &local);
    g_autoptr(GBytes) bytes = NULL;
    g_autoptr(VmaugPackage) pkg = NULL;

    if (map == NULL) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                    "package %s %s: %s", e->name, e->version, local->message);
        return NULL;
    }
    bytes = g_mapped_file_get_bytes(map);
    pkg = vmaug_package_verify(bytes, trust, max_size, &local);
    if (pkg == NULL) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_PACKAGE,
                    "package %s %s refused: %s", e->name, e->version,
                    local->message);
        return NULL;
    }
    if (strcmp(pkg->manifest->name, e->name) != 0 ||
        vmaug_version_compare(pkg->manifest->version, e->version) != 0) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_PACKAGE,
                    "package %s %s refused: it is %s %s", e->name, e->version,
                    pkg->manifest->name, pkg->manifest->version);
        return NULL;
    }
    return g_steal_pointer(&pkg);
}

/* Where a package is written until it is complete and checked. */
typedef struct {
    int fd;
    gchar *path;                /* its name while it has one, else NULL */
    gchar *prefix;              /* "<dir>/.<name>-<version>.vmod." */
} RepoTmp;

/*
 * Prefer an unnamed file (O_TMPFILE): if the process dies mid-download
 * nothing is left in the directory.  Otherwise a hidden temporary name.
 */
static gboolean repo_tmp_open(RepoTmp *t, const gchar *dir,
                              const VmaugRepoEntry *e, GError **error)
{
    t->prefix = g_strdup_printf("%s/.%s-%s.vmod.", dir, e->name, e->version);
    t->path = NULL;
    t->fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (t->fd < 0) {
        t->path = g_strconcat(t->prefix, "XXXXXX", NULL);
        t->fd = g_mkstemp_full(t->path, O_RDWR | O_CLOEXEC, 0600);
    }
    if (t->fd < 0) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                    "cannot create a file in %s: %s", dir, g_strerror(errno));
        g_clear_pointer(&t->path, g_free);
        return FALSE;
    }
    return TRUE;
}

/* Give the unnamed file a (hidden, unique) name so it can be renamed. */
static gboolean repo_tmp_name(RepoTmp *t)
{
    g_autofree gchar *proc = g_strdup_printf("/proc/self/fd/%d", t->fd);

    for (guint i = 0; i < 16 && t->path == NULL; i++) {
        g_autofree gchar *p = g_strdup_printf("%s%08x", t->prefix,
                                              g_random_int());

        /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc does not. */
        if (linkat(t->fd, "", AT_FDCWD, p, AT_EMPTY_PATH) == 0 ||
            linkat(AT_FDCWD, proc, AT_FDCWD, p, AT_SYMLINK_FOLLOW) == 0) {
            t->path = g_steal_pointer(&p);
        } else if (errno != EEXIST) {
            return FALSE;
        }
    }
    return t->path != NULL;
}

/* Sync the complete file and move it to @final atomically. */
static gboolean repo_tmp_commit(RepoTmp *t, const gchar *final)
{
    if (fsync(t->fd) != 0) {
        return FALSE;
    }
    if (t->path == NULL && !repo_tmp_name(t)) {
        return FALSE;
    }
    if (rename(t->path, final) != 0) {
        return FALSE;
    }
    g_clear_pointer(&t->path, g_free);
    return TRUE;
}

/* Close, and remove the file unless it was committed. */
static void repo_tmp_close(RepoTmp *t)
{
    if (t->path != NULL) {
        g_unlink(t->path);
    }
    if (t->fd >= 0) {
        close(t->fd);
    }
    g_free(t->path);
    g_free(t->prefix);
}

/* Download @e into @tmp and check it. */
static VmaugRepoResult *repo_download(RepoSession *s, const VmaugRepoEntry *e,
                                      VmaugTrustStore *trust, RepoTmp *tmp,
                                      const gchar *final, GError **error)
{
    g_autofree gchar *what = g_strdup_printf("package %s %s from %s",
                                             e->name, e->version, s->base);
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    g_autoptr(VmaugPackage) pkg = NULL;
    VmaugRepoResult *r;
    RepoSink sink = {
        .what = what, .limit = e->size, .limit_reason = "the index says so",
        .fd = tmp->fd, .sum = sum,
    };
    long status;

    if (!repo_get(s, e->path, &sink, &status, error)) {
        return NULL;
    }
    if (sink.received != e->size) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_MISMATCH,
                    "%s: %" G_GUINT64_FORMAT " bytes received, the index "
                    "says %" G_GUINT64_FORMAT, what, sink.received, e->size);
        return NULL;
    }
    if (strcmp(g_checksum_get_string(sum), e->sha256) != 0) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_MISMATCH,
                    "%s: SHA-256 %s differs from the index's %s", what,
                    g_checksum_get_string(sum), e->sha256);
        return NULL;
    }
    pkg = repo_check_package(tmp->fd, e, trust, s->opts->max_package_size,
                             error);
    if (pkg == NULL) {
        return NULL;
    }
    if (!repo_tmp_commit(tmp, final)) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                    "%s: cannot store %s: %s", what, final, g_strerror(errno));
        return NULL;
    }
    r = g_new0(VmaugRepoResult, 1);
    r->name = g_strdup(e->name);
    r->version = g_strdup(e->version);
    r->sha256 = g_strdup(e->sha256);
    r->size = e->size;
    r->path = g_strdup(final);
    r->signer = g_strdup(pkg->signer->common_name);
    return r;
}

VmaugRepoResult *vmaug_repo_fetch(const VmaugRepoOptions *opts,
                                  const gchar *name, const gchar *version,
                                  const gchar *dest_dir, GError **error)
{
    g_autoptr(VmaugTrustStore) trust = NULL;
    g_autoptr(VmaugRepoIndex) index = NULL;
    g_autofree gchar *final = NULL;
    const VmaugRepoEntry *e;
    VmaugRepoResult *r = NULL;
    RepoSession s;
    RepoTmp tmp;

    if (name == NULL || !vmaug_name_is_valid(name) ||
        (version != NULL && version[0] != '\0' &&
         !vmaug_version_is_valid(version))) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_INVALID,
                    "invalid module name or version");
        return NULL;
    }
    if (dest_dir == NULL || g_mkdir_with_parents(dest_dir, 0700) != 0) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_FAILED,
                    "cannot create destination directory %s: %s",
                    dest_dir ? dest_dir : "(none)", g_strerror(errno));
        return NULL;
    }
    if (!repo_session_init(&s, opts, error)) {
        return NULL;
    }
    trust = repo_trust_load(opts->trust_dir, error);
    if (trust == NULL) {
        goto out;
    }
    index = repo_session_index(&s, trust, error);
    if (index == NULL) {
        goto out;
    }
    e = vmaug_repo_index_lookup(index, name, version);
    if (e == NULL) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_NOT_FOUND,
                    "repository %s (metadata version %" G_GINT64_FORMAT
                    ") has no module %s%s%s", s.base, index->version, name,
                    version && version[0] ? " version " : "",
                    version ? version : "");
        goto out;
    }
    /* Refused before a byte is fetched. */
    if (e->size > opts->max_package_size) {
        g_set_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_TOO_BIG,
                    "package %s %s is %" G_GUINT64_FORMAT " bytes, more than "
                    "the limit of %" G_GUINT64_FORMAT, e->name, e->version,
                    e->size, opts->max_package_size);
        goto out;
    }
    final = g_strdup_printf("%s/%s-%s.vmod", dest_dir, e->name, e->version);
    if (!repo_tmp_open(&tmp, dest_dir, e, error)) {
        goto out;
    }
    r = repo_download(&s, e, trust, &tmp, final, error);
    /* A failed download never leaves a partial package behind. */
    repo_tmp_close(&tmp);
    if (r == NULL) {
        goto out;
    }
    r->index_version = index->version;
    repo_fsync_dir(dest_dir);
out:
    repo_session_clear(&s);
    return r;
}
