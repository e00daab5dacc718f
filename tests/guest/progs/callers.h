/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the concurrency test programs share: their records of what each
 * thread sent and got back, and running THREADS callers on one open
 * /dev/vmaugment.  A header, not a program: the harness builds every .c
 * file of this directory into a program of its own.
 */
#ifndef VMAUG_TEST_CALLERS_H
#define VMAUG_TEST_CALLERS_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

/* Open DIR/tT.SUFFIX for the records of thread @me. */
static FILE *record_open(const char *dir, uint64_t me, const char *suffix)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/t%llu.%s", dir,
             (unsigned long long)me, suffix);
    return fopen(path, "w");
}

/* Close both records: a record that did not reach its file is an error. */
static int records_close(FILE *sent, FILE *recv)
{
    int ret = 0;

    if (sent && fclose(sent) != 0) {
        perror("closing the records");
        ret = -1;
    }
    if (recv && fclose(recv) != 0) {
        perror("closing the records");
        ret = -1;
    }
    return ret;
}

/*
 * Run @fn in @threads threads (1..64), each given its number; returns
 * how many failed (returned non-NULL), or -1 if they could not start.
 */
static int run_callers(unsigned long threads, void *(*fn)(void *))
{
    pthread_t tid[64];
    int failed = 0;

    if (threads == 0 || threads > 64) {
        fprintf(stderr, "1..64 threads\n");
        return -1;
    }
    for (unsigned long t = 0; t < threads; t++) {
        if (pthread_create(&tid[t], NULL, fn, (void *)(uintptr_t)t)) {
            perror("pthread_create");
            return -1;
        }
    }
    for (unsigned long t = 0; t < threads; t++) {
        void *ret;

        pthread_join(tid[t], &ret);
        failed += ret != NULL;
    }
    if (failed) {
        fprintf(stderr, "%d of %lu threads saw errors\n", failed, threads);
    }
    return failed;
}

#endif
