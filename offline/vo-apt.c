/*
 * apt in a private world (vo-apt.h).
 *
 * Trust: the status file is ours (vo-dpkg-status.c wrote it from checked
 * fields), the repositories are the operator's, signed with the key the
 * operator names; apt verifies them.  Still, apt parses what comes over
 * the network before it has verified it, so it never runs as root here:
 * a privileged caller runs it as a uid of its own (our id range,
 * sandbox.h), with no supplementary groups, no_new_privs, and in a
 * network namespace of its own for the steps that need no network.
 * What apt prints is checked before it reaches a plan.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "sandbox.h"
#include "vo-apt.h"
#include "vo-version.h"

/* The part of apt's complaints an error message quotes. */
#define VO_APT_MAX_MESSAGE 2048
#define VO_APT_MAX_OUTPUT (64u * 1024 * 1024)

struct _VoApt {
    char *dir;              /* the private world */
    char *config;           /* its apt.conf (APT_CONFIG) */
    uid_t uid;              /* apt's; 0: run as we are */
    GPtrArray *sources;     /* VoAptSource*, borrowed */
};

void vo_apt_source_free(VoAptSource *src)
{
    if (!src) {
        return;
    }
    g_free(src->text);
    g_free(src->uri);
    g_free(src->suite);
    g_strfreev(src->components);
    g_free(src);
}

void vo_apt_change_free(VoAptChange *c)
{
    g_free(c->package);
    g_free(c->architecture);
    g_free(c->old_version);
    g_free(c->new_version);
    g_free(c->deb);
    g_free(c);
}

/* Words of a sources entry: what apt's deb822 parser takes as one. */
static gboolean vo_apt_word_ok(const char *s, const char *extra)
{
    if (!*s) {
        return FALSE;
    }
    for (; *s; s++) {
        if (!g_ascii_isalnum(*s) && !strchr(extra, *s)) {
            return FALSE;
        }
    }
    return TRUE;
}

VoAptSource *vo_apt_source_parse(const char *text, GError **error)
{
    static const char *const schemes[] = {
        "http://", "https://", "file:", NULL,
    };
    g_autoptr(VoAptSource) src = g_new0(VoAptSource, 1);
    g_auto(GStrv) words = g_strsplit_set(text, " \t", -1);
    g_autoptr(GPtrArray) comps = g_ptr_array_new();
    gboolean scheme_ok = FALSE;
    guint n = 0;

    src->text = g_strdup(text);
    for (guint i = 0; words[i]; i++) {
        if (!*words[i]) {
            continue;
        }
        if (n == 0) {
            src->uri = g_strdup(words[i]);
        } else if (n == 1) {
            src->suite = g_strdup(words[i]);
        } else {
            g_ptr_array_add(comps, words[i]);
        }
        n++;
    }
    for (guint i = 0; src->uri && schemes[i]; i++) {
        scheme_ok |= g_str_has_prefix(src->uri, schemes[i]);
    }
    if (!src->suite || !scheme_ok ||
        !vo_apt_word_ok(src->uri, ":/._~+%@=-") ||
        !vo_apt_word_ok(src->suite, "/._+-") ||
        /* A flat repository ("URI ./") has no components, others do. */
        (comps->len == 0) != g_str_has_suffix(src->suite, "/")) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "bad --apt-source '%s': expected 'URI SUITE COMPONENT...' "
                    "with an http, https or file URI", text);
        return NULL;
    }
    for (guint i = 0; i < comps->len; i++) {
        if (!vo_apt_word_ok(comps->pdata[i], "/._+-")) {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "bad component in --apt-source '%s'", text);
            return NULL;
        }
    }
    g_ptr_array_add(comps, NULL);
    src->components = g_strdupv((char **)comps->pdata);
    while (g_str_has_suffix(src->uri, "/") && strlen(src->uri) > 6) {
        src->uri[strlen(src->uri) - 1] = '\0';
    }
    /* file: would make apt use the files where they are; copy: brings
     * them into our cache, where apt checks their hashes. */
    if (g_str_has_prefix(src->uri, "file:")) {
        g_autofree char *rest = g_strdup(src->uri + strlen("file:"));

        g_free(src->uri);
        src->uri = g_strconcat("copy:", rest, NULL);
    }
    src->security = g_str_has_suffix(g_strchomp(src->suite), "-security") ||
                    g_str_has_suffix(src->suite, "-security/");
    return g_steal_pointer(&src);
}

