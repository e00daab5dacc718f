/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Checks of libvmaugment that need no device: field limits, names, and the
 * error a missing device gives.  The calls themselves are tested in real
 * guests (tests/guest/).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmaugment.h"

static int failures;

#define CHECK(cond) do { \
        if (!(cond)) { \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond); \
            failures++; \
        } \
    } while (0)

static void test_module_ref(void)
{
    struct vmaug_module_ref ref;
    char name[VMAUG_NAME_MAX + 1];

    memset(&ref, 0xff, sizeof(ref));
    CHECK(vmaug_module_ref_set(&ref, "scanner", NULL) == 0);
    CHECK(strcmp((char *)ref.name, "scanner") == 0);
    /* Padding is all NULs: the host compares whole fields. */
    for (size_t i = strlen("scanner"); i < sizeof(ref.name); i++) {
        CHECK(ref.name[i] == 0);
    }
    for (size_t i = 0; i < sizeof(ref.version); i++) {
        CHECK(ref.version[i] == 0);
    }

    /* One NUL must always remain. */
    memset(name, 'a', sizeof(name));
    name[VMAUG_NAME_MAX - 1] = '\0';
    CHECK(vmaug_module_ref_set(&ref, name, "1") == 0);
    name[VMAUG_NAME_MAX - 1] = 'a';
    name[VMAUG_NAME_MAX] = '\0';
    CHECK(vmaug_module_ref_set(&ref, name, "1") == -ENAMETOOLONG);
    CHECK(vmaug_module_ref_set(&ref, "", "1") == -EINVAL);
    CHECK(vmaug_module_ref_set(&ref, NULL, "1") == -EINVAL);
    CHECK(vmaug_module_ref_set(&ref, "m", "0123456789012345678901234567890")
          == 0);
    CHECK(vmaug_module_ref_set(&ref, "m", "01234567890123456789012345678901")
          == -ENAMETOOLONG);
}

/*
 * The reference for every name is the UAPI header, the one protocol
 * definition: a status is called by its macro's suffix (VMAUG_S_TOO_BIG is
 * "TOO_BIG"), an event, kind or module state by its suffix in lower case
 * with dashes (VMAUG_EVENT_HOST_START is "host-start"), which is how
 * manifests, registrations and the CLI write them.  The tables below are
 * built from the macro names by the preprocessor, so they share nothing
 * with the library's own tables.
 */
struct ref_name {
    int value;
    const char *macro;          /* the suffix after VMAUG_S_, VMAUG_EVENT_ */
};

#define REF_STATUS(x) { VMAUG_S_##x, #x }
static const struct ref_name ref_statuses[] = {
    REF_STATUS(OK), REF_STATUS(INVALID), REF_STATUS(UNSUPPORTED),
    REF_STATUS(TOO_BIG), REF_STATUS(NO_SPACE), REF_STATUS(UNAVAILABLE),
    REF_STATUS(INTERRUPTED), REF_STATUS(NOT_FOUND), REF_STATUS(EXISTS),
    REF_STATUS(DENIED), REF_STATUS(BUSY), REF_STATUS(HASH_MISMATCH),
    REF_STATUS(IO_ERROR), REF_STATUS(MODULE_FAILED), REF_STATUS(TIMEOUT),
    REF_STATUS(INTERNAL),
};

#define REF_EVENT(x) { VMAUG_EVENT_##x, #x }
static const struct ref_name ref_events[] = {
    REF_EVENT(HOST_START), REF_EVENT(IMAGE_START), REF_EVENT(IMAGE_STOP),
    REF_EVENT(HOST_STOP), REF_EVENT(PAUSE), REF_EVENT(RESUME),
    REF_EVENT(HELPER_CONNECTED), REF_EVENT(HELPER_LOST),
    REF_EVENT(MODULE_LOADED), REF_EVENT(MODULE_UNLOADED),
    REF_EVENT(MODULE_CRASHED), REF_EVENT(MODULE_MESSAGE),
    REF_EVENT(RESTART_REQUESTED), REF_EVENT(MODULE_REFUSED),
    REF_EVENT(SERVICING),
};

#define REF_KIND(x) { VMAUG_KIND_##x, #x }
static const struct ref_name ref_kinds[] = {
    REF_KIND(UI), REF_KIND(COMMUNICATION), REF_KIND(UPGRADE),
    REF_KIND(CONFIGURATION), REF_KIND(SCANNER),
};

#define REF_STATE(x) { VMAUG_MODULE_##x, #x }
static const struct ref_name ref_states[] = {
    REF_STATE(STORED), REF_STATE(LOADED), REF_STATE(CRASHED),
};

#define N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

/* "HOST_START" as manifests write it: "host-start". */
static void ref_lower(const char *macro, char *out, size_t cap)
{
    size_t i;

    for (i = 0; macro[i] != '\0' && i + 1 < cap; i++) {
        out[i] = macro[i] == '_' ? '-' :
                 (macro[i] >= 'A' && macro[i] <= 'Z') ? macro[i] - 'A' + 'a' :
                 macro[i];
    }
    out[i] = '\0';
}

/* The reference name of @value in @ref (lower-cased when @lower), or NULL
 * when the header defines no such value. */
static const char *ref_lookup(const struct ref_name *ref, size_t n, int value,
                              int lower, char *buf, size_t cap)
{
    for (size_t i = 0; i < n; i++) {
        if (ref[i].value == value) {
            if (!lower) {
                return ref[i].macro;
            }
            ref_lower(ref[i].macro, buf, cap);
            return buf;
        }
    }
    return NULL;
}

