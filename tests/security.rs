//! Who may call, TCP with TLS, limits, and state that cannot be trusted or written.
mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
};

use berth::proto::{self, ContainerStatus};
use common::*;
use tonic::Code;

const NOBODY: &str = "65534";

/// Runs the CLI as uid/gid 65534 (nobody), with no supplementary groups.
fn cli_as_nobody(daemon: &Daemon, extra_groups: &str, args: &[&str]) -> Output {
    let groups = if extra_groups.is_empty() {
        "--clear-groups".to_owned()
    } else {
        format!("--groups={extra_groups}")
    };
    Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            &groups,
            berth_cli(),
            "--socket",
        ])
        .arg(&daemon.socket)
        .args(args)
        .output()
        .unwrap()
}

/// The daemon's temp dir is private; the socket must be reachable for these tests.
fn open_path_to_socket(daemon: &Daemon) {
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
}

#[tokio::test]
async fn callers_are_authorised_by_their_credentials() {
    let daemon = Daemon::start_with(|_| {}, &["--allow-uid", "4242", "--health-open"]).await;
    open_path_to_socket(&daemon);
    let denied = cli_as_nobody(&daemon, "", &["list"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        stderr(&denied)
            .contains("uid 65534 may not call /berth.v1.ContainerService/ListContainers"),
        "{}",
        stderr(&denied)
    );
    let audit = daemon.logs();
    assert!(
        audit.contains("berth::audit")
            && audit.contains("65534")
            && audit.contains("ListContainers"),
        "{audit}"
    );
    // Health is open to all with --health-open.
    assert_eq!(
        cli_as_nobody(&daemon, "", &["health"]).status.code(),
        Some(0)
    );
    // Root always may.
    assert_eq!(daemon.cli(&["list"]).status.code(), Some(0));
}

#[tokio::test]
async fn listed_uids_and_groups_may_call_and_health_is_closed_by_default() {
    let by_uid = Daemon::start_with(|_| {}, &["--allow-uid", NOBODY]).await;
    open_path_to_socket(&by_uid);
    let allowed = cli_as_nobody(&by_uid, "", &["list"]);
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));

    let by_group = Daemon::start_with(|_| {}, &["--allow-gid", "4243"]).await;
    open_path_to_socket(&by_group);
    let meta = std::fs::metadata(&by_group.socket).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.gid(), meta.mode() & 0o777),
        (4243, 0o660),
        "the listed group owns the socket"
    );
    let member = cli_as_nobody(&by_group, "4243", &["list"]);
    assert_eq!(member.status.code(), Some(0), "{}", stderr(&member));
    // Not a member: the socket itself keeps it out.
    let outsider = cli_as_nobody(&by_group, "", &["health"]);
    assert_eq!(outsider.status.code(), Some(2), "{}", stderr(&outsider));
}

/// A throwaway CA, server and client certificates made with openssl.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=berth test CA",
        ]);
        for (name, ext) in [
            ("server", "subjectAltName=IP:127.0.0.1"),
            ("client", "extendedKeyUsage=clientAuth"),
        ] {
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={name}"),
            ]);
            std::fs::write(dir.path().join(format!("{name}.ext")), ext).unwrap();
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "1",
                "-extfile",
                &format!("{name}.ext"),
            ]);
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cli_over_tcp(port: u16, pki: &Pki, client_cert: bool, args: &[&str]) -> Output {
    let mut command = Command::new(berth_cli());
    command.args([
        "--address",
        &format!("https://127.0.0.1:{port}"),
        "--tls-ca",
        &pki.path("ca.pem"),
    ]);
    if client_cert {
        command.args([
            "--tls-cert",
            &pki.path("client.pem"),
            "--tls-key",
            &pki.path("client.key"),
        ]);
    }
    command.args(args).output().unwrap()
}

