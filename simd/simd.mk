# simd/: the builds the kernels need beyond the Makefile's pattern rules. Included at the end
# of the Makefile (`include simd/simd.mk`); uses its CC, CFLAGS, WARN, ARCH, BUILD, ISA_avx2.
#
#   make simd-test          every kernel check: the native Criterion tests (filter simd*/*), the
#                           AVX-512 sources under SIMDe, NEON under qemu-aarch64 with and
#                           without dotprod (the last two where the tools are installed)
#   make simd-test-simde    AVX-512 (with and without VNNI) compiled against SIMDe for AVX2
#   make simd-test-neon     aarch64 cross build under qemu: -cpu max (neon + neondot), forced
#                           GROK2_ISA=neon, and -cpu cortex-a57 (no dotprod: neondot refused)
#   SIMD_TEST_EXTRA         the SIMDe/qemu targets available here, for `test: $(SIMD_TEST_EXTRA)`
#                           (the native checks already run inside grok2-tests)

SIMD_CHECK_SRC := tests/simd/simd_checks.c tests/simd/main.c
SIMD_LIB_SRC := $(wildcard simd/*.c)

# aarch64 hosts: the dotprod variant gets +dotprod; every other simd file is plain armv8-a NEON.
$(BUILD)/simd/%_neondot.o: simd/%_neondot.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(if $(filter aarch64,$(ARCH)),-march=armv8.2-a+dotprod) -c -o $@ $<

# ---- AVX-512 through SIMDe (x86-64 hosts) ---------------------------------------------------
# The *_avx512.c files compiled a second time with AVX2 only: SIMDe's native aliases map the
# _mm512_* intrinsics onto AVX2 code (simd/avx512_compat.h fills the few SIMDe 0.7.4 lacks),
# and their tables ask only for avx2+fma+f16c and are named *-simde.
SIMDE_BUILD := $(BUILD)/simde
SIMDE_OBJ := $(patsubst %.c,$(SIMDE_BUILD)/%.o,$(SIMD_LIB_SRC) $(SIMD_CHECK_SRC))
SIMD_HAVE_SIMDE := $(if $(filter x86_64,$(ARCH)),$(shell echo '\#include <simde/x86/avx512.h>' | \
  $(CC) -mavx2 -E -x c - >/dev/null 2>&1 && echo 1))

$(SIMDE_BUILD)/simd/%_avx512.o: simd/%_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -mavx2 -mfma -mf16c -Wno-psabi -DSIMD_USE_SIMDE -c -o $@ $<
$(SIMDE_BUILD)/simd/%_avx2.o: simd/%_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_avx2) -c -o $@ $<
$(SIMDE_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<
$(SIMDE_BUILD)/simd-test: $(SIMDE_OBJ)
	$(CC) $(CFLAGS) -o $@ $^ -lm -lpthread

simd-test-simde: $(SIMDE_BUILD)/simd-test
	$(SIMDE_BUILD)/simd-test --expect avx512vnni-simde,avx512-simde

# ---- NEON through qemu-aarch64 (x86-64 hosts) ------------------------------------------------
CROSS_CC ?= aarch64-linux-gnu-gcc
QEMU_AARCH64 ?= qemu-aarch64
CROSS_BUILD := $(BUILD)/aarch64
CROSS_CFLAGS := -std=c11 -D_GNU_SOURCE -pthread -O2 $(WARN) -march=armv8-a -MMD -MP
CROSS_OBJ := $(patsubst %.c,$(CROSS_BUILD)/%.o,$(SIMD_LIB_SRC) $(SIMD_CHECK_SRC))
SIMD_HAVE_CROSS := $(if $(filter x86_64,$(ARCH)),$(shell command -v $(CROSS_CC) >/dev/null 2>&1 && \
  command -v $(QEMU_AARCH64) >/dev/null 2>&1 && echo 1))

$(CROSS_BUILD)/simd/%_neondot.o: simd/%_neondot.c
	@mkdir -p $(dir $@)
	$(CROSS_CC) $(CROSS_CFLAGS) -march=armv8.2-a+dotprod -c -o $@ $<
$(CROSS_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CROSS_CC) $(CROSS_CFLAGS) -c -o $@ $<
$(CROSS_BUILD)/simd-test: $(CROSS_OBJ)
	$(CROSS_CC) -static -o $@ $^ -lm -lpthread

simd-test-neon: $(CROSS_BUILD)/simd-test
	$(QEMU_AARCH64) -cpu max $< --expect neon,neondot
	GROK2_ISA=neon $(QEMU_AARCH64) -cpu max $< --tables none --chosen neon
	$(QEMU_AARCH64) -cpu cortex-a57 $< --tables neon --expect neon --absent neondot

# ---- all of it --------------------------------------------------------------------------------
SIMD_TEST_EXTRA := $(if $(SIMD_HAVE_SIMDE),simd-test-simde) $(if $(SIMD_HAVE_CROSS),simd-test-neon)

simd-test-native: $(BUILD)/grok2-tests
	$(BUILD)/grok2-tests --filter 'simd*/*' --jobs $(TEST_JOBS)

simd-test: simd-test-native $(SIMD_TEST_EXTRA)
ifeq ($(filter x86_64,$(ARCH)),x86_64)
	@$(if $(SIMD_HAVE_SIMDE),,echo "simd-test: SIMDe headers not found (libsimde-dev): AVX-512 emulation skipped")
	@$(if $(SIMD_HAVE_CROSS),,echo "simd-test: $(CROSS_CC) or $(QEMU_AARCH64) not found: NEON checks skipped")
endif

.PHONY: simd-test simd-test-native simd-test-simde simd-test-neon
-include $(SIMDE_OBJ:.o=.d) $(CROSS_OBJ:.o=.d)
