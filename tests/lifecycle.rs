//! Real containers from a `runc spec` bundle: create, start, kill, pause, resume, state,
//! exit tracking and restart recovery, on real namespaces, cgroups and processes.
mod common;

use std::{fs, time::Duration};

use berth::proto::ContainerStatus;
use common::*;
use tonic::Code;

fn ns(pid: i32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn acceptance_bundle_creates_starts_and_runs_isolated() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let stdout = output_file(&out, "stdout");
    // What the container sees of itself goes to its stdout, then it waits.
    let bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "hostname; id; touch /probe 2>/dev/null && echo root-writable || echo root-read-only; \
         cat /proc/self/status | grep -E '^(CapEff|NoNewPrivs)'; echo ready; sleep 1000",
    ]);
    let created = daemon
        .create("acceptance", &bundle, Some(&stdout))
        .await
        .unwrap();
    assert_eq!(created.status(), ContainerStatus::Created);
    let pid = created.pid as i32;
    assert!(pid > 0);
    let host = std::process::id() as i32;
    for kind in ["pid", "net", "ipc", "uts", "mnt"] {
        assert_ne!(
            ns(pid, kind),
            ns(host, kind),
            "{kind} namespace is the host's"
        );
    }
    // Created, not started: nothing of the user process ran yet.
    assert_eq!(fs::read_to_string(&stdout).unwrap_or_default(), "");

    let started = daemon.start_container("acceptance").await.unwrap();
    assert_eq!(started.status(), ContainerStatus::Running);
    assert_eq!(
        started.pid as i32, pid,
        "the init execs the user process in place"
    );
    let seen = wait_output(&stdout, "ready").await;
    assert!(
        seen.starts_with("runc\n"),
        "hostname from config.json: {seen}"
    );
    assert!(
        seen.contains("uid=0(root) gid=0(root)") || seen.contains("uid=0 gid=0"),
        "{seen}"
    );
    assert!(seen.contains("root-read-only"), "root.readonly: {seen}");
    // runc spec's capabilities: AUDIT_WRITE, KILL, NET_BIND_SERVICE.
    assert!(seen.contains("CapEff:\t0000000020000420"), "{seen}");
    assert!(seen.contains("NoNewPrivs:\t1"), "{seen}");
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cgroups.contains(&format!("{}/acceptance", daemon.cgroup_parent)),
        "{cgroups}"
    );

    let listed = daemon.cli(&["list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["status"], "running");
    assert_eq!(listed[0]["pid"], pid);

    daemon.kill("acceptance", 9, false).await.unwrap();
    let exit = wait_exit_status(&mut daemon.client().await, "acceptance").await;
    assert_eq!((exit.code, exit.signal), (137, 9));
    daemon.delete("acceptance", false).await.unwrap();
    assert!(daemon
        .container_cgroups("acceptance")
        .iter()
        .all(|d| !d.exists()));
    assert!(!daemon.root.join("acceptance").exists());
}

#[tokio::test]
async fn natural_exit_records_the_exit_code() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sh", "-c", "exit 7"]);
    daemon.run("exits", &bundle, None).await;
    let exit = wait_exit_status(&mut daemon.client().await, "exits").await;
    assert_eq!((exit.code, exit.signal), (7, 0));
    let on_disk = fs::read_to_string(daemon.root.join("exits/state.json")).unwrap();
    assert!(on_disk.contains("\"code\": 7"), "{on_disk}");
    daemon.delete("exits", false).await.unwrap();
}

#[tokio::test]
async fn container_without_pid_namespace_shares_the_hosts() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.without_namespace("pid");
    let pid = daemon.run("hostpid", &bundle, None).await;
    assert_eq!(ns(pid, "pid"), ns(std::process::id() as i32, "pid"));
    assert_ne!(ns(pid, "mnt"), ns(std::process::id() as i32, "mnt"));
    assert_eq!(
        daemon.get("hostpid").await.unwrap().status(),
        ContainerStatus::Running
    );
    daemon.delete("hostpid", true).await.unwrap();
    wait_gone(&[pid]).await;
}

