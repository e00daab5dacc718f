/*
 * Configuring unpacked packages at the next boot (docs/offline.rst,
 * "Configuring at the next boot").
 *
 * A bundle that unpacks packages leaves them as "dpkg --unpack" does:
 * maintainer scripts must still run inside the guest.  Every such bundle
 * therefore also installs a small unit that runs "dpkg --configure -a"
 * early at the next boot and reports the outcome: through /dev/vmaugment
 * when it can, and always in a result file that the next inspect reads,
 * so that guests without our driver are accounted for too.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VO_CONFIGURE_H
#define VO_CONFIGURE_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "vo-guest.h"

G_BEGIN_DECLS

/* Where the bundle's records, the flag and the result live in the guest:
 * the directory the guest tool reads (vmaugment servicing confirm). */
#define VO_CONFIGURE_DIR        "/var/lib/vmaugment/offline"
#define VO_CONFIGURE_FLAG       VO_CONFIGURE_DIR "/configure-pending"
#define VO_CONFIGURE_RESULT     VO_CONFIGURE_DIR "/dpkg-configure.result"
/* Packages a bundle stages ("op": "stage"): installed by dpkg itself at
 * the next boot, because their preinst must run before they unpack. */
#define VO_CONFIGURE_STAGED     VO_CONFIGURE_DIR "/staged"
/* Packages apt would have installed as new dependencies: one file each,
 * named NAME:ARCH, for apt-mark auto at the next boot. */
#define VO_CONFIGURE_AUTO       VO_CONFIGURE_DIR "/auto-installed"

/*
 * To the bundle manifest @manifest, when it unpacks packages: the
 * instructions installing the unit, its script and the flag that arms
 * it, their payloads into @payloads (name -> GBytes*), and the marker
 * whose record the guest reports.  A manifest that already uses those
 * paths or payload names for something else, or keeps its marker
 * elsewhere, is refused (VO_ERROR_INVALID).  Nothing is added to a
 * manifest without packages.
 */
gboolean vo_configure_add(JsonObject *manifest, GHashTable *payloads,
                          GError **error);

/*
 * Worker: the guest's result file, as the member "dpkg_configure" of the
 * inspect report: status, message, time and the records (bundle, version,
 * manifest_sha256) it answers for.  NULL when the guest has none; an
 * unreadable or malformed file is reported with status "unreadable"
 * rather than failing the inspection.
 */
JsonNode *vo_configure_result_read(VoGuest *guest);

/*
 * Worker: the marker record @name in the guest directory @dir (the first
 * of the NULL-terminated @suffixes it is found under: the guest renames
 * records it has answered for), checked and bounded: an object opened
 * in @b with its "bundle", "version" and "manifest_sha256", for the
 * caller to complete and close.  FALSE, @b untouched, when absent or
 * malformed.
 */
gboolean vo_configure_record_open(VoGuest *guest, const char *dir,
                                  const char *name,
                                  const char *const *suffixes,
                                  JsonBuilder *b);

/*
 * Parent: check the worker's @node (hostile: it was read from the guest)
 * and record it in @image's servicing record like a report through the
 * device: each record confirmed or failed once, refused for a bundle
 * never applied or another manifest.  Returns what inspect prints: the
 * result with each record's outcome ("recorded", "already-reported",
 * "refused" with the reason).  NULL with @error for a malformed @node.
 */
JsonNode *vo_configure_result_record(const char *image, JsonNode *node,
                                     GError **error);

G_END_DECLS

#endif /* VO_CONFIGURE_H */
