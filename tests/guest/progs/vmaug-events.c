/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Event delivery through /dev/vmaugment with the echo module loaded:
 * only subscribed files get events, in order, with their payload; a file
 * that does not read loses events beyond its queue and learns so from
 * VMAUG_EVENT_F_LOST; a short read buffer keeps the event; poll() works.
 * Usage: vmaug-events COUNT   (COUNT > the driver's per-file queue)
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmaugment.h"

#define QUEUE 128   /* the driver's per-file event queue */

static int failures;

#define CHECK(cond, ...) do { \
        if (!(cond)) { \
            fprintf(stderr, "FAIL: " __VA_ARGS__); \
            fputc('\n', stderr); \
            failures++; \
        } \
    } while (0)

static int notify(vmaug_client *c, unsigned int i)
{
    char msg[32];
    void *out = NULL;
    size_t out_len = 0;
    int ret;

    snprintf(msg, sizeof(msg), "msg-%u", i);
    ret = vmaug_invoke(c, "echo", "notify", msg, strlen(msg), &out, &out_len);
    free(out);
    return ret;
}

/* The module's bytes of a MODULE_MESSAGE event, NUL-terminated. */
static const char *message_of(vmaug_event *ev)
{
    size_t off = sizeof(struct vmaug_module_ref);

    if (ev->len < off || ev->len >= sizeof(ev->data)) {
        return "";
    }
    ev->data[ev->len] = '\0';
    return (const char *)ev->data + off;
}

int main(int argc, char **argv)
{
    unsigned int count = argc > 1 ? strtoul(argv[1], NULL, 0) : 200;
    vmaug_client *sub, *idle, *caller;
    struct pollfd pfd;
    vmaug_event ev;
    uint64_t last_seq = 0;
    unsigned int got = 0;
    char small[8];
    int ret;

    if (count <= QUEUE) {
        fprintf(stderr, "COUNT must exceed %d\n", QUEUE);
        return 2;
    }
    if (vmaug_client_open(NULL, &sub) || vmaug_client_open(NULL, &idle) ||
        vmaug_client_open(NULL, &caller)) {
        perror("open /dev/vmaugment");
        return 1;
    }
    ret = vmaug_subscribe(sub, VMAUG_EVENT_MASK(VMAUG_EVENT_MODULE_MESSAGE));
    CHECK(ret == 0, "subscribe: %s", vmaug_strerror(ret));

    for (unsigned int i = 0; i < count; i++) {
        ret = notify(caller, i);
        if (ret != 0) {
            fprintf(stderr, "FAIL: notify %u: %s %s\n", i, vmaug_strerror(ret),
                    vmaug_client_message(caller));
            return 1;
        }
    }
    /* Let the last events arrive. */
    pfd = (struct pollfd){ .fd = vmaug_client_fd(sub), .events = POLLIN };
    CHECK(poll(&pfd, 1, 5000) == 1 && (pfd.revents & POLLIN),
          "poll does not report the queued events");
    usleep(500000);

    /* A buffer too small for the event: refused, the event stays. */
    CHECK(read(vmaug_client_fd(sub), small, sizeof(small)) == -1 &&
          errno == EMSGSIZE, "short read not refused with EMSGSIZE");

    while (vmaug_read_event(sub, &ev, 0) == 0) {
        char want[32];

        CHECK(ev.type == VMAUG_EVENT_MODULE_MESSAGE, "event type %u", ev.type);
        CHECK(!(ev.flags & VMAUG_EVENT_F_LOST),
              "LOST before the queue was full");
        CHECK(got == 0 || ev.seq > last_seq, "sequence went backwards");
        snprintf(want, sizeof(want), "msg-%u", got);
        CHECK(strcmp(message_of(&ev), want) == 0, "event %u carries '%s'",
              got, message_of(&ev));
        last_seq = ev.seq;
        got++;
    }
    CHECK(got == QUEUE, "read %u events, the queue holds %d", got, QUEUE);

    /* The next event tells the reader that some were dropped. */
    CHECK(notify(caller, count) == 0, "notify after draining");
    CHECK(vmaug_read_event(sub, &ev, 5000) == 0, "no event after draining");
    CHECK(ev.flags & VMAUG_EVENT_F_LOST, "no LOST flag after the overflow");
    CHECK(vmaug_read_event(sub, &ev, 0) == -ETIMEDOUT, "an extra event");

    /* A file that did not subscribe saw nothing. */
    CHECK(vmaug_read_event(idle, &ev, 0) == -ETIMEDOUT,
          "an unsubscribed file got an event");

    vmaug_client_close(sub);
    vmaug_client_close(idle);
    vmaug_client_close(caller);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("events: %u delivered in order, overflow flagged, unsubscribed "
           "file untouched\n", got);
    return 0;
}
