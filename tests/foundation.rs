//! The daemon's skeleton: health, reflection, the registry loaded from the state root, id
//! validation, deletes of unknown ids, socket handling, shutdown and the CLI contract.
mod common;

use std::{os::unix::fs::PermissionsExt, process::Command, time::Duration};

use berth::proto::{self, ContainerStatus};
use common::*;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn health_reports_serving_for_the_daemon_and_the_container_service() {
    let daemon = Daemon::start().await;
    assert_eq!(daemon.health("").await.unwrap(), ServingStatus::Serving);
    assert_eq!(
        daemon.health("berth.v1.ContainerService").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        daemon.health("no.such.Service").await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn list_on_an_empty_root_is_empty() {
    let daemon = Daemon::start().await;
    let list = daemon
        .client()
        .await
        .list_containers(proto::ListContainersRequest::default())
        .await
        .unwrap();
    assert!(list.into_inner().containers.is_empty());
}

#[tokio::test]
async fn registry_is_loaded_from_the_state_root_at_start() {
    // A live process of this test stands in for a container's init: the daemon must find it
    // alive by pid and start time (and never signals it: nothing here deletes these).
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = sleeper.id() as i32;
    let start_time = berth::runtime::process::ProcStat::read(pid)
        .unwrap()
        .unwrap()
        .start_time;
    let init = format!(r#""init":{{"pid":{pid},"startTime":{start_time}}}"#);
    let daemon = Daemon::start_with(
        |root| {
            write_state(
                root,
                "running",
                &format!(r#"{init},"annotations":{{"k":"v"}}"#),
            );
            write_state(root, "created", &init);
            // A created container's init waits on its exec FIFO.
            nix::unistd::mkfifo(
                &root.join("created/exec.fifo"),
                nix::sys::stat::Mode::from_bits_truncate(0o622),
            )
            .unwrap();
            // Same pid, other start time: a reused pid, so the container is stopped.
            write_state(
                root,
                "reused",
                &format!(r#""init":{{"pid":{pid},"startTime":1}}"#),
            );
            write_state(
                root,
                "stopped",
                r#""exit":{"code":3,"signal":0,"exitedAt":"2026-01-02T03:04:06Z"}"#,
            );
            std::fs::create_dir(root.join("broken")).unwrap();
            std::fs::write(
                root.join("broken/state.json"),
                "{\"schemaVersion\": 1, \"id\": tru",
            )
            .unwrap();
            std::fs::create_dir(root.join("leftover")).unwrap();
            std::fs::create_dir(root.join("not an id")).unwrap();
        },
        &[],
    )
    .await;
    let containers = daemon.list().await;
    let summary: Vec<_> = containers
        .iter()
        .map(|c| (c.id.as_str(), c.status()))
        .collect();
    assert_eq!(
        summary,
        [
            ("broken", ContainerStatus::Unknown),
            ("created", ContainerStatus::Created),
            ("reused", ContainerStatus::Stopped),
            ("running", ContainerStatus::Running),
            ("stopped", ContainerStatus::Stopped),
        ]
    );
    let running = &containers[3];
    assert_eq!(running.pid, pid as u32);
    assert_eq!(running.bundle, "/bundles/running");
    assert_eq!(running.annotations.get("k").map(String::as_str), Some("v"));
    assert_eq!(running.created_at.as_ref().unwrap().seconds, 1767323045);
    assert!(
        containers[0].status_reason.contains("state.json"),
        "{}",
        containers[0].status_reason
    );
    assert_eq!(containers[4].exit_status.as_ref().unwrap().code, 3);

    let got = daemon
        .client()
        .await
        .get_container(proto::GetContainerRequest {
            id: "running".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .container
        .unwrap();
    assert_eq!(&got, running);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

const INVALID_IDS: &[&str] = &[
    "",
    ".",
    "..",
    "a/b",
    "../victim",
    "/etc",
    "a b",
    "a\0b",
    "é",
    "x,y",
    "a\nb",
];

#[tokio::test]
async fn d1_invalid_ids_are_rejected_by_every_rpc_before_any_file_is_touched() {
    let daemon = Daemon::start().await;
    // A directory next to the root that "../victim" would name if it were used as a path.
    let victim = daemon.dir.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    let long = "x".repeat(256);
    let mut client = daemon.client().await;
    for id in INVALID_IDS.iter().copied().chain([long.as_str()]) {
        let id = id.to_string();
        let codes = [
            client
                .create_container(proto::CreateContainerRequest {
                    id: id.clone(),
                    bundle: "/nonexistent".into(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
            client
                .start_container(proto::StartContainerRequest { id: id.clone() })
                .await
                .unwrap_err(),
            client
                .kill_container(proto::KillContainerRequest {
                    id: id.clone(),
                    signal: 9,
                    all: false,
                })
                .await
                .unwrap_err(),
            client
                .pause_container(proto::PauseContainerRequest { id: id.clone() })
                .await
                .unwrap_err(),
            client
                .resume_container(proto::ResumeContainerRequest { id: id.clone() })
                .await
                .unwrap_err(),
            client
                .delete_container(proto::DeleteContainerRequest {
                    id: id.clone(),
                    force: false,
                })
                .await
                .unwrap_err(),
            client
                .delete_container(proto::DeleteContainerRequest {
                    id: id.clone(),
                    force: true,
                })
                .await
                .unwrap_err(),
            client
                .get_container(proto::GetContainerRequest { id: id.clone() })
                .await
                .unwrap_err(),
        ];
        for status in codes {
            assert_eq!(status.code(), Code::InvalidArgument, "{id:?}: {status:?}");
            assert!(
                status.message().contains("invalid container ID format"),
                "{}",
                status.message()
            );
        }
        // WatchEvents takes an optional id filter, validated the same way when given.
        if !id.is_empty() {
            let status = client
                .watch_events(proto::WatchEventsRequest {
                    id: id.clone(),
                    types: vec![],
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{id:?}");
        }
    }
    assert!(victim.is_dir(), "an invalid id reached the file system");
}

#[tokio::test]
async fn d4_leftover_dir_removed_then_not_found() {
    let daemon = Daemon::start_with(
        |root| {
            std::fs::create_dir_all(root.join("half-made/sub")).unwrap();
            std::fs::write(root.join("half-made/sub/file"), "x").unwrap();
        },
        &[],
    )
    .await;
    let status = daemon.delete("half-made", false).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("container does not exist"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("half-made"),
        "{}",
        status.message()
    );
    assert!(!daemon.root.join("half-made").exists());
}

#[tokio::test]
async fn d4_force_removes_leftover_dir_and_succeeds() {
    let daemon = Daemon::start_with(
        |root| std::fs::create_dir(root.join("half-made")).unwrap(),
        &[],
    )
    .await;
    for id in ["half-made", "never-existed"] {
        let response = daemon.delete(id, true).await.unwrap();
        assert_eq!(response.container, None);
        assert!(response.warnings.is_empty());
    }
    assert!(!daemon.root.join("half-made").exists());
}

#[tokio::test]
async fn d18_deleting_a_stopped_container_removes_its_state_and_emits_deleted() {
    let daemon = Daemon::start_with(|root| write_state(root, "old", ""), &[]).await;
    let mut client = daemon.client().await;
    let mut events = client
        .watch_events(proto::WatchEventsRequest {
            id: "old".into(),
            types: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let response = client
        .delete_container(proto::DeleteContainerRequest {
            id: "old".into(),
            force: false,
        })
        .await
        .unwrap()
        .into_inner();
    let last = response.container.unwrap();
    assert_eq!(
        (last.id.as_str(), last.status()),
        ("old", ContainerStatus::Stopped)
    );
    assert!(!daemon.root.join("old").exists());
    let event = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("deleted event within 5s")
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.r#type(), event.id.as_str()),
        (proto::EventType::Deleted, "old")
    );
    let status = client
        .get_container(proto::GetContainerRequest { id: "old".into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn d5_unreadable_state_is_not_deleted_without_force() {
    let daemon = Daemon::start_with(
        |root| {
            std::fs::create_dir(root.join("broken")).unwrap();
            std::fs::write(root.join("broken/state.json"), "garbage").unwrap();
        },
        &[],
    )
    .await;
    let status = daemon.delete("broken", false).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        status.message().contains("broken/state.json"),
        "{}",
        status.message()
    );
    assert!(daemon.root.join("broken/state.json").exists());
}

#[tokio::test]
async fn cli_exit_codes_and_messages() {
    let daemon = Daemon::start_with(|root| write_state(root, "old", ""), &[]).await;

    let missing = daemon.cli(&["delete", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("container does not exist: nope"),
        "{}",
        stderr(&missing)
    );
    assert!(stdout(&missing).is_empty());

    let forced = daemon.cli(&["delete", "--force", "nope"]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert!(stdout(&forced).is_empty() && stderr(&forced).is_empty());

    let invalid = daemon.cli(&["state", "a/b"]);
    assert_eq!(invalid.status.code(), Some(1));
    assert!(
        stderr(&invalid).contains("invalid container ID format"),
        "{}",
        stderr(&invalid)
    );

    let state = daemon.cli(&["state", "old"]);
    assert_eq!(state.status.code(), Some(0), "{}", stderr(&state));
    let json: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(json["id"], "old");
    assert_eq!(json["status"], "stopped");
    assert_eq!(json["bundle"], "/bundles/old");

    let table = stdout(&daemon.cli(&["list"]));
    let lines: Vec<_> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("old ") && lines[1].contains("stopped"),
        "{table}"
    );
    let listed: serde_json::Value =
        serde_json::from_slice(&daemon.cli(&["list", "--json"]).stdout).unwrap();
    assert_eq!(stdout(&daemon.cli(&["list", "--quiet"])), "old\n");
    assert_eq!(listed[0]["id"], "old");

    let deleted = daemon.cli(&["delete", "old"]);
    assert_eq!(deleted.status.code(), Some(0), "{}", stderr(&deleted));
    assert!(stdout(&deleted).is_empty());

    assert_eq!(daemon.cli(&["health"]).status.code(), Some(0));
    let unknown_service = daemon.cli(&["health", "--service", "no.such.Service"]);
    assert_eq!(unknown_service.status.code(), Some(3));
    let unreachable = Command::new(berth_cli())
        .args(["--socket", "/nonexistent/berth.sock", "health"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
    let unreachable = Command::new(berth_cli())
        .args(["--socket", "/nonexistent/berth.sock", "list"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        stderr(&unreachable).contains("cannot connect"),
        "{}",
        stderr(&unreachable)
    );

    let env_socket = Command::new(berth_cli())
        .arg("list")
        .env("BERTH_SOCKET", &daemon.socket)
        .output()
        .unwrap();
    assert_eq!(env_socket.status.code(), Some(0), "{}", stderr(&env_socket));
}

#[tokio::test]
async fn python_grpcio_client_works_through_reflection() {
    let daemon = Daemon::start_with(|root| write_state(root, "old", ""), &[]).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/reflection_client.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python client failed:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let out = stdout(&output);
    assert!(out.contains("services: berth.v1.ContainerService"), "{out}");
    assert!(out.contains("grpc.health.v1.Health"), "{out}");
    assert!(out.contains("grpc.reflection.v1.ServerReflection"), "{out}");
    assert!(
        out.contains("grpc.reflection.v1alpha.ServerReflection"),
        "{out}"
    );
    assert!(out.contains("containers: old"), "{out}");
    assert!(out.contains("health: SERVING"), "{out}");
}

#[tokio::test]
async fn socket_is_private_and_a_second_daemon_on_a_live_socket_refuses_to_start() {
    let daemon = Daemon::start().await;
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode & !0o660, 0, "socket mode {mode:o}");

    let other_root = daemon.dir.path().join("other-root");
    let second = Command::new(BERTHD)
        .arg("--root")
        .arg(&other_root)
        .arg("--socket")
        .arg(&daemon.socket)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("another berthd is serving on"),
        "{}",
        stderr(&second)
    );
    assert!(!other_root.exists(), "the refused daemon touched its root");

    let same_root = Command::new(BERTHD)
        .arg("--root")
        .arg(&daemon.root)
        .arg("--socket")
        .arg(daemon.dir.path().join("run/other.sock"))
        .output()
        .unwrap();
    assert_eq!(same_root.status.code(), Some(1));
    assert!(
        stderr(&same_root).contains("another berthd uses the state root"),
        "{}",
        stderr(&same_root)
    );
    assert_eq!(daemon.health("").await.unwrap(), ServingStatus::Serving);
}

#[tokio::test]
async fn world_writable_socket_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let open_dir = dir.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = Command::new(BERTHD)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--socket")
        .arg(open_dir.join("berth.sock"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("world-writable"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn sigterm_stops_serving_and_removes_the_socket_and_a_stale_socket_is_replaced() {
    let mut daemon = Daemon::start().await;
    let status = daemon.terminate().await;
    assert!(
        status.success(),
        "berthd exited with {status}:\n{}",
        daemon.logs()
    );
    assert!(
        !daemon.logs().contains("did not finish in time"),
        "{}",
        daemon.logs()
    );
    assert!(!daemon.socket.exists());

    // A socket file nobody listens on, as a crashed daemon leaves it.
    drop(std::os::unix::net::UnixListener::bind(&daemon.socket).unwrap());
    assert!(daemon.socket.exists());
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    assert!(daemon.logs().contains("replacing stale socket"));
}

#[tokio::test]
async fn sigterm_ends_open_event_streams() {
    let mut daemon = Daemon::start().await;
    let mut events = daemon
        .client()
        .await
        .watch_events(proto::WatchEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let status = daemon.terminate().await;
    assert!(status.success(), "{}", daemon.logs());
    assert!(
        !daemon.logs().contains("did not finish in time"),
        "shutdown waited for the stream:\n{}",
        daemon.logs()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("stream ended");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
}

#[tokio::test]
async fn health_watchers_see_not_serving_at_shutdown_and_do_not_hold_it_up() {
    let mut daemon = Daemon::start().await;
    let channel = daemon.channel().await;
    let mut watch = tonic_health::pb::health_client::HealthClient::new(channel)
        .watch(tonic_health::pb::HealthCheckRequest {
            service: "berth.v1.ContainerService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let status = daemon.terminate().await;
    assert!(status.success(), "{}", daemon.logs());
    assert!(
        !daemon.logs().contains("did not finish in time"),
        "{}",
        daemon.logs()
    );
    let mut last = first.status();
    while let Ok(Some(update)) = watch.message().await {
        last = update.status();
    }
    assert_eq!(last, ServingStatus::NotServing);
}

#[tokio::test]
async fn systemd_is_told_when_berthd_is_ready_and_when_it_stops() {
    // A stand-in for systemd's notification socket.
    let listen_dir = tempfile::tempdir().unwrap();
    let notify = listen_dir.path().join("notify.sock");
    let systemd = tokio::net::UnixDatagram::bind(&notify).unwrap();
    let notify_env = notify.to_str().unwrap().to_owned();
    let mut daemon = Daemon::start().await;
    daemon.crash();
    daemon.spawn_with_env(&[], &[("NOTIFY_SOCKET", notify_env.as_str())]);
    let mut message = [0u8; 64];
    let received = tokio::time::timeout(Duration::from_secs(20), systemd.recv(&mut message))
        .await
        .expect("READY=1 within 20 s")
        .unwrap();
    assert_eq!(&message[..received], b"READY=1");
    // READY=1 comes once the daemon serves.
    assert_eq!(daemon.health("").await.unwrap(), ServingStatus::Serving);
    assert!(daemon.terminate().await.success());
    let received = tokio::time::timeout(Duration::from_secs(5), systemd.recv(&mut message))
        .await
        .expect("STOPPING=1 before the daemon exited")
        .unwrap();
    assert_eq!(&message[..received], b"STOPPING=1");
}

#[test]
fn completions_and_man_pages_come_from_the_clap_definitions() {
    berth_cli_built();
    for shell in ["bash", "zsh", "fish"] {
        let script = Command::new(berth_cli())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(script.status.success(), "{shell}: {}", stderr(&script));
        let text = stdout(&script);
        assert!(
            text.contains("delete") && text.contains("--force"),
            "{shell}: {text}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let man = Command::new(berth_cli())
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(man.status.success(), "{}", stderr(&man));
    let page = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert!(page("berth.1").contains("berth"));
    assert!(page("berth-delete.1").contains("force"));
    // berthd's page is berthd's to write: the CLI links no daemon code.
    assert!(!dir.path().join("berthd.8").exists());
    let man = Command::new(BERTHD)
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(man.status.success(), "{}", stderr(&man));
    assert!(
        page("berthd.8").contains("kill\\-wait\\-rounds"),
        "{}",
        page("berthd.8")
    );
}

#[tokio::test]
async fn a_config_file_sets_flags_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("berthd.toml");
    std::fs::write(
        &file,
        "# a test config\nmax-message-size = 1000\ncgroup-parent = \"from-the-file\"\nhealth-open = false\n",
    )
    .unwrap();
    let config = file.to_str().unwrap();
    // The helper passes --cgroup-parent on the command line: it wins over the file.
    let daemon = Daemon::start_with(|_| {}, &["--config", config]).await;
    let status = daemon
        .client()
        .await
        .create_container(proto::CreateContainerRequest {
            id: "x".into(),
            bundle: format!("/{}", "b".repeat(2000)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::OutOfRange,
        "the file's max-message-size applies: {status:?}"
    );
    let bundle = Bundle::busybox(&["true"]);
    daemon.create("wins", &bundle, None).await.unwrap();
    assert!(daemon.container_cgroups("wins").iter().all(|d| d.exists()));
    assert!(cgroup_dirs("from-the-file/wins")
        .iter()
        .all(|d| !d.exists()));
    daemon.delete("wins", true).await.unwrap();

    let start = |content: &str| {
        std::fs::write(&file, content).unwrap();
        Command::new(BERTHD)
            .args(["--config", config, "--root"])
            .arg(dir.path().join("root"))
            .arg("--socket")
            .arg(dir.path().join("run/berth.sock"))
            .output()
            .unwrap()
    };
    let unknown = start("log-level = \"info\"\n\nbogus = 1\n");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("line 3: unknown key \"bogus\""),
        "{}",
        stderr(&unknown)
    );
    let bad = start("kill-wait-rounds = \"many\"\n");
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("line 1: bad value for \"kill-wait-rounds\""),
        "{}",
        stderr(&bad)
    );

    // The documented defaults are themselves a valid config, and deploy/berthd.toml is them.
    let defaults = Command::new(BERTHD)
        .args(["config", "default"])
        .output()
        .unwrap();
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/berthd.toml"))
            .unwrap();
    assert_eq!(
        stdout(&defaults),
        committed,
        "deploy/berthd.toml is out of date"
    );
    std::fs::write(&file, stdout(&defaults)).unwrap();
    let mut with_defaults = Daemon::start_with(|_| {}, &["--config", config]).await;
    assert_eq!(
        with_defaults.health("").await.unwrap(),
        ServingStatus::Serving
    );
    assert!(with_defaults.terminate().await.success());
}

#[tokio::test]
async fn metrics_count_calls_deletes_and_containers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let daemon = Daemon::start_with(
        |root| write_state(root, "old", ""),
        &["--metrics-listen", &listen],
    )
    .await;
    daemon.get("missing").await.unwrap_err();
    daemon.delete("old", false).await.unwrap();
    let scrape = || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&listen).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let text = scrape();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    for line in [
        "berth_calls_total{method=\"GetContainer\",code=\"NotFound\"} 1",
        "berth_calls_total{method=\"DeleteContainer\",code=\"Ok\"} 1",
        "berth_delete_seconds_count{path=\"stopped\"} 1",
        "berth_containers{status=\"stopped\"} 0",
        "berth_kill_wait_timeouts_total 0",
        "berth_teardown_warnings_total 0",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}
