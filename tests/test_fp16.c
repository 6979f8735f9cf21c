/* simd/simd.h's fp16 and bf16 conversions, over every 16-bit pattern: decoding is exact
 * (checked against values built independently with ldexp), encoding rounds to nearest with
 * ties to even (checked at every midpoint between adjacent values and against a reference
 * rounding on random floats), overflow, underflow, signed zero and NaN behave. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../simd/simd.h"

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Failures are counted and the first one described, so an exhaustive loop that breaks
 * reports once instead of 65536 times. */
typedef struct {
    long count;
    char first[256];
} failures;
#define CHECK(fails, cond, ...)                                                            \
    do {                                                                                   \
        if (!(cond) && (fails)->count++ == 0) snprintf((fails)->first, sizeof (fails)->first, __VA_ARGS__); \
    } while (0)
#define ASSERT_NONE(fails, what) cr_assert_eq((fails).count, 0, "%s: %ld failures, first: %s", what, (fails).count, (fails).first)

/* ---- independent references ------------------------------------------------------------- */

/* The exact value of an fp16 pattern (NaN for NaNs), from its fields. */
static double half_value(uint16_t h) {
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -24); /* subnormal: m * 2^-24 */
    else v = ldexp(1024 + m, e - 25);   /* (1 + m/1024) * 2^(e-15) */
    return sign ? -v : v;
}

/* The exact value of a bf16 pattern: float's exponent, 7 mantissa bits. */
static double bf16_value(uint16_t b) {
    int sign = b >> 15, e = (b >> 7) & 255, m = b & 127;
    double v;
    if (e == 255) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -133); /* subnormal: m * 2^-126 / 128 */
    else v = ldexp(128 + m, e - 134);
    return sign ? -v : v;
}

/* Round-to-nearest-even of a finite float to fp16, by search over the exact values of the
 * non-negative halves (which are sorted by pattern): no bit tricks shared with simd.h. */
static uint16_t reference_to_half(float f) {
    double a = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (a >= 65520.0) return sign | 0x7c00; /* at or past the midpoint of 65504 and 2^16 */
    int lo = 0, hi = 0x7bff;               /* half_value(lo) <= a < half_value(hi + 1) */
    if (a >= half_value(0x7bff)) return sign | 0x7bff;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (half_value((uint16_t)mid) <= a) lo = mid;
        else hi = mid;
    }
    double below = a - half_value((uint16_t)lo), above = half_value((uint16_t)hi) - a;
    if (below < above) return sign | (uint16_t)lo;
    if (above < below) return sign | (uint16_t)hi;
    return sign | (uint16_t)(lo % 2 == 0 ? lo : hi);
}

/* ---- fp16 -------------------------------------------------------------------------------- */

Test(fp16, half_to_f32_is_exact_for_every_pattern) {
    failures f = {0};
    for (uint32_t h = 0; h < 65536; h++) {
        float got = g2_half_to_f32((g2_half)h);
        double want = half_value((uint16_t)h);
        if (isnan(want)) {
            /* NaN, same sign, payload carried into the top mantissa bits */
            uint32_t u = bits_of(got);
            CHECK(&f, isnan(got) && (u >> 31) == (h >> 15) && ((u >> 13) & 1023) == (h & 1023) && (u & 0x1fff) == 0,
                  "0x%04x -> 0x%08x", h, u);
        } else {
            CHECK(&f, (double)got == want && !signbit(got) == !signbit(want), "0x%04x -> %a, want %a", h, (double)got,
                  want);
        }
    }
    ASSERT_NONE(f, "half -> f32");
}

Test(fp16, half_to_f32_to_half_is_the_identity) {
    failures f = {0}, nan_bits = {0};
    for (uint32_t h = 0; h < 65536; h++) {
        g2_half back = g2_f32_to_half(g2_half_to_f32((g2_half)h));
        bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (!is_nan) {
            CHECK(&f, back == h, "0x%04x -> 0x%04x", h, back);
        } else {
            /* a NaN stays a NaN of the same sign and payload; a signalling NaN may come back
             * quiet (bit 9 set), as IEEE conversions do */
            CHECK(&f, (back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back | 0x200) == (h | 0x200),
                  "NaN 0x%04x -> 0x%04x", h, back);
            CHECK(&nan_bits, back == h, "NaN 0x%04x -> 0x%04x", h, back);
        }
    }
    ASSERT_NONE(f, "half -> f32 -> half");
    if (nan_bits.count) cr_log_info("fp16: %ld signalling NaNs come back quiet (first: %s)", nan_bits.count, nan_bits.first);
}