#[tokio::test]
async fn memory_and_pids_limits_reach_the_cgroup_files() {
    if skip_unless_controllers(&["memory", "pids", "cpu"]) {
        return;
    }
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit(|c| {
        c["linux"]["resources"]["memory"] = serde_json::json!({ "limit": 67108864 });
        c["linux"]["resources"]["pids"] = serde_json::json!({ "limit": 32 });
        c["linux"]["resources"]["cpu"] =
            serde_json::json!({ "shares": 512, "quota": 50000, "period": 100000 });
    });
    daemon.run("limited", &bundle, None).await;
    let dirs = daemon.container_cgroups("limited");
    let read = |file: &str| -> String {
        let dir = dirs
            .iter()
            .find(|d| d.join(file).exists())
            .unwrap_or_else(|| panic!("no {file} in {dirs:?}"));
        fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .to_owned()
    };
    if unified_host() {
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("pids.max"), "32");
        // runc's shares-to-weight map: 1 + (shares - 2) * 9999 / 262142.
        assert_eq!(
            read("cpu.weight"),
            (1 + (512 - 2) * 9999 / 262142).to_string()
        );
        assert_eq!(read("cpu.max"), "50000 100000");
    } else {
        assert_eq!(read("memory.limit_in_bytes"), "67108864");
        assert_eq!(read("pids.max"), "32");
        if dirs.iter().any(|d| d.join("cpu.shares").exists()) {
            assert_eq!(read("cpu.shares"), "512");
            assert_eq!(read("cpu.cfs_quota_us"), "50000");
        }
    }
    daemon.delete("limited", true).await.unwrap();
}

