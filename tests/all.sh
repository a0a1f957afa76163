#!/bin/sh
# The whole suite: every test on the host's cgroup layout, then the container suites again
# as on a pure cgroup v2 host (tests/v2-view.sh), then the same suites on a real one, with
# every v2 controller, in a QEMU guest (tests/vm/run.sh). Run as root from anywhere.
set -eu
cd "$(dirname "$0")/.."
cargo test "$@"
tests/v2-view.sh cargo test --test lifecycle --test delete --test events --test devices --test escapes
tests/vm/run.sh
