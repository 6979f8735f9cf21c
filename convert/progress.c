/* Progress on stderr: on a terminal a bar redrawn at most ten times a second with bytes done,
 * rate and ETA; otherwise (logs, CI) one plain line per tenth, so output stays readable. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "convert.h"

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *format_bytes(uint64_t bytes, char *buf, size_t size) {
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    snprintf(buf, size, u ? "%.2f %s" : "%.0f %s", v, units[u]);
    return buf;
}

static void format_duration(double s, char *buf, size_t size) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, size, "--:--");
    else if (s >= 3600) snprintf(buf, size, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else snprintf(buf, size, "%d:%02d", (int)s / 60, (int)s % 60);
}

void progress_start(progress *p, const char *label, uint64_t total) {
    *p = (progress){.label = label, .total = total ? total : 1, .start = now_seconds(), .last_tenth = 0};
    p->tty = isatty(STDERR_FILENO);
}

static void draw(progress *p, bool final) {
    double elapsed = now_seconds() - p->start, rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    double eta = rate > 0 ? (double)(p->total - p->done) / rate : -1;
    char done[16], total[16], per_s[16], when[16];
    format_bytes(p->done, done, sizeof done);
    format_bytes(p->total, total, sizeof total);
    format_bytes((uint64_t)rate, per_s, sizeof per_s);
    format_duration(final ? elapsed : eta, when, sizeof when);
    int pct = (int)(100.0 * (double)p->done / (double)p->total);
    if (p->tty) {
        char bar[31];
        int fill = pct * 30 / 100;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r%s [%s] %3d%% %s / %s  %s/s  %s %s\033[K", p->label, bar, pct, done, total, per_s,
                final ? "in" : "ETA", when);
        if (final) fputc('\n', stderr);
        p->drawn = !final;
    } else {
        fprintf(stderr, "%s: %3d%% %s / %s, %s/s, %s %s\n", p->label, pct, done, total, per_s,
                final ? "done in" : "ETA", when);
    }
    fflush(stderr);
}

void progress_advance(progress *p, uint64_t bytes) {
    p->done += bytes;
    if (p->done > p->total) p->done = p->total;
    if (p->quiet) return;
    if (p->tty) {
        double t = now_seconds();
        if (t - p->last_draw < 0.1) return;
        p->last_draw = t;
        draw(p, false);
    } else {
        int tenth = (int)(10 * p->done / p->total);
        if (tenth > p->last_tenth && tenth < 10) {
            p->last_tenth = tenth;
            draw(p, false);
        }
    }
}

void progress_finish(progress *p) {
    if (!p->quiet) draw(p, true);
}

void progress_abort(progress *p) {
    if (p->tty && p->drawn) fputc('\n', stderr);
    p->drawn = false;
}
