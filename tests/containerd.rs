//! berth behind containerd: Debian's containerd 1.6 drives berthd through
//! `containerd-shim-berth-v1`, checked through `ctr` as a user would. Each test runs a
//! containerd of its own in a private mount namespace (tests/containerd/node.rs) with the
//! test image imported (tests/containerd/image.rs). Every `ctr` check that is not about berth
//! alone runs twice, with berth's shim and with containerd's own runc shim: the runc shim is
//! the calibration of what containerd users expect.
mod common;
#[path = "containerd/cri.rs"]
mod cri;
#[path = "containerd/image.rs"]
mod image;
#[path = "containerd/node.rs"]
mod node;

use std::{
    io::{BufRead, Read},
    process::Stdio,
    time::{Duration, Instant},
};

use node::{Node, Setup, BERTH, RUNC};

/// A container id that says which runtime runs it: both run in one containerd namespace.
fn id(runtime: &str, name: &str) -> String {
    let short = if runtime == BERTH { "berth" } else { "runc" };
    format!("{short}-{name}")
}

fn exit_code(output: &std::process::Output) -> Option<i32> {
    output.status.code()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_rm_prints_the_output_and_returns_the_exit_code() {
    let node = Node::start("run-rm").await;
    let mut ids = Vec::new();
    for runtime in [BERTH, RUNC] {
        let hello = id(runtime, "hello");
        let output = node.run(
            runtime,
            &["--rm"],
            &hello,
            &["echo", "hello from the container"],
        );
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        assert_eq!(
            common::stdout(&output),
            "hello from the container\n",
            "{runtime}"
        );

        let stderr = id(runtime, "stderr");
        let output = node.run(runtime, &["--rm"], &stderr, &["sh", "-c", "echo oops >&2"]);
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        assert_eq!(common::stderr(&output), "oops\n", "{runtime}");

        let three = id(runtime, "three");
        let output = node.run(runtime, &["--rm"], &three, &["sh", "-c", "exit 3"]);
        assert_eq!(
            exit_code(&output),
            Some(3),
            "{runtime}: {}",
            node.explain(&output)
        );

        // A signal's death is 128 + the signal, as the shell has it.
        let killed = id(runtime, "killed");
        let waiting = node
            .run_command(runtime, &["--rm"], &killed, &["sleep", "1000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        node.wait_task_status(&killed, "RUNNING").await;
        let kill = node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &killed]);
        assert!(kill.status.success(), "{runtime}: {}", node.explain(&kill));
        let output = waiting.wait_with_output().unwrap();
        assert_eq!(
            exit_code(&output),
            Some(137),
            "{runtime}: {}",
            node.explain(&output)
        );
        ids.extend([hello, stderr, three, killed]);
    }
    node.assert_nothing_left(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_detached_task_is_listed_paused_resumed_killed_and_deleted() {
    let node = Node::start("detached").await;
    let mut ids = Vec::new();
    for runtime in [BERTH, RUNC] {
        let task = id(runtime, "sleeper");
        let output = node.run(runtime, &["-d"], &task, &["sleep", "1000"]);
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        node.wait_task_status(&task, "RUNNING").await;

        let listed = node.ctr(&["tasks", "ls"]);
        let pid: u32 = common::stdout(&listed)
            .lines()
            .find(|line| line.starts_with(&task))
            .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("{runtime}: no pid in {}", node.explain(&listed)));
        let ps = node.ctr(&["tasks", "ps", &task]);
        assert!(ps.status.success(), "{runtime}: {}", node.explain(&ps));
        let pids: Vec<u32> = common::stdout(&ps)
            .lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().next()?.parse().ok())
            .collect();
        assert_eq!(pids, [pid], "{runtime}: tasks ps");
        assert!(
            common::process_alive(pid as i32),
            "{runtime}: pid {pid} is not alive"
        );

        for (action, status) in [("pause", "PAUSED"), ("resume", "RUNNING")] {
            let output = node.ctr(&["tasks", action, &task]);
            assert!(
                output.status.success(),
                "{runtime} {action}: {}",
                node.explain(&output)
            );
            node.wait_task_status(&task, status).await;
        }

        let output = node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &task]);
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        node.wait_task_status(&task, "STOPPED").await;
        common::wait_gone(&[pid as i32]).await;
        // A stopped task's kill is "not found", as containerd expects of a finished process.
        let again = node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &task]);
        assert!(
            !again.status.success(),
            "{runtime}: a second kill succeeded"
        );
        assert!(
            common::stderr(&again).contains("not found"),
            "{runtime}: {}",
            node.explain(&again)
        );

        let output = node.ctr(&["tasks", "delete", &task]);
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        let output = node.ctr(&["containers", "delete", &task]);
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        ids.push(task);
    }
    node.assert_nothing_left(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_berth_container_carries_containerds_namespace_and_id() {
    let node = Node::start("labels").await;
    let output = node.run(BERTH, &["-d"], "web", &["sleep", "1000"]);
    assert!(output.status.success(), "{}", node.explain(&output));
    let container = node
        .berthd
        .get("labels+web")
        .await
        .unwrap_or_else(|e| panic!("no berth container labels+web: {e}\n{}", node.logs()));
    assert_eq!(container.status(), berth::proto::ContainerStatus::Running);
    let listed = node.berthd.cli(&["list"]);
    assert!(
        common::stdout(&listed).contains("labels+web"),
        "{}",
        common::stdout(&listed)
    );
    assert_eq!(
        container
            .labels
            .get("containerd.io/namespace")
            .map(String::as_str),
        Some("labels"),
        "labels: {:?}",
        container.labels
    );
    assert_eq!(
        container.labels.get("containerd.io/id").map(String::as_str),
        Some("web")
    );
    node.ctr(&["tasks", "kill", "--signal", "SIGKILL", "web"]);
    node.wait_task_status("web", "STOPPED").await;
    node.ctr(&["tasks", "delete", "web"]);
    node.ctr(&["containers", "delete", "web"]);
    node.assert_nothing_left(&["web"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_exec_returns_the_output_and_the_exit_code() {
    let node = Node::start("exec").await;
    let mut ids = Vec::new();
    for runtime in [BERTH, RUNC] {
        let task = id(runtime, "host");
        let output = node.run(runtime, &["-d"], &task, &["sleep", "1000"]);
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        node.wait_task_status(&task, "RUNNING").await;
        let exec = node
            .ctr_command()
            .args(["tasks", "exec", "--exec-id", "probe", "--fifo-dir"])
            .arg(node.dir.path().join("fifo"))
            .args([
                &task,
                "sh",
                "-c",
                // In the init's namespaces: its PID namespace (the init is pid 1 there) and
                // its UTS and mount namespaces.
                r#"for ns in pid uts mnt; do
                    [ "$(readlink /proc/self/ns/$ns)" = "$(readlink /proc/1/ns/$ns)" ] && echo "same $ns"
                done; exit 5"#,
            ])
            .output()
            .unwrap();
        assert_eq!(
            exit_code(&exec),
            Some(5),
            "{runtime}: {}",
            node.explain(&exec)
        );
        assert_eq!(
            common::stdout(&exec),
            "same pid\nsame uts\nsame mnt\n",
            "{runtime}"
        );
        node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &task]);
        node.wait_task_status(&task, "STOPPED").await;
        node.ctr(&["tasks", "delete", &task]);
        node.ctr(&["containers", "delete", &task]);
        ids.push(task);
    }
    node.assert_nothing_left(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_metrics_reports_the_cgroup_figures() {
    let node = Node::start("metrics").await;
    let mut ids = Vec::new();
    for runtime in [BERTH, RUNC] {
        let task = id(runtime, "measured");
        let output = node.run(runtime, &["-d"], &task, &["sleep", "1000"]);
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        node.wait_task_status(&task, "RUNNING").await;
        let figure = |text: &str, name: &str| -> Option<u64> {
            text.lines()
                .find(|line| line.split_whitespace().next() == Some(name))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        };
        // The runc shim reports RUNNING once `runc start` returns, which can be before runc's
        // init, a Go process whose threads the pids controller counts, has exec'd `sleep`:
        // the count settles at one.
        let deadline = Instant::now() + Duration::from_secs(10);
        let text = loop {
            let metrics = node.ctr(&["tasks", "metrics", &task]);
            assert!(
                metrics.status.success(),
                "{runtime}: {}",
                node.explain(&metrics)
            );
            let text = common::stdout(&metrics);
            // v1 names on v1 and hybrid hosts, v2 names on pure v2 hosts.
            let pids = figure(&text, "pids.current");
            if pids == Some(1) {
                break text;
            }
            assert!(
                Instant::now() < deadline,
                "{runtime}: not one process after 10s in\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let memory =
            figure(&text, "memory.usage_in_bytes").or_else(|| figure(&text, "memory.usage"));
        assert!(
            memory.is_some_and(|bytes| bytes > 0),
            "{runtime}: memory in\n{text}"
        );
        node.ctr(&["tasks", "kill", "--signal", "SIGKILL", &task]);
        node.wait_task_status(&task, "STOPPED").await;
        node.ctr(&["tasks", "delete", &task]);
        node.ctr(&["containers", "delete", &task]);
        ids.push(task);
    }
    node.assert_nothing_left(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_reaches_the_container() {
    let node = Node::start("stdin").await;
    let mut ids = Vec::new();
    for runtime in [BERTH, RUNC] {
        let task = id(runtime, "cat");
        let mut child = node
            // One line, not to the end: under `ctr run` (which sends no CloseIO) the runc
            // shim's process never sees its stdin end, so neither may the calibration rely on it.
            .run_command(
                runtime,
                &["--rm"],
                &task,
                &["sh", "-c", "read line; echo \"$line\""],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, b"fed through a fifo\n").unwrap();
        drop(stdin);
        // Bounded: a process that never sees its end of file must fail the test, not hang it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{runtime}: ctr run never ended: the line never reached the container");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        assert_eq!(common::stdout(&output), "fed through a fifo\n", "{runtime}");
        ids.push(task);
    }
    node.assert_nothing_left(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

/// Runs `ctr` on a pseudo-terminal, as a user at a terminal would, and returns what it
/// printed there and its exit code.
fn run_on_a_terminal(mut command: std::process::Command) -> (String, Option<i32>) {
    use std::os::fd::AsFd;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    command
        .stdin(slave.as_fd().try_clone_to_owned().unwrap())
        .stdout(slave.as_fd().try_clone_to_owned().unwrap())
        .stderr(slave.as_fd().try_clone_to_owned().unwrap());
    let mut child = command.spawn().unwrap();
    // Only ctr may hold the slave: the master reads EIO once it is gone.
    drop((command, slave));
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        // EIO once ctr, the last holder of the slave, is gone.
        while let Ok(n @ 1..) = master.read(&mut buffer) {
            seen.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (reader.join().unwrap(), status.code())
}

#[tokio::test(flavor = "multi_thread")]
async fn run_t_gives_the_container_a_terminal() {
    let node = Node::start("tty").await;
    let mut ids = Vec::new();
    for runtime in [BERTH, RUNC] {
        let task = id(runtime, "tty");
        let command = node.run_command(
            runtime,
            &["--rm", "-t"],
            &task,
            &["sh", "-c", "tty; stty size; exit 4"],
        );
        let (seen, code) = run_on_a_terminal(command);
        assert_eq!(code, Some(4), "{runtime}: {seen}\n{}", node.logs());
        assert!(
            seen.contains("/dev/pts/"),
            "{runtime}: not a terminal: {seen:?}"
        );
        assert!(!seen.contains("not a tty"), "{runtime}: {seen:?}");
        ids.push(task);
    }
    node.assert_nothing_left(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_containers_at_once() {
    let node = Node::start("twenty").await;
    let mut ids = Vec::new();
    for runtime in [BERTH, RUNC] {
        let children: Vec<(String, std::process::Child)> = (0..20)
            .map(|n| {
                let task = id(runtime, &format!("n{n}"));
                let child = node
                    .run_command(
                        runtime,
                        &["--rm"],
                        &task,
                        &["sh", "-c", &format!("echo {n}; exit {n}")],
                    )
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (task, child)
            })
            .collect();
        for (n, (task, child)) in children.into_iter().enumerate() {
            let output = child.wait_with_output().unwrap();
            assert_eq!(
                exit_code(&output),
                Some(n as i32),
                "{task}: {}",
                node.explain(&output)
            );
            assert_eq!(common::stdout(&output), format!("{n}\n"), "{task}");
            ids.push(task);
        }
    }
    node.assert_nothing_left(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

/// `ctr events`, collected in the background; `seen` waits for a line.
struct Events {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Events {
    fn watch(node: &Node) -> Self {
        let mut child = node
            .ctr_command()
            .arg("events")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        // `ctr events` subscribes as it starts; give it the moment it takes.
        std::thread::sleep(Duration::from_millis(300));
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first event line with `topic` that contains every one of `parts`.
    fn wait_for(&mut self, topic: &str, parts: &[&str]) -> String {
        let matches = |line: &str| line.contains(topic) && parts.iter().all(|p| line.contains(p));
        if let Some(line) = self.seen.iter().find(|line| matches(line)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no {topic} event with {parts:?} in 20s; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_outlive_a_restart_of_berthd_and_their_exits_arrive_from_berthd() {
    let node = Node::start("berthd-restart").await;
    let mut node = node;
    let mut events = Events::watch(&node);
    // A waiting `ctr run`, and a detached task.
    let waiting = node
        .run_command(BERTH, &["--rm"], "waiting", &["sleep", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = node.run(BERTH, &["-d"], "detached", &["sleep", "1000"]);
    assert!(output.status.success(), "{}", node.explain(&output));
    node.wait_task_status("waiting", "RUNNING").await;
    node.wait_task_status("detached", "RUNNING").await;
    events.wait_for("/tasks/start", &["\"waiting\""]);

    node.berthd.terminate().await;
    node.berthd.spawn(&[]);
    node.berthd.wait_serving().await;
    node.wait_task_status("waiting", "RUNNING").await;

    // The exit comes through the shim's resumed event stream. The new berthd is not the
    // init's parent, so the status is lost: 255, as berthd and containerd report it.
    let output = node.ctr(&["tasks", "kill", "--signal", "SIGKILL", "waiting"]);
    assert!(output.status.success(), "{}", node.explain(&output));
    let waited = waiting.wait_with_output().unwrap();
    assert_eq!(exit_code(&waited), Some(255), "{}", node.explain(&waited));
    events.wait_for("/tasks/exit", &["\"waiting\"", "\"exit_status\":255"]);

    // An exit while berthd is down is caught up on when it is back.
    let listed = node.ctr(&["tasks", "ls"]);
    let pid: i32 = common::stdout(&listed)
        .lines()
        .find(|line| line.starts_with("detached"))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    node.berthd.crash();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    common::wait_gone(&[pid]).await;
    node.berthd.spawn(&[]);
    node.berthd.wait_serving().await;
    events.wait_for("/tasks/exit", &["\"detached\"", "\"exit_status\":255"]);
    node.wait_task_status("detached", "STOPPED").await;
    let output = node.ctr(&["tasks", "delete", "detached"]);
    assert!(output.status.success(), "{}", node.explain(&output));
    node.ctr(&["containers", "delete", "detached"]);
    node.assert_nothing_left(&["waiting", "detached"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_shim_is_cleaned_up_by_shim_delete() {
    let node = Node::start("shim-killed").await;
    let mut events = Events::watch(&node);
    let mut ids = Vec::new();
    for runtime in [BERTH, RUNC] {
        let task = id(runtime, "orphan");
        let output = node.run(runtime, &["-d"], &task, &["sleep", "1000"]);
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        node.wait_task_status(&task, "RUNNING").await;
        let listed = node.ctr(&["tasks", "ls"]);
        let pid: i32 = common::stdout(&listed)
            .lines()
            .find(|line| line.starts_with(&task))
            .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
            .unwrap();
        let shims = node.shim_pids();
        assert_eq!(shims.len(), 1, "{runtime}: shims {shims:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(shims[0]),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // containerd runs `SHIM delete` and publishes the exit it answers.
        events.wait_for(
            "/tasks/exit",
            &[&format!("\"{task}\""), "\"exit_status\":137"],
        );
        common::wait_gone(&[pid]).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.task_status(&task).is_some() {
            assert!(
                Instant::now() < deadline,
                "{runtime}: the task is still listed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let output = node.ctr(&["containers", "delete", &task]);
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        ids.push(task);
    }
    node.assert_nothing_left(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_outlive_a_restart_of_containerd() {
    let mut node = Node::start("containerd-restart").await;
    let mut ids = Vec::new();
    for runtime in [BERTH, RUNC] {
        let task = id(runtime, "survivor");
        let output = node.run(runtime, &["-d"], &task, &["sleep", "1000"]);
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        node.wait_task_status(&task, "RUNNING").await;
        ids.push(task);
    }
    node.stop_containerd().await;
    node.start_containerd().await;
    for task in &ids {
        node.wait_task_status(task, "RUNNING").await;
        let output = node.ctr(&["tasks", "kill", "--signal", "SIGKILL", task]);
        assert!(output.status.success(), "{task}: {}", node.explain(&output));
        node.wait_task_status(task, "STOPPED").await;
        let output = node.ctr(&["tasks", "delete", task]);
        assert!(output.status.success(), "{task}: {}", node.explain(&output));
        node.ctr(&["containers", "delete", task]);
    }
    node.assert_nothing_left(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_shim_finds_berthd_through_its_config_file() {
    let node = Node::start_with(
        "config-path",
        Setup {
            berth_socket_in_environment: false,
            ..Setup::default()
        },
    )
    .await;
    let config = node.dir.path().join("berth-shim.toml");
    std::fs::write(
        &config,
        format!("socket = {:?}\n", node.berthd.socket.to_str().unwrap()),
    )
    .unwrap();
    let config_path = config.to_str().unwrap();
    let output = node.run(
        BERTH,
        &["--rm", "--runtime-config-path", config_path],
        "configured",
        &["echo", "found berthd"],
    );
    assert!(output.status.success(), "{}", node.explain(&output));
    assert_eq!(common::stdout(&output), "found berthd\n");
    // Without it the shim tries berthd's default socket, which this node does not have,
    // and says so.
    let output = node.run(BERTH, &["--rm"], "unconfigured", &["true"]);
    assert!(!output.status.success(), "{}", node.explain(&output));
    assert!(
        common::stderr(&output).contains("/run/berth/berth.sock"),
        "{}",
        node.explain(&output)
    );
    node.ctr(&["containers", "delete", "unconfigured"]);
    node.assert_nothing_left(&["configured", "unconfigured"])
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn log_uris_send_the_output_to_a_file_or_a_logging_binary() {
    let node = Node::start("log-uri").await;
    // A logging binary as containerd's protocol has it: stdout on fd 3, stderr on fd 4, and
    // fd 5 closed once it is ready.
    let logger = node.dir.path().join("logger.sh");
    std::fs::write(
        &logger,
        "#!/bin/sh\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID\" > \"$1.who\"\ncat <&3 5>&- > \"$1.out\" &\ncat <&4 5>&- > \"$1.err\" &\nexec 5>&-\nwait\n",
    )
    .unwrap();
    std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut ids = Vec::new();
    for runtime in [BERTH, RUNC] {
        let task = id(runtime, "file");
        let file = node.dir.path().join(format!("{task}.log"));
        let uri = format!("file://{}", file.display());
        let output = node.run(
            runtime,
            &["--rm", "--log-uri", &uri],
            &task,
            &["sh", "-c", "echo to the file"],
        );
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        assert_eq!(
            std::fs::read_to_string(&file).unwrap_or_default(),
            "to the file\n",
            "{runtime}"
        );
        ids.push(task);

        let task = id(runtime, "binary");
        let base = node.dir.path().join(&task);
        let uri = format!("binary://{}?{}", logger.display(), base.display());
        let output = node.run(
            runtime,
            &["--rm", "--log-uri", &uri],
            &task,
            &["sh", "-c", "echo out; echo err >&2"],
        );
        assert!(
            output.status.success(),
            "{runtime}: {}",
            node.explain(&output)
        );
        let read = |suffix: &str| {
            std::fs::read_to_string(format!("{}.{suffix}", base.display())).unwrap_or_default()
        };
        // The logger writes as it reads; the shim may stop it once the task is deleted.
        let deadline = Instant::now() + Duration::from_secs(15);
        while read("out") != "out\n" || read("err") != "err\n" {
            assert!(
                Instant::now() < deadline,
                "{runtime}: the logger wrote {:?} and {:?}",
                read("out"),
                read("err")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(read("who"), format!("log-uri/{task}\n"), "{runtime}");
        ids.push(task);
    }
    node.assert_nothing_left(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

/// A pod with one container, through containerd's CRI plugin, as the kubelet makes it: on
/// the host's network (`NamespaceMode::Node`: no CNI) or on the node's CNI network
/// (`NamespaceMode::Pod`), with the pod's ipc and pid namespaces.
struct Pod {
    sandbox: String,
    container: String,
}

fn pod_namespaces(network: cri::NamespaceMode) -> Option<cri::NamespaceOption> {
    Some(cri::NamespaceOption {
        network: network.into(),
        pid: cri::NamespaceMode::Pod.into(),
        ipc: cri::NamespaceMode::Pod.into(),
    })
}

impl Pod {
    /// Starts the pod under the cgroup parent `/berth-cri-<handler>-<test>`.
    async fn start(
        client: &mut cri::Cri,
        node: &Node,
        (handler, test): (&str, &str),
        network: cri::NamespaceMode,
    ) -> Self {
        let logs = node.dir.path().join("pod-logs").join(handler);
        std::fs::create_dir_all(&logs).unwrap();
        let sandbox_config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: format!("pod-{handler}"),
                uid: format!("uid-{handler}"),
                namespace: "tests".into(),
                attempt: 0,
            }),
            // As the kubelet has it: a pod on the host's network keeps the host's name (both
            // runc and berth refuse a hostname without a uts namespace of its own); any
            // other pod is named after itself.
            hostname: match network {
                cri::NamespaceMode::Node => String::new(),
                _ => format!("pod-{handler}"),
            },
            log_directory: logs.to_string_lossy().into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}", cgroup_parent(handler, test)),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: pod_namespaces(network),
                }),
            }),
        };
        let ran: cri::RunPodSandboxResponse = client
            .call(
                "/runtime.v1.RuntimeService/RunPodSandbox",
                cri::RunPodSandboxRequest {
                    config: Some(sandbox_config.clone()),
                    runtime_handler: handler.into(),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{handler}: RunPodSandbox: {e}\n{}", node.logs()));
        let created: cri::CreateContainerResponse = client
            .call(
                "/runtime.v1.RuntimeService/CreateContainer",
                cri::CreateContainerRequest {
                    pod_sandbox_id: ran.pod_sandbox_id.clone(),
                    config: Some(cri::ContainerConfig {
                        metadata: Some(cri::ContainerMetadata {
                            name: "app".into(),
                            attempt: 0,
                        }),
                        image: Some(cri::ImageSpec {
                            image: image::IMAGE.into(),
                        }),
                        command: vec!["sleep".into(), "1000".into()],
                        log_path: "app.log".into(),
                        linux: Some(cri::LinuxContainerConfig {
                            security_context: Some(cri::LinuxContainerSecurityContext {
                                namespace_options: pod_namespaces(network),
                            }),
                        }),
                    }),
                    sandbox_config: Some(sandbox_config.clone()),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{handler}: CreateContainer: {e}\n{}", node.logs()));
        let _: cri::Empty = client
            .call(
                "/runtime.v1.RuntimeService/StartContainer",
                cri::ContainerRequest {
                    container_id: created.container_id.clone(),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{handler}: StartContainer: {e}\n{}", node.logs()));
        Self {
            sandbox: ran.pod_sandbox_id,
            container: created.container_id,
        }
    }

    async fn container_status(&self, client: &mut cri::Cri) -> cri::ContainerStatusResponse {
        client
            .call(
                "/runtime.v1.RuntimeService/ContainerStatus",
                cri::ContainerStatusRequest {
                    container_id: self.container.clone(),
                    verbose: true,
                },
            )
            .await
            .expect("ContainerStatus")
    }

    /// The pid of the sandbox's and of the container's init, from CRI's verbose status.
    async fn pids(&self, client: &mut cri::Cri) -> (i32, i32) {
        let pid_in = |info: &std::collections::HashMap<String, String>| -> i32 {
            let info: serde_json::Value =
                serde_json::from_str(info.get("info").expect("verbose info")).unwrap();
            info["pid"].as_i64().expect("a pid") as i32
        };
        let sandbox: cri::PodSandboxStatusResponse = client
            .call(
                "/runtime.v1.RuntimeService/PodSandboxStatus",
                cri::PodSandboxStatusRequest {
                    pod_sandbox_id: self.sandbox.clone(),
                    verbose: true,
                },
            )
            .await
            .expect("PodSandboxStatus");
        (
            pid_in(&sandbox.info),
            pid_in(&self.container_status(client).await.info),
        )
    }

    /// StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox; returns the
    /// container's status after its stop.
    async fn remove(self, client: &mut cri::Cri) -> cri::ContainerStatus {
        let _: cri::Empty = client
            .call(
                "/runtime.v1.RuntimeService/StopContainer",
                cri::StopContainerRequest {
                    container_id: self.container.clone(),
                    timeout: 5,
                },
            )
            .await
            .expect("StopContainer");
        let stopped = self.container_status(client).await.status.unwrap();
        let container = cri::ContainerRequest {
            container_id: self.container.clone(),
        };
        let _: cri::Empty = client
            .call("/runtime.v1.RuntimeService/RemoveContainer", container)
            .await
            .expect("RemoveContainer");
        let sandbox = cri::PodSandboxRequest {
            pod_sandbox_id: self.sandbox.clone(),
        };
        let _: cri::Empty = client
            .call("/runtime.v1.RuntimeService/StopPodSandbox", sandbox.clone())
            .await
            .expect("StopPodSandbox");
        let _: cri::Empty = client
            .call("/runtime.v1.RuntimeService/RemovePodSandbox", sandbox)
            .await
            .expect("RemovePodSandbox");
        stopped
    }
}

fn namespace_of(pid: i32, kind: &str) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("namespace {kind} of {pid}: {e}"))
}

fn cgroup_parent(handler: &str, test: &str) -> String {
    format!("berth-cri-{handler}-{test}")
}

/// Removes a test's pod cgroup parents (the kubelet's to make and remove) when dropped.
struct PodCgroupParents(&'static str);

impl Drop for PodCgroupParents {
    fn drop(&mut self) {
        for handler in ["berth", "runc"] {
            for dir in common::cgroup_dirs(&cgroup_parent(handler, self.0)) {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

async fn cri_node(bridge: bool) -> (Node, cri::Cri) {
    let node = Node::start_with(
        "k8s.io",
        Setup {
            cri: true,
            bridge,
            ..Setup::default()
        },
    )
    .await;
    let client = cri::Cri::connect(&node.socket()).await;
    (node, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cri_pod_shares_its_sandboxs_namespaces_and_leaves_nothing() {
    let _parents = PodCgroupParents("pod");
    let (node, mut client) = cri_node(false).await;
    for handler in ["berth", "runc"] {
        let pod = Pod::start(
            &mut client,
            &node,
            (handler, "pod"),
            cri::NamespaceMode::Node,
        )
        .await;
        let status = pod.container_status(&mut client).await.status.unwrap();
        assert_eq!(status.state(), cri::ContainerState::Running, "{handler}");
        let (sandbox, container) = pod.pids(&mut client).await;
        for kind in ["ipc", "uts", "pid"] {
            assert_eq!(
                namespace_of(sandbox, kind),
                namespace_of(container, kind),
                "{handler}: the container does not share the sandbox's {kind} namespace"
            );
        }
        assert_ne!(
            namespace_of(container, "mnt"),
            namespace_of(std::process::id() as i32, "mnt")
        );
        let stopped = pod.remove(&mut client).await;
        assert_eq!(stopped.state(), cri::ContainerState::Exited, "{handler}");
        // `sleep` is not the pid namespace's init here (the sandbox is): SIGTERM ends it.
        assert_eq!(stopped.exit_code, 143, "{handler}: {stopped:?}");
        common::wait_gone(&[sandbox, container]).await;
        for dir in common::cgroup_dirs(&cgroup_parent(handler, "pod")) {
            let children: Vec<_> = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|entry| entry.path().is_dir())
                .map(|entry| entry.file_name())
                .collect();
            assert!(
                children.is_empty(),
                "{handler}: cgroups {children:?} left under {}",
                dir.display()
            );
        }
    }
    node.assert_nothing_left(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cri_exec_sync_and_container_stats() {
    let _parents = PodCgroupParents("exec");
    let (node, mut client) = cri_node(false).await;
    for handler in ["berth", "runc"] {
        let pod = Pod::start(
            &mut client,
            &node,
            (handler, "exec"),
            cri::NamespaceMode::Node,
        )
        .await;
        let exec: cri::ExecSyncResponse = client
            .call(
                "/runtime.v1.RuntimeService/ExecSync",
                cri::ExecSyncRequest {
                    container_id: pod.container.clone(),
                    cmd: vec![
                        "sh".into(),
                        "-c".into(),
                        "echo from $(hostname); exit 3".into(),
                    ],
                    timeout: 10,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{handler}: ExecSync: {e}"));
        assert_eq!(exec.exit_code, 3, "{handler}");
        let host = nix::unistd::gethostname().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&exec.stdout),
            format!("from {}\n", host.to_string_lossy())
        );
        let stats: cri::ContainerStatsResponse = client
            .call(
                "/runtime.v1.RuntimeService/ContainerStats",
                cri::ContainerRequest {
                    container_id: pod.container.clone(),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{handler}: ContainerStats: {e}"));
        let stats = stats.stats.expect("stats");
        let working_set = stats
            .memory
            .and_then(|m| m.working_set_bytes)
            .map(|v| v.value);
        assert!(
            working_set.is_some_and(|bytes| bytes > 0),
            "{handler}: {working_set:?}"
        );
        pod.remove(&mut client).await;
    }
    node.assert_nothing_left(&[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cri_pod_on_a_bridge_network_gets_an_address_and_gives_it_back() {
    let _parents = PodCgroupParents("bridge");
    let (node, mut client) = cri_node(true).await;
    let (subnet, prefix) = node::BRIDGE_SUBNET;
    for handler in ["berth", "runc"] {
        let pod = Pod::start(
            &mut client,
            &node,
            (handler, "bridge"),
            cri::NamespaceMode::Pod,
        )
        .await;
        let status: cri::PodSandboxStatusResponse = client
            .call(
                "/runtime.v1.RuntimeService/PodSandboxStatus",
                cri::PodSandboxStatusRequest {
                    pod_sandbox_id: pod.sandbox.clone(),
                    verbose: false,
                },
            )
            .await
            .expect("PodSandboxStatus");
        let ip = status.status.and_then(|s| s.network).map(|n| n.ip);
        let address: std::net::Ipv4Addr = ip
            .as_deref()
            .and_then(|ip| ip.parse().ok())
            .unwrap_or_else(|| panic!("{handler}: the pod's address is {ip:?}"));
        let mask = u32::MAX << (32 - prefix);
        assert_eq!(
            u32::from(address) & mask,
            u32::from(subnet),
            "{handler}: {address} is not in {subnet}/{prefix}"
        );
        // The container is on the pod's network, not the host's: eth0 carries the address.
        let exec: cri::ExecSyncResponse = client
            .call(
                "/runtime.v1.RuntimeService/ExecSync",
                cri::ExecSyncRequest {
                    container_id: pod.container.clone(),
                    cmd: vec!["ip".into(), "-4".into(), "-o".into(), "addr".into()],
                    timeout: 10,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{handler}: ExecSync: {e}"));
        let addresses = String::from_utf8_lossy(&exec.stdout);
        assert_eq!(exec.exit_code, 0, "{handler}: {exec:?}");
        assert!(
            addresses
                .lines()
                .any(|line| line.contains(" eth0 ") && line.contains(&format!("inet {address}/"))),
            "{handler}: no {address} on eth0 in\n{addresses}"
        );
        let (sandbox, container) = pod.pids(&mut client).await;
        assert_eq!(namespace_of(sandbox, "net"), namespace_of(container, "net"));
        assert_ne!(
            namespace_of(container, "net"),
            namespace_of(std::process::id() as i32, "net"),
            "{handler}: the container is on the host's network"
        );
        assert_eq!(
            node.bridge_ports().len(),
            1,
            "{handler}: one veth on the bridge"
        );
        assert_eq!(
            node.pinned_network_namespaces().len(),
            1,
            "{handler}: the pod's network namespace"
        );
        pod.remove(&mut client).await;
        common::wait_gone(&[sandbox, container]).await;
        // CNI's DEL ran: the veth pair, the address and containerd's network namespace are gone.
        assert_eq!(
            node.bridge_ports(),
            Vec::<String>::new(),
            "{handler}: veths left"
        );
        assert_eq!(
            node.bridge_addresses_in_use(),
            Vec::<String>::new(),
            "{handler}: addresses left allocated"
        );
        assert_eq!(
            node.pinned_network_namespaces(),
            Vec::<String>::new(),
            "{handler}: network namespaces left"
        );
    }
    node.assert_nothing_left(&[]).await;
}