static int vo_apt_rm_one(const char *path, const struct stat *st, int flag,
                         struct FTW *ftw)
{
    remove(path);
    return 0;
}

void vo_apt_free(VoApt *apt)
{
    if (!apt) {
        return;
    }
    if (apt->dir) {
        nftw(apt->dir, vo_apt_rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    g_free(apt->dir);
    g_free(apt->config);
    g_free(apt);
}

static gboolean vo_apt_write(const char *dir, const char *name,
                             const char *text, GError **error)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);

    return g_file_set_contents_full(path, text, -1,
                                    G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                    error);
}

/* A directory apt writes to: its own. */
static gboolean vo_apt_mkdir(VoApt *apt, const char *name, gboolean apt_owns,
                             GError **error)
{
    g_autofree char *path = g_build_filename(apt->dir, name, NULL);

    if (g_mkdir_with_parents(path, 0755) < 0 ||
        (apt_owns && apt->uid && chown(path, apt->uid, apt->uid) < 0)) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot prepare %s: %s", path, g_strerror(errno));
        return FALSE;
    }
    return TRUE;
}

static char *vo_apt_sources_text(VoApt *apt, const char *keyring)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < apt->sources->len; i++) {
        VoAptSource *src = apt->sources->pdata[i];
        g_autofree char *comps = g_strjoinv(" ", src->components);

        g_string_append_printf(s, "Types: deb\nURIs: %s\nSuites: %s\n",
                               src->uri, src->suite);
        if (*comps) {
            g_string_append_printf(s, "Components: %s\n", comps);
        }
        g_string_append_printf(s, "Signed-By: %s\n\n", keyring);
    }
    return g_string_free(s, FALSE);
}

/* Security only: every version of another source gets priority 1, below
 * an installed version's 100, so it never replaces one but can still be
 * installed where nothing is (a new dependency of a security update). */
static char *vo_apt_preferences_text(VoApt *apt, gboolean security_only)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; security_only && i < apt->sources->len; i++) {
        VoAptSource *src = apt->sources->pdata[i];

        if (src->security) {
            continue;
        }
        /* The suite in a sources entry may be the Release file's Suite
         * (a=) or its Codename (n=). */
        g_string_append_printf(s, "Package: *\nPin: release a=%s\n"
                               "Pin-Priority: 1\n\n"
                               "Package: *\nPin: release n=%s\n"
                               "Pin-Priority: 1\n\n", src->suite, src->suite);
    }
    return g_string_free(s, FALSE);
}

