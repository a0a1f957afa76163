#!/bin/sh
# A test stage on a real pure cgroup v2 host with every controller (cpuset cpu io memory
# hugetlb pids rdma misc): it builds berth's container test binaries, packs them into a
# busybox initramfs at the same absolute paths, boots Debian's kernel (linux-image-amd64)
# in QEMU with cgroup_no_v1=all, runs every binary there (tests/vm/init.sh is the guest's
# /init) and reads the results back from the serial console. It exits 0 only when every
# binary exited 0 in the guest. Run as root from anywhere.
#
# The host needs no KVM (nested KVM hangs on these machines: software emulation, -accel
# tcg) and no network in the guest. What the stage needs on the host (qemu-system-x86,
# cpio, busybox-static, runc, python3) it installs if missing; the kernel package is
# fetched once with apt-get download and kept under target/vm/.
#
# Knobs (environment):
#   VM_TESTS      test binaries to run        (lifecycle delete events devices escapes)
#   VM_TEST_ARGS  extra arguments to each, e.g. a name filter or "--skip NAME"   (none)
#   VM_THREADS    --test-threads in the guest (2 might nearly halve the time on an
#                 idle host, but every test's deadlines get tighter)              (1)
#   VM_CPUS       guest cpus                                                   (2)
#   VM_MEMORY     guest memory, MiB                                            (3072)
#   VM_TIMEOUT    minutes before qemu is killed                                (60)
#   VM_KERNEL     a vmlinuz to boot instead of Debian's package's
#   VM_VERBOSE=1  the kernel's own messages on the console too
#
# In the guest every controller is there, so no test may skip: a test whose output has a
# "skipped: ..." line (common::skip_unless_controllers) fails the stage like a failed test.
# The verdict names each failed or skipped test with the end of its output; the whole run,
# with every test's time, is in target/vm/console.log.
set -eu
cd "$(dirname "$0")/../.."
repo=$(pwd)

tests=${VM_TESTS:-lifecycle delete events devices escapes}
test_args=${VM_TEST_ARGS:-}
threads=${VM_THREADS:-1}
cpus=${VM_CPUS:-2}
memory=${VM_MEMORY:-3072}
timeout_minutes=${VM_TIMEOUT:-60}

started=$(date +%s)
say() { echo "vm: $*" >&2; }
elapsed() { echo "$(($(date +%s) - started))s"; }

# --- host packages -----------------------------------------------------------------------
missing=""
for package in qemu-system-x86 cpio busybox-static runc python3; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $package"
done
if [ -n "$missing" ]; then
    say "installing$missing"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

# --- build -------------------------------------------------------------------------------
# berth (the CLI) first: the tests run it from beside berthd. Then the test binaries, whose
# build also builds berthd, at the path compiled into them (CARGO_BIN_EXE_berthd).
target=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
vm=$target/vm
mkdir -p "$vm"
say "building the binaries and the test binaries ($tests)"
cargo build --bins --message-format=json-render-diagnostics > "$vm/build-bins.json"
test_flags=""
for name in $tests; do test_flags="$test_flags --test $name"; done
# shellcheck disable=SC2086
cargo test --no-run $test_flags --message-format=json-render-diagnostics > "$vm/build-tests.json"

executables() { # FILE KIND -> "name path" of every artifact of that kind with an executable
    grep '"reason":"compiler-artifact"' "$1" | grep "\"kind\":\[\"$2\"\]" |
        sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*/\1 \2/p'
}
berthd=$(executables "$vm/build-bins.json" bin | awk '$1 == "berthd" { print $2 }')
berth=$(executables "$vm/build-bins.json" bin | awk '$1 == "berth" { print $2 }')
[ -x "$berthd" ] && [ "$berth" = "$(dirname "$berthd")/berth" ] || {
    say "cannot find berthd and berth beside it in cargo's output (berthd=$berthd berth=$berth)"
    exit 1
}
executables "$vm/build-tests.json" test > "$vm/tests"
for name in $tests; do
    grep -q "^$name /" "$vm/tests" || { say "cargo built no test binary $name"; exit 1; }
done
say "built in $(elapsed)"

# --- kernel ------------------------------------------------------------------------------
if [ -n "${VM_KERNEL:-}" ]; then
    kernel=$VM_KERNEL