/* For each pair of adjacent halves a < b of one sign (b = inf after 65504, standing for 2^16):
 * the midpoint goes to the one with an even pattern, anything nearer to a goes to a. */
Test(fp16, f32_to_half_rounds_to_nearest_even_at_every_midpoint) {
    failures f = {0};
    for (int sign = 0; sign < 2; sign++) {
        for (uint32_t m = 0; m < 0x7c00; m++) { /* magnitudes m and m + 1 */
            uint16_t a = (uint16_t)(m | (sign << 15)), b = (uint16_t)((m + 1) | (sign << 15));
            double va = half_value(a), vb = m + 1 == 0x7c00 ? (sign ? -65536.0 : 65536.0) : half_value(b);
            float mid = (float)((va + vb) / 2); /* 12 significant bits: exact in float */
            cr_assert_eq((double)mid, (va + vb) / 2);
            uint16_t even = (m & 1) ? b : a;
            CHECK(&f, g2_f32_to_half(mid) == even, "midpoint %a of 0x%04x, 0x%04x -> 0x%04x", (double)mid, a, b,
                  g2_f32_to_half(mid));
            CHECK(&f, g2_f32_to_half(nextafterf(mid, (float)va)) == a, "just below midpoint %a -> 0x%04x, want 0x%04x",
                  (double)mid, g2_f32_to_half(nextafterf(mid, (float)va)), a);
            CHECK(&f, g2_f32_to_half(nextafterf(mid, (float)vb)) == b, "just above midpoint %a -> 0x%04x, want 0x%04x",
                  (double)mid, g2_f32_to_half(nextafterf(mid, (float)vb)), b);
            float quarter = (float)(va + (vb - va) / 4), three_quarters = (float)(va + 3 * (vb - va) / 4);
            CHECK(&f, g2_f32_to_half(quarter) == a, "quarter %a -> 0x%04x", (double)quarter, g2_f32_to_half(quarter));
            CHECK(&f, g2_f32_to_half(three_quarters) == b, "three quarters %a -> 0x%04x", (double)three_quarters,
                  g2_f32_to_half(three_quarters));
        }
    }
    ASSERT_NONE(f, "f32 -> half rounding");
}

Test(fp16, f32_to_half_overflows_to_inf_and_underflows_to_signed_zero) {
    cr_assert_eq(g2_f32_to_half(65504.0f), 0x7bff);
    cr_assert_eq(g2_f32_to_half(65519.996f), 0x7bff); /* below the midpoint to 2^16 */
    cr_assert_eq(g2_f32_to_half(65520.0f), 0x7c00);   /* the midpoint: ties to even = inf */
    cr_assert_eq(g2_f32_to_half(1e5f), 0x7c00);
    cr_assert_eq(g2_f32_to_half(FLT_MAX), 0x7c00);
    cr_assert_eq(g2_f32_to_half(-FLT_MAX), 0xfc00);
    cr_assert_eq(g2_f32_to_half(INFINITY), 0x7c00);
    cr_assert_eq(g2_f32_to_half(-INFINITY), 0xfc00);
    cr_assert_eq(g2_f32_to_half(0.0f), 0x0000);
    cr_assert_eq(g2_f32_to_half(-0.0f), 0x8000);
    cr_assert_eq(g2_f32_to_half(0x1p-24f), 0x0001);   /* smallest subnormal */
    cr_assert_eq(g2_f32_to_half(0x1p-25f), 0x0000);   /* half of it: tie to even = 0 */
    cr_assert_eq(g2_f32_to_half(0x1.000002p-25f), 0x0001);
    cr_assert_eq(g2_f32_to_half(-0x1p-25f), 0x8000);
    cr_assert_eq(g2_f32_to_half(0x1.8p-24f), 0x0002); /* 1.5 * 2^-24: tie to even = 2 */
    cr_assert_eq(g2_f32_to_half(1e-10f), 0x0000);
    cr_assert_eq(g2_f32_to_half(-1e-10f), 0x8000);
    cr_assert_eq(g2_f32_to_half(FLT_TRUE_MIN), 0x0000);  /* a float subnormal */
    cr_assert_eq(g2_f32_to_half(-FLT_TRUE_MIN), 0x8000);
    cr_assert_eq(g2_f32_to_half(0x1.ff8p-15f), 0x03ff); /* largest subnormal, 1023 * 2^-24 */
    cr_assert_eq(g2_f32_to_half(0x1.ffbp-15f), 0x03ff); /* below the midpoint to 2^-14 */
    cr_assert_eq(g2_f32_to_half(0x1.ffcp-15f), 0x0400); /* the midpoint: ties to even, a normal */
    cr_assert_eq(g2_f32_to_half(0x1p-14f), 0x0400);
    cr_assert_eq(g2_f32_to_half(1.0f), 0x3c00);
    cr_assert_eq(g2_f32_to_half(1.0f + 0x1p-11f), 0x3c00); /* tie, even */
    cr_assert_eq(g2_f32_to_half(1.0f + 0x1.8p-10f), 0x3c02); /* tie between 0x3c01 and 0x3c02 */
}