VoApt *vo_apt_new(GPtrArray *sources, const char *keyring,
                  const VoDpkgStatus *status, gboolean security_only,
                  GError **error)
{
    static const char *const owned[] = {
        "state/lists/partial", "cache/archives/partial", "tmp", "log",
    };
    g_autoptr(VoApt) apt = g_new0(VoApt, 1);
    g_autoptr(GString) conf = g_string_new(NULL);
    g_autoptr(GError) local = NULL;
    g_autofree char *key = NULL;
    g_autofree char *key_path = NULL;
    g_autofree char *text = NULL;
    gsize key_len;

    apt->sources = sources;
    apt->dir = g_dir_make_tmp("vmaugment-apt-XXXXXX", error);
    if (!apt->dir) {
        return NULL;
    }
    /* A uid nobody else runs as: ours in the sandbox's range. */
    apt->uid = geteuid() == 0 ? SANDBOX_DEFAULT_ID_BASE + getpid() : 0;
    if (apt->uid && chown(apt->dir, apt->uid, apt->uid) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot prepare %s: %s",
                    apt->dir, g_strerror(errno));
        return NULL;
    }
    for (guint i = 0; i < G_N_ELEMENTS(owned); i++) {
        if (!vo_apt_mkdir(apt, owned[i], TRUE, error)) {
            return NULL;
        }
    }
    {
        g_autofree char *lists = g_build_filename(apt->dir, "state/lists",
                                                  NULL);
        g_autofree char *cache = g_build_filename(apt->dir, "cache", NULL);
        g_autofree char *arch = g_build_filename(apt->dir, "cache/archives",
                                                 NULL);
        g_autofree char *state = g_build_filename(apt->dir, "state", NULL);

        if ((apt->uid && (chown(lists, apt->uid, apt->uid) < 0 ||
                          chown(cache, apt->uid, apt->uid) < 0 ||
                          chown(arch, apt->uid, apt->uid) < 0 ||
                          chown(state, apt->uid, apt->uid) < 0))) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "cannot prepare %s: %s", apt->dir,
                        g_strerror(errno));
            return NULL;
        }
    }
    /* dpkg's database directory: apt looks for an interrupted dpkg in
     * its updates/ beside the status file. */
    if (!vo_apt_mkdir(apt, "dpkg/updates", FALSE, error) ||
        !vo_apt_mkdir(apt, "etc/apt.conf.d", FALSE, error) ||
        !vo_apt_mkdir(apt, "etc/preferences.d", FALSE, error) ||
        !vo_apt_mkdir(apt, "etc/sources.list.d", FALSE, error) ||
        !vo_apt_mkdir(apt, "etc/trusted.gpg.d", FALSE, error) ||
        !vo_apt_write(apt->dir, "dpkg/status", status->text, error) ||
        !vo_apt_write(apt->dir, "etc/sources.list", "", error)) {
        return NULL;
    }
    /* apt tells the keyring's format by its name. */
    if (!g_file_get_contents(keyring, &key, &key_len, &local)) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "cannot read the keyring %s: %s", keyring,
                    local->message);
        return NULL;
    }
    key_path = g_build_filename(apt->dir, g_str_has_prefix(key, "-----BEGIN")
                                              ? "keyring.asc"
                                              : "keyring.gpg", NULL);
    if (!g_file_set_contents_full(key_path, key, key_len,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                  error)) {
        return NULL;
    }
    text = vo_apt_sources_text(apt, key_path);
    if (!vo_apt_write(apt->dir, "etc/sources.list.d/plan.sources", text,
                      error)) {
        return NULL;
    }
    g_free(text);
    text = vo_apt_preferences_text(apt, security_only);
    if (!vo_apt_write(apt->dir, "etc/preferences", text, error)) {
        return NULL;
    }

    /* Read before apt.conf.d and apt.conf, which it moves here. */
    g_string_append_printf(conf, "Dir \"/\";\nDir::Etc \"%s/etc/\";\n"
                           "Dir::Etc::main \"apt.conf\";\n"
                           "Dir::Etc::parts \"apt.conf.d/\";\n"
                           "Dir::State \"%s/state/\";\n"
                           "Dir::State::status \"%s/dpkg/status\";\n"
                           "Dir::Cache \"%s/cache/\";\n"
                           "Dir::Log \"%s/log/\";\n",
                           apt->dir, apt->dir, apt->dir, apt->dir, apt->dir);
    g_string_append_printf(conf, "APT::Architecture \"%s\";\n"
                           "APT::Architectures {",
                           status->architecture);
    for (guint i = 0; i < status->architectures->len; i++) {
        g_string_append_printf(conf, " \"%s\";",
                               (char *)status->architectures->pdata[i]);
    }
    g_string_append(conf, " };\n"
                    /* apt's defaults, as apt-get upgrade in the
                     * guest: a new recommendation is installed, or
                     * the package kept back when none can be. */
                    "APT::Install-Recommends \"true\";\n"
                    "APT::Install-Suggests \"false\";\n"
                    "APT::Get::Upgrade-Allow-New \"true\";\n"
                    "APT::Get::AllowUnauthenticated \"false\";\n"
                    "Acquire::AllowInsecureRepositories \"false\";\n"
                    "Acquire::AllowDowngradeToInsecureRepositories "
                    "\"false\";\n"
                    "Acquire::Languages \"none\";\n"
                    "Acquire::http::Timeout \"60\";\n"
                    /* Our own directories, nobody else's. */
                    "Debug::NoLocking \"true\";\n");
    apt->config = g_build_filename(apt->dir, "apt.conf", NULL);
    if (!g_file_set_contents_full(apt->config, conf->str, conf->len,
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                  error)) {
        return NULL;
    }
    return g_steal_pointer(&apt);
}