#[tokio::test]
async fn tcp_is_served_with_tls_and_client_certificates() {
    let pki = Pki::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem"),
    );
    let daemon = Daemon::start_with(
        |_| {},
        &[
            "--listen",
            &listen,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &ca,
        ],
    )
    .await;
    let listed = cli_over_tcp(port, &pki, true, &["list"]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    assert_eq!(
        cli_over_tcp(port, &pki, true, &["health"]).status.code(),
        Some(0)
    );
    let anonymous = cli_over_tcp(port, &pki, false, &["list"]);
    assert_eq!(
        anonymous.status.code(),
        Some(1),
        "a client without a certificate got in"
    );
    drop(daemon);

    // Without client verification only when asked for explicitly.
    let refused = Command::new(BERTHD)
        .arg("--root")
        .arg(pki.dir.path().join("refused-root"))
        .arg("--socket")
        .arg(pki.dir.path().join("refused.sock"))
        .args(["--listen", &listen, "--tls-cert", &cert, "--tls-key", &key])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        !pki.dir.path().join("refused-root").exists(),
        "a refused daemon made its root"
    );
    assert!(
        stderr(&refused).contains("--tls-client-ca"),
        "{}",
        stderr(&refused)
    );
    let open = Daemon::start_with(
        |_| {},
        &[
            "--listen",
            &listen,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-no-client-auth",
        ],
    )
    .await;
    let anonymous = cli_over_tcp(port, &pki, false, &["list"]);
    assert_eq!(anonymous.status.code(), Some(0), "{}", stderr(&anonymous));
    drop(open);

    let plain = Command::new(BERTHD)
        .arg("--root")
        .arg(pki.dir.path().join("refused-root"))
        .arg("--socket")
        .arg(pki.dir.path().join("plain.sock"))
        .args(["--listen", &listen])
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(1));
    assert!(
        stderr(&plain).contains("does not serve TCP without TLS"),
        "{}",
        stderr(&plain)
    );
}

