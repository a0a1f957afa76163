//! WatchEvents: what orchestrators learn without polling.
mod common;

use std::time::Duration;

use berth::proto::{self, container_service_client::ContainerServiceClient, EventType};
use common::*;
use tonic::{
    transport::{Channel, Endpoint},
    Code, Streaming,
};

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

/// A subscription resuming after event `after` of `instance`, of every container and type
/// unless `types` narrows it.
async fn resume(
    daemon: &Daemon,
    after: u64,
    instance: &str,
    types: Vec<EventType>,
) -> Result<Streaming<proto::Event>, tonic::Status> {
    Ok(daemon
        .client()
        .await
        .watch_events(proto::WatchEventsRequest {
            types: types.into_iter().map(i32::from).collect(),
            after_sequence: after,
            instance: instance.into(),
            ..Default::default()
        })
        .await?
        .into_inner())
}

async fn pause_and_resume(client: &mut ContainerServiceClient<Channel>, id: &str, times: usize) {
    for _ in 0..times {
        client
            .pause_container(proto::PauseContainerRequest { id: id.into() })
            .await
            .unwrap();
        client
            .resume_container(proto::ResumeContainerRequest { id: id.into() })
            .await
            .unwrap();
    }
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
    pause_and_resume(&mut daemon.client().await, "busy", 60).await;
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
async fn a_subscriber_that_reconnects_again_and_again_misses_nothing_and_sees_nothing_twice() {
    let daemon = Daemon::start().await;
    // Never disconnects: what the reconnecting subscriber must have seen, in the end.
    let mut observer = subscribe(&daemon, "", vec![]).await;
    let mut resumer = subscribe(&daemon, "", vec![]).await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("churn", &bundle, None).await;
    // Events keep coming while the subscriber is away and while it resumes, so some resumes
    // replay and subscribe while events are published.
    let mut client = daemon.client().await;
    let churn = tokio::spawn(async move {
        pause_and_resume(&mut client, "churn", 30).await;
        client
            .delete_container(proto::DeleteContainerRequest {
                id: "churn".into(),
                force: true,
            })
            .await
            .unwrap();
    });
    let is_last = |event: &proto::Event| event.r#type() == EventType::Deleted;
    let (mut seen, mut observed) = (Vec::<proto::Event>::new(), Vec::<proto::Event>::new());
    // Events published before the resume that delivered them: the replay's.
    let (mut reconnects, mut replayed, mut published_before_resume) = (0, 0, 0);
    'reading: loop {
        for _ in 0..3 {
            let event = next(&mut resumer).await;
            if event.sequence <= published_before_resume {
                replayed += 1;
            }
            seen.push(event);
            if seen.last().is_some_and(is_last) {
                break 'reading;
            }
        }
        let last = seen.last().unwrap().clone();
        drop(resumer);
        // Away until three more events have happened, or the last one.
        while !observed
            .last()
            .is_some_and(|e| e.sequence >= last.sequence + 3 || is_last(e))
        {
            observed.push(next(&mut observer).await);
        }
        published_before_resume = observed.last().unwrap().sequence;
        resumer = resume(&daemon, last.sequence, &last.instance, vec![])
            .await
            .unwrap();
        reconnects += 1;
    }
    while !observed.last().is_some_and(is_last) {
        observed.push(next(&mut observer).await);
    }
    churn.await.unwrap();
    assert!(reconnects >= 5, "only {reconnects} reconnects");
    assert!(replayed > 0, "no resume had anything to replay");
    let sequences: Vec<u64> = seen.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(sequences, expected, "a gap or a repeat");
    assert_eq!(seen, observed);
    assert!(seen
        .iter()
        .all(|e| e.instance == seen[0].instance && !e.instance.is_empty()));
}