typedef struct {
    uid_t uid;
    gboolean offline;
} VoAptChild;

/* After fork, before exec: only system calls.  A step that cannot be
 * taken ends the child; apt never runs with more than we meant. */
static void vo_apt_child_setup(gpointer data)
{
    VoAptChild *c = data;

    if (c->uid) {
        if ((c->offline && unshare(CLONE_NEWNET) < 0) ||
            setgroups(0, NULL) < 0 || setresgid(c->uid, c->uid, c->uid) < 0 ||
            setresuid(c->uid, c->uid, c->uid) < 0) {
            _exit(126);
        }
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        _exit(126);
    }
}

/* apt's error lines, quoted (control characters as '?'), bounded. */
static char *vo_apt_complaint(const char *out, const char *err)
{
    GString *s = g_string_new(NULL);
    const char *texts[] = { err, out };

    for (guint t = 0; t < G_N_ELEMENTS(texts); t++) {
        g_auto(GStrv) lines = g_strsplit(texts[t] ? texts[t] : "", "\n", -1);

        for (guint i = 0; lines[i]; i++) {
            if (!g_str_has_prefix(lines[i], "E: ") &&
                !g_str_has_prefix(lines[i], "W: ") &&
                !g_str_has_prefix(lines[i], "Err:")) {
                continue;
            }
            if (s->len) {
                g_string_append(s, "; ");
            }
            g_string_append(s, lines[i]);
        }
    }
    if (s->len > VO_APT_MAX_MESSAGE) {
        g_string_truncate(s, VO_APT_MAX_MESSAGE);
        g_string_append(s, "...");
    }
    for (gsize i = 0; i < s->len; i++) {
        if ((guchar)s->str[i] < 0x20 || (guchar)s->str[i] >= 0x7f) {
            s->str[i] = '?';
        }
    }
    return g_string_free(s, FALSE);
}

/* Runs apt-get or apt-cache with @args in the private world; its output
 * in *@out.  @offline: in a network namespace of its own. */
static gboolean vo_apt_run(VoApt *apt, const char *const *args,
                           gboolean offline, char **out, GError **error)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *env_config = g_strconcat("APT_CONFIG=", apt->config,
                                              NULL);
    g_autofree char *env_tmp = g_strconcat("TMPDIR=", apt->dir, "/tmp",
                                           NULL);
    /* The host's apt configuration is not read, so a proxy can only come
     * from the environment, as for apt itself. */
    static const char *const passed[] = {
        "http_proxy", "https_proxy", "no_proxy",
    };
    g_autoptr(GPtrArray) envp = g_ptr_array_new_with_free_func(g_free);
    VoAptChild child = { apt->uid, offline };
    g_autofree char *sout = NULL;
    g_autofree char *serr = NULL;
    g_autoptr(GError) local = NULL;
    int status;

    for (guint i = 0; args[i]; i++) {
        g_ptr_array_add(argv, (char *)args[i]);
    }
    g_ptr_array_add(argv, NULL);
    g_ptr_array_add(envp, g_steal_pointer(&env_config));
    g_ptr_array_add(envp, g_steal_pointer(&env_tmp));
    g_ptr_array_add(envp, g_strdup("LC_ALL=C"));
    g_ptr_array_add(envp, g_strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"));
    for (guint i = 0; !offline && i < G_N_ELEMENTS(passed); i++) {
        const char *v = g_getenv(passed[i]);

        if (v) {
            g_ptr_array_add(envp, g_strdup_printf("%s=%s", passed[i], v));
        }
    }
    g_ptr_array_add(envp, NULL);
    if (!g_spawn_sync(apt->dir, (char **)argv->pdata, (char **)envp->pdata,
                      G_SPAWN_SEARCH_PATH_FROM_ENVP, vo_apt_child_setup,
                      &child, &sout, &serr, &status, &local)) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot run %s: %s",
                    args[0], local->message);
        return FALSE;
    }
    if (!g_spawn_check_wait_status(status, &local)) {
        g_autofree char *why = vo_apt_complaint(sout, serr);

        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "%s %s failed (%s)%s%s",
                    args[0], args[1], local->message, *why ? ": " : "", why);
        return FALSE;
    }
    if (strlen(sout) > VO_APT_MAX_OUTPUT) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "%s printed too much", args[0]);
        return FALSE;
    }
    if (out) {
        *out = g_steal_pointer(&sout);
    }
    return TRUE;
}

