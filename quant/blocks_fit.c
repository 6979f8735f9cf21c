/* The scale searches the block encoders share. Each minimises the weighted squared error of
 * one block (or sub-block) by trying a handful of candidate scales, assigning every value its
 * nearest level, and refitting the scale to that assignment by weighted least squares. For a
 * fixed scale the nearest level is optimal per value whatever the weights, and for a fixed
 * assignment the least-squares scale is optimal, so each step can only lower the error. */
#include <float.h>

#include "blocks.h"

#define MAX_FIT 256 /* the largest block or sub-block any encoder fits at once */

static inline float weight_at(const float *w, int i) { return w ? w[i] : 1.0f; }

/* Whether some weight is positive; with none (or no weights at all) every value counts. */
static bool any_weight(const float *w, int n) {
    if (!w) return false;
    for (int i = 0; i < n; i++)
        if (w[i] > 0) return true;
    return false;
}

/* ---- symmetric blocks: y = d * level ------------------------------------------------------ */

/* Gives each x the level nearest to x/d (all at the level nearest 0 when d is 0), writes the
 * indices to q, and returns sum w*(x - y)^2 with y computed exactly as the decoder does. The
 * sums for the least-squares refit of d under this assignment go to *sxl and *sll. */
static double assign_levels(const float *x, const float *w, int n, const g2_levels *lv, float d, uint8_t *q,
                            double *sxl, double *sll) {
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    double err = 0, xl = 0, ll = 0;
    for (int i = 0; i < n; i++) {
        int k = g2_nearest_level(lv, x[i] * id);
        float level = (float)g2_level_value(lv, k);
        float y = d * level;
        double wi = weight_at(w, i), diff = (double)x[i] - y;
        q[i] = (uint8_t)k;
        err += wi * diff * diff;
        xl += wi * x[i] * level;
        ll += wi * level * level;
    }
    *sxl = xl;
    *sll = ll;
    return err;
}

float g2_fit_scale(const float *x, const float *w, int n, const g2_levels *lv, bool half_scale, uint8_t *q) {
    /* max: the value of largest magnitude, with its sign, among the values that count */
    bool all = !any_weight(w, n);
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        if ((all || w[i] > 0) && fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax == 0) {
        int zero = g2_nearest_level(lv, 0);
        for (int i = 0; i < n; i++) q[i] = (uint8_t)zero;
        return 0;
    }

    uint8_t trial[MAX_FIT];
    double best_err = INFINITY;
    float best_d = 0;
    bool have_best = false;
    /* Put the largest value on the most negative level (the longer side of every level set
     * here) or on the most positive one, each stretched or shrunk a little: a smaller scale
     * spends resolution on the bulk at the cost of clipping the one outlier. Each candidate
     * is tried as is and after a least-squares refit. */
    const float lowest = (float)g2_level_value(lv, 0), highest = (float)g2_level_value(lv, lv->count - 1);
    for (int side = 0; side < 2; side++) {
        int k_first = side == 0 ? -6 : -2, k_last = side == 0 ? 6 : 2;
        for (int k = k_first; k <= k_last; k++) {
            float target = (side == 0 ? lowest : highest) * (1.0f + 0.025f * (float)k);
            float d = max / target;
            for (int refit = 0; refit < 2; refit++) {
                if (half_scale) d = g2_scale_rounded(d);
                double sxl, sll;
                double err = assign_levels(x, w, n, lv, d, trial, &sxl, &sll);
                if (err < best_err || !have_best) {
                    best_err = err;
                    best_d = d;
                    have_best = true;
                }
                if (!(sll > 0)) break;
                double refined = sxl / sll;
                if (!(fabs(refined) <= FLT_MAX)) break;
                d = (float)refined;
            }
        }
    }
    double sxl, sll;
    assign_levels(x, w, n, lv, best_d, q, &sxl, &sll);
    return best_d;
}

double g2_levels_error(const float *x, const float *w, int n, const g2_levels *lv, float d, uint8_t *q) {
    uint8_t scratch[MAX_FIT];
    double sxl, sll;
    return assign_levels(x, w, n, lv, d, q ? q : scratch, &sxl, &sll);
}

