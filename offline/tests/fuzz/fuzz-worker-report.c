/*
 * Fuzz target: what a worker taken over by its image sends the
 * privileged parent of vmaugment-offline (vo-wire.h): any bytes, read by
 * the parent's own checks (vo_worker_read_report()) for each job.  A
 * report that passes holds only the members its job may report, each of
 * its type (docs/offline.rst, "Confinement"); the volumes of a locate
 * job then go through the --host-kernel route's checks.
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vo-hostkernel.h"
#include "vo-worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the job; the rest is the stream. */
    VoWorkerRequest req = {
        .job = size > 0 ? data[0] % (VO_WORKER_LOCATE + 1)
                        : VO_WORKER_INSPECT,
        .image = "fuzz.qcow2",
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
        if (report && req.job == VO_WORKER_INSPECT &&
            json_object_has_member(report, "inventory")) {
            g_assert(json_object_get_object_member(report, "inventory"));
        }
        if (report && req.job == VO_WORKER_LOCATE) {
            g_autoptr(GError) local = NULL;
            g_autoptr(VoLayout) layout = NULL;
            guint root = G_MAXUINT;

            /* A disk of 1 GiB: every volume accepted lies inside it. */
            layout = vo_hostkernel_volumes(report, 1ull << 30, &root,
                                           &local);
            g_assert((layout != NULL) == (local == NULL));
            for (guint i = 0; layout && i < layout->partitions->len; i++) {
                VoPartition *p = layout->partitions->pdata[i];

                g_assert(p->size > 0 && p->offset % 512 == 0 &&
                         p->offset + p->size <= (1ull << 30));
            }
            g_assert(!layout || root < layout->partitions->len);
        }
    }
    close(fd);
    return 0;
}
