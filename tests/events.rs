//! WatchEvents: what orchestrators learn without polling.
mod common;

use std::time::Duration;

use berth::proto::{self, EventType};
use common::*;
use tonic::{transport::Endpoint, Streaming};

async fn subscribe(daemon: &Daemon, id: &str, types: Vec<EventType>) -> Streaming<proto::Event> {
    daemon
        .client()
        .await
        .watch_events(proto::WatchEventsRequest {
            id: id.into(),
            types: types.into_iter().map(i32::from).collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next event; every caller expects one, so the bound only ends a test that fails. It
/// is loose because some events wait on a workload (the OOM test fills 16 MB), which under
/// software emulation (tests/vm) on a busy host takes far longer than on hardware.
async fn next(stream: &mut Streaming<proto::Event>) -> proto::Event {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("an event within 60s")
        .unwrap()
        .expect("the stream is open")
}

#[tokio::test]
async fn a_subscriber_sees_the_whole_life_in_order_and_a_second_one_the_same() {
    let daemon = Daemon::start().await;
    let mut first = subscribe(&daemon, "", vec![]).await;
    let mut second = subscribe(&daemon, "", vec![]).await;
    let bundle = Bundle::busybox(&["sh", "-c", "exit 5"]);
    daemon.run("life", &bundle, None).await;
    wait_exit_status(&mut daemon.client().await, "life").await;
    daemon.delete("life", false).await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next(&mut first).await);
    }
    let kinds: Vec<EventType> = seen.iter().map(|e| e.r#type()).collect();
    assert_eq!(
        kinds,
        [
            EventType::Created,
            EventType::Started,
            EventType::Exited,
            EventType::Deleted
        ]
    );
    assert!(seen.iter().all(|e| e.id == "life" && e.timestamp.is_some()));
    assert!(
        seen.windows(2).all(|w| w[1].sequence == w[0].sequence + 1),
        "{seen:?}"
    );
    let exit = seen[2]
        .exit_status
        .as_ref()
        .expect("the exit status travels with the event");
    assert_eq!((exit.code, exit.signal), (5, 0));
    for expected in &seen {
        assert_eq!(&next(&mut second).await, expected);
    }
}

#[tokio::test]
async fn filters_by_container_and_by_type() {
    let daemon = Daemon::start().await;
    let mut only_b = subscribe(&daemon, "b", vec![]).await;
    let mut only_deleted = subscribe(&daemon, "", vec![EventType::Deleted]).await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    for id in ["a", "b"] {
        daemon.create(id, &bundle, None).await.unwrap();
    }
    for id in ["a", "b"] {
        daemon.delete(id, true).await.unwrap();
    }
    let b_events = [next(&mut only_b).await, next(&mut only_b).await];
    assert!(b_events.iter().all(|e| e.id == "b"));
    let kinds: Vec<_> = b_events.iter().map(|e| e.r#type()).collect();
    assert_eq!(kinds[0], EventType::Created);
    let deletions = [next(&mut only_deleted).await, next(&mut only_deleted).await];
    assert!(deletions.iter().all(|e| e.r#type() == EventType::Deleted));
    assert_eq!(
        [deletions[0].id.as_str(), deletions[1].id.as_str()],
        ["a", "b"]
    );
    let types = daemon.cli(&["events", "--type", "bogus"]);
    assert_eq!(types.status.code(), Some(1));
    assert!(
        stderr(&types).contains("unknown event type"),
        "{}",
        stderr(&types)
    );
}

#[tokio::test]
async fn a_subscriber_that_never_reads_delays_nothing_and_later_learns_it_lagged() {
    let daemon = Daemon::start_with(|_| {}, &["--event-backlog", "8"]).await;
    // A tiny HTTP/2 window, so the stream stops accepting events almost at once.
    let channel = Endpoint::from_shared(format!("unix:{}", daemon.socket.display()))
        .unwrap()
        .initial_stream_window_size(Some(256))
        .initial_connection_window_size(Some(256))
        .connect()
        .await
        .unwrap();
    let mut stalled = berth::proto::container_service_client::ContainerServiceClient::new(channel)
        .watch_events(proto::WatchEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("busy", &bundle, None).await;
    let mut client = daemon.client().await;
    for _ in 0..60 {
        client
            .pause_container(proto::PauseContainerRequest { id: "busy".into() })
            .await
            .unwrap();
        client
            .resume_container(proto::ResumeContainerRequest { id: "busy".into() })
            .await
            .unwrap();
    }
    // The daemon kept working for everyone else while this subscriber slept.
    daemon.delete("busy", true).await.unwrap();

    let mut lagged = None;
    for _ in 0..200 {
        let event = next(&mut stalled).await;
        if event.r#type() == EventType::Lagged {
            lagged = Some(event);
            break;
        }
    }
    let lagged = lagged.expect("a LAGGED event, never a silent gap");
    assert!(lagged.missed > 0);
    // After the notice the stream goes on with the newest events, up to the deletion.
    loop {
        if next(&mut stalled).await.r#type() == EventType::Deleted {
            break;
        }
    }
}

#[tokio::test]
async fn cancelled_streams_free_their_resources() {
    let daemon = Daemon::start().await;
    let channel = daemon.channel().await;
    let pid = daemon.pid();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let rss_kb = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let cycles = |count: usize| {
        let channel = channel.clone();
        async move {
            for _ in 0..count {
                let mut client =
                    berth::proto::container_service_client::ContainerServiceClient::new(
                        channel.clone(),
                    );
                drop(
                    client
                        .watch_events(proto::WatchEventsRequest::default())
                        .await
                        .unwrap(),
                );
            }
        }
    };
    // Warm up allocator pools and connection state before the baseline.
    cycles(50).await;
    let (fds_before, rss_before) = (fds(), rss_kb());
    cycles(1000).await;
    // Every subscription's task must end: each one logs when it leaves.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while daemon.logs().matches("event subscriber left").count() < 1050 {
        assert!(
            std::time::Instant::now() < deadline,
            "subscriber tasks outlived their streams"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (fds_after, rss_after) = (fds(), rss_kb());
    eprintln!("berthd fds {fds_before} -> {fds_after}, RSS {rss_before} kB -> {rss_after} kB");
    assert_eq!(fds_after, fds_before);
    assert!(
        rss_after < rss_before + 4096,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );
}

#[tokio::test]
async fn an_out_of_memory_kill_is_reported() {
    if skip_unless_controllers(&["memory"]) {
        return;
    }
    let daemon = Daemon::start().await;
    let mut events = subscribe(&daemon, "hungry", vec![EventType::Oom, EventType::Exited]).await;
    // 64 MB into a shell variable, in a 16 MB cgroup.
    let mut bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "x=$(head -c 64000000 /dev/zero | tr '\\0' a); sleep 1000",
    ]);
    bundle.edit(|c| c["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 16777216 }));
    daemon.run("hungry", &bundle, None).await;
    let oom = next(&mut events).await;
    assert_eq!((oom.r#type(), oom.id.as_str()), (EventType::Oom, "hungry"));
    daemon.delete("hungry", true).await.unwrap();
}

#[tokio::test]
async fn berth_events_prints_one_json_line_per_event() {
    let daemon = Daemon::start().await;
    let mut cli = std::process::Command::new(BERTH)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["events", "--json", "--id", "printed"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The daemon logs each subscription as it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !daemon.logs().contains("event subscriber joined") {
        assert!(
            std::time::Instant::now() < deadline,
            "berth events never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.create("printed", &bundle, None).await.unwrap();
    daemon.delete("printed", true).await.unwrap();
    let stdout = cli.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .take(3)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    let lines = tokio::time::timeout(Duration::from_secs(10), lines)
        .await
        .unwrap()
        .unwrap();
    cli.kill().unwrap();
    cli.wait().unwrap();
    let kinds: Vec<String> = lines
        .iter()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(kinds, ["created", "exited", "deleted"], "{lines:?}");
}