#[tokio::test]
async fn pause_freezes_every_process_and_resume_thaws_them() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let pid = daemon.run("freezable", &bundle, None).await;
    let mut client = daemon.client().await;
    client
        .pause_container(berth::proto::PauseContainerRequest {
            id: "freezable".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        daemon.get("freezable").await.unwrap().status(),
        ContainerStatus::Paused
    );
    let dirs = daemon.container_cgroups("freezable");
    let unified = unified_host();
    // The container's own freezer: v1's freezer.state, or v2's cgroup.freeze.
    let freezer = dirs
        .iter()
        .find(|d| unified || d.join("freezer.state").exists())
        .expect("a v1 freezer on this host")
        .clone();
    let read = |file: &str| {
        fs::read_to_string(freezer.join(file))
            .unwrap()
            .trim()
            .to_owned()
    };
    if unified {
        assert_eq!(read("cgroup.freeze"), "1");
        assert!(
            v2_frozen(&freezer),
            "cgroup.events: {}",
            read("cgroup.events")
        );
        v2_assert_frozen_processes(&freezer);
    } else {
        assert_eq!(read("freezer.state"), "FROZEN");
    }
    // Pausing twice is refused: the container is not running.
    let again = client
        .pause_container(berth::proto::PauseContainerRequest {
            id: "freezable".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    client
        .resume_container(berth::proto::ResumeContainerRequest {
            id: "freezable".into(),
        })
        .await
        .unwrap();
    if unified {
        assert_eq!(read("cgroup.freeze"), "0");
        assert!(
            !v2_frozen(&freezer),
            "cgroup.events: {}",
            read("cgroup.events")
        );
    } else {
        assert_eq!(read("freezer.state"), "THAWED");
    }
    assert_eq!(
        daemon.get("freezable").await.unwrap().status(),
        ContainerStatus::Running
    );
    assert!(process_alive(pid));
    daemon.delete("freezable", true).await.unwrap();
}

/// ListContainers remembers a freezer it found off, until the kernel reports a write to the
/// cgroup: a freeze by hand shows in the next List, for a stopped container too (a frozen
/// cgroup reads paused whatever its init), and so does a freeze of a cgroup removed and made
/// again at the same path.
#[tokio::test]
async fn list_sees_every_freeze_by_hand() {
    use ContainerStatus::{Paused, Running, Stopped};
    let daemon = Daemon::start().await;
    daemon.run("done", &Bundle::busybox(&["true"]), None).await;
    daemon
        .run("up", &Bundle::busybox(&["sleep", "1000"]), None)
        .await;
    wait_status(&mut daemon.client().await, "done", Stopped).await;
    let unified = unified_host();
    let own_freezer = |id: &str| {
        daemon
            .container_cgroups(id)
            .into_iter()
            .find(|d| unified || d.join("freezer.state").exists())
            .expect("a v1 freezer on this host")
    };
    let set = |dir: &std::path::Path, frozen: bool| {
        if unified {
            fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }).unwrap();
            return;
        }
        let state = if frozen { "FROZEN" } else { "THAWED" };
        fs::write(dir.join("freezer.state"), state).unwrap();
        // A freeze is done once the kernel says FROZEN; until then the container runs.
        while fs::read_to_string(dir.join("freezer.state"))
            .unwrap()
            .trim()
            != state
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let listed = async || {
        let statuses: Vec<_> = daemon.list().await.iter().map(|c| c.status()).collect();
        // Twice: the second answer is what was remembered.
        let again: Vec<_> = daemon.list().await.iter().map(|c| c.status()).collect();
        assert_eq!(statuses, again);
        statuses
    };
    assert_eq!(listed().await, [Stopped, Running]);
    for (id, found) in [("done", [Paused, Running]), ("up", [Stopped, Paused])] {
        set(&own_freezer(id), true);
        assert_eq!(listed().await, found, "{id} frozen by hand");
        set(&own_freezer(id), false);
        assert_eq!(listed().await, [Stopped, Running], "{id} thawed by hand");
    }
    let dir = own_freezer("done");
    fs::remove_dir(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    set(&dir, true);
    assert_eq!(listed().await, [Paused, Running]);
    set(&dir, false);
    assert_eq!(listed().await, [Stopped, Running]);
    daemon.delete("done", false).await.unwrap();
    daemon.delete("up", true).await.unwrap();
}

/// cgroup v2 shows no frozen state per process (a frozen task reads as sleeping in
/// /proc/<pid>/status and stat), but a frozen task handles no signal: a SIGSTOP stays pending
/// instead of stopping it. SIGCONT then discards the pending stop, so resume finds it as it was.
fn v2_assert_frozen_processes(dir: &std::path::Path) {
    use nix::sys::signal::{kill, Signal};
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    let pids: Vec<i32> = procs.lines().map(|l| l.parse().unwrap()).collect();
    assert!(!pids.is_empty(), "no process in {}", dir.display());
    let status = |pid: i32| fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let stop_pending = |status: &str| {
        status
            .lines()
            .filter_map(|l| {
                l.strip_prefix("ShdPnd:")
                    .or_else(|| l.strip_prefix("SigPnd:"))
            })
            .any(|mask| u64::from_str_radix(mask.trim(), 16).unwrap() & (1 << 18) != 0)
    };
    for &pid in &pids {
        kill(nix::unistd::Pid::from_raw(pid), Signal::SIGSTOP).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    for &pid in &pids {
        let seen = status(pid);
        assert!(
            stop_pending(&seen) && !seen.contains("State:\tT"),
            "process {pid} acted on SIGSTOP while frozen:\n{seen}"
        );
        kill(nix::unistd::Pid::from_raw(pid), Signal::SIGCONT).unwrap();
        assert!(!stop_pending(&status(pid)), "SIGCONT left the stop pending");
    }
}

#[tokio::test]
async fn kill_validates_signals_and_reaches_all_processes_with_all() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sh", "-c", "sleep 1000 & sleep 1000 & wait; sleep 1000"]);
    let pid = daemon.run("signals", &bundle, None).await;
    for bad in [0, 65, 1000] {
        let status = daemon.kill("signals", bad, false).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "signal {bad}");
        assert!(
            status.message().contains("invalid signal"),
            "{}",
            status.message()
        );
    }
    let missing = daemon.kill("nope", 9, false).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let dirs = daemon.container_cgroups("signals");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let everyone = loop {
        let procs: Vec<i32> = fs::read_to_string(dirs[0].join("cgroup.procs"))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        if procs.len() == 3 || std::time::Instant::now() > deadline {
            break procs;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(everyone.len(), 3, "{everyone:?}");
    daemon.kill("signals", 15, true).await.unwrap();
    // SIGTERM to every process: the sleeps die; the shell (pid 1 of its namespace) has no
    // handler and ignores it.
    wait_gone(
        &everyone
            .iter()
            .copied()
            .filter(|&p| p != pid)
            .collect::<Vec<_>>(),
    )
    .await;
    assert!(process_alive(pid));
    daemon.kill("signals", 9, false).await.unwrap();
    wait_status(
        &mut daemon.client().await,
        "signals",
        ContainerStatus::Stopped,
    )
    .await;
    let stopped = daemon.kill("signals", 9, false).await.unwrap_err();
    assert_eq!(stopped.code(), Code::FailedPrecondition);
    daemon.delete("signals", false).await.unwrap();
}

#[tokio::test]
async fn start_and_create_refuse_the_wrong_state() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("once", &bundle, None).await;
    let again = daemon.start_container("once").await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again
            .message()
            .contains("cannot start container once that is running"),
        "{}",
        again.message()
    );
    let duplicate = daemon.create("once", &bundle, None).await.unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    assert_eq!(
        daemon.start_container("nope").await.unwrap_err().code(),
        Code::NotFound
    );
    daemon.delete("once", true).await.unwrap();
}

#[tokio::test]
async fn malformed_bundles_get_clear_errors_and_leave_nothing_behind() {
    let daemon = Daemon::start().await;
    let good = Bundle::busybox(&["sleep", "1000"]);
    let no_config = tempfile::tempdir().unwrap();
    let garbage = tempfile::tempdir().unwrap();
    fs::write(garbage.path().join("config.json"), "{ not json").unwrap();
    let wrong_types = tempfile::tempdir().unwrap();
    fs::write(
        wrong_types.path().join("config.json"),
        r#"{"ociVersion": 1, "process": "x"}"#,
    )
    .unwrap();
    let cases: Vec<(String, Code, &str)> = vec![
        (
            "relative/bundle".into(),
            Code::InvalidArgument,
            "must be absolute",
        ),
        (
            "/nonexistent/bundle".into(),
            Code::NotFound,
            "no such directory",
        ),
        (
            no_config.path().to_str().unwrap().into(),
            Code::NotFound,
            "config.json not found",
        ),
        (
            garbage.path().to_str().unwrap().into(),
            Code::InvalidArgument,
            "invalid config.json",
        ),
        (
            wrong_types.path().to_str().unwrap().into(),
            Code::InvalidArgument,
            "invalid config.json",
        ),
    ];
    let mut client = daemon.client().await;
    for (index, (bundle, code, text)) in cases.into_iter().enumerate() {
        let id = format!("bad{index}");
        let status = client
            .create_container(berth::proto::CreateContainerRequest {
                id: id.clone(),
                bundle: bundle.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{bundle}: {status:?}");
        assert!(
            status.message().contains(text),
            "{bundle}: {}",
            status.message()
        );
        assert_nothing_left(&daemon, &id);
    }

    type Edit = fn(&mut serde_json::Value);
    let edits: Vec<(&str, Edit, Code, &str)> = vec![
        (
            "no-process",
            |c| {
                c.as_object_mut().unwrap().remove("process");
            },
            Code::InvalidArgument,
            "no process",
        ),
        (
            "empty-args",
            |c| c["process"]["args"] = serde_json::json!([]),
            Code::InvalidArgument,
            "process.args is empty",
        ),
        (
            "no-rootfs",
            |c| c["root"]["path"] = "/nonexistent/rootfs".into(),
            Code::NotFound,
            "root.path",
        ),
        (
            "seccomp-notify",
            |c| c["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
            Code::InvalidArgument,
            "linux.seccomp: SCMP_ACT_NOTIFY is not supported",
        ),
        (
            "userns-without-mappings",
            |c| {
                c["linux"]["namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::json!({"type": "user"}))
            },
            Code::InvalidArgument,
            "linux.uidMappings: a new user namespace needs uid and gid mappings",
        ),
        (
            "apparmor",
            |c| c["process"]["apparmorProfile"] = "x".into(),
            Code::InvalidArgument,
            "process.apparmorProfile: AppArmor is not enabled",
        ),
        (
            "selinux",
            |c| c["process"]["selinuxLabel"] = "x".into(),
            Code::InvalidArgument,
            "process.selinuxLabel: SELinux is not enabled",
        ),
        (
            "cgroup-escape",
            |c| c["linux"]["cgroupsPath"] = "/a/../../x".into(),
            Code::InvalidArgument,
            "linux.cgroupsPath",
        ),
        (
            "no-binary",
            |c| c["process"]["args"] = serde_json::json!(["/bin/missing"]),
            Code::InvalidArgument,
            "missing",
        ),
        (
            "bad-mount",
            |c| {
                c["mounts"].as_array_mut().unwrap().push(serde_json::json!({"destination": "/x", "type": "bind", "source": "/nonexistent/src", "options": ["bind"]}))
            },
            Code::InvalidArgument,
            "/nonexistent/src",
        ),
        (
            "rdt-missing",
            |c| c["linux"]["intelRdt"] = serde_json::json!({"closID": "g"}),
            Code::FailedPrecondition,
            "resctrl",
        ),
    ];
    for (id, edit, code, text) in edits {
        let mut bundle = Bundle::busybox(&["sleep", "1000"]);
        bundle.edit(edit);
        let status = daemon.create(id, &bundle, None).await.unwrap_err();
        assert_eq!(status.code(), code, "{id}: {status:?}");
        assert!(
            status.message().contains(text),
            "{id}: {}",
            status.message()
        );
        assert_nothing_left(&daemon, id);
    }
    // The same daemon still creates a good one.
    daemon.run("good", &good, None).await;
    daemon.delete("good", true).await.unwrap();
}

#[tokio::test]
async fn containers_survive_a_daemon_crash_with_their_status_and_pid() {
    let mut daemon = Daemon::start().await;
    let sleeper = Bundle::busybox(&["sleep", "1000"]);
    let exits = Bundle::busybox(&["true"]);
    let created_pid = daemon
        .create("c-created", &sleeper, None)
        .await
        .unwrap()
        .pid;
    let running_pid = daemon.run("c-running", &sleeper, None).await;
    daemon.run("c-stopped", &exits, None).await;
    wait_exit_status(&mut daemon.client().await, "c-stopped").await;

    daemon.crash();
    assert!(process_alive(running_pid), "a container died with berthd");
    daemon.spawn(&[]);
    daemon.wait_serving().await;

    let created = daemon.get("c-created").await.unwrap();
    assert_eq!(
        (created.status(), created.pid),
        (ContainerStatus::Created, created_pid)
    );
    let running = daemon.get("c-running").await.unwrap();
    assert_eq!(
        (running.status(), running.pid as i32),
        (ContainerStatus::Running, running_pid)
    );
    let stopped = daemon.get("c-stopped").await.unwrap();
    assert_eq!(stopped.status(), ContainerStatus::Stopped);
    assert_eq!(
        stopped.exit_status.map(|e| e.code),
        Some(0),
        "the exit seen before the crash is kept"
    );

    // The new daemon manages what the old one made.
    daemon.start_container("c-created").await.unwrap();
    let mut client = daemon.client().await;
    client
        .pause_container(berth::proto::PauseContainerRequest {
            id: "c-running".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        daemon.get("c-running").await.unwrap().status(),
        ContainerStatus::Paused
    );
    daemon.delete("c-running", true).await.unwrap();
    daemon.kill("c-created", 9, false).await.unwrap();
    let killed = wait_status(&mut client, "c-created", ContainerStatus::Stopped).await;
    // Not berthd's child any more: the exit is seen, its status is unknown, and berth says
    // so rather than inventing one.
    assert_eq!(killed.exit_status, None);
    for id in ["c-created", "c-stopped"] {
        daemon.delete(id, false).await.unwrap();
    }
    wait_gone(&[running_pid, created_pid as i32]).await;
}

#[tokio::test]
async fn hooks_run_in_order_with_the_oci_state() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let log = output_file(&out, "hooks.log");
    let hook = |name: &str| {
        serde_json::json!({
            "path": "/usr/bin/busybox",
            "args": ["sh", "-c", format!("echo {name} $(cat | grep -o '\"status\":\"[a-z]*\"') >> {log}")],
        })
    };
    // startContainer hooks run inside the container: their path and files are the
    // container's, so this one reports on its stderr, which is the container's.
    let in_container = serde_json::json!({
        "path": "/bin/busybox",
        "args": ["sh", "-c", "echo startContainer $(cat | grep -o '\"status\":\"[a-z]*\"') >&2"],
    });
    let stdio = output_file(&out, "stdio");
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({
            "createRuntime": [hook("createRuntime")],
            "createContainer": [hook("createContainer")],
            "startContainer": [in_container],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        });
    });
    daemon.run("hooked", &bundle, Some(&stdio)).await;
    wait_output(&stdio, "startContainer").await;
    assert_eq!(
        daemon.get("hooked").await.unwrap().status(),
        ContainerStatus::Running
    );
    daemon.delete("hooked", true).await.unwrap();
    let ran = fs::read_to_string(&log).unwrap();
    assert_eq!(
        ran,
        "createRuntime \"status\":\"creating\"\ncreateContainer \"status\":\"creating\"\n\
         poststart \"status\":\"running\"\npoststop \"status\":\"stopped\"\n"
    );
    assert_eq!(
        fs::read_to_string(&stdio).unwrap(),
        "startContainer \"status\":\"created\"\n"
    );
}

#[tokio::test]
async fn spec_features_are_applied_inside_the_container() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let stdout = output_file(&out, "stdout");
    let shared = tempfile::tempdir().unwrap();
    fs::write(shared.path().join("greeting"), "from-the-host").unwrap();
    let mut bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "id; cat /data/greeting; echo; \
         test -c /dev/null && echo null-is-a-device; \
         wc -c < /proc/keys; ls /sys/firmware | wc -l; \
         touch /proc/sys/kernel/hostname 2>/dev/null && echo proc-sys-writable || echo proc-sys-read-only; \
         grep 'Max open files' /proc/self/limits; cat /proc/self/oom_score_adj; \
         ls /sys/fs/cgroup; echo done; sleep 1000",
    ]);
    let data = shared.path().to_str().unwrap().to_owned();
    bundle.edit(|c| {
        c["process"]["user"] =
            serde_json::json!({ "uid": 1000, "gid": 1000, "additionalGids": [5, 6] });
        c["process"]["rlimits"] =
            serde_json::json!([{ "type": "RLIMIT_NOFILE", "hard": 512, "soft": 256 }]);
        c["process"]["oomScoreAdj"] = 123.into();
        c["mounts"].as_array_mut().unwrap().push(serde_json::json!({
            "destination": "/data", "type": "bind", "source": data, "options": ["rbind", "ro"]
        }));
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "type": "cgroup" }));
    });
    let pid = daemon.run("features", &bundle, Some(&stdout)).await;
    let seen = wait_output(&stdout, "done").await;
    assert!(seen.contains("uid=1000 gid=1000 groups=5,6"), "{seen}");
    assert!(seen.contains("from-the-host"), "{seen}");
    assert!(seen.contains("null-is-a-device"), "{seen}");
    // runc spec masks /proc/keys (a file: /dev/null over it) and /sys/firmware (a
    // directory: an empty tmpfs over it).
    assert!(seen.contains("\n0\n0\n"), "masked paths: {seen}");
    assert!(seen.contains("proc-sys-read-only"), "{seen}");
    assert!(
        seen.contains("Max open files            256                  512"),
        "{seen}"
    );
    assert!(seen.contains("\n123\n"), "{seen}");
    if unified_host() {
        assert!(
            seen.contains("cgroup.controllers") && seen.contains("cgroup.procs"),
            "the cgroup mount is cgroup2: {seen}"
        );
    } else {
        assert!(
            seen.contains("memory") && seen.contains("pids"),
            "the cgroup mount shows the hierarchies: {seen}"
        );
    }
    assert_ne!(ns(pid, "cgroup"), ns(std::process::id() as i32, "cgroup"));
    daemon.delete("features", true).await.unwrap();
}

