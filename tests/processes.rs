//! WaitContainer and ListProcesses on real containers, and the CLI's `wait`, `ps` and
//! `spec`.
mod common;

use std::{collections::BTreeSet, time::Duration};

use berth::proto::{
    container_service_client::ContainerServiceClient, ExitStatus, ListProcessesRequest,
    WaitContainerRequest, WaitContainerResponse,
};
use common::*;
use tokio::time::timeout;
use tonic::{transport::Channel, Code};

async fn wait(
    client: &mut ContainerServiceClient<Channel>,
    id: &str,
) -> Result<WaitContainerResponse, tonic::Status> {
    client
        .wait_container(WaitContainerRequest { id: id.into() })
        .await
        .map(tonic::Response::into_inner)
}

/// A wait on its own task, so the test can act on the container meanwhile.
fn wait_in_background(
    client: &ContainerServiceClient<Channel>,
    id: &str,
) -> tokio::task::JoinHandle<Result<WaitContainerResponse, tonic::Status>> {
    let (mut client, id) = (client.clone(), id.to_owned());
    tokio::spawn(async move { wait(&mut client, &id).await })
}

fn code_and_signal(response: &WaitContainerResponse) -> (i32, u32) {
    let exit: &ExitStatus = response.exit_status.as_ref().expect("an exit status");
    (exit.code, exit.signal)
}

async fn pids(client: &mut ContainerServiceClient<Channel>, id: &str) -> Vec<u32> {
    client
        .list_processes(ListProcessesRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .pids
}

/// The init runs until SIGTERM, then exits with 7 (a shell as PID 1 has no default action
/// for TERM, so the trap is what ends it).
fn exits_7_on_term() -> Bundle {
    Bundle::busybox(&[
        "sh",
        "-c",
        "trap 'exit 7' TERM; while true; do sleep 0.1; done",
    ])
}

#[tokio::test]
async fn wait_returns_when_the_init_exits_with_its_code() {
    let daemon = Daemon::start().await;
    let bundle = exits_7_on_term();
    daemon.run("w-code", &bundle, None).await;
    let client = daemon.client().await;
    let waiting = wait_in_background(&client, "w-code");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the wait returned while the init ran"
    );
    daemon.kill("w-code", 15, false).await.unwrap();
    let response = timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the wait ended with the exit")
        .unwrap()
        .unwrap();
    assert_eq!(code_and_signal(&response), (7, 0));
    assert!(!response.exit_unknown);
    daemon.delete("w-code", false).await.unwrap();
}

#[tokio::test]
async fn wait_on_an_exited_container_returns_at_once() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sh", "-c", "exit 3"]);
    daemon.run("w-done", &bundle, None).await;
    let mut client = daemon.client().await;
    wait_exit_status(&mut client, "w-done").await;
    let response = timeout(Duration::from_secs(2), wait(&mut client, "w-done"))
        .await
        .expect("an exited container's wait returns at once")
        .unwrap();
    assert_eq!(code_and_signal(&response), (3, 0));
    let cli = daemon.cli(&["wait", "w-done"]);
    assert_eq!(cli.status.code(), Some(3), "{}", stderr(&cli));
}

#[tokio::test]
async fn wait_reports_the_signal_that_killed_the_init_and_the_cli_exits_128_plus_it() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("w-kill", &bundle, None).await;
    let client = daemon.client().await;
    let waiting = wait_in_background(&client, "w-kill");
    let socket = daemon.socket.clone();
    let cli = tokio::task::spawn_blocking(move || {
        std::process::Command::new(berth_cli())
            .arg("--socket")
            .arg(socket)
            .args(["wait", "w-kill"])
            .output()
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!cli.is_finished(), "berth wait returned while the init ran");
    daemon.kill("w-kill", 9, false).await.unwrap();
    let response = timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(code_and_signal(&response), (137, 9));
    let cli = timeout(Duration::from_secs(10), cli)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cli.status.code(), Some(137), "{}", stderr(&cli));
}

#[tokio::test]
async fn a_wait_holds_up_neither_get_nor_kill_nor_delete_and_a_delete_ends_it() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("w-free", &bundle, None).await;
    let client = daemon.client().await;
    let waiting = wait_in_background(&client, "w-free");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let quick = Duration::from_secs(5);
    timeout(quick, daemon.get("w-free"))
        .await
        .expect("get goes on during a wait")
        .unwrap();
    // SIGUSR1 changes nothing (a PID namespace's init without a handler ignores it): the
    // kill only has to get through.
    let probe = timeout(quick, daemon.kill("w-free", 10, false))
        .await
        .expect("kill goes on during a wait");
    probe.unwrap();
    assert!(
        !waiting.is_finished(),
        "SIGUSR1 is ignored by sleep as PID 1"
    );
    timeout(Duration::from_secs(15), daemon.delete("w-free", true))
        .await
        .expect("delete goes on during a wait")
        .unwrap();
    let response = timeout(Duration::from_secs(5), waiting)
        .await
        .expect("the delete ended the wait")
        .unwrap()
        .unwrap();
    assert_eq!(code_and_signal(&response), (137, 9));
    assert_nothing_left(&daemon, "w-free");
}

#[tokio::test]
async fn an_exit_berthd_could_not_see_is_255_unknown() {
    let mut daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let pid = daemon.run("w-lost", &bundle, None).await;
    daemon.crash();
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    // This berthd is not the init's parent: the status goes to whoever reaps it now.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut client = daemon.client().await;
    let response = timeout(Duration::from_secs(10), wait(&mut client, "w-lost"))
        .await
        .unwrap()
        .unwrap();
    assert!(response.exit_unknown);
    assert_eq!(code_and_signal(&response), (255, 0));
    assert!(response.exit_status.unwrap().exited_at.is_none());
    let cli = daemon.cli(&["wait", "w-lost"]);
    assert_eq!(cli.status.code(), Some(255), "{}", stderr(&cli));
}

