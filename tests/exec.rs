//! Exec processes on real containers: ExecProcess, StartProcess, KillProcess, WaitProcess,
//! GetProcess and DeleteProcess, the namespaces, cgroup and filter an exec process gets,
//! and the known runtime escapes, each closed.
mod common;

use std::{collections::BTreeSet, time::Duration};

use berth::proto::{
    container_service_client::ContainerServiceClient, DeleteProcessRequest, EventType,
    ExecProcessRequest, GetProcessRequest, KillProcessRequest, ListProcessesRequest, Process,
    ProcessStatus, StartProcessRequest, WaitProcessRequest, WaitProcessResponse,
    WatchEventsRequest,
};
use common::*;
use tokio::time::timeout;
use tonic::{transport::Channel, Code};

type Client = ContainerServiceClient<Channel>;

/// The container's own process with other args: what `runc exec` starts from.
fn process(bundle: &Bundle, args: &[&str]) -> serde_json::Value {
    let mut process = bundle.config["process"].clone();
    process["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
    process
}

fn request(id: &str, exec_id: &str, process: &serde_json::Value) -> ExecProcessRequest {
    ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        process: serde_json::to_vec(process).unwrap(),
        start: true,
        ..Default::default()
    }
}

async fn exec(client: &mut Client, request: ExecProcessRequest) -> Result<u32, tonic::Status> {
    client
        .exec_process(request)
        .await
        .map(|response| response.into_inner().pid)
}

async fn wait(client: &mut Client, id: &str, exec_id: &str) -> WaitProcessResponse {
    timeout(
        Duration::from_secs(20),
        client.wait_process(WaitProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
        }),
    )
    .await
    .expect("the exec process ends within 20 s")
    .unwrap()
    .into_inner()
}

fn code_and_signal(response: &WaitProcessResponse) -> (i32, u32) {
    let exit = response.exit_status.as_ref().expect("an exit status");
    (exit.code, exit.signal)
}

async fn get(client: &mut Client, id: &str, exec_id: &str) -> Result<Process, tonic::Status> {
    client
        .get_process(GetProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
        })
        .await
        .map(|response| response.into_inner().process.unwrap())
}

/// A running container that lives until it is killed.
async fn running(daemon: &Daemon, id: &str) -> (Bundle, i32) {
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let pid = daemon.run(id, &bundle, None).await;
    (bundle, pid)
}

#[tokio::test]
async fn an_exec_process_joins_every_namespace_and_the_cgroup_of_the_container() {
    let daemon = Daemon::start().await;
    let (bundle, init) = running(&daemon, "ns").await;
    let mut client = daemon.client().await;
    let pid = exec(
        &mut client,
        request("ns", "e1", &process(&bundle, &["sleep", "1000"])),
    )
    .await
    .unwrap() as i32;
    for namespace in ["mnt", "pid", "ipc", "uts", "net", "cgroup"] {
        let link = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/{namespace}")).unwrap();
        assert_eq!(link(pid), link(init), "{namespace} namespace");
    }
    let root = |pid: i32| std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
    assert_eq!(
        root(pid),
        root(init),
        "the exec process sees the container's root"
    );
    let listed = client
        .list_processes(ListProcessesRequest { id: "ns".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.pids.contains(&(pid as u32)), "{listed:?}");
    assert_eq!(listed.execs.len(), 1);
    assert_eq!(listed.execs[0].status(), ProcessStatus::Running);
    daemon.delete("ns", true).await.unwrap();
}

#[tokio::test]
async fn wait_returns_the_exit_code_and_the_output_goes_to_the_given_file() {
    let daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "code").await;
    let mut client = daemon.client().await;
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "out");
    let mut exec_request = request(
        "code",
        "e1",
        &process(&bundle, &["sh", "-c", "echo from-exec; hostname; exit 3"]),
    );
    exec_request.stdout_path = output.clone();
    exec(&mut client, exec_request).await.unwrap();
    assert_eq!(
        code_and_signal(&wait(&mut client, "code", "e1").await),
        (3, 0)
    );
    let text = std::fs::read_to_string(&output).unwrap();
    assert_eq!(
        text, "from-exec\nrunc\n",
        "the exec process is in the container's UTS namespace"
    );
    // A finished process is answered at once, and its record says how it ended.
    assert_eq!(
        code_and_signal(&wait(&mut client, "code", "e1").await),
        (3, 0)
    );
    let record = get(&mut client, "code", "e1").await.unwrap();
    assert_eq!(record.status(), ProcessStatus::Stopped);
    assert_eq!(record.exit_status.unwrap().code, 3);
    daemon.delete("code", true).await.unwrap();
}