else
    deb=$(ls "$vm"/linux-image-*-amd64_*.deb 2>/dev/null | tail -n 1)
    if [ -z "$deb" ]; then
        # linux-image-amd64 is a metapackage: the kernel is the package it depends on.
        image() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ { print $2; exit }'; }
        package=$(image)
        [ -n "$package" ] || { apt-get update -q; package=$(image); }
        say "fetching $package"
        (cd "$vm" && apt-get download -q -o APT::Sandbox::User=root "$package")
        deb=$(ls "$vm"/linux-image-*-amd64_*.deb | tail -n 1)
    fi
    kernel=$vm/$(basename "$deb" .deb).vmlinuz
    # Debian builds FUSE as a module; the tests' stalled lookups (common::StalledLookups)
    # need /dev/fuse. The guest's /init loads what is in this directory.
    modules=$vm/$(basename "$deb" .deb).modules
    if [ ! -f "$kernel" ] || [ ! -d "$modules" ]; then
        rm -rf "$vm/kernel" "$modules"
        mkdir -p "$vm/kernel" "$modules.tmp"
        dpkg --fsys-tarfile "$deb" | tar -x -C "$vm/kernel" --wildcards \
            './boot/vmlinuz-*' './lib/modules/*/kernel/fs/fuse/fuse.ko'
        mv "$vm"/kernel/lib/modules/*/kernel/fs/fuse/fuse.ko "$modules.tmp/"
        mv "$vm"/kernel/boot/vmlinuz-* "$kernel"
        mv "$modules.tmp" "$modules"
        rm -rf "$vm/kernel"
    fi
fi

# --- initramfs ---------------------------------------------------------------------------
root=$vm/root
rm -rf "$root"
mkdir -p "$root"
# The host's merged-/usr links (bin -> usr/bin, lib -> usr/lib, ...), so that every path
# ldd names exists in the guest as it does here.
for dir in bin sbin lib lib32 lib64 libx32; do
    if [ -L "/$dir" ]; then
        ln -s "$(readlink "/$dir")" "$root/$dir"
        mkdir -p "$root/$(readlink -f "/$dir")"
    fi
done
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" "$root/usr/local/bin" \
    "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/root"

put() { # SOURCE [DEST]: a copy of SOURCE (links followed) at DEST, by default its own path
    mkdir -p "$root$(dirname "${2:-$1}")"
    cp -L "$1" "$root${2:-$1}"
}
libraries() { # ELF... -> every library and loader ldd names, one a line
    for elf in "$@"; do ldd "$elf" 2>/dev/null || true; done |
        grep -o '/[^ ]*' | sort -u
}
# A test binary's debug info is most of its size and only helps a debugger: the guest gets
# copies without it (symbols stay, so a panic's backtrace still names functions).
put_stripped() {
    mkdir -p "$root$(dirname "$1")"
    objcopy --strip-debug "$1" "$root$1" 2>/dev/null || cp -L "$1" "$root$1"
}

put_stripped "$berthd"
put_stripped "$berth"
: > "$vm/guest-tests"
for name in $tests; do
    binary=$(awk -v name="$name" '$1 == name { print $2 }' "$vm/tests" | tail -n 1)
    put_stripped "$binary"
    echo "$name $binary" >> "$vm/guest-tests"
done
put /usr/bin/busybox
runc=$(command -v runc)
put "$runc"
# Python for the tests' hooks (delete.rs d14 runs /usr/bin/python3): the interpreter and
# the standard modules it loads to run a one-line script, with their compiled caches.
python=/usr/bin/python3
put "$python"
python_files=$(env -i "$python" -c '
import sys, os, encodings, importlib.util
files = set()
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path:
        files.add(path)
        cached = getattr(module, "__cached__", None)
        if cached and os.path.exists(cached):
            files.add(cached)
for dirpath, _, names in os.walk(os.path.dirname(encodings.__file__)):
    files.update(os.path.join(dirpath, n) for n in names)
print(os.path.join(sys.prefix, "lib", "python%d.%d" % sys.version_info[:2], "os.py"))
print("\n".join(sorted(files)))
')
for file in $python_files; do put "$file"; done
mkdir -p "$root$(env -i "$python" -c 'import sys, sysconfig; print(sysconfig.get_path("platstdlib"))')/lib-dynload"
for library in $(libraries "$berthd" "$berth" "$runc" "$python" $(awk '{ print $2 }' "$vm/guest-tests")); do
    [ -e "$root$library" ] || put "$library"
done
# busybox-static is the shell and every command (sh, sleep, mount, ...) wherever nothing
# else sits at the applet's path.
busybox_path=$(readlink -f /usr/bin/busybox)
for applet in $(/usr/bin/busybox --list-full); do
    [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s "$busybox_path" "$root/$applet"
done
# The tests build the CLI with cargo before they use it (common::berth_cli_built); it is
# built already, so in the guest "cargo" only has to succeed.
printf '#!/bin/sh\n# tests/vm: berth is built already\nexit 0\n' > "$root/usr/local/bin/cargo"
chmod 0755 "$root/usr/local/bin/cargo"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
mkdir -p "$root/etc/berth-vm/modules" "$root$repo"
# VM_KERNEL's modules are its own business: it gets none of Debian's.
[ -n "${VM_KERNEL:-}" ] || cp "$modules"/*.ko "$root/etc/berth-vm/modules/"
cp "$vm/guest-tests" "$root/etc/berth-vm/tests"
{
    echo "BERTH_VM_CWD='$repo'"
    echo "BERTH_VM_THREADS='$threads'"
    echo "BERTH_VM_TEST_ARGS='$test_args'"
} > "$root/etc/berth-vm/settings"
install -m 0755 tests/vm/init.sh "$root/init"
initramfs=$vm/initramfs.cpio
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$initramfs"
rm -rf "$root"
say "initramfs $(du -m "$initramfs" | cut -f1) MiB, ready at $(elapsed)"

# --- boot --------------------------------------------------------------------------------
log=$vm/console.log
quiet="quiet loglevel=3"
[ "${VM_VERBOSE:-}" != 1 ] || quiet=""
say "booting $(basename "$kernel") (tcg, $cpus cpus, $memory MiB, timeout ${timeout_minutes} min)"
boot_started=$(date +%s)
{
    timeout -k 10 "$((timeout_minutes * 60))" qemu-system-x86_64 \
        -accel tcg -cpu max -smp "$cpus" -m "$memory" \
        -nodefaults -no-user-config -display none -serial stdio -no-reboot \
        -kernel "$kernel" -initrd "$initramfs" \
        -append "console=ttyS0 cgroup_no_v1=all panic=-1 rdinit=/init $quiet" < /dev/null
    echo $? > "$vm/qemu.rc"
} | sed -u 's/\r//g' | tee "$log"
qemu_rc=$(cat "$vm/qemu.rc")
booted=$(sed -n 's/.*=== berth-vm: kernel.*/x/p' "$log" | head -n 1)