#[tokio::test]
async fn a_container_joins_another_containers_namespace_by_path() {
    let daemon = Daemon::start().await;
    let first = Bundle::busybox(&["sleep", "1000"]);
    let first_pid = daemon.run("first", &first, None).await;
    let mut second = Bundle::busybox(&["sleep", "1000"]);
    let net = format!("/proc/{first_pid}/ns/net");
    second.edit(|c| {
        for namespace in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if namespace["type"] == "network" {
                namespace["path"] = net.clone().into();
            }
        }
    });
    let second_pid = daemon.run("second", &second, None).await;
    assert_eq!(ns(second_pid, "net"), ns(first_pid, "net"));
    assert_ne!(ns(second_pid, "uts"), ns(first_pid, "uts"));
    for id in ["second", "first"] {
        daemon.delete(id, true).await.unwrap();
    }
}

#[tokio::test]
async fn a_cgroup_that_already_holds_processes_is_refused() {
    let daemon = Daemon::start().await;
    // Someone else's process sits in the cgroup the config names (in the pids hierarchy, or
    // in the one tree of a pure cgroup v2 host).
    let occupied = cgroup_dirs(&format!("{}/occupied", daemon.cgroup_parent));
    let unified = unified_host();
    let pids_dir = occupied
        .iter()
        .find(|d| unified || d.to_string_lossy().contains("/pids/"))
        .unwrap()
        .clone();
    fs::create_dir_all(&pids_dir).unwrap();
    let mut stranger = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    fs::write(pids_dir.join("cgroup.procs"), stranger.id().to_string()).unwrap();
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit(|c| c["linux"]["cgroupsPath"] = "occupied".into());
    let status = daemon.create("squatter", &bundle, None).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("already holds processes"),
        "{}",
        status.message()
    );
    assert!(process_alive(stranger.id() as i32));
    assert!(!daemon.root.join("squatter").exists());
    stranger.kill().unwrap();
    stranger.wait().unwrap();
    fs::remove_dir(&pids_dir).unwrap();
}