#[tokio::test]
async fn stdin_comes_from_the_given_file() {
    let daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "stdin").await;
    let mut client = daemon.client().await;
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (output_file(&dir, "in"), output_file(&dir, "out"));
    std::fs::write(&input, "typed-in\n").unwrap();
    let mut exec_request = request("stdin", "cat", &process(&bundle, &["cat"]));
    exec_request.stdin_path = input;
    exec_request.stdout_path = output.clone();
    exec(&mut client, exec_request).await.unwrap();
    assert_eq!(
        code_and_signal(&wait(&mut client, "stdin", "cat").await),
        (0, 0)
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "typed-in\n");
    daemon.delete("stdin", true).await.unwrap();
}

#[tokio::test]
async fn create_and_start_are_separate_steps_with_their_events() {
    let daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "steps").await;
    let mut client = daemon.client().await;
    let mut events = client
        .watch_events(WatchEventsRequest {
            id: "steps".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut added = request("steps", "e1", &process(&bundle, &["sh", "-c", "exit 4"]));
    added.start = false;
    assert_eq!(exec(&mut client, added).await.unwrap(), 0);
    let created = get(&mut client, "steps", "e1").await.unwrap();
    assert_eq!((created.status(), created.pid), (ProcessStatus::Created, 0));
    let start = StartProcessRequest {
        id: "steps".into(),
        exec_id: "e1".into(),
    };
    let pid = client
        .start_process(start.clone())
        .await
        .unwrap()
        .into_inner()
        .pid;
    assert!(pid > 0);
    assert_eq!(
        code_and_signal(&wait(&mut client, "steps", "e1").await),
        (4, 0)
    );
    let again = client.start_process(start).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = timeout(Duration::from_secs(10), events.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        if event.exec_id == "e1" {
            seen.push((event.r#type(), event.pid, event.exit_status.map(|e| e.code)));
        }
    }
    assert_eq!(
        seen,
        [
            (EventType::ExecAdded, 0, None),
            (EventType::ExecStarted, pid, None),
            (EventType::ExecExited, pid, Some(4)),
        ]
    );
    daemon.delete("steps", true).await.unwrap();
}

#[tokio::test]
async fn kill_process_signals_it_through_its_pidfd() {
    let daemon = Daemon::start().await;
    let (bundle, init) = running(&daemon, "kill").await;
    let mut client = daemon.client().await;
    exec(
        &mut client,
        request("kill", "e1", &process(&bundle, &["sleep", "1000"])),
    )
    .await
    .unwrap();
    let kill = |signal| KillProcessRequest {
        id: "kill".into(),
        exec_id: "e1".into(),
        signal,
    };
    let invalid = client.kill_process(kill(0)).await.unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    client.kill_process(kill(9)).await.unwrap();
    assert_eq!(
        code_and_signal(&wait(&mut client, "kill", "e1").await),
        (137, 9)
    );
    assert!(process_alive(init), "only the exec process was signalled");
    let again = client.kill_process(kill(9)).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    daemon.delete("kill", true).await.unwrap();
}

#[tokio::test]
async fn exec_is_refused_in_paused_and_stopped_containers_and_for_a_taken_id() {
    let daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "refused").await;
    let mut client = daemon.client().await;
    let sleeper = process(&bundle, &["sleep", "1000"]);
    exec(&mut client, request("refused", "taken", &sleeper))
        .await
        .unwrap();
    let taken = exec(&mut client, request("refused", "taken", &sleeper))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let bad_id = exec(&mut client, request("refused", "a/b", &sleeper))
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument, "{bad_id:?}");
    let mut garbage = request("refused", "g", &sleeper);
    garbage.process = b"not json".to_vec();
    let garbage = exec(&mut client, garbage).await.unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument, "{garbage:?}");
    assert!(garbage.message().contains("process"), "{garbage:?}");
    let mut relative = sleeper.clone();
    relative["cwd"] = "tmp".into();
    let relative = exec(&mut client, request("refused", "r", &relative))
        .await
        .unwrap_err();
    assert_eq!(relative.code(), Code::InvalidArgument, "{relative:?}");
    assert!(relative.message().contains("process.cwd"), "{relative:?}");

    if skip_unless_controllers(&["freezer"]) {
        client
            .pause_container(berth::proto::PauseContainerRequest {
                id: "refused".into(),
            })
            .await
            .unwrap();
        let paused = exec(&mut client, request("refused", "p", &sleeper))
            .await
            .unwrap_err();
        assert_eq!(paused.code(), Code::FailedPrecondition, "{paused:?}");
        assert!(paused.message().contains("paused"), "{paused:?}");
        client
            .resume_container(berth::proto::ResumeContainerRequest {
                id: "refused".into(),
            })
            .await
            .unwrap();
    }
    daemon.kill("refused", 9, false).await.unwrap();
    wait_exit_status(&mut client, "refused").await;
    let stopped = exec(&mut client, request("refused", "s", &sleeper))
        .await
        .unwrap_err();
    assert_eq!(stopped.code(), Code::FailedPrecondition, "{stopped:?}");
    assert!(stopped.message().contains("stopped"), "{stopped:?}");
    let unknown = exec(&mut client, request("nosuch", "s", &sleeper))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    daemon.delete("refused", true).await.unwrap();
}

