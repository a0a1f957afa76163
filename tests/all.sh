#!/bin/sh
# The whole suite: every test on the host's cgroup layout, then the container suites again
# as on a pure cgroup v2 host (tests/v2-view.sh). Run as root from anywhere.
set -eu
cd "$(dirname "$0")/.."
cargo test "$@"
# Not yet run in the v2 view: these read or write v1 files themselves (a v1 freezer of an
# ancestor, v1 memory and pids limits, v1 hierarchy binds in the cgroup mount). Their v2
# variants are open work of issue 12.
tests/v2-view.sh cargo test --test lifecycle --test delete --test events --test devices --test escapes -- \
    --skip d10_nested_sub_cgroups_in_every_hierarchy \
    --skip d12_failed_cgroup_removal_keeps_the_container \
    --skip d15_a_stuck_delete_does_not_hold_up_other_containers \
    --skip d8_timeout_is_deadline_exceeded \
    --skip an_out_of_memory_kill_is_reported \
    --skip a_cgroup_that_already_holds_processes_is_refused \
    --skip memory_and_pids_limits_reach_the_cgroup_files \
    --skip pause_freezes_every_process_and_resume_thaws_them \
    --skip spec_features_are_applied_inside_the_container
