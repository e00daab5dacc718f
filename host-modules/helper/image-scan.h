/*
 * vmaugment-helper: one malware scan of a VM's disk image by the offline
 * tool (image-scan.c), for the host API (module-api.c).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_IMAGE_SCAN_H
#define VMAUGMENT_IMAGE_SCAN_H

#include "helper.h"

typedef struct _ImageScan ImageScan;
typedef struct ImageScanSpare ImageScanSpare;

/* Guest paths one scan may be limited to, and bytes of each. */
#define IMAGE_SCAN_MAX_PATHS        64
#define IMAGE_SCAN_MAX_PATH_LEN     1024
/* Bytes of the scanner's JSON report read at most; a larger one fails. */
#define IMAGE_SCAN_MAX_JSON         (1024 * 1024)
/* Bytes of the scanner's complaints kept. */
#define IMAGE_SCAN_MAX_STDERR       4096

typedef struct {
    guint64 max_file_size;          /* 0: the scanner's default */
    guint timeout_s;                /* 0 or above the helper's: its bound */
} ImageScanLimits;

/*
 * The scan ended: @result is VMAUG_SCAN_* or a negative errno; @report the
 * text of vmaug_host_api.scan_image (vmaugment-module.h), at most
 * VMAUG_MODULE_MAX_SCAN_REPORT bytes; @summary one line for the log and
 * the audit record.  Called once, from the main loop, unless cancelled;
 * the scan is freed after it returns.
 */
typedef void (*ImageScanDoneFunc)(gint result, const gchar *report,
                                  gsize len, const gchar *summary,
                                  gpointer data);

/*
 * Scan @image (the session's own, a real path) with the helper's scanner
 * and database, keeping the scanner's cache in @cache; @paths (NULL, or
 * checked by image_scan_paths_ok()) limits it to those guest paths.
 */
ImageScan *image_scan_start(Helper *helper, const gchar *image,
                            const gchar *cache, const gchar *const *paths,
                            const ImageScanLimits *limits,
                            ImageScanDoneFunc done, gpointer data,
                            GError **error);
/*
 * Apply the host owner's signed quarantine bundle @bundle (a real path)
 * to @image with the helper's scanner and database ("vmaugment-offline
 * apply", docs/offline.rst "Quarantine"): what the scan finds below
 * @paths (as for image_scan_start()) is moved aside.  The image must be
 * at rest (QEMU released it).  @done gets the number of files moved, or
 * a negative errno, and the report of vmaug_host_api.quarantine_image
 * (vmaugment-module.h).
 */
ImageScan *image_scan_quarantine(Helper *helper, const gchar *image,
                                 const gchar *bundle,
                                 const gchar *const *paths,
                                 ImageScanDoneFunc done, gpointer data,
                                 GError **error);
/* Nobody waits any more: the scanner is stopped and @done never runs. */
void image_scan_cancel(ImageScan *scan);
/* The spare scanner image_scan_start() takes when there is one: started
 * (unless there is one), and ended, with the helper. */
void image_scan_spare_start(Helper *helper);
void image_scan_spare_stop(Helper *helper);

/* Split @text (guest paths, one per line) into a vector, or NULL when a
 * path is not absolute UTF-8 without control characters and "..", or
 * there are too many. */
gchar **image_scan_paths_split(const gchar *text, gsize len);

/*
 * Check the scanner's JSON report @json (@len bytes, hostile) against its
 * exit status @exit_status (0 clean, 1 infected, 2 incomplete) and append
 * the module's report to @report and one line to @summary.  Returns the
 * VMAUG_SCAN_* result, or -1 with @error.
 */
gint image_scan_parse(const gchar *json, gsize len, gint exit_status,
                      GString *report, GString *summary, GError **error);

/*
 * The same for the apply report of a quarantine (hostile as the image):
 * the files moved, or -1 with @error.
 */
gint image_scan_parse_quarantine(const gchar *json, gsize len,
                                 GString *report, GString *summary,
                                 GError **error);

#endif /* VMAUGMENT_IMAGE_SCAN_H */