#[tokio::test]
async fn wait_and_ps_of_an_unknown_id_are_not_found() {
    let daemon = Daemon::start().await;
    let mut client = daemon.client().await;
    let waited = wait(&mut client, "w-none").await.unwrap_err();
    assert_eq!(waited.code(), Code::NotFound, "{waited:?}");
    let listed = client
        .list_processes(ListProcessesRequest {
            id: "w-none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(listed.code(), Code::NotFound, "{listed:?}");
    let invalid = wait(&mut client, "../x").await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");
}

/// The init and its children as the kernel lists them.
fn init_and_children(pid: i32) -> BTreeSet<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    children
        .split_whitespace()
        .map(|child| child.parse().unwrap())
        .chain([pid as u32])
        .collect()
}

#[tokio::test]
async fn ps_lists_the_init_and_its_children_as_proc_does() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "output");
    let init = daemon.run("p-tree", &bundle, Some(&output)).await;
    let mut client = daemon.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let listed = pids(&mut client, "p-tree").await;
        if listed.len() == 3 {
            break listed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "3 processes expected: {listed:?}; the container said {:?} and is {:?}",
            std::fs::read_to_string(&output),
            daemon.get("p-tree").await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(listed.is_sorted(), "{listed:?}");
    assert_eq!(
        listed.iter().copied().collect::<BTreeSet<_>>(),
        init_and_children(init)
    );

    let json = daemon.cli(&["ps", "--json", "p-tree"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let from_json: Vec<u32> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(from_json, listed);
    let table = daemon.cli(&["ps", "p-tree"]);
    let lines: Vec<String> = stdout(&table).lines().map(String::from).collect();
    let mut expected = vec!["PID".to_owned()];
    expected.extend(listed.iter().map(u32::to_string));
    assert_eq!(lines, expected);
}

#[tokio::test]
async fn ps_of_a_stopped_container_is_empty() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sh", "-c", "exit 0"]);
    daemon.run("p-done", &bundle, None).await;
    let mut client = daemon.client().await;
    wait_exit_status(&mut client, "p-done").await;
    assert_eq!(pids(&mut client, "p-done").await, Vec::<u32>::new());
    assert_eq!(stdout(&daemon.cli(&["ps", "--json", "p-done"])), "[]\n");
}

#[tokio::test]
async fn berth_spec_writes_a_bundle_berthd_creates_and_runs() {
    let daemon = Daemon::start().await;
    let bundle = tempfile::tempdir().unwrap();
    let bin = bundle.path().join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/usr/bin/busybox", bin.join("busybox")).expect("busybox-static is installed");
    std::os::unix::fs::symlink("busybox", bin.join("sh")).unwrap();
    let bundle_arg = bundle.path().to_str().unwrap();
    let spec = daemon.cli(&["spec", "--bundle", bundle_arg]);
    assert!(spec.status.success(), "{}", stderr(&spec));
    let path = bundle.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(config["process"]["terminal"], true);
    // Only the command and its terminal change (the output goes to a file): the rest runs
    // as `berth spec` wrote it.
    config["process"]["args"] = serde_json::json!(["sh", "-c", "echo from-spec; exit 5"]);
    config["process"]["terminal"] = false.into();
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();

    let out = tempfile::tempdir().unwrap();
    let stdout_path = output_file(&out, "stdout");
    let create = daemon.cli(&[
        "create",
        "--bundle",
        bundle_arg,
        "--stdout",
        &stdout_path,
        "s-spec",
    ]);
    assert!(
        create.status.success(),
        "{}\n{}",
        stderr(&create),
        daemon.logs()
    );
    let start = daemon.cli(&["start", "s-spec"]);
    assert!(start.status.success(), "{}", stderr(&start));
    let waited = daemon.cli(&["wait", "s-spec"]);
    assert_eq!(waited.status.code(), Some(5), "{}", stderr(&waited));
    assert_eq!(
        std::fs::read_to_string(&stdout_path).unwrap(),
        "from-spec\n"
    );
}

#[tokio::test]
async fn wait_on_a_container_whose_state_is_unreadable_is_refused() {
    let daemon = Daemon::start_with(
        |root| {
            std::fs::create_dir(root.join("w-bad")).unwrap();
            std::fs::write(root.join("w-bad/state.json"), "{ not json").unwrap();
        },
        &[],
    )
    .await;
    let mut client = daemon.client().await;
    let refused = timeout(Duration::from_secs(5), wait(&mut client, "w-bad"))
        .await
        .expect("refused at once, not waited on")
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("w-bad"), "{refused:?}");
}

#[tokio::test]
async fn rpc_timeout_does_not_cut_a_wait_short() {
    let daemon = Daemon::start_with(|_| {}, &["--rpc-timeout", "300ms"]).await;
    let bundle = Bundle::busybox(&["sh", "-c", "sleep 1; exit 3"]);
    daemon.run("slow-exit", &bundle, None).await;
    let mut client = daemon.client().await;
    let exit = timeout(Duration::from_secs(20), wait(&mut client, "slow-exit"))
        .await
        .expect("the wait ends within 20 s")
        .expect("a wait outlives --rpc-timeout");
    assert_eq!(code_and_signal(&exit), (3, 0));
    daemon.delete("slow-exit", true).await.unwrap();
}
