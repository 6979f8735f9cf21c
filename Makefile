# grok2: one binary, its tests, its fuzzers.
#   make            build ./grok2 (warnings on; generic code for baseline x86-64 / armv8-a)
#   make test       build and run every test (Criterion); SAN=1 for ASan+UBSan
#   make fuzz       libFuzzer harnesses, FUZZ_SECONDS each (clang); FUZZ_SEED + FUZZ_RUNS: a
#                   fixed seed and count (CI's), mostly repeatable (see the fuzzing section)
#   make deps       install the Debian packages the build and the tests need
#   make demo       synthesize a tiny Grok-2-shaped checkpoint, convert it, inspect it, run it
#   make bench      kernel and model benchmarks on the `mini` preset (synthesized once, cached)
#   make bench-mmap expert streaming under a memory cgroup smaller than the model file

CC      ?= cc
ARCH    := $(shell uname -m)
SAN     ?= 0

ifeq ($(SAN),1)
  BUILD    ?= build-san
  OPTFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
else
  BUILD    ?= build
  OPTFLAGS := -O2 -g
endif

ifeq ($(ARCH),x86_64)
  BASE_ISA := -march=x86-64 -mtune=generic
  # each ISA's kernel file gets its own flags; dispatch picks one at run time
  ISA_avx2   := -mavx2 -mfma -mf16c
  ISA_avx512 := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mfma -mf16c
else ifeq ($(ARCH),aarch64)
  BASE_ISA := -march=armv8-a
  ISA_neon := -march=armv8.2-a+dotprod+fp16
endif

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS   += -std=c11 -D_GNU_SOURCE -pthread $(OPTFLAGS) $(WARN) $(BASE_ISA) -MMD -MP
LDLIBS   += -lcjson -lpcre2-8 -lzstd -lnuma -lm -lpthread
# prefill GEMM back-ends (runtime/gemm.c, --gemm): NO_OPENBLAS=1 / NO_ONEDNN=1 build without one
# (OpenBLAS is dlopen'ed when chosen, not linked: nothing of it is needed to build)
ifneq ($(NO_OPENBLAS),1)
  CFLAGS += -DGROK2_OPENBLAS
  LDLIBS += -ldl
endif
ifneq ($(NO_ONEDNN),1)
  CFLAGS += -DGROK2_ONEDNN
  LDLIBS += -ldnnl -lgomp
endif

