#!/usr/bin/env bash
# Fuzzes a decoder with cargo-fuzz (libFuzzer + AddressSanitizer).
#   bash fuzz/run.sh [seconds=600] [target=wire_decode|trust_decode|event_parse]
# Installs cargo-fuzz if missing. Stable toolchains are enough: RUSTC_BOOTSTRAP enables the
# sanitizer flags cargo-fuzz passes. wire_decode's corpus starts from the spec's test vectors.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"
target="${2:-wire_decode}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
mkdir -p "corpus/$target"
[ "$target" = wire_decode ] && python3 - "corpus/$target" <<'PY'
import json, sys, pathlib
doc = json.load(open("../specs/vectors/sparseloco-v1.json"))
out = pathlib.Path(sys.argv[1])
for v in doc["vectors"] + doc["rejects"]:
    (out / f"vector-{v['name']}").write_bytes(bytes.fromhex(v["blob_hex"]))
PY
cargo fuzz run "$target" -- -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1
