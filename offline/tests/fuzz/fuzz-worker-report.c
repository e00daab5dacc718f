/*
 * Fuzz target: what a worker taken over by its image sends the
 * privileged parent of vmaugment-offline (vo-wire.h): any bytes, read by
 * the parent's own checks (vo_worker_read_report()) for each job.  A
 * report that passes holds only the members its job may report, each of
 * its type (docs/offline.rst, "Confinement").
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vo-worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the job (0xf0 and above: the layout job, of a
     * guest of two disks); the rest is the stream. */
    VoWorkerRequest req = {
        .job = size == 0 ? VO_WORKER_INSPECT
               : data[0] >= 0xf0 ? VO_WORKER_LAYOUT : data[0] % 4,
        .image = "fuzz.qcow2",
        .n_more = size > 0 && data[0] >= 0xf0 ? 1 : 0,
    };
    int fd = memfd_create("fuzz-worker-report", MFD_CLOEXEC);

    g_assert(fd >= 0);
    if (size > 1) {
        g_assert(write(fd, data + 1, size - 1) == (ssize_t)(size - 1));
    }
    g_assert(lseek(fd, 0, SEEK_SET) == 0);
    {
        g_autoptr(GError) job_error = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonObject) report = vo_worker_read_report(
            &req, fd, g_get_monotonic_time() + 10 * G_USEC_PER_SEC,
            &job_error, &error);

        if (!report) {
            g_assert(error != NULL);
        } else if (json_object_has_member(report, "status")) {
            g_assert(json_object_get_string_member(report, "status"));
        }
        if (report && req.job == VO_WORKER_LAYOUT &&
            json_object_has_member(report, "encrypted")) {
            JsonArray *list = json_object_get_array_member(report,
                                                           "encrypted");

            /* What vo_worker_run() then reads without looking again. */
            for (guint i = 0; i < json_array_get_length(list); i++) {
                JsonObject *e = json_array_get_object_element(list, i);

                g_assert(json_object_get_int_member(e, "disk") <= 1);
                g_assert(json_object_get_int_member(e, "size") > 0);
                g_assert(json_object_get_int_member(e, "offset") >= 0);
            }
        }
        if (report && req.job == VO_WORKER_INSPECT &&
            json_object_has_member(report, "inventory")) {
            g_assert(json_object_get_object_member(report, "inventory"));
        }
    }
    close(fd);
    return 0;
}