gboolean vo_apt_update(VoApt *apt, GError **error)
{
    const char *args[] = {
        "apt-get", "update", "-q", "--error-on=any", NULL,
    };

    return vo_apt_run(apt, args, FALSE, NULL, error);
}

static gboolean vo_apt_bad_output(GError **error, const char *line)
{
    g_autofree char *shown = g_strndup(line, 200);

    for (char *p = shown; *p; p++) {
        if ((guchar)*p < 0x20 || (guchar)*p >= 0x7f) {
            *p = '?';
        }
    }
    g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                "unexpected output of apt-get: %s", shown);
    return FALSE;
}

/*
 * "Inst NAME[:ARCH] [OLD] (NEW RELEASES [ARCH])[ []]": one package of
 * apt's simulation (apt-pkg's pkgSimulate).
 */
static VoAptChange *vo_apt_parse_inst(const char *line, GError **error)
{
    g_autoptr(GError) local = NULL;
    const char *p = line + strlen("Inst ");
    const char *sp = strchr(p, ' ');
    const char *open, *close, *arch;
    VoAptChange *c;
    char *colon;

    if (!sp) {
        vo_apt_bad_output(error, line);
        return NULL;
    }
    c = g_new0(VoAptChange, 1);
    c->package = g_strndup(p, sp - p);
    colon = strchr(c->package, ':');
    if (colon) {
        *colon = '\0';
    }
    p = sp + 1;
    if (*p == '[') {
        close = strchr(p, ']');
        if (!close) {
            goto bad;
        }
        c->old_version = g_strndup(p + 1, close - p - 1);
        p = close + 1;
        while (*p == ' ') {
            p++;
        }
    }
    open = *p == '(' ? p : NULL;
    close = open ? strchr(open, ')') : NULL;
    sp = open ? strchr(open, ' ') : NULL;
    if (!close || !sp || sp > close) {
        goto bad;
    }
    c->new_version = g_strndup(open + 1, sp - open - 1);
    arch = g_strrstr_len(open, close - open, "[");
    if (!arch || close[-1] != ']') {
        goto bad;
    }
    c->architecture = g_strndup(arch + 1, close - 1 - arch - 1);
    /* Repository data, verified but still not ours: checked. */
    if (!vo_version_check_package(c->package, &local) ||
        !vo_version_check_arch(c->architecture, &local) ||
        !vo_version_check(c->new_version, &local) ||
        (c->old_version && !vo_version_check(c->old_version, &local))) {
        goto bad;
    }
    return c;

bad:
    vo_apt_change_free(c);
    vo_apt_bad_output(error, line);
    return NULL;
}

/* Which new versions are in a security source: apt-cache madison's
 * "NAME | VERSION | URI SUITE[/COMPONENT] ARCH Packages" lines. */
