#!/bin/sh
# Runs a command as on a pure cgroup v2 host: in a private mount namespace where every
# cgroup hierarchy of the host is unmounted and cgroup2 alone is mounted on /sys/fs/cgroup.
# Only this namespace sees the change; the host's mounts and cgroups are untouched.
#
# On a hybrid host whose controllers are bound to v1 (these machines), cgroup2 there has no
# controllers but hugetlb: tests that need one print why they skip.
set -eu
if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
fi
exec unshare --mount --propagation private sh -eu -c '
    awk "\$3 == \"cgroup\" || \$3 == \"cgroup2\" { print \$2 }" /proc/self/mounts \
        | sort -r | while read -r mount_point; do umount "$mount_point"; done
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
    exec "$@"
' v2-view "$@"