#[tokio::test]
async fn init_hooks_that_ignore_a_large_stdin_do_not_hang_create_or_start() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let stdout = output_file(&out, "stdout");
    // Each never reads its stdin, exits at once, and leaves a process holding the pipe's
    // read end: the init's write of the state neither completes nor breaks.
    let ignoring = |busybox: &str| {
        serde_json::json!({
            "path": busybox,
            "args": ["sh", "-c", "exec 3<&0; sleep 1000 & exit 0"],
        })
    };
    let mut bundle = Bundle::busybox(&["sh", "-c", "echo started; sleep 1000"]);
    bundle.edit(|c| {
        // 200 KiB: far more than a pipe's buffer.
        c["annotations"] = serde_json::json!({ "padding": "x".repeat(200 * 1024) });
        c["hooks"] = serde_json::json!({
            "createContainer": [ignoring("/usr/bin/busybox")],
            // startContainer hooks run inside the container, from its root file system.
            "startContainer": [ignoring("/bin/busybox")],
        });
    });
    let created = tokio::time::timeout(
        Duration::from_secs(20),
        daemon.create("big-init", &bundle, Some(&stdout)),
    )
    .await
    .expect("create hung on a createContainer hook that ignores its stdin")
    .unwrap_or_else(|e| panic!("create: {e:?}\n{}", daemon.logs()));
    daemon.start_container("big-init").await.unwrap();
    // The user process only runs once the startContainer hook is done with.
    wait_output(&stdout, "started").await;
    assert_eq!(
        daemon.get("big-init").await.unwrap().status(),
        ContainerStatus::Running
    );
    daemon.delete("big-init", true).await.unwrap();
    wait_gone(&[created.pid as i32]).await;
    assert_nothing_left(&daemon, "big-init");
}

