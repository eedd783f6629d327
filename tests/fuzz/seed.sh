#!/usr/bin/env bash
# Seeds the fuzz corpora: every sample trace and every malformed file of tests/malformed.rs for
# the loader, the spans and parameter files the tests use for the parsers.
#   bash tests/fuzz/seed.sh     (from the repository root; then `cargo +nightly fuzz run ...`)
set -euo pipefail
cd "$(dirname "$0")/../.."
c=tests/fuzz/corpus
mkdir -p "$c"/trace_bytes "$c"/span "$c"/params "$c"/analyze
find sample_traces -name '*.safetensors' -not -path '*/ckpt/*' -size -2M -exec cp {} "$c"/trace_bytes/ \;
FLOWTRACER_FUZZ_SEEDS="$PWD/$c/trace_bytes" cargo test --quiet --test malformed >/dev/null
# Spans: two bytes of N (64), then the text.
for s in '[0, 3)' '[5,9)' '[0,0)' '[3, 2)' '[1,' '[-1, 4)' '[18446744073709551615, 0)'; do
    printf '\x40\x00%s' "$s" >"$c/span/$(printf '%s' "$s" | md5sum | cut -c1-12)"
done
# Parameter files: a byte (0 TOML, 1 JSON), then the file.
printf '\x00[credit]\nfraction = 0.2\ngamma = 2.0\nnormalize_mean = true\n' >"$c/params/toml"
printf '\x00[aggregate]\nlayers = [1, 2, 3]\n' >"$c/params/layers3"
printf '\x01{"credit": {"gamma": 1e308, "normalize_mean": true}}' >"$c/params/json"
echo "seeded: $(ls "$c"/trace_bytes | wc -l) traces, $(ls "$c"/span | wc -l) spans, $(ls "$c"/params | wc -l) parameter files"
