#!/bin/sh
# The whole suite: every test on the host's cgroup layout; then the container suites again as
# on a pure cgroup v2 host (tests/v2-view.sh: cgroup2 alone, but only the controllers this
# kernel leaves to it); then, on a real pure v2 kernel with every controller in a QEMU guest
# (tests/vm/run.sh), the tests of what the view lacks: resources, freeze, kill, OOM and the
# device program. Emulated, a test costs 15 to 60 s there, so the guest runs those alone;
# `tests/vm/run.sh` by hand runs the whole container suites in it. Run as root from anywhere.
set -eu
cd "$(dirname "$0")/.."
cargo test "$@"
# containerd under a private mount namespace, with berth's shim and runc's as calibration
# (declared test = false, so the plain run above leaves it to this line).
cargo test --test containerd
# The CLI as it is installed (`cargo cli`: static, on musl) through the suites that drive it.
cargo cli
BERTH_CLI="$PWD/target/x86_64-unknown-linux-musl/release/berth" cargo test --test foundation \
    --test processes --test terminal --test events --test exec --test security
tests/v2-view.sh cargo test --test lifecycle --test delete --test events --test devices \
    --test escapes --test seccomp --test userns --test runtime_spec --test processes --test exec --test labels \
    --test terminal --test resources
VM_TESTS="lifecycle delete events devices resources" \
VM_TEST_ARGS="memory_and_pids_limits pause_freezes a_cgroup_that_already kill_validates \
spec_features d10_nested d7_ kill_all_with d4_guard d8_timeout d12_failed out_of_memory \
allowlist an_update_reaches a_created_container_takes stats_count the_cli_updates" \
    tests/vm/run.sh
