#!/bin/sh
# Benchmark (not a test): a model file larger than the memory the process may use. The `mini`
# preset with more layers is synthesized once (models/cache/, ignored by git), then `grok2 run
# --stats` decodes under a memory cgroup limited well below the file size, once per expert
# prefetch mode, with the file dropped from the page cache before each run. Prints generation
# tokens/s, disk bytes and major faults per token.
#
#   bench/mmap_cgroup.sh            (or: make bench-mmap)
#   env: GROK2 (binary, default build/grok2), LAYERS (24), TYPE (q4_0), LIMIT_MB (1536),
#        TOKENS (generated per run, 24), REPEAT (runs per mode, 2), MODES ("off chosen next"),
#        EXTRA (more flags for every run), KEEP_MODEL=0 to delete the model afterwards
# Needs root for the cgroup (v1 memory.limit_in_bytes or v2 memory.max); without a writable one
# it says so and exits 0.
set -eu

GROK2=${GROK2:-build/grok2}
LAYERS=${LAYERS:-24}
TYPE=${TYPE:-q4_0}
LIMIT_MB=${LIMIT_MB:-1536}
TOKENS=${TOKENS:-24}
REPEAT=${REPEAT:-2}
MODES=${MODES:-off chosen next}
EXTRA=${EXTRA:-}
KEEP_MODEL=${KEEP_MODEL:-1}
DIR=models/cache
MODEL=$DIR/mini$LAYERS-$TYPE.gguf
PROMPT="The history of the printing press begins"

[ -x "$GROK2" ] || { echo "mmap_cgroup: no binary at $GROK2 (make first, or set GROK2)" >&2; exit 1; }

# the cgroup: v1 memory controller, else a v2 hierarchy that offers memory
CG=
if [ -w /sys/fs/cgroup/memory/memory.limit_in_bytes ] || [ -w /sys/fs/cgroup/memory ]; then
    CG=/sys/fs/cgroup/memory/grok2-mmap-bench-$$
    LIMIT_FILE=memory.limit_in_bytes
else
    for root in /sys/fs/cgroup /sys/fs/cgroup/unified; do
        if [ -w "$root" ] && grep -qw memory "$root/cgroup.controllers" 2>/dev/null; then
            CG=$root/grok2-mmap-bench-$$
            LIMIT_FILE=memory.max
            grep -qw memory "$root/cgroup.subtree_control" 2>/dev/null || echo +memory > "$root/cgroup.subtree_control" || true
            break
        fi
    done
fi
if [ -z "$CG" ] || ! mkdir "$CG" 2>/dev/null; then
    echo "mmap_cgroup: skipped: no writable memory cgroup (v1 /sys/fs/cgroup/memory or v2 memory.max; needs root)"
    exit 0
fi
trap 'rmdir "$CG" 2>/dev/null || true' EXIT INT TERM
echo $((LIMIT_MB << 20)) > "$CG/$LIMIT_FILE"

mkdir -p "$DIR"
[ -f "$MODEL" ] || "$GROK2" synth mini --layers "$LAYERS" --gguf "$TYPE" -o "$MODEL" --seed 1
SIZE_MB=$(( $(stat -c %s "$MODEL") >> 20 ))
echo "model $MODEL: $SIZE_MB MiB; memory limit $LIMIT_MB MiB ($CG/$LIMIT_FILE); $TOKENS tokens per run"
[ "$SIZE_MB" -gt "$LIMIT_MB" ] || echo "mmap_cgroup: warning: the file fits in the limit; raise LAYERS or lower LIMIT_MB"

printf '%-8s %-4s %10s %12s %14s %10s %12s\n' mode run "tg tok/s" "MB disk/tok" "maj faults/tok" "resident" "next right"
for mode in $MODES; do
    r=1
    while [ "$r" -le "$REPEAT" ]; do
        # cold start: the file out of the page cache (dd asks the kernel to drop it, file only)
        dd if="$MODEL" iflag=nocache count=0 status=none
        err=$(sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$CG" \
            "$GROK2" run -m "$MODEL" -p "$PROMPT" -n "$TOKENS" --temp 0 --stats --prefetch "$mode" $EXTRA 2>&1 >/dev/null) ||
            { echo "$err" >&2; exit 1; }
        tps=$(echo "$err" | sed -n 's/.*generated [0-9]* tokens in [0-9.]* s (\([0-9.]*\) tokens\/s).*/\1/p')
        gen=$(echo "$err" | grep 'stats: generation')
        mb=$(echo "$gen" | sed -n 's/.* \([0-9.]*\) MB read from disk\/token.*/\1/p')
        maj=$(echo "$gen" | sed -n 's/.*: \([0-9.]*\) major faults\/token.*/\1/p')
        res=$(echo "$err" | sed -n 's/.*resident now: \([0-9.]*%\) of the expert slabs.*/\1/p')
        hit=$(echo "$err" | sed -n 's/.*next-layer guesses: .*right (\([0-9.]*%\)).*/\1/p')
        printf '%-8s %-4s %10s %12s %14s %10s %12s\n' "$mode" "$r" "$tps" "${mb:-n/a}" "$maj" "$res" "${hit:--}"
        r=$((r + 1))
    done
done
[ "$KEEP_MODEL" = 1 ] || rm -f "$MODEL"
