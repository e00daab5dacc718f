/*
 * Fuzz target: what a worker taken over by its image sends the
 * privileged parent of vmaugment-offline (vo-wire.h): any bytes, read by
 * the parent's own checks (vo_worker_read_report()) for each job.  A
 * report that passes holds only the members its job may report, each of
 * its type (docs/offline.rst, "Confinement"); the volumes of a locate
 * job then go through vo_worker_volumes(), the one check both routes
 * that read them (--host-kernel, --luks-key) rely on; the "scan" member
 * of a scan job goes through vo_scan_check_report(), with as many cache
 * keys handed over as the first byte's low bits say.
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vo-hostkernel.h"
#include "vo-scan.h"
#include "vo-worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks the job (0xf0 and above: the locate job of a
     * guest of two disks); the rest is the stream. */
    VoWorkerRequest req = {
        .job = size == 0 ? VO_WORKER_INSPECT
               : data[0] >= 0xf0 ? VO_WORKER_LOCATE
                                 : data[0] % (VO_WORKER_LOCATE + 1),
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
        if (report && req.job == VO_WORKER_INSPECT &&
            json_object_has_member(report, "inventory")) {
            g_assert(json_object_get_object_member(report, "inventory"));
        }
        if (report && req.job == VO_WORKER_SCAN &&
            json_object_has_member(report, "scan")) {
            gsize n_given = (data[0] >> 3) * 3;
            g_autoptr(GError) local = NULL;
            g_autoptr(GBytes) cached = NULL;
            g_autoptr(GBytes) clean = NULL;
            g_autoptr(JsonObject) scan = vo_scan_check_report(
                json_object_get_member(report, "scan"), n_given, &cached,
                &clean, &local);

            g_assert((scan != NULL) == (local == NULL));
            if (scan) {
                /* Exactly a bit per key given, none beyond; whole keys. */
                const guint8 *bits = g_bytes_get_data(cached, NULL);

                g_assert(g_bytes_get_size(cached) == (n_given + 7) / 8);
                g_assert(n_given % 8 == 0 ||
                         !(bits[n_given / 8] >> (n_given % 8)));
                g_assert(g_bytes_get_size(clean) % sizeof(VoScanKey) == 0);
                g_assert(g_bytes_get_size(clean) / sizeof(VoScanKey) <=
                         VO_SCAN_MAX_CLEAN);
            }
        }
        if (report && req.job == VO_WORKER_LOCATE) {
            /* Disks of 1 GiB: every volume accepted lies inside one. */
            const guint64 sizes[] = { 1ull << 30, 1ull << 30 };
            g_autoptr(GError) local = NULL;
            g_autoptr(VoLayout) layout = NULL;
            guint root = G_MAXUINT;

            layout = vo_worker_volumes(report, sizes, req.n_more + 1,
                                       &local);
            g_assert((layout != NULL) == (local == NULL));
            for (guint i = 0; layout && i < layout->partitions->len; i++) {
                VoPartition *p = layout->partitions->pdata[i];

                g_assert(p->disk <= req.n_more);
                g_assert(p->size > 0 && p->offset % 512 == 0 &&
                         p->offset + p->size <= (1ull << 30));
            }
            g_clear_pointer(&layout, vo_layout_free);
            g_clear_error(&local);
            if (req.n_more == 0) {
                /* The --host-kernel route's pick among them. */
                layout = vo_hostkernel_volumes(report, sizes[0], &root,
                                               &local);
                g_assert((layout != NULL) == (local == NULL));
                g_assert(!layout || root < layout->partitions->len);
            }
        }
    }
    close(fd);
    return 0;
}