Test(fp16, f32_to_half_keeps_every_nan_a_nan) {
    static const uint32_t nans[] = {0x7f800001, 0x7fc00000, 0x7fffffff, 0x7f801fff, 0x7fa00000,
                                    0xff800001, 0xffc00000, 0xffffffff, 0x7f802000, 0xffbfe000};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        g2_half h = g2_f32_to_half(float_of(nans[i]));
        cr_assert((h & 0x7c00) == 0x7c00 && (h & 0x3ff), "NaN 0x%08x -> 0x%04x, not a NaN", nans[i], h);
        cr_assert_eq(h >> 15, nans[i] >> 31, "NaN 0x%08x -> 0x%04x: sign lost", nans[i], h);
    }
}

/* Random floats over and around fp16's range against the independent search. */
Test(fp16, f32_to_half_matches_reference_rounding_on_random_floats) {
    failures f = {0};
    uint64_t s = 0x1234567;
    for (int i = 0; i < 300000; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        /* exponents 2^-30 .. 2^17 (float exponent field 97..144), any mantissa and sign */
        uint32_t u = (uint32_t)(s & 0x807fffff) | (uint32_t)(97 + (s >> 40) % 48) << 23;
        float x = float_of(u);
        uint16_t want = reference_to_half(x);
        CHECK(&f, g2_f32_to_half(x) == want, "%a -> 0x%04x, want 0x%04x", (double)x, g2_f32_to_half(x), want);
#ifdef __FLT16_MAX__
        /* the compiler's own conversion, where it has one, as a second opinion */
        _Float16 h16 = (_Float16)x;
        uint16_t hb;
        memcpy(&hb, &h16, 2);
        CHECK(&f, hb == want, "reference disagrees with _Float16 on %a: 0x%04x vs 0x%04x", (double)x, want, hb);
#endif
    }
    ASSERT_NONE(f, "f32 -> half vs reference");
}

/* ---- bf16 -------------------------------------------------------------------------------- */

Test(fp16, bf16_to_f32_is_exact_for_every_pattern) {
    failures f = {0};
    for (uint32_t b = 0; b < 65536; b++) {
        float got = g2_bf16_to_f32((uint16_t)b);
        double want = bf16_value((uint16_t)b);
        if (isnan(want)) {
            uint32_t u = bits_of(got);
            CHECK(&f, isnan(got) && u == b << 16, "0x%04x -> 0x%08x", b, u);
        } else {
            CHECK(&f, (double)got == want && !signbit(got) == !signbit(want), "0x%04x -> %a, want %a", b, (double)got,
                  want);
        }
    }
    ASSERT_NONE(f, "bf16 -> f32");
}

Test(fp16, bf16_to_f32_to_bf16_is_the_identity) {
    failures f = {0}, nan_bits = {0};
    for (uint32_t b = 0; b < 65536; b++) {
        uint16_t back = g2_f32_to_bf16(g2_bf16_to_f32((uint16_t)b));
        bool is_nan = (b & 0x7f80) == 0x7f80 && (b & 0x7f);
        if (!is_nan) {
            CHECK(&f, back == b, "0x%04x -> 0x%04x", b, back);
        } else {
            CHECK(&f, (back & 0x7f80) == 0x7f80 && (back & 0x7f) && (back | 0x40) == (b | 0x40),
                  "NaN 0x%04x -> 0x%04x", b, back);
            CHECK(&nan_bits, back == b, "NaN 0x%04x -> 0x%04x", b, back);
        }
    }
    ASSERT_NONE(f, "bf16 -> f32 -> bf16");
    if (nan_bits.count) cr_log_info("bf16: %ld signalling NaNs come back quiet (first: %s)", nan_bits.count, nan_bits.first);
}