/* ---- blocks with an offset: y = s*q + b ---------------------------------------------------- */

double g2_offset_error(const float *x, const float *w, int n, int nmax, float s, float b, uint8_t *q) {
    float is = s > 0 ? 1.0f / s : 0.0f;
    double err = 0;
    for (int i = 0; i < n; i++) {
        int k = g2_round_clamp((x[i] - b) * is, 0, nmax);
        float y = s * (float)k + b; /* the decoder's arithmetic, to the bit */
        double diff = (double)x[i] - y;
        err += weight_at(w, i) * diff * diff;
        if (q) q[i] = (uint8_t)k;
    }
    return err;
}

/* Weighted least-squares s and b for a fixed assignment q. False when the assignment cannot
 * determine them (every q equal, zero weights) or the fit is not a usable positive scale. */
static bool refit_scale_offset(const float *x, const float *w, const uint8_t *q, int n, bool offset_nonpositive,
                               float *s, float *b) {
    double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
    for (int i = 0; i < n; i++) {
        double wi = weight_at(w, i);
        sw += wi;
        sq += wi * q[i];
        sqq += wi * q[i] * q[i];
        sx += wi * x[i];
        sqx += wi * q[i] * x[i];
    }
    double det = sw * sqq - sq * sq;
    if (!(det > 1e-9 * sw * sqq)) return false;
    double ss = (sw * sqx - sq * sx) / det;
    double bb = (sqq * sx - sq * sqx) / det;
    if (offset_nonpositive && bb > 0) { /* the optimum lies on the boundary b = 0 */
        bb = 0;
        ss = sqx / sqq;
    }
    if (!(ss > 0) || ss > FLT_MAX || !(fabs(bb) <= FLT_MAX)) return false;
    *s = (float)ss;
    *b = (float)bb;
    return true;
}

void g2_fit_scale_offset(const float *x, const float *w, int n, int nmax, bool offset_nonpositive, float *s,
                         float *b) {
    bool all = !any_weight(w, n);
    float xmin = INFINITY, xmax = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!all && !(w[i] > 0)) continue; /* values of weight 0 cost nothing wherever they land */
        if (x[i] < xmin) xmin = x[i];
        if (x[i] > xmax) xmax = x[i];
    }
    if (offset_nonpositive && xmin > 0) xmin = 0;
    if (!(xmin <= xmax)) { /* nothing but NaN */
        *s = 0;
        *b = 0;
        return;
    }
    if (!(xmax > xmin)) { /* one repeated value: the offset alone reproduces it */
        *s = 0;
        *b = xmin;
        return;
    }

    /* Start from the plain min/max mapping, then try stretched and shrunk versions of it
     * (clipping a lonely extreme can pay off), each refit by least squares. */
    float range = xmax - xmin;
    float best_s = range / (float)nmax, best_b = xmin;
    double best_err = g2_offset_error(x, w, n, nmax, best_s, best_b, NULL);
    uint8_t q[MAX_FIT];
    for (int k = -10; k <= 10; k++) {
        float iscale = ((float)nmax + 0.1f * (float)k) / range;
        for (int i = 0; i < n; i++) q[i] = (uint8_t)g2_round_clamp((x[i] - xmin) * iscale, 0, nmax);
        float cs, cb;
        if (!refit_scale_offset(x, w, q, n, offset_nonpositive, &cs, &cb)) continue;
        double err = g2_offset_error(x, w, n, nmax, cs, cb, NULL);
        if (err < best_err) {
            best_err = err;
            best_s = cs;
            best_b = cb;
        }
    }
    /* Polish the winner: alternate nearest-level assignment and refit while it helps. */
    for (int iter = 0; iter < 4; iter++) {
        g2_offset_error(x, w, n, nmax, best_s, best_b, q);
        float cs, cb;
        if (!refit_scale_offset(x, w, q, n, offset_nonpositive, &cs, &cb)) break;
        double err = g2_offset_error(x, w, n, nmax, cs, cb, NULL);
        if (!(err < best_err)) break;
        best_err = err;
        best_s = cs;
        best_b = cb;
    }
    *s = best_s;
    *b = best_b;
}