/* Names from @fn for values @lo..@hi are exactly the reference's, pairwise
 * distinct, and @unknown for every value the header does not define. */
static void check_names(const char *what, const struct ref_name *ref,
                        size_t n, int lower, const char *(*fn)(int),
                        int lo, int hi, const char *unknown)
{
    const char *seen[64];
    size_t n_seen = 0;

    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            CHECK(ref[i].value != ref[j].value);
        }
    }
    for (int v = lo; v <= hi; v++) {
        char buf[64];
        const char *want = ref_lookup(ref, n, v, lower, buf, sizeof(buf));
        const char *got = fn(v);

        if (got == NULL) {
            fprintf(stderr, "%s %d: no name\n", what, v);
            failures++;
            continue;
        }
        if (strcmp(got, want != NULL ? want : unknown) != 0) {
            fprintf(stderr, "%s %d: named \"%s\", the header says \"%s\"\n",
                    what, v, got, want != NULL ? want : unknown);
            failures++;
        }
        if (want == NULL) {
            continue;
        }
        for (size_t k = 0; k < n_seen; k++) {
            if (strcmp(seen[k], got) == 0) {
                fprintf(stderr, "%s %d: \"%s\" names two values\n", what, v,
                        got);
                failures++;
            }
        }
        CHECK(n_seen < N_ELEMENTS(seen));
        seen[n_seen++] = got;
    }
    /* Every value the header defines was seen in @lo..@hi. */
    CHECK(n_seen == n);
}

static const char *status_name(int v)
{
    return vmaug_status_name(v);
}

static const char *event_name(int v)
{
    return vmaug_event_name((uint32_t)v);
}

static const char *kind_name(int v)
{
    return vmaug_kind_name((uint32_t)v);
}

static const char *state_name(int v)
{
    return vmaug_module_state_name((uint32_t)v);
}

static void test_names(void)
{
    uint32_t type;

    /* Statuses: the header's whole range, and UNKNOWN just outside it. */
    CHECK(N_ELEMENTS(ref_statuses) == VMAUG_S_MAX + 1);
    check_names("status", ref_statuses, N_ELEMENTS(ref_statuses), 0,
                status_name, 0, VMAUG_S_MAX, "UNKNOWN");
    CHECK(strcmp(vmaug_status_name(-1), "UNKNOWN") == 0);
    CHECK(strcmp(vmaug_status_name(VMAUG_S_MAX + 1), "UNKNOWN") == 0);
    CHECK(strcmp(vmaug_status_name(0x7fffffff), "UNKNOWN") == 0);
    CHECK(strcmp(vmaug_status_name(-0x7fffffff - 1), "UNKNOWN") == 0);
    /* Each status has its own text; errnos are libc's. */
    for (int s = 0; s <= VMAUG_S_MAX; s++) {
        CHECK(vmaug_strerror(s) != NULL && vmaug_strerror(s)[0] != '\0');
        for (int t = 0; t < s; t++) {
            CHECK(strcmp(vmaug_strerror(s), vmaug_strerror(t)) != 0);
        }
    }
    CHECK(strcmp(vmaug_strerror(VMAUG_S_MAX + 1),
                 "unknown host status") == 0);
    CHECK(strcmp(vmaug_strerror(-ENOENT), strerror(ENOENT)) == 0);

    /* Events: every type the mask can hold, names round-tripping. */
    check_names("event", ref_events, N_ELEMENTS(ref_events), 1, event_name,
                0, VMAUG_EVENT_MAX + 1, "unknown");
    CHECK(strcmp(vmaug_event_name(0xffffffffu), "unknown") == 0);
    for (size_t i = 0; i < N_ELEMENTS(ref_events); i++) {
        char name[64];

        ref_lower(ref_events[i].macro, name, sizeof(name));
        type = 0;
        CHECK(vmaug_event_from_name(name, &type) == 0);
        CHECK(type == (uint32_t)ref_events[i].value);
        CHECK(vmaug_event_from_name(vmaug_event_name(type), &type) == 0);
        CHECK(type == (uint32_t)ref_events[i].value);
    }
    /* Neither the placeholder nor near misses name an event. */
    type = 12345;
    CHECK(vmaug_event_from_name("unknown", &type) == -EINVAL);
    CHECK(vmaug_event_from_name("no-such-event", &type) == -EINVAL);
    CHECK(vmaug_event_from_name("HOST-START", &type) == -EINVAL);
    CHECK(vmaug_event_from_name("host_start", &type) == -EINVAL);
    CHECK(vmaug_event_from_name("host-start ", &type) == -EINVAL);
    CHECK(vmaug_event_from_name("", &type) == -EINVAL);
    CHECK(type == 12345);

    /* Module kinds and states, the same way. */
    check_names("kind", ref_kinds, N_ELEMENTS(ref_kinds), 1, kind_name,
                0, VMAUG_KIND_SCANNER + 1, "unknown");
    check_names("module state", ref_states, N_ELEMENTS(ref_states), 1,
                state_name, 0, VMAUG_MODULE_CRASHED + 1, "unknown");
}

static void test_open_missing(void)
{
    vmaug_client *client = NULL;

    CHECK(vmaug_client_open("/nonexistent/vmaugment", &client) == -ENOENT);
    CHECK(client == NULL);
}

int main(void)
{
    test_module_ref();
    test_names();
    test_open_missing();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