/* Adjacent bf16 values a < b of one sign (b = inf after the largest finite): the midpoint
 * goes to the even pattern, the floats beside it to their side. Includes float subnormals. */
Test(fp16, f32_to_bf16_rounds_to_nearest_even_at_every_midpoint) {
    failures f = {0};
    for (uint32_t sign = 0; sign < 2; sign++) {
        for (uint32_t m = 0; m < 0x7f80; m++) {
            uint16_t a = (uint16_t)(m | (sign << 15)), b = (uint16_t)((m + 1) | (sign << 15));
            uint32_t mid_bits = (uint32_t)a << 16 | 0x8000; /* the float halfway between a and b */
            float mid = float_of(mid_bits);
            double va = bf16_value(a), vb = m + 1 == 0x7f80 ? (sign ? -0x1p128 : 0x1p128) : bf16_value(b);
            CHECK(&f, (double)mid == (va + vb) / 2, "setup: 0x%08x is not the midpoint", mid_bits);
            uint16_t even = (m & 1) ? b : a;
            CHECK(&f, g2_f32_to_bf16(mid) == even, "midpoint 0x%08x -> 0x%04x, want 0x%04x", mid_bits,
                  g2_f32_to_bf16(mid), even);
            CHECK(&f, g2_f32_to_bf16(float_of(mid_bits - 1)) == a, "below midpoint 0x%08x -> 0x%04x", mid_bits - 1,
                  g2_f32_to_bf16(float_of(mid_bits - 1)));
            CHECK(&f, g2_f32_to_bf16(float_of(mid_bits + 1)) == b, "above midpoint 0x%08x -> 0x%04x", mid_bits + 1,
                  g2_f32_to_bf16(float_of(mid_bits + 1)));
            CHECK(&f, g2_f32_to_bf16(float_of((uint32_t)a << 16 | 0x7fff)) == a, "0x%04x7fff", a);
            CHECK(&f, g2_f32_to_bf16(float_of((uint32_t)a << 16 | 0x0001)) == a, "0x%04x0001", a);
        }
    }
    ASSERT_NONE(f, "f32 -> bf16 rounding");
}

Test(fp16, f32_to_bf16_overflow_zero_and_nan) {
    cr_assert_eq(g2_f32_to_bf16(FLT_MAX), 0x7f80); /* past the last midpoint: rounds to inf */
    cr_assert_eq(g2_f32_to_bf16(-FLT_MAX), 0xff80);
    cr_assert_eq(g2_f32_to_bf16(float_of(0x7f7f7fff)), 0x7f7f);
    cr_assert_eq(g2_f32_to_bf16(INFINITY), 0x7f80);
    cr_assert_eq(g2_f32_to_bf16(-INFINITY), 0xff80);
    cr_assert_eq(g2_f32_to_bf16(0.0f), 0x0000);
    cr_assert_eq(g2_f32_to_bf16(-0.0f), 0x8000);
    cr_assert_eq(g2_f32_to_bf16(FLT_TRUE_MIN), 0x0000); /* 2^-149: below half of bf16's 2^-133 */
    cr_assert_eq(g2_f32_to_bf16(-FLT_TRUE_MIN), 0x8000);
    cr_assert_eq(g2_f32_to_bf16(1.0f), 0x3f80);
    static const uint32_t nans[] = {0x7f800001, 0x7f80ffff, 0x7fc00000, 0x7fffffff, 0xff800001, 0xffffffff, 0x7fbf0000};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t b = g2_f32_to_bf16(float_of(nans[i]));
        cr_assert((b & 0x7f80) == 0x7f80 && (b & 0x7f), "NaN 0x%08x -> 0x%04x, not a NaN", nans[i], b);
        cr_assert_eq(b >> 15, nans[i] >> 31, "NaN 0x%08x -> 0x%04x: sign lost", nans[i], b);
    }
}
