//! The device allowlist on real containers: runc's default rules plus the config's, through
//! the v1 devices controller on v1 and hybrid hosts and through an eBPF program on cgroup
//! v2 (run it in tests/v2-view.sh too: there the program is the only gate).
mod common;

use common::*;

/// A container that makes /dev/probe (c 1:11, the kernel log) and opens it for writing
/// (reading it would need CAP_SYSLOG, whatever the cgroup says).
fn probing(allow: bool) -> Bundle {
    let mut bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "if head -c 1 /dev/null; then echo null-opened; fi; \
         if echo berth-device-test > /dev/probe; then echo probe-opened; else echo probe-refused; fi",
    ]);
    bundle.edit(|c| {
        c["linux"]["devices"] = serde_json::json!([
            {"path": "/dev/probe", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666}
        ]);
        if allow {
            c["linux"]["resources"]["devices"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}));
        }
    });
    bundle
}

#[tokio::test]
async fn a_node_outside_the_allowlist_exists_but_cannot_be_opened() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    for (id, allow, expected) in [
        ("denied", false, "probe-refused"),
        ("allowed", true, "probe-opened"),
    ] {
        let output = output_file(&out, id);
        let bundle = probing(allow);
        daemon.run(id, &bundle, Some(&output)).await;
        let mut client = daemon.client().await;
        let exit = wait_exit_status(&mut client, id).await;
        let seen = std::fs::read_to_string(&output).unwrap();
        assert_eq!(exit.code, 0, "{id}: {seen}");
        assert!(
            seen.contains("null-opened"),
            "{id}: a default device was refused: {seen}"
        );
        assert!(seen.contains(expected), "{id}: {seen}");
        if !allow {
            assert!(seen.contains("Operation not permitted"), "{id}: {seen}");
        }
        daemon.delete(id, false).await.unwrap();
        assert_nothing_left(&daemon, id);
    }
}

/// runc's fileMode, uid and gid: the node is made with exactly that mode (whatever the
/// umask) and owner.
#[tokio::test]
async fn a_node_gets_the_configured_mode_and_owner() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "out");
    let mut bundle = Bundle::busybox(&["ls", "-ln", "/dev/probe"]);
    bundle.edit(|c| {
        c["linux"]["devices"] = serde_json::json!([{
            "path": "/dev/probe", "type": "c", "major": 1, "minor": 11,
            "fileMode": 0o640, "uid": 1000, "gid": 1001
        }]);
    });
    daemon.run("c1", &bundle, Some(&output)).await;
    let mut client = daemon.client().await;
    let exit = wait_exit_status(&mut client, "c1").await;
    let seen = std::fs::read_to_string(&output).unwrap();
    assert_eq!(exit.code, 0, "{seen}");
    let fields: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(fields[0], "crw-r-----", "{seen}");
    assert_eq!(&fields[2..6], ["1000", "1001", "1,", "11"], "{seen}");
    daemon.delete("c1", false).await.unwrap();
    assert_nothing_left(&daemon, "c1");
}

/// A device node on the host for the length of a test, owned by the host uid the user
/// namespace maps its root to (so only the cgroup can refuse it).
struct HostNode(std::path::PathBuf);

impl HostNode {
    fn make(path: &str, major: u64, minor: u64, owner: u32) -> Self {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let _ = std::fs::remove_file(path);
        mknod(
            path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            makedev(major, minor),
        )
        .unwrap();
        nix::unistd::chown(path, Some(owner.into()), Some(owner.into())).unwrap();
        Self(path.into())
    }
}

impl Drop for HostNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// In a user namespace mknod is not allowed: the host's node at the same path is bound,
/// and the cgroup still decides whether it opens.
#[tokio::test]
async fn in_a_user_namespace_the_hosts_node_is_bound_and_the_allowlist_still_holds() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let path = format!("/dev/berth-test-probe-{}", std::process::id());
    let _node = HostNode::make(&path, 1, 11, 100000);
    for (id, allow, expected) in [
        ("denied", false, "probe-refused"),
        ("allowed", true, "probe-opened"),
    ] {
        let output = output_file(&out, id);
        let mut bundle = probing(allow);
        bundle.in_user_namespace(100000);
        let path = path.clone();
        bundle.edit(|c| {
            c["linux"]["devices"][0]["path"] = path.clone().into();
            let script = c["process"]["args"][2]
                .as_str()
                .unwrap()
                .replace("/dev/probe", &path);
            c["process"]["args"][2] = script.into();
        });
        daemon.run(id, &bundle, Some(&output)).await;
        let mut client = daemon.client().await;
        let exit = wait_exit_status(&mut client, id).await;
        let seen = std::fs::read_to_string(&output).unwrap();
        assert_eq!(exit.code, 0, "{id}: {seen}");
        assert!(seen.contains("null-opened"), "{id}: {seen}");
        assert!(seen.contains(expected), "{id}: {seen}");
        if !allow {
            assert!(seen.contains("Operation not permitted"), "{id}: {seen}");
        }
        daemon.delete(id, false).await.unwrap();
        assert_nothing_left(&daemon, id);
    }
}
