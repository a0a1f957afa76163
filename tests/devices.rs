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