#[tokio::test]
async fn a_missing_binary_is_a_clear_error_and_leaves_nothing_running() {
    let daemon = Daemon::start().await;
    let (bundle, init) = running(&daemon, "missing").await;
    let mut client = daemon.client().await;
    let error = exec(
        &mut client,
        request("missing", "e1", &process(&bundle, &["/no/such/binary"])),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("/no/such/binary"), "{error:?}");
    // The process that was to become it exits at once, and its record says so.
    let exit = wait(&mut client, "missing", "e1").await;
    assert_eq!(code_and_signal(&exit), (127, 0));
    let pids = client
        .list_processes(ListProcessesRequest {
            id: "missing".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pids;
    assert_eq!(pids, [init as u32]);
    daemon.delete("missing", true).await.unwrap();
}

#[tokio::test]
async fn delete_process_removes_only_an_exited_record() {
    let daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "records").await;
    let mut client = daemon.client().await;
    exec(
        &mut client,
        request("records", "e1", &process(&bundle, &["sleep", "1000"])),
    )
    .await
    .unwrap();
    let delete = DeleteProcessRequest {
        id: "records".into(),
        exec_id: "e1".into(),
    };
    let running = client.delete_process(delete.clone()).await.unwrap_err();
    assert_eq!(running.code(), Code::FailedPrecondition, "{running:?}");
    client
        .kill_process(KillProcessRequest {
            id: "records".into(),
            exec_id: "e1".into(),
            signal: 15,
        })
        .await
        .unwrap();
    wait(&mut client, "records", "e1").await;
    let last = client
        .delete_process(delete.clone())
        .await
        .unwrap()
        .into_inner()
        .process
        .unwrap();
    assert_eq!(last.status(), ProcessStatus::Stopped);
    assert_eq!(last.exit_status.unwrap().signal, 15);
    let gone = get(&mut client, "records", "e1").await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    let again = client.delete_process(delete).await.unwrap_err();
    assert_eq!(again.code(), Code::NotFound, "{again:?}");
    daemon.delete("records", true).await.unwrap();
}

/// Exec probes that nobody deletes must not grow state.json without bound.
#[tokio::test]
async fn records_are_bounded_the_oldest_exited_making_room() {
    let daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "bounded").await;
    let mut client = daemon.client().await;
    let quick = process(&bundle, &["true"]);
    let limit = 128;
    for n in 0..limit + 5 {
        let exec_id = format!("probe-{n:03}");
        exec(&mut client, request("bounded", &exec_id, &quick))
            .await
            .unwrap();
        wait(&mut client, "bounded", &exec_id).await;
    }
    let state = std::fs::read_to_string(daemon.root.join("bounded/state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    let kept: BTreeSet<&str> = state["execs"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(kept.len(), limit);
    assert!(
        !kept.contains("probe-000") && kept.contains("probe-132"),
        "{kept:?}"
    );
    daemon.delete("bounded", true).await.unwrap();
}

#[tokio::test]
async fn exec_processes_die_with_their_container() {
    let daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "dies").await;
    let mut client = daemon.client().await;
    let pid = exec(
        &mut client,
        request("dies", "e1", &process(&bundle, &["sleep", "1000"])),
    )
    .await
    .unwrap();
    let waiter = {
        let mut client = client.clone();
        tokio::spawn(async move { wait(&mut client, "dies", "e1").await })
    };
    // A wait that arrives after the delete finds no container; this one is in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;
    daemon.delete("dies", true).await.unwrap();
    let exit = waiter.await.unwrap();
    assert_eq!(code_and_signal(&exit), (137, 9));
    wait_gone(&[pid as i32]).await;
}

#[tokio::test]
async fn records_survive_a_restart_and_an_exit_while_away_reads_255() {
    let mut daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "restart").await;
    let mut client = daemon.client().await;
    exec(
        &mut client,
        request(
            "restart",
            "done",
            &process(&bundle, &["sh", "-c", "exit 5"]),
        ),
    )
    .await
    .unwrap();
    wait(&mut client, "restart", "done").await;
    let pid = exec(
        &mut client,
        request("restart", "live", &process(&bundle, &["sleep", "1000"])),
    )
    .await
    .unwrap();
    daemon.terminate().await;
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    let mut client = daemon.client().await;
    assert_eq!(
        code_and_signal(&wait(&mut client, "restart", "done").await),
        (5, 0)
    );
    let live = get(&mut client, "restart", "live").await.unwrap();
    assert_eq!((live.status(), live.pid), (ProcessStatus::Running, pid));
    client
        .kill_process(KillProcessRequest {
            id: "restart".into(),
            exec_id: "live".into(),
            signal: 9,
        })
        .await
        .unwrap();
    let exit = wait(&mut client, "restart", "live").await;
    assert!(exit.exit_unknown, "{exit:?}");
    assert_eq!(code_and_signal(&exit), (255, 0));
    daemon.delete("restart", true).await.unwrap();
}