LIB_SRC  := $(wildcard simd/*.c quant/*.c pool/*.c convert/*.c) $(filter-out runtime/main.c,$(wildcard runtime/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c) tests/harness.c
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

BIN      := $(BUILD)/grok2

all: $(BIN)
ifeq ($(BUILD),build)
all: grok2
grok2: $(BIN)
	ln -sf $(BIN) grok2
endif

$(BIN): $(BUILD)/runtime/main.o $(BUILD)/libgrok2.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libgrok2.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/simd/%_avx2.o: simd/%_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_avx2) -c -o $@ $<

$(BUILD)/simd/%_avx512.o: simd/%_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(ISA_avx512) -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# ---- tests ------------------------------------------------------------------------------------
$(BUILD)/grok2-tests: $(TEST_OBJ) $(BUILD)/libgrok2.a
	$(CC) $(CFLAGS) -o $@ $^ -lcriterion $(LDLIBS)

TEST_JOBS ?= 2
test: $(BIN) $(BUILD)/grok2-tests
	@mkdir -p $(BUILD)/test-tmp
	GROK2_BIN=$(abspath $(BIN)) GROK2_TEST_TMP=$(abspath $(BUILD)/test-tmp) GROK2_ROOT=$(CURDIR) \
	  ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp $(BUILD)/grok2-tests --jobs $(TEST_JOBS) $(TEST_ARGS)

# ---- fuzzing (clang's libFuzzer) -------------------------------------------------------------
# One harness per parser of untrusted input (tests/fuzz_NAME.c, seeds in tests/data/NAME-seeds);
# `make fuzz-NAME` runs one. A slower harness runs FUZZ_RUNS / FUZZ_DIVISOR_NAME inputs, so that
# CI's fixed count takes a similar time in each (under ~45 s on 2 cores); FUZZ_RUNS_NAME=N sets one,
# FUZZ_SECONDS_NAME=S one's time limit. A fixed seed does not make libFuzzer's runs identical here:
# the tokenizer harness's 300000 inputs found 399-453 new units over 8 runs with seed 1, and one
# run in 8 wandered into ids near TOK_MAX_ID (id-indexed tables of ~400 MB) and took 133-154 s
# instead of 2-3; CI caps that harness's time (.ci/run).
FUZZ_SECONDS ?= 60
FUZZ_SEED ?= 0
FUZZ_RUNS ?= -1
FUZZ_NAMES := gguf safetensors config tokenizer
FUZZ_DIVISOR_config := 2
FUZZ_DIVISOR_tokenizer := 10
fuzz_seconds = $(or $(FUZZ_SECONDS_$1),$(FUZZ_SECONDS))
fuzz_runs = $(or $(FUZZ_RUNS_$1),$(if $(filter -1,$(FUZZ_RUNS)),-1,$(shell expr $(FUZZ_RUNS) / $(or $(FUZZ_DIVISOR_$1),1))))
FUZZ_CC := clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined
FUZZ_SRC := $(filter-out runtime/main.c,$(wildcard simd/*.c quant/*.c))
FUZZ_HDR := $(wildcard quant/*.h simd/*.h) convert/convert.h tests/fuzz.h
build-fuzz/fuzz_gguf: tests/fuzz_gguf.c $(FUZZ_SRC) $(FUZZ_HDR)
build-fuzz/fuzz_safetensors: tests/fuzz_safetensors.c convert/safetensors_read.c convert/grok_tensors.c convert/files.c \
  $(FUZZ_SRC) $(FUZZ_HDR)
build-fuzz/fuzz_config: tests/fuzz_config.c convert/grok_config.c convert/grok_tensors.c convert/files.c \
  quant/error.c $(FUZZ_HDR)
build-fuzz/fuzz_tokenizer: tests/fuzz_tokenizer.c convert/tokenizer_json.c convert/files.c quant/error.c $(FUZZ_HDR)
$(FUZZ_NAMES:%=build-fuzz/fuzz_%): build-fuzz/fuzz_%:
	@mkdir -p build-fuzz
	$(FUZZ_CC) -o $@ $(filter %.c,$^) -lcjson -lm -lpthread

fuzz: $(FUZZ_NAMES:%=fuzz-%)
$(FUZZ_NAMES:%=fuzz-%): fuzz-%: build-fuzz/fuzz_%
	@mkdir -p build-fuzz/corpus-$*
	$< -max_total_time=$(call fuzz_seconds,$*) -seed=$(FUZZ_SEED) -runs=$(call fuzz_runs,$*) -max_len=4096 \
	  -print_final_stats=1 build-fuzz/corpus-$* tests/data/$*-seeds

# ---- packages ---------------------------------------------------------------------------------
DEB_PACKAGES := gcc make pkg-config clang libclang-rt-14-dev libcriterion-dev libcjson-dev libpcre2-dev \
  libsimde-dev libopenblas-dev libdnnl-dev libnuma-dev libzstd-dev libmicrohttpd-dev \
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user python3-numpy
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing" $$missing; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null || \
	  { echo "make deps: FAILED to install:" $$missing >&2; exit 1; }; \
	fi

# the main job on an embedded default: a tiny synthetic Grok-2-shaped checkpoint in the
# release's layout, converted to 4 bits, inspected, then run
DEMO := $(BUILD)/demo
demo: $(BIN)
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(BIN) synth tiny -o $(DEMO)/hf --seed 1
	$(BIN) convert $(DEMO)/hf -o $(DEMO)/tiny-q4_k_m.gguf --type q4_k_m
	$(BIN) info $(DEMO)/tiny-q4_k_m.gguf --bandwidth 100 | tail -n 9
	$(BIN) run -m $(DEMO)/tiny-q4_k_m.gguf -p "The capital of France is" -n 24 --temp 0

# benchmarks (not tests): the `mini` preset synthesized once (cached in models/cache/), converted
# to q4_k_m and q4_0, then the kernel bench and the model bench at depth 0 and 2048 (tg also
# against plain reads of its weights, --read-ref)
BENCH_DIR := models/cache
BENCH_ARGS ?= -p 512 -n 128 -r 3 --read-ref
bench: $(BIN)
	@mkdir -p $(BENCH_DIR)
	@[ -f $(BENCH_DIR)/mini/config.json ] || $(BIN) synth mini -o $(BENCH_DIR)/mini --seed 1
	@for t in q4_k_m q4_0; do [ -f $(BENCH_DIR)/mini-$$t.gguf ] || \
	  $(BIN) convert $(BENCH_DIR)/mini -o $(BENCH_DIR)/mini-$$t.gguf --type $$t || exit 1; done
	$(BIN) bench --kernels
	@for t in q4_k_m q4_0; do for d in 0 2048; do \
	  $(BIN) bench -m $(BENCH_DIR)/mini-$$t.gguf $(BENCH_ARGS) --depth $$d || exit 1; done; done
	@# the sharded path on two pretend nodes against one unsharded group (README, "NUMA")
	@for mode in off shard off shard; do \
	  GROK2_FAKE_NUMA=2 $(BIN) bench -m $(BENCH_DIR)/mini-q4_k_m.gguf -p 0 -n 64 -r 4 --numa $$mode || exit 1; done

# expert streaming from a file larger than the memory allowed (a memory cgroup; needs root):
# mini with LAYERS layers, decoded once per --prefetch mode, see bench/mmap_cgroup.sh
bench-mmap: $(BIN)
	GROK2=$(BIN) sh bench/mmap_cgroup.sh

clean:
	rm -rf build build-san build-fuzz grok2

.PHONY: all test fuzz $(FUZZ_NAMES:%=fuzz-%) deps demo bench bench-mmap clean
-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BUILD)/runtime/main.d

# kernels: the AVX-512 sources under SIMDe and NEON under qemu-aarch64 (where the tools are),
# run before the Criterion suite (the native kernel checks are inside it)
include simd/simd.mk
test: $(if $(filter 1,$(SAN)),,$(SIMD_TEST_EXTRA))
