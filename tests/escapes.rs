//! The known ways out of a container, each closed: a working directory reached through a
//! file descriptor the runtime holds (CVE-2024-21626), descriptors leaking into the
//! container, and special file systems mounted through symlinks (CVE-2023-27561/-28642).
mod common;

use std::{collections::BTreeSet, fs, os::unix::fs::symlink, path::Path};

use common::*;
use tonic::Code;

/// Names in the host's `/` that a busybox rootfs does not have: seeing one means the
/// container reached the host's file system.
const HOST_ONLY: [&str; 3] = ["usr", "var", "work"];

/// Lists `/` as seen from the container's cwd by climbing, and reads a file placed in the
/// state root, whose path the container could only reach through a host directory.
const CLIMB: &str =
    "pwd; ls ../../../../../../../..; cat ../../../../../../../../marker 2>/dev/null; \
                     cat ../marker ../../marker 2>/dev/null; true";

fn assert_sees_no_host_file(output: &str) {
    for name in HOST_ONLY {
        assert!(
            !output.lines().any(|line| line.trim() == name),
            "the container saw the host's /{name}:\n{output}"
        );
    }
    assert!(
        !output.contains("host-marker"),
        "the container read a host file:\n{output}"
    );
}

/// Refused with INVALID_ARGUMENT naming process.cwd and nothing left, or (had berth
/// accepted it) a working directory inside the root from which no host file is reached.
async fn check_cwd(daemon: &Daemon, id: &str, bundle: &Bundle) {
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "out");
    match daemon.create(id, bundle, Some(&output)).await {
        Err(status) => {
            assert_eq!(status.code(), Code::InvalidArgument, "{id}: {status:?}");
            assert!(status.message().contains("process.cwd"), "{id}: {status:?}");
            assert_nothing_left(daemon, id);
        }
        Ok(created) => {
            let rootfs = bundle.path().join("rootfs");
            let cwd = fs::read_link(format!("/proc/{}/cwd", created.pid)).unwrap();
            assert!(cwd.starts_with(&rootfs), "{id}: cwd {}", cwd.display());
            daemon.start_container(id).await.unwrap();
            let mut client = daemon.client().await;
            wait_exit_status(&mut client, id).await;
            assert_sees_no_host_file(&fs::read_to_string(&output).unwrap());
            daemon.delete(id, false).await.unwrap();
        }
    }
}

fn climbing_bundle(cwd: &str) -> Bundle {
    let mut bundle = Bundle::busybox(&["sh", "-c", CLIMB]);
    bundle.edit(|c| c["process"]["cwd"] = cwd.into());
    bundle
}

fn plant_marker(daemon: &Daemon) {
    fs::write(daemon.root.join("marker"), "host-marker\n").unwrap();
}

#[tokio::test]
async fn cwd_through_proc_self_fd_never_reaches_the_host() {
    let daemon = Daemon::start().await;
    plant_marker(&daemon);
    for fd in 3..=20 {
        let bundle = climbing_bundle(&format!("/proc/self/fd/{fd}"));
        check_cwd(&daemon, &format!("fd-{fd}"), &bundle).await;
    }
    // One that resolves only after a climb out of the magic link.
    let bundle = climbing_bundle("/proc/self/fd/4/../../..");
    check_cwd(&daemon, "fd-climb", &bundle).await;
}

#[tokio::test]
async fn cwd_through_a_symlink_to_proc_self_fd_never_reaches_the_host() {
    let daemon = Daemon::start().await;
    plant_marker(&daemon);
    for (name, target) in [("evil", "/proc/self/fd/3"), ("evil-cwd", "/proc/self/cwd")] {
        let bundle = climbing_bundle(&format!("/{name}"));
        symlink(target, bundle.path().join("rootfs").join(name)).unwrap();
        check_cwd(&daemon, name, &bundle).await;
    }
}

#[tokio::test]
async fn dot_dot_from_the_cwd_stays_in_the_root() {
    let daemon = Daemon::start().await;
    plant_marker(&daemon);
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "out");
    let bundle = climbing_bundle("/bin");
    daemon.run("climb", &bundle, Some(&output)).await;
    let mut client = daemon.client().await;
    let exit = wait_exit_status(&mut client, "climb").await;
    assert_eq!(exit.code, 0);
    let seen = fs::read_to_string(&output).unwrap();
    assert!(seen.starts_with("/bin\n"), "{seen}");
    // The climb ends at the container's own root.
    assert!(seen.lines().any(|line| line == "bin"), "{seen}");
    assert_sees_no_host_file(&seen);
}