# --- verdict -----------------------------------------------------------------------------
echo
echo "vm: results (kernel $(basename "$kernel"), guest ran $(($(date +%s) - boot_started))s, stage $(elapsed))"
# report BINARY: from the binary's part of the log, each failed test and each test that
# printed a skip reason, with the start and the end of its output (libtest prints a
# "---- NAME stdout ----" block for every test: --show-output in init.sh).
report() {
    sed -n "/^=== berth-vm: BEGIN $1 ===/,/^=== berth-vm: END $1 /p" "$log" | awk '
        /^test .* \.\.\. FAILED( <[0-9.]+s>)?$/ { failed[$2] = 1; order[++tests] = $2 }
        /^---- .* stdout ----$/ { name = $2; next }
        /^(successes|failures):$/ { name = ""; next }
        name != "" {
            lines[name, ++count[name]] = $0
            if ($0 ~ /^skipped: /) { skipped[name] = $0; if (!(name in failed)) order[++tests] = name }
        }
        END {
            for (i = 1; i <= tests; i++) {
                name = order[i]
                if (name in failed) printf "vm:   FAILED  %s\n", name
                else printf "vm:   SKIPPED %s (%s): nothing may skip here\n", name, skipped[name]
                n = count[name]
                for (j = 1; j <= n; j++) {
                    if (j == 9 && n > 28) { printf "vm:       ... (%d lines)\n", n - 28; j = n - 20 }
                    printf "vm:       %s\n", lines[name, j]
                }
            }
            exit (tests > 0)
        }'
}
failed=0
for name in $tests; do
    end=$(grep "^=== berth-vm: END $name exit=" "$log" | tail -n 1)
    code=$(echo "$end" | sed -n 's/.* exit=\([0-9]*\) .*/\1/p')
    seconds=$(echo "$end" | sed -n 's/.* seconds=\([0-9]*\) .*/\1/p')
    # The "test result:" line cargo's harness prints between this binary's markers.
    result=$(sed -n "/^=== berth-vm: BEGIN $name ===/,/^=== berth-vm: END $name /p" "$log" |
        grep '^test result:' | tail -n 1)
    details=$(report "$name") && verdict=ok || verdict=FAILED
    [ "$code" = 0 ] || verdict=FAILED
    [ "$verdict" = ok ] || failed=$((failed + 1))
    printf 'vm: %-10s %-6s exit=%s %ss  %s\n' "$name" "$verdict" "${code:-none}" "${seconds:-?}" "${result:-no result line}"
    if [ -n "$details" ]; then
        echo "$details"
    elif [ "$verdict" != ok ]; then
        # No test failed, yet the binary did: it died (a crash, the OOM killer) or its
        # harness did. The end of what it printed says which.
        sed -n "/^=== berth-vm: BEGIN $name ===/,/^=== berth-vm: END $name /p" "$log" |
            tail -n 20 | sed 's/^/vm:       /'
    fi
done
if [ -z "$booted" ]; then
    say "the guest never reached its /init (qemu exit $qemu_rc); VM_VERBOSE=1 shows the kernel's messages"
    failed=$((failed + 1))
elif ! grep -q '^=== berth-vm: SUMMARY ' "$log"; then
    say "the guest did not finish (qemu exit $qemu_rc; 124 is the ${timeout_minutes}-minute timeout)"
    failed=$((failed + 1))
fi
echo "vm: console log: $log"
[ "$failed" = 0 ]
