#!/bin/sh
# /init of the guest that tests/vm/run.sh boots: a pure cgroup v2 host with every
# controller. It runs each test binary named in /etc/berth-vm/tests, prints a marker line
# per binary with its exit code and a summary line on the serial console, and powers off.
# run.sh reads the markers; keep their format in step with it.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp

if [ "$1" != stage2 ]; then
    # The kernel's initramfs is "rootfs", which pivot_root(2) refuses to leave (EINVAL: it
    # has no parent mount), and every container's init pivots. So make "/" a mount that has
    # a parent: bind the initramfs onto a directory of itself and move that mount over "/".
    # (The same files, no copy.) Then start again from there.
    mkdir -p /.root
    mount --bind / /.root
    cd /.root
    mount --move . /
    exec chroot . /init stage2
fi

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# A checkout under /tmp or /run was packed there (the binaries keep their paths): a tmpfs
# would hide it, and the initramfs is writable as it is.
for dir in /tmp /run; do
    [ -n "$(ls -A "$dir")" ] || mount -t tmpfs tmpfs "$dir"
done
mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname berth-vm
uptime=$(cat /proc/uptime)
ip link set lo up 2>/dev/null

marker() { echo "=== berth-vm: $* ==="; }

for module in /etc/berth-vm/modules/*.ko; do
    [ -e "$module" ] || continue
    insmod "$module" || marker "cannot load $module"
done

marker "kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ { print $2 " kB" }' /proc/meminfo), /init reached at ${uptime%% *}s"
marker "cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
for controller in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$controller" > /sys/fs/cgroup/cgroup.subtree_control ||
        marker "cannot enable $controller at the root"
done
marker "cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

. /etc/berth-vm/settings
cd "$BERTH_VM_CWD"
passed=0
failed=0
while read -r name binary; do
    marker "BEGIN $name"
    start=$(date +%s)
    # --show-output: every passing test's output too, where run.sh looks for skip reasons.
    # shellcheck disable=SC2086 # the settings' test arguments are split on purpose
    "$binary" --test-threads="$BERTH_VM_THREADS" --show-output $BERTH_VM_TEST_ARGS \
        < /dev/null 2>&1
    code=$?
    marker "END $name exit=$code seconds=$(($(date +%s) - start))"
    if [ "$code" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    # Whatever a failed test left: the next binary starts from a clean tree.
    leftovers=$(find /sys/fs/cgroup -mindepth 1 -type d | head -5)
    [ -z "$leftovers" ] || marker "cgroups left after $name: $(echo $leftovers)"
done < /etc/berth-vm/tests
marker "memory available at the end: $(awk '/MemAvailable/ { print $2 " kB" }' /proc/meminfo)"
marker "SUMMARY binaries_passed=$passed binaries_failed=$failed"
sync
poweroff -f
