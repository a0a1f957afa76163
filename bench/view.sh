#!/bin/sh
# Runs a command in one of the cgroup views the benchmark compares the runtimes in:
#   host  this host's own: v1 controllers, and a controller-less cgroup2 at /sys/fs/cgroup/unified
#   v1    a private mount namespace without /sys/fs/cgroup/unified: cgroup v1 alone, the only
#         view of this host crun 1.8 accepts
#   v2    a private mount namespace with cgroup2 alone on /sys/fs/cgroup (tests/v2-view.sh)
# Only the namespace sees the change. unshare does not fork: the command keeps this pid.
set -eu
if [ "$#" -lt 2 ]; then
    echo "usage: $0 host|v1|v2 COMMAND [ARG...]" >&2
    exit 2
fi
view=$1
shift
case $view in
host) exec "$@" ;;
v1) exec unshare --mount --propagation private sh -eu -c 'umount /sys/fs/cgroup/unified; exec "$@"' v1-view "$@" ;;
v2) exec "$(dirname "$0")/../tests/v2-view.sh" "$@" ;;
*) echo "$0: unknown view $view" >&2; exit 2 ;;
esac