#[tokio::test]
async fn huge_messages_and_connection_floods_do_not_take_the_daemon_down() {
    let daemon = Daemon::start().await;
    let huge = "x".repeat(100 * 1024 * 1024);
    let status = daemon
        .client()
        .await
        .create_container(proto::CreateContainerRequest {
            id: "big".into(),
            bundle: huge,
            ..Default::default()
        })
        .await
        .unwrap_err();
    // tonic's answer to a message past the limit.
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );

    let mut flood = Vec::new();
    for _ in 0..1000 {
        flood.push(std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap());
    }
    assert_eq!(
        daemon.health("").await.unwrap(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let listed = daemon.cli(&["list"]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    drop(flood);
    assert!(!daemon.root.join("big").exists());
}

#[tokio::test]
async fn corrupted_state_files_are_unknown_with_a_reason_and_delete_follows_d5() {
    let daemon = Daemon::start_with(
        |root| {
            write_state(root, "truncated", "");
            let full = std::fs::read_to_string(root.join("truncated/state.json")).unwrap();
            std::fs::write(root.join("truncated/state.json"), &full[..full.len() / 2]).unwrap();
            std::fs::create_dir(root.join("garbage")).unwrap();
            std::fs::write(root.join("garbage/state.json"), b"\x00\xff\xfe binary junk").unwrap();
            write_state(
                root,
                "wrong-types",
                r#""init":{"pid":"one","startTime":[]}"#,
            );
        },
        &[],
    )
    .await;
    for id in ["truncated", "garbage", "wrong-types"] {
        let container = daemon.get(id).await.unwrap();
        assert_eq!(container.status(), ContainerStatus::Unknown, "{id}");
        assert!(
            container.status_reason.contains("state.json"),
            "{id}: {}",
            container.status_reason
        );
        let refused = daemon.delete(id, false).await.unwrap_err();
        assert_eq!(refused.code(), Code::Internal, "{id}");
        assert!(
            daemon.root.join(id).join("state.json").exists(),
            "{id}: changed without force"
        );
        let forced = daemon.delete(id, true).await.unwrap();
        assert_eq!(forced.warnings.len(), 1, "{id}");
        assert!(!daemon.root.join(id).exists(), "{id}");
    }
}

/// A small tmpfs as the state root, unmounted when dropped.
struct TmpfsRoot(std::path::PathBuf);

impl TmpfsRoot {
    fn mount(path: &Path, size: &str) -> Self {
        use nix::mount::{mount, MsFlags};
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::empty(),
            Some(format!("size={size}").as_str()),
        )
        .unwrap();
        Self(path.to_owned())
    }

    fn remount(&self, flags: nix::mount::MsFlags) {
        nix::mount::mount(
            None::<&str>,
            &self.0,
            None::<&str>,
            nix::mount::MsFlags::MS_REMOUNT | flags,
            None::<&str>,
        )
        .unwrap();
    }
}

impl Drop for TmpfsRoot {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn a_read_only_or_full_state_root_fails_creates_cleanly_and_keeps_containers_manageable() {
    let mut root = None;
    let daemon = Daemon::start_with(|path| root = Some(TmpfsRoot::mount(path, "1m")), &[]).await;
    let root = root.unwrap();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let pid = daemon.run("kept", &bundle, None).await;
    // Until it execs, the init holds the exec FIFO open for writing, which blocks a
    // read-only remount.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        != "sleep"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never exec'd"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    root.remount(nix::mount::MsFlags::MS_RDONLY);
    let status = daemon.create("refused", &bundle, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        status.message().contains("Read-only file system"),
        "{}",
        status.message()
    );
    assert!(daemon
        .container_cgroups("refused")
        .iter()
        .all(|d| !d.exists()));
    let mut client = daemon.client().await;
    client
        .pause_container(proto::PauseContainerRequest { id: "kept".into() })
        .await
        .unwrap();
    client
        .resume_container(proto::ResumeContainerRequest { id: "kept".into() })
        .await
        .unwrap();
    assert_eq!(
        daemon.get("kept").await.unwrap().status(),
        ContainerStatus::Running
    );

    root.remount(nix::mount::MsFlags::empty());
    // Fill the root to the last byte.
    let filler = daemon.root.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    while std::io::Write::write_all(&mut file, &[0]).is_ok() {}
    drop(file);
    let status = daemon.create("full", &bundle, None).await.unwrap_err();
    assert!(
        status.message().contains("No space left on device"),
        "{}",
        status.message()
    );
    assert!(!daemon.root.join("full").exists());
    assert!(daemon.container_cgroups("full").iter().all(|d| !d.exists()));
    std::fs::remove_file(&filler).unwrap();

    daemon.delete("kept", true).await.unwrap();
    wait_gone(&[pid]).await;
    drop(daemon);
    drop(root);
}

#[tokio::test]
async fn a_call_past_its_timeout_does_not_abandon_the_change_half_way() {
    let daemon = Daemon::start_with(|_| {}, &["--rpc-timeout", "300ms"]).await;
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    // A slow createRuntime hook keeps the create busy well past the call's timeout.
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({ "createRuntime": [
            { "path": "/usr/bin/busybox", "args": ["sleep", "1"] }
        ]});
    });
    let status = daemon.create("slow", &bundle, None).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    // The create went on to its end and the container is whole (until then, it does not
    // exist for callers).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let created = loop {
        match daemon.get("slow").await {
            Ok(container) => break container,
            Err(status) => assert_eq!(status.code(), Code::NotFound),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the create never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(created.status(), ContainerStatus::Created);
    assert!(created.pid > 0);
    daemon.delete("slow", true).await.unwrap();
    assert!(daemon.container_cgroups("slow").iter().all(|d| !d.exists()));
    assert!(!daemon.root.join("slow").exists());
}

#[tokio::test]
async fn a_plaintext_health_port_answers_probes_and_nothing_else() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let daemon = Daemon::start_with(|_| {}, &["--health-listen", &listen]).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{listen}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    let refused = proto::container_service_client::ContainerServiceClient::new(channel)
        .list_containers(proto::ListContainersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::Unimplemented,
        "the API is not on the probe port"
    );
    drop(daemon);
}

/// Set in the environment of the test binary when it runs again as the raw peer below.
const HUGE_FRAME_PEER: &str = "BERTH_TEST_HUGE_FRAME_PEER";

