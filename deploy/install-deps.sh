#!/bin/sh
# Installs what building, running and testing berth needs on Debian and is not there yet.
# Run as root. The protobuf compiler is not among them: proto/build.rs uses protox, a
# compiler written in Rust, so no protoc is needed.
set -eu

# busybox-static: the tests' container root file systems. runc and crun: the tests compare
# berth's behaviour and the benchmarks its speed against them; berth does not need either.
# python3 with grpcio: the tests call berthd as an outside gRPC client would.
# libseccomp-dev: berth compiles linux.seccomp through libseccomp, whose archive berthd
# takes in (it is linked statically, so running it needs no libseccomp2).
# containerd: the containerd tests (tests/containerd.rs) run Debian's containerd 1.6 and its
# ctr, each on private sockets and directories in a mount namespace of their own, with
# berth's shim and with containerd's own runc shim. They never use the system's containerd
# service (which a systemd host starts on install).
# containernetworking-plugins: the CNI plugins (bridge, host-local, loopback) the containerd
# test of a pod on a bridge network hands to its containerd's CRI plugin.
# musl-tools: the C compiler for musl that the CLI's build (`cargo cli`, on musl) needs for
# the C and assembly parts of its TLS library.
packages="busybox-static runc crun python3 python3-pip ca-certificates libseccomp-dev containerd containernetworking-plugins musl-tools"

missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing="$missing $package"
done
if [ -n "$missing" ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
fi

if ! python3 -c 'import grpc, grpc_reflection' 2>/dev/null; then
    python3 -m pip install --quiet grpcio grpcio-reflection protobuf \
        || python3 -m pip install --quiet --break-system-packages grpcio grpcio-reflection protobuf
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
fi

# The CLI is built for musl (`cargo cli`, .cargo/config.toml says why).
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-musl" ]; then
    if command -v rustup >/dev/null 2>&1; then
        rustup target add x86_64-unknown-linux-musl
    else
        echo "Rust's x86_64-unknown-linux-musl target is missing: install Rust with rustup (https://rustup.rs), or add that target to this toolchain" >&2
        exit 1
    fi
fi