#[tokio::test]
async fn hook_timeouts_of_zero_or_less_are_invalid_at_create() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let ran = output_file(&out, "ran");
    let fine = serde_json::json!({
        "path": "/usr/bin/busybox",
        "args": ["sh", "-c", format!("echo ran >> {ran}")],
        "timeout": 5,
    });
    let with_timeout = |timeout: i64| {
        let mut hook = fine.clone();
        hook["timeout"] = timeout.into();
        hook
    };
    let cases = [
        ("poststop", 0, 0),
        ("poststop", 0, -1),
        ("createContainer", 1, 0),
        ("createRuntime", 1, -1),
        ("startContainer", 0, i64::MIN),
        ("poststart", 2, 0),
        ("prestart", 0, -1),
    ];
    for (index, (kind, position, timeout)) in cases.into_iter().enumerate() {
        let mut hooks = vec![fine.clone(); position];
        hooks.push(with_timeout(timeout));
        let mut bundle = Bundle::busybox(&["sleep", "1000"]);
        bundle.edit(|c| {
            // Hooks that would run first, had the create gone ahead.
            c["hooks"] = serde_json::json!({ "createRuntime": [fine.clone()] });
            c["hooks"][kind] = hooks.into();
        });
        let id = format!("bad-timeout{index}");
        let status = daemon.create(&id, &bundle, None).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{kind} {timeout}: {status:?}"
        );
        let expected = format!("hooks.{kind}[{position}].timeout must be greater than zero");
        assert!(status.message().contains(&expected), "{status:?}");
        assert_nothing_left(&daemon, &id);
    }
    assert!(fs::read_to_string(&ran).is_err(), "a hook ran");
    assert!(daemon.list().await.is_empty());
}