#[tokio::test]
async fn the_exec_process_gets_its_user_and_the_container_seccomp_filter() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit(|c| {
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
        });
    });
    daemon.run("filtered", &bundle, None).await;
    let mut client = daemon.client().await;
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "out");
    let mut user = process(
        &bundle,
        &[
            "sh",
            "-c",
            "id -u; id -g; mkdir /tmp/x || echo mkdir-denied",
        ],
    );
    user["user"] = serde_json::json!({"uid": 1000, "gid": 1001});
    let mut exec_request = request("filtered", "e1", &user);
    exec_request.stdout_path = output.clone();
    exec_request.stderr_path = output.clone();
    exec(&mut client, exec_request).await.unwrap();
    wait(&mut client, "filtered", "e1").await;
    let text = std::fs::read_to_string(&output).unwrap();
    assert!(text.starts_with("1000\n1001\n"), "{text:?}");
    assert!(text.contains("mkdir-denied"), "{text:?}");
    daemon.delete("filtered", true).await.unwrap();
}

#[tokio::test]
async fn an_exec_process_holds_only_its_stdio() {
    let daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "fds").await;
    let mut client = daemon.client().await;
    let pid = exec(
        &mut client,
        request("fds", "e1", &process(&bundle, &["sleep", "1000"])),
    )
    .await
    .unwrap();
    assert_eq!(open_fds(pid as i32), BTreeSet::from([0, 1, 2]));
    daemon.delete("fds", true).await.unwrap();
}

/// CVE-2024-21626: a cwd through an fd the helper holds would land outside the root.
#[tokio::test]
async fn a_cwd_through_proc_self_fd_never_reaches_the_host() {
    let daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "cwd").await;
    let mut client = daemon.client().await;
    let out = tempfile::tempdir().unwrap();
    for fd in 3..10 {
        let output = output_file(&out, &format!("out{fd}"));
        let mut escaping = process(&bundle, &["sh", "-c", "ls ..; cat ../../../etc/hostname"]);
        escaping["cwd"] = format!("/proc/self/fd/{fd}").into();
        let mut exec_request = request("cwd", &format!("fd{fd}"), &escaping);
        exec_request.stdout_path = output.clone();
        if exec(&mut client, exec_request).await.is_ok() {
            wait(&mut client, "cwd", &format!("fd{fd}")).await;
        }
        let seen = std::fs::read_to_string(&output).unwrap_or_default();
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        assert!(
            host.trim().is_empty() || !seen.contains(host.trim()),
            "fd {fd}: {seen}"
        );
        assert!(!seen.contains("process_api"), "fd {fd}: {seen}");
    }
    daemon.delete("cwd", true).await.unwrap();
}