#[tokio::test]
async fn a_resume_from_before_the_replay_buffer_starts_with_lagged() {
    let daemon = Daemon::start_with(|_| {}, &["--event-replay", "4"]).await;
    let mut first = subscribe(&daemon, "", vec![]).await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("old", &bundle, None).await;
    let started = [next(&mut first).await, next(&mut first).await];
    assert_eq!(started[1].r#type(), EventType::Started);
    let (after, instance) = (started[1].sequence, started[1].instance.clone());
    drop(first);
    // Eight events while away; the buffer keeps the last four.
    pause_and_resume(&mut daemon.client().await, "old", 4).await;

    let mut resumed = resume(&daemon, after, &instance, vec![]).await.unwrap();
    let lagged = next(&mut resumed).await;
    assert_eq!(lagged.r#type(), EventType::Lagged);
    assert_eq!((lagged.missed, lagged.sequence), (4, 0), "{lagged:?}");
    assert_eq!(lagged.instance, instance);
    let mut replayed = Vec::new();
    for _ in 0..4 {
        replayed.push(next(&mut resumed).await);
    }
    let kinds: Vec<_> = replayed.iter().map(|e| (e.sequence, e.r#type())).collect();
    assert_eq!(
        kinds,
        [
            (after + 5, EventType::Paused),
            (after + 6, EventType::Resumed),
            (after + 7, EventType::Paused),
            (after + 8, EventType::Resumed),
        ]
    );
    // The replay passes the type filter; the count of what is gone cannot.
    let mut pauses = resume(&daemon, after, &instance, vec![EventType::Paused])
        .await
        .unwrap();
    assert_eq!(next(&mut pauses).await.missed, 4);
    for sequence in [after + 5, after + 7] {
        let event = next(&mut pauses).await;
        assert_eq!(
            (event.sequence, event.r#type()),
            (sequence, EventType::Paused)
        );
    }
    // Then live, with no gap after the replay.
    daemon.delete("old", true).await.unwrap();
    let exited = next(&mut resumed).await;
    assert_eq!(
        (exited.sequence, exited.r#type()),
        (after + 9, EventType::Exited)
    );

    let ahead = resume(&daemon, 1000, &instance, vec![]).await.unwrap_err();
    assert_eq!(ahead.code(), Code::OutOfRange, "{ahead:?}");
    assert!(
        ahead.message().contains("after sequence 1000") && ahead.message().contains(&instance),
        "{}",
        ahead.message()
    );
}

#[tokio::test]
async fn after_a_restart_a_resume_learns_it_lagged_and_gets_what_the_new_run_holds() {
    let mut daemon = Daemon::start().await;
    let mut before = subscribe(&daemon, "", vec![]).await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let pid = daemon.run("survivor", &bundle, None).await;
    next(&mut before).await;
    let last = next(&mut before).await;
    drop(before);
    daemon.terminate().await;
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    // The new run numbers from 1 again.
    pause_and_resume(&mut daemon.client().await, "survivor", 1).await;

    let mut current = String::new();
    for instance in [last.instance.as_str(), ""] {
        let mut resumed = resume(&daemon, last.sequence, instance, vec![])
            .await
            .unwrap();
        let lagged = next(&mut resumed).await;
        assert_eq!(
            (lagged.r#type(), lagged.missed),
            (EventType::Lagged, 0),
            "{lagged:?}"
        );
        assert!(!lagged.instance.is_empty() && lagged.instance != last.instance);
        let replayed = [next(&mut resumed).await, next(&mut resumed).await];
        let kinds: Vec<_> = replayed.iter().map(|e| (e.sequence, e.r#type())).collect();
        assert_eq!(kinds, [(1, EventType::Paused), (2, EventType::Resumed)]);
        assert!(replayed.iter().all(|e| e.instance == lagged.instance));
        current = lagged.instance;
    }

    let mut live = resume(&daemon, 2, &current, vec![]).await.unwrap();
    daemon.delete("survivor", true).await.unwrap();
    let exited = next(&mut live).await;
    assert_eq!(
        (exited.sequence, exited.r#type(), exited.pid),
        (3, EventType::Exited, pid as u32),
        "the init's pid travels with its exit"
    );
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

/// Starts `berth events --json` with `args`, once subscribed, and the lines it prints, each a
/// JSON object. `subscribed`: how many subscriptions the daemon logged before this one.
async fn berth_events(
    daemon: &Daemon,
    args: &[&str],
    subscribed: usize,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    let mut cli = std::process::Command::new(berth_cli())
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["events", "--json"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The daemon logs each subscription as it starts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while daemon.logs().matches("event subscriber joined").count() <= subscribed {
        assert!(
            std::time::Instant::now() < deadline,
            "berth events never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stdout = cli.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(serde_json::from_str(&line.unwrap()).unwrap());
        }
    });
    (cli, rx)
}

/// The first `count` lines `cli` prints; then it is stopped.
async fn printed(
    mut cli: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
    count: usize,
) -> Vec<serde_json::Value> {
    let events = tokio::task::spawn_blocking(move || {
        (0..count)
            .map(|_| lines.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    cli.kill().unwrap();
    cli.wait().unwrap();
    events
}

#[tokio::test]
async fn berth_events_prints_one_json_line_per_event() {
    let daemon = Daemon::start().await;
    let (cli, lines) = berth_events(&daemon, &["--id", "printed"], 0).await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.create("printed", &bundle, None).await.unwrap();
    daemon.delete("printed", true).await.unwrap();
    let events = printed(cli, lines, 3).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "exited", "deleted"], "{events:?}");
    let instance = events[0]["instance"].as_str().unwrap();
    assert_eq!(instance.len(), 32, "{events:?}");
    assert!(events.iter().all(|e| e["instance"] == instance));

    // Resumed after the first: the other two again, from the replay buffer.
    let after = events[0]["sequence"].to_string();
    let args = ["--id", "printed", "--after", &after, "--instance", instance];
    let (cli, lines) = berth_events(&daemon, &args, 1).await;
    assert_eq!(printed(cli, lines, 2).await, events[1..]);
}