static gboolean vo_apt_origins(VoApt *apt, GPtrArray *changes,
                               GError **error)
{
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    g_autofree char *out = NULL;
    g_auto(GStrv) lines = NULL;

    if (changes->len == 0) {
        return TRUE;
    }
    g_ptr_array_add(args, (char *)"apt-cache");
    g_ptr_array_add(args, (char *)"madison");
    for (guint i = 0; i < changes->len; i++) {
        g_ptr_array_add(args, ((VoAptChange *)changes->pdata[i])->package);
    }
    g_ptr_array_add(args, NULL);
    if (!vo_apt_run(apt, (const char *const *)args->pdata, TRUE, &out,
                    error)) {
        return FALSE;
    }
    lines = g_strsplit(out, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_auto(GStrv) cols = g_strsplit(lines[i], "|", 3);

        if (g_strv_length(cols) != 3) {
            continue;
        }
        g_strstrip(cols[0]);
        g_strstrip(cols[1]);
        g_strstrip(cols[2]);
        for (guint j = 0; j < changes->len; j++) {
            VoAptChange *c = changes->pdata[j];

            if (!g_str_equal(cols[0], c->package) ||
                !g_str_equal(cols[1], c->new_version)) {
                continue;
            }
            for (guint k = 0; k < apt->sources->len; k++) {
                VoAptSource *src = apt->sources->pdata[k];
                g_autofree char *at = g_strdup_printf("%s %s", src->uri,
                                                      src->suite);
                gsize n = strlen(at);

                if (src->security && g_str_has_prefix(cols[2], at) &&
                    (cols[2][n] == ' ' || cols[2][n] == '/' ||
                     g_str_has_suffix(at, "/"))) {
                    c->security = TRUE;
                }
            }
        }
    }
    return TRUE;
}

GPtrArray *vo_apt_plan(VoApt *apt, GError **error)
{
    const char *args[] = {
        "apt-get", "-s", "-q=2", "upgrade", "--with-new-pkgs", NULL,
    };
    g_autoptr(GPtrArray) changes = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_apt_change_free);
    g_autofree char *out = NULL;
    g_auto(GStrv) lines = NULL;

    if (!vo_apt_run(apt, args, TRUE, &out, error)) {
        return NULL;
    }
    lines = g_strsplit(out, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        VoAptChange *c;

        if (g_str_has_prefix(lines[i], "Remv ")) {
            /* "upgrade" never removes; should apt ever say so, the plan
             * is not one we can carry out. */
            vo_apt_bad_output(error, lines[i]);
            return NULL;
        }
        if (!g_str_has_prefix(lines[i], "Inst ")) {
            continue;
        }
        c = vo_apt_parse_inst(lines[i], error);
        if (!c) {
            return NULL;
        }
        g_ptr_array_add(changes, c);
    }
    if (!vo_apt_origins(apt, changes, error)) {
        return NULL;
    }
    return g_steal_pointer(&changes);
}

gboolean vo_apt_download(VoApt *apt, GPtrArray *changes, GError **error)
{
    const char *args[] = {
        "apt-get", "-q=2", "--download-only", "--yes", "upgrade",
        "--with-new-pkgs", NULL,
    };

    if (changes->len == 0) {
        return TRUE;
    }
    if (!vo_apt_run(apt, args, FALSE, NULL, error)) {
        return FALSE;
    }
    for (guint i = 0; i < changes->len; i++) {
        VoAptChange *c = changes->pdata[i];
        g_autofree char *quoted = NULL;
        g_autofree char *name = NULL;
        g_auto(GStrv) parts = g_strsplit(c->new_version, ":", -1);

        /* apt's own name for it: ':' quoted as %3a. */
        quoted = g_strjoinv("%3a", parts);
        name = g_strdup_printf("%s_%s_%s.deb", c->package, quoted,
                               c->architecture);
        c->deb = g_build_filename(apt->dir, "cache/archives", name, NULL);
        if (!g_file_test(c->deb, G_FILE_TEST_IS_REGULAR)) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "apt-get did not download %s", name);
            return FALSE;
        }
    }
    return TRUE;
}
