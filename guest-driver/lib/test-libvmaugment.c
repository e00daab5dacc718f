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

static void test_names(void)
{
    uint32_t type = 0;

    CHECK(strcmp(vmaug_status_name(VMAUG_S_OK), "OK") == 0);
    CHECK(strcmp(vmaug_status_name(VMAUG_S_UNAVAILABLE), "UNAVAILABLE") == 0);
    CHECK(strcmp(vmaug_status_name(VMAUG_S_MAX + 1), "UNKNOWN") == 0);
    CHECK(strcmp(vmaug_status_name(-1), "UNKNOWN") == 0);
    for (int s = 0; s <= VMAUG_S_MAX; s++) {
        CHECK(vmaug_status_name(s) != NULL);
        CHECK(vmaug_strerror(s) != NULL);
    }
    CHECK(strcmp(vmaug_strerror(-ENOENT), strerror(ENOENT)) == 0);

    CHECK(vmaug_event_from_name("helper-lost", &type) == 0);
    CHECK(type == VMAUG_EVENT_HELPER_LOST);
    CHECK(strcmp(vmaug_event_name(type), "helper-lost") == 0);
    CHECK(vmaug_event_from_name("no-such-event", &type) == -EINVAL);
    CHECK(strcmp(vmaug_event_name(0), "unknown") == 0);
    CHECK(strcmp(vmaug_event_name(VMAUG_EVENT_MAX + 1), "unknown") == 0);
    CHECK(strcmp(vmaug_kind_name(VMAUG_KIND_SCANNER), "scanner") == 0);
    CHECK(strcmp(vmaug_module_state_name(VMAUG_MODULE_LOADED), "loaded") == 0);
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