#[tokio::test]
async fn a_relative_cwd_is_refused() {
    let daemon = Daemon::start().await;
    let bundle = climbing_bundle("bin");
    check_cwd(&daemon, "relative", &bundle).await;
}

/// The fd numbers a hook listed after printing `marker`.
fn listed_after(output: &str, marker: &str) -> BTreeSet<u32> {
    output
        .lines()
        .skip_while(|line| *line != marker)
        .skip(1)
        .map_while(|line| line.trim().parse().ok())
        .collect()
}

#[tokio::test]
async fn the_user_process_and_the_hooks_hold_only_stdio() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "out");
    let mut bundle = Bundle::busybox(&["sh", "-c", "echo user-process >&2; exec sleep 1000"]);
    // A marker, then a listing by ls of its own fds (exec'd by the shell with stdout on the
    // container's stderr): stdio and the one ls opens on the listed directory, nothing more.
    let hooks = |busybox: &str, marker: &str| {
        serde_json::json!([
            {"path": busybox, "args": ["sh", "-c", format!("echo {marker} >&2")]},
            {"path": busybox, "args": ["sh", "-c", "exec ls /proc/self/fd >&2"]},
        ])
    };
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({
            // Before pivot_root: the host's busybox; after it, the container's.
            "createContainer": hooks("/usr/bin/busybox", "create-hook"),
            "startContainer": hooks("/bin/busybox", "start-hook"),
        });
    });
    let pid = daemon.run("fds", &bundle, Some(&output)).await;
    // The start hooks ran before the user process, so their output is complete by now.
    let seen = wait_output(&output, "user-process").await;
    let stdio_and_listing = BTreeSet::from([0, 1, 2, 3]);
    assert_eq!(
        listed_after(&seen, "create-hook"),
        stdio_and_listing,
        "{seen}"
    );
    assert_eq!(
        listed_after(&seen, "start-hook"),
        stdio_and_listing,
        "{seen}"
    );
    assert_eq!(open_fds(pid), BTreeSet::from([0, 1, 2]));
    daemon.delete("fds", true).await.unwrap();
}

#[tokio::test]
async fn proc_and_sysfs_go_only_on_ordinary_directories() {
    let daemon = Daemon::start().await;
    for (name, mount_point, target) in [
        ("proc-to-root", "proc", "/"),
        ("proc-to-dir", "proc", "/elsewhere"),
        ("proc-dangling", "proc", "/nowhere"),
        ("sys-to-dir", "sys", "elsewhere"),
    ] {
        let bundle = Bundle::busybox(&["true"]);
        let rootfs = bundle.path().join("rootfs");
        fs::create_dir(rootfs.join("elsewhere")).unwrap();
        symlink(target, rootfs.join(mount_point)).unwrap();
        let status = daemon.create(name, &bundle, None).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name}: {status:?}");
        let kind = if mount_point == "sys" {
            "sysfs"
        } else {
            "proc"
        };
        assert!(
            status.message().contains(&format!(
                "filesystem {kind} must be mounted on ordinary directory"
            )),
            "{name}: {status:?}"
        );
        assert_nothing_left(&daemon, name);
        assert!(
            fs::read_dir(rootfs.join("elsewhere"))
                .unwrap()
                .next()
                .is_none(),
            "{name}: something was mounted or made through the symlink"
        );
        assert!(!Path::new(&rootfs.join("nowhere")).exists(), "{name}");
    }
}

/// CVE-2019-5736: until it executes the user process, the init is berthd's own code, which
/// a container could reach through /proc/<init>/exe. It runs from a sealed in-memory copy,
/// so what the container could open is that copy, never the binary on the host, and the
/// copy refuses writes.
#[tokio::test]
async fn a_created_init_runs_from_a_sealed_copy_not_the_host_binary() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["true"]);
    let created = daemon.create("sealed", &bundle, None).await.unwrap();
    let exe = format!("/proc/{}/exe", created.pid);
    let target = fs::read_link(&exe).unwrap();
    assert!(
        target.to_string_lossy().starts_with("/memfd:berthd-init"),
        "the created init runs {}",
        target.display()
    );
    let write = fs::OpenOptions::new()
        .append(true)
        .open(&exe)
        .and_then(|mut file| std::io::Write::write_all(&mut file, b"x"));
    assert!(write.is_err(), "the init's executable took a write");
    daemon.delete("sealed", false).await.unwrap();
}