#[tokio::test]
async fn a_hook_timeout_of_i64_max_does_not_panic() {
    // With the default maximum the timeout is capped; with a maximum past what the clock can
    // tell (more than i64::MAX seconds) it is kept whole, as berth before the maximum did.
    for extra_args in [&[][..], &["--hook-timeout-max", "500000000000years"][..]] {
        hooks_with_a_timeout_of_i64_max_run(extra_args).await;
    }
}

async fn hooks_with_a_timeout_of_i64_max_run(extra_args: &[&str]) {
    let daemon = Daemon::start_with(|_| {}, extra_args).await;
    let out = tempfile::tempdir().unwrap();
    let stdout = output_file(&out, "stdout");
    let log = output_file(&out, "hooks.log");
    let hook = |busybox: &str, name: &str, log: &str| {
        serde_json::json!({
            "path": busybox,
            "args": ["sh", "-c", format!("echo {name} >> {log}")],
            "timeout": i64::MAX,
        })
    };
    let mut bundle = Bundle::busybox(&["sh", "-c", "echo started; sleep 1000"]);
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({
            "prestart": [hook("/usr/bin/busybox", "prestart", &log)],
            "createRuntime": [hook("/usr/bin/busybox", "createRuntime", &log)],
            "createContainer": [hook("/usr/bin/busybox", "createContainer", &log)],
            // Inside the container: it reports on its stderr, the container's.
            "startContainer": [{
                "path": "/bin/busybox",
                "args": ["sh", "-c", "echo startContainer >&2"],
                "timeout": i64::MAX,
            }],
            "poststart": [hook("/usr/bin/busybox", "poststart", &log)],
            "poststop": [hook("/usr/bin/busybox", "poststop", &log)],
        });
    });
    let created = daemon
        .create("huge-timeout", &bundle, Some(&stdout))
        .await
        .unwrap_or_else(|e| panic!("create: {e:?}\n{}", daemon.logs()));
    let started = daemon.start_container("huge-timeout").await.unwrap();
    assert_eq!(started.status(), ContainerStatus::Running);
    wait_output(&stdout, "started").await;
    assert!(fs::read_to_string(&stdout)
        .unwrap()
        .contains("startContainer"));
    let response = daemon.delete("huge-timeout", true).await.unwrap();
    assert!(response.warnings.is_empty(), "{:?}", response.warnings);
    wait_gone(&[created.pid as i32]).await;
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "createRuntime\nprestart\ncreateContainer\npoststart\npoststop\n"
    );
    // The daemon, and containers after it, keep working.
    let plain = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("after", &plain, None).await;
    daemon.delete("after", true).await.unwrap();
    assert!(!daemon.logs().contains("panicked"), "{}", daemon.logs());
}