/// CVE-2019-5736: until its exec, the process that becomes the exec process is the helper,
/// run from a sealed copy of berthd. A binary naming `/proc/self/exe` as its interpreter
/// makes the kernel run whatever that is at the exec: never the host's berthd. (This kernel
/// refuses it outright, ENOENT; had the helper run from the host's binary, the container
/// would now run that binary and could open it through /proc/<pid>/exe.)
#[tokio::test]
async fn an_exec_through_proc_self_exe_never_reaches_the_host_binary() {
    let daemon = Daemon::start().await;
    let (bundle, _) = running(&daemon, "exe").await;
    let evil = bundle.path().join("rootfs/evil");
    // Were the copy run, it would be the helper, finding fd 0 (a FIFO this test keeps open)
    // not the socket it expects, and exiting within a millisecond or so: it is looked at
    // while it lives, and run again until it is.
    std::fs::write(&evil, "#!/proc/self/exe init 0\n").unwrap();
    std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stdin");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let _writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let host_binary = std::fs::read(env!("CARGO_BIN_EXE_berthd")).unwrap();
    let mut client = daemon.client().await;
    let mut seen = false;
    for attempt in 0..20 {
        let exec_id = format!("e{attempt}");
        let mut exec_request = request("exe", &exec_id, &process(&bundle, &["/evil"]));
        exec_request.stdin_path = fifo.to_str().unwrap().into();
        match exec(&mut client, exec_request).await {
            Ok(pid) => {
                let exe = format!("/proc/{pid}/exe");
                let target = match std::fs::read_link(&exe) {
                    Ok(target) => target,
                    Err(gone) if gone.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => panic!("{exe}: {e}"),
                };
                assert!(
                    target.to_string_lossy().starts_with("/memfd:berthd-init"),
                    "the exec process runs {}",
                    target.display()
                );
                let write = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&exe)
                    .and_then(|mut file| std::io::Write::write_all(&mut file, b"x"));
                assert!(write.is_err(), "the executable took a write");
            }
            Err(refused) => assert!(refused.message().contains("/evil"), "{refused:?}"),
        }
        seen = true;
        break;
    }
    assert!(
        seen,
        "the exec process was gone each time before it could be looked at"
    );
    assert!(
        std::fs::read(env!("CARGO_BIN_EXE_berthd")).unwrap() == host_binary,
        "the host's berthd changed"
    );
    daemon.delete("exe", true).await.unwrap();
}

fn berth_exec(daemon: &Daemon, args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(berth_cli());
    command
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("exec")
        .args(args);
    command
}

#[tokio::test]
async fn berth_exec_is_attached_exits_with_the_code_and_leaves_no_record() {
    let daemon = Daemon::start().await;
    let (_bundle, _) = running(&daemon, "cli").await;
    let output = berth_exec(
        &daemon,
        &["cli", "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
    )
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(stdout(&output), "out\n");
    assert_eq!(stderr(&output), "err\n");
    let killed = berth_exec(&daemon, &["cli", "--", "sh", "-c", "kill -9 $$"])
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), Some(137), "{}", stderr(&killed));
    let mut client = daemon.client().await;
    let listed = client
        .list_processes(ListProcessesRequest { id: "cli".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.execs.is_empty(), "{listed:?}");
    daemon.delete("cli", true).await.unwrap();
}

#[tokio::test]
async fn berth_exec_forwards_stdin_with_i_and_takes_user_env_and_cwd() {
    use std::io::Write;
    let daemon = Daemon::start().await;
    let (_bundle, _) = running(&daemon, "cli-i").await;
    let mut child = berth_exec(&daemon, &["-i", "cli-i", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"typed-in\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(stdout(&output), "typed-in\n");

    let output = berth_exec(
        &daemon,
        &[
            "--user",
            "1000:1001",
            "--env",
            "FOO=bar",
            "--cwd",
            "/bin",
            "cli-i",
            "--",
            "sh",
            "-c",
            "id -u; id -g; echo $FOO; pwd",
        ],
    )
    .output()
    .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "1000\n1001\nbar\n/bin\n");
    daemon.delete("cli-i", true).await.unwrap();
}

#[tokio::test]
async fn berth_exec_d_prints_the_pid_and_returns() {
    let daemon = Daemon::start().await;
    let (_bundle, init) = running(&daemon, "cli-d").await;
    let output = berth_exec(&daemon, &["-d", "cli-d", "--", "sleep", "1000"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let pid: i32 = stdout(&output).trim().parse().unwrap();
    assert!(process_alive(pid));
    let ns = |pid: i32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    assert_eq!(ns(pid), ns(init));
    let refused = berth_exec(&daemon, &["nosuch", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("nosuch"), "{}", stderr(&refused));
    daemon.delete("cli-d", true).await.unwrap();
    wait_gone(&[pid]).await;
}
