/* What the libFuzzer harnesses (tests/fuzz_*.c) share: reading the memory a parser hands out,
 * so that ASan/UBSan see a bad pointer or length, and the rule for a refusal. */
#ifndef GROK2_TESTS_FUZZ_H
#define GROK2_TESTS_FUZZ_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink; /* keeps the reads from being optimised away */

/* Reads the first and last byte of [p, p + n). */
static inline void touch(const void *p, uint64_t n) {
    const volatile uint8_t *b = p;
    if (n) sink += b[0] + b[n - 1];
}

/* A refusal's message must be one line that starts with "NAME: " (the file it names). */
static inline void check_refusal(const char *msg, const char *name) {
    size_t n = strlen(name);
    if (strncmp(msg, name, n) != 0 || strncmp(msg + n, ": ", 2) != 0 || strchr(msg, '\n')) abort();
}

#endif
