//! The CLI alone, without a daemon. Being an integration test of berth-cli, it also makes
//! `cargo test` at the workspace root build the `berth` binary, which the daemon's
//! integration tests in tests/ run (cargo hands those only their own package's binaries).
use std::process::Command;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

#[test]
fn version_and_help_need_no_daemon() {
    let version = Command::new(BERTH).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("berth {}\n", env!("CARGO_PKG_VERSION"))
    );
    let help = Command::new(BERTH).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("delete"));
}

#[test]
fn man_writes_berths_pages_only() {
    let dir = tempfile::tempdir().unwrap();
    let man = Command::new(BERTH)
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        man.status.success(),
        "{}",
        String::from_utf8_lossy(&man.stderr)
    );
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert!(pages.contains(&"berth.1".to_owned()), "{pages:?}");
    assert!(pages.contains(&"berth-delete.1".to_owned()), "{pages:?}");
    assert!(pages.iter().all(|page| page.ends_with(".1")), "{pages:?}");
}

#[test]
fn an_unreachable_daemon_gives_the_probe_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("none.sock");
    let health = Command::new(BERTH)
        .arg("--socket")
        .arg(&socket)
        .arg("health")
        .output()
        .unwrap();
    assert_eq!(health.status.code(), Some(2));
    let list = Command::new(BERTH)
        .arg("--socket")
        .arg(&socket)
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(list.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&list.stderr).contains("cannot connect"));
}

#[test]
fn spec_writes_runcs_defaults_and_never_overwrites() {
    let bundle = tempfile::tempdir().unwrap();
    let spec = || {
        Command::new(BERTH)
            .args(["spec", "--bundle"])
            .arg(bundle.path())
            .output()
            .unwrap()
    };
    let first = spec();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let path = bundle.path().join("config.json");
    let written = std::fs::read_to_string(&path).unwrap();
    let config: serde_json::Value = serde_json::from_str(&written).unwrap();
    assert_eq!(config["process"]["terminal"], true);
    assert_eq!(config["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(
        config["root"],
        serde_json::json!({"path": "rootfs", "readonly": true})
    );
    assert_eq!(config["hostname"], "runc");

    std::fs::write(&path, "edited").unwrap();
    let second = spec();
    assert_eq!(second.status.code(), Some(1));
    let message = String::from_utf8_lossy(&second.stderr);
    assert!(
        message.contains("config.json exists. Remove it first"),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "edited");
}