/// A raw HTTP/2 peer: the preface, SETTINGS, a HEADERS frame for a ContainerService call,
/// then a DATA frame declaring 2^24-1 bytes (the largest length HTTP/2 can express, 16 MiB),
/// whose payload it streams until the write fails. It reports how much it sent and whether
/// berthd closed the connection.
fn huge_frame_peer(socket: &Path) -> String {
    use std::io::{Read, Write};
    fn frame(kind: u8, flags: u8, stream: u32, length: usize, payload: &[u8]) -> Vec<u8> {
        let mut frame = (length as u32).to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[kind, flags]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }
    // Literal header fields without indexing, no Huffman.
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/berth.v1.ContainerService/ListContainers"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.extend_from_slice(&[0, name.len() as u8]);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let total = 0xFF_FFFF;
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame(0x4, 0, 0, 0, &[]));
    start.extend(frame(0x1, 0x4, 1, block.len(), &block));
    start.extend(frame(0x0, 0, 1, total, &[]));
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut report = String::new();
    let mut sent = 0;
    let chunk = vec![0u8; 65536];
    match stream.write_all(&start) {
        Err(e) => report += &format!("write failed: {e}\n"),
        Ok(()) => {
            while sent < total {
                match stream.write(&chunk[..chunk.len().min(total - sent)]) {
                    Ok(n) => sent += n,
                    Err(e) => {
                        report += &format!("write failed: {e}\n");
                        break;
                    }
                }
            }
        }
    }
    report += &format!("sent {sent} of {total}\n");
    let mut buf = vec![0u8; 65536];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    report += if closed { "closed\n" } else { "still open\n" };
    report
}

/// VmRSS or VmHWM (peak) of a process, in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[tokio::test]
async fn a_peer_that_is_not_allowed_cannot_make_berthd_buffer_a_huge_frame() {
    if let Some(socket) = std::env::var_os(HUGE_FRAME_PEER) {
        // This is the test binary run again as uid 65534: be the peer.
        println!("PEER<{}>PEER", huge_frame_peer(Path::new(&socket)));
        return;
    }
    let daemon = Daemon::start_with(|_| {}, &["--allow-uid", "4242"]).await;
    open_path_to_socket(&daemon);
    let pid = daemon.pid();
    // Warm up: the connection machinery of a first call is not what is measured.
    assert_eq!(daemon.cli(&["list"]).status.code(), Some(0));
    // Peak RSS from here on: a buffer freed before the peer ends still counts.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = memory_kib(pid, "VmRSS");
    // The peer is this test binary again, as uid 65534 (SO_PEERCRED is taken at connect).
    let peer = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_peer_that_is_not_allowed_cannot_make_berthd_buffer_a_huge_frame",
            "--nocapture",
        ])
        .env(HUGE_FRAME_PEER, &daemon.socket)
        .output()
        .unwrap();
    let peak = memory_kib(pid, "VmHWM");
    let after = memory_kib(pid, "VmRSS");
    let out = stdout(&peer);
    let out = out
        .split_once("PEER<")
        .and_then(|(_, rest)| rest.split_once(">PEER"))
        .map_or(out.clone(), |(report, _)| report.to_owned());
    eprintln!("berthd RSS before {before} KiB, peak {peak} KiB, after {after} KiB; peer: {out}");
    assert!(peer.status.success(), "{out}{}", stderr(&peer));
    assert!(
        peak.saturating_sub(before) < 1024,
        "berthd's RSS grew from {before} KiB to a peak of {peak} KiB; peer: {out}"
    );
    assert!(out.contains("closed"), "berthd kept the connection: {out}");
    assert!(
        !out.contains(&format!("sent {} of", 0xFF_FFFF)),
        "berthd read the whole frame before closing: {out}"
    );
    assert!(
        daemon
            .logs()
            .contains("over the maximum frame size of 16384"),
        "berthd does not say why it closed:\n{}",
        daemon.logs()
    );
    // The daemon still serves.
    assert_eq!(daemon.cli(&["list"]).status.code(), Some(0));
}
