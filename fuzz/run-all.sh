#!/usr/bin/env bash
# Runs every captrace fuzz target for N seconds each (default 20): ./fuzz/run-all.sh [N]
#
# AYA_BUILD_SKIP=1 makes tracer's build script skip building the eBPF object (no bpf-linker
# needed): the fuzz targets only use pure-logic modules. Seeds are read from corpus/<target>/;
# inputs the fuzzer discovers go to corpus-work/<target>/ (git-ignored), so the seeds stay
# small. Stops at the first target that crashes; the crashing input is left in
# artifacts/<target>/ (replay it with `cargo +nightly fuzz run <target> <artifact>`).
set -euo pipefail

secs="${1:-20}"
if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi

cd "$(dirname "$0")"
export AYA_BUILD_SKIP=1

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

targets=(profile_json cgroup_path proc_status kallsyms capability_name kernel_btf)
for target in "${targets[@]}"; do
    echo "=== $target (${secs}s)" >&2
    mkdir -p "corpus-work/$target"
    if ! cargo +nightly fuzz run "$target" "corpus-work/$target" "corpus/$target" \
        -- -max_total_time="$secs"; then
        echo "FAILED: $target crashed; see fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "all ${#targets[@]} targets ran ${secs}s each without a crash" >&2
