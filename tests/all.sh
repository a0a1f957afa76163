#!/bin/sh
# The whole suite: every test on the host's cgroup layout, then the container suites again
# as on a pure cgroup v2 host (tests/v2-view.sh). Run as root from anywhere.
set -eu
cd "$(dirname "$0")/.."
cargo test "$@"
tests/v2-view.sh cargo test --test lifecycle --test delete --test events --test devices --test escapes
