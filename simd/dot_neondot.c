/* The neondot table: dot_neon.c compiled again with SDOT (simd.mk gives this file
 * -march=armv8.2-a+dotprod; dispatch picks it only where HWCAP reports ASIMDDP). */
#define SIMD_NEON_DOTPROD 1
#include "dot_neon.c"
