/* Temp files removed on signals: the writer registers PATH.tmp here while it is open, so that
 * Ctrl-C (SIGINT), SIGTERM or SIGHUP during a conversion leaves no half-written file behind.
 *
 * This is the project's one piece of global mutable state, on purpose: a signal handler can
 * reach nothing else. It is a fixed table (no allocation) whose slots change state through
 * lock-free atomics, so the handler may read it at any moment, on any thread, and only calls
 * async-signal-safe functions (unlink, sigaction, raise).
 *
 * Handlers are installed on the first registration, and only for signals whose disposition is
 * still the default (termination): a signal the program ignores (nohup's SIGHUP) or handles
 * itself is left alone; a program that handles them cleans up with gguf_writer_free. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "quant.h"

#define TMPFILE_SLOTS 16

enum { SLOT_FREE, SLOT_BUSY /* being filled or emptied */, SLOT_ACTIVE };

static struct {
    atomic_int state;
    char given[PATH_MAX]; /* as registered: matched by unregister */
    char absolute[PATH_MAX]; /* what the handler unlinks, whatever the cwd is by then */
} slots[TMPFILE_SLOTS];

static atomic_int handlers_installed;

static const int cleanup_signals[] = {SIGINT, SIGTERM, SIGHUP};

static void on_signal(int sig) {
    int saved = errno;
    for (int i = 0; i < TMPFILE_SLOTS; i++)
        if (atomic_load(&slots[i].state) == SLOT_ACTIVE) unlink(slots[i].absolute);
    /* SA_RESETHAND restored the default action; the re-raised signal is blocked until we
     * return, then terminates the process as if we had never been here. */
    raise(sig);
    errno = saved;
}

static void install_handlers(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&handlers_installed, &expected, 1)) return;
    for (size_t i = 0; i < sizeof cleanup_signals / sizeof cleanup_signals[0]; i++) {
        struct sigaction old;
        if (sigaction(cleanup_signals[i], NULL, &old) != 0) continue;
        if ((old.sa_flags & SA_SIGINFO) || old.sa_handler != SIG_DFL) continue; /* ignored or the program's own */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        sigaction(cleanup_signals[i], &sa, NULL);
    }
}

void g2_tmpfile_register(const char *path) {
    size_t len = strlen(path);
    char cwd[PATH_MAX];
    size_t cwd_len = 0;
    if (path[0] != '/') {
        if (!getcwd(cwd, sizeof cwd)) return;
        cwd_len = strlen(cwd);
    }
    if (len >= PATH_MAX || cwd_len + 1 + len >= PATH_MAX) return; /* cannot be protected; still works */
    install_handlers();
    for (int i = 0; i < TMPFILE_SLOTS; i++) {
        int expected = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&slots[i].state, &expected, SLOT_BUSY)) continue;
        memcpy(slots[i].given, path, len + 1);
        if (path[0] == '/') {
            memcpy(slots[i].absolute, path, len + 1);
        } else {
            memcpy(slots[i].absolute, cwd, cwd_len);
            slots[i].absolute[cwd_len] = '/';
            memcpy(slots[i].absolute + cwd_len + 1, path, len + 1);
        }
        atomic_store(&slots[i].state, SLOT_ACTIVE);
        return;
    }
    /* table full: more than TMPFILE_SLOTS writers at once; this one is not protected */
}

void g2_tmpfile_unregister(const char *path) {
    for (int i = 0; i < TMPFILE_SLOTS; i++) {
        if (atomic_load(&slots[i].state) != SLOT_ACTIVE || strcmp(slots[i].given, path) != 0) continue;
        int expected = SLOT_ACTIVE;
        if (!atomic_compare_exchange_strong(&slots[i].state, &expected, SLOT_BUSY)) continue;
        slots[i].given[0] = slots[i].absolute[0] = 0;
        atomic_store(&slots[i].state, SLOT_FREE);
        return;
    }
}
