#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this) and as the README tells users to.
#
# It installs what the tests need into a cache that later runs on the same machine reuse
# ($REVGEN_CACHE, default ~/.cache/revgen): the cargo target dir, the LibTorch venv (torch==2.9.0) and a tools venv
# with moto_server, the S3 server the object-storage tests talk to. Then it checks formatting and lints, runs every
# test on the default (pure-Rust) build that the demo uses, and again with `--features tch` on LibTorch's CPU device.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
export REVGEN_CACHE="${REVGEN_CACHE:-$HOME/.cache/revgen}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REVGEN_CACHE/target}"
# Real review rows are read in place, never copied into the repo (DEVELOPERS.md).
export REVGEN_SHARED_DATA="${REVGEN_SHARED_DATA:-$repo/../shared/data}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
mkdir -p "$REVGEN_CACHE"

started=$(date +%s)
# The phases also go to a log in the cache, so that the time of each part of a CI run can be read afterwards.
phase_log="$REVGEN_CACHE/test-phases.log"
echo "== $(date -u '+%F %T') scripts/test.sh in $repo ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))" >>"$phase_log"
phase() { printf '\n== [%4ss] %s\n' "$(($(date +%s) - started))" "$*" | tee -a "$phase_log"; }

# LibTorch downloads while cargo compiles; its log goes to the cache dir.
phase "setting up LibTorch in the background ($REVGEN_CACHE/setup-libtorch.log)"
scripts/setup-libtorch.sh >"$REVGEN_CACHE/torch.env" 2>"$REVGEN_CACHE/setup-libtorch.log" &
torch_setup=$!

phase "tools venv: moto_server (S3)"
tools="$REVGEN_CACHE/tools-venv"
if ! "$tools/bin/python" -c 'import moto.server' 2>/dev/null; then
    rm -rf "$tools"
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]==5.*'
fi
s3_port=$("$tools/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$tools/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$REVGEN_CACHE/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -fs "http://127.0.0.1:$s3_port/" >/dev/null && break
    sleep 0.2
done
curl -fs "http://127.0.0.1:$s3_port/" >/dev/null || { echo "moto_server did not start:"; cat "$REVGEN_CACHE/moto.log"; exit 1; }
export REVGEN_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1

phase "cargo fmt --check"
cargo fmt --all --check

# Clippy lints our crates while they compile for the tests: clippy-driver stands in for rustc on the workspace
# members only, so the stack is compiled once. A separate `cargo clippy` pass would first type-check every
# dependency in check mode, which cost 7 to 13 minutes of CI. Cargo replays cached warnings of crates that are
# already built, so a warm run still sees them; any warning fails the run, like `clippy -- -D warnings`.
export RUSTC_WORKSPACE_WRAPPER=clippy-driver
build_log="$REVGEN_CACHE/test-build.log"
build_tests() {
    cargo test --workspace --locked --no-run "$@" 2>&1 | tee "$build_log"
    if grep -E '^warning: `[^`]+` \(.*\) generated [0-9]+ warnings?' "$build_log"; then
        echo "clippy or rustc warnings in our crates (above, and in $build_log): fix them"
        exit 1
    fi
}

phase "cargo test --no-run + clippy (default features: the pure-Rust build the demo uses)"
build_tests --timings

# The transformers cross-checks (tokenizer parity, export round trip) run the venv's python, so the venv must be
# ready before any test runs.
phase "waiting for LibTorch + transformers"
if ! wait $torch_setup; then
    echo "scripts/setup-libtorch.sh failed:"
    cat "$REVGEN_CACHE/setup-libtorch.log"
    exit 1
fi
# shellcheck disable=SC1091
source "$REVGEN_CACHE/torch.env"
export REVGEN_PYTHON="$REVGEN_TORCH_VENV/bin/python"

phase "cargo test (default features)"
cargo test --workspace --locked

# No LD_LIBRARY_PATH on purpose: the binaries must find libtorch through their rpath. The second pass runs what
# the backend changes: the unit tests, and the end-to-end tests of the commands that
# compute with the model (train, score, export, tokenize, backends, demo). The pipeline's tests (stats, prepare,
# synth, sql) do not touch the backend and ran above; repeating them here cost about 2 minutes of CI.
phase "cargo test --features tch (LibTorch CPU)"
# (--workspace in both, so that features unify as in the build above and nothing is recompiled.)
# The demo's unit test trains on flex whatever the features, so it is not repeated.
build_tests --features tch
cargo test --workspace --locked --features tch --lib --bins -- --skip demo_writes_the_dump
cargo test --workspace --locked --features tch --test e2e -- train:: model:: cli::

phase "all passed"
