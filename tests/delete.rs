//! DeleteContainer, point by point (docs/delete.md D1-D19), on real containers.
//! D1, D2, D4, D5 without force and D18/D19 basics are in foundation.rs.
mod common;

use std::{
    fs,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use berth::proto::ContainerStatus;
use common::*;
use tonic::Code;

fn write(path: &std::path::Path, value: &str) {
    fs::write(path, value).unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
}

/// A host process the test owns; its exit is collected when it is dropped.
struct HostProcess(std::process::Child);

impl HostProcess {
    fn sleep() -> Self {
        Self(Command::new("sleep").arg("1000").spawn().unwrap())
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    /// Waits for the exit (the daemon is expected to kill it) and returns the signal.
    fn wait_killed(mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.0.wait().unwrap().signal()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn freezer_of(dirs: &[std::path::PathBuf]) -> std::path::PathBuf {
    dirs.iter()
        .find(|d| d.join("freezer.state").exists())
        .expect("a v1 freezer")
        .clone()
}

/// What keeps a process alive through SIGKILL until the test lets go (release or drop).
/// cgroup v1: the freezer of a cgroup the process is in, FROZEN by the test; a frozen task
/// takes no signal. cgroup v2's freezer lets fatal signals through, so there the process
/// waits in a lookup that [`StalledLookups`] never answers.
enum Hold {
    Freezer(std::path::PathBuf),
    Lookup(StalledLookups),
}

impl Hold {
    fn release(&self) -> std::io::Result<()> {
        match self {
            Hold::Freezer(dir) => fs::write(dir.join("freezer.state"), "THAWED"),
            Hold::Lookup(lookups) => {
                lookups.release();
                Ok(())
            }
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

#[tokio::test]
async fn d3_d13_d17_stopped_container_is_destroyed_and_its_last_snapshot_returned() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sh", "-c", "exit 3"]);
    let pid = daemon.run("done", &bundle, None).await;
    wait_exit_status(&mut daemon.client().await, "done").await;
    let response = daemon.delete("done", false).await.unwrap();
    let last = response.container.unwrap();
    assert_eq!(
        (last.id.as_str(), last.pid as i32, last.status()),
        ("done", pid, ContainerStatus::Stopped)
    );
    assert_eq!(last.bundle, bundle.path().to_str().unwrap());
    assert_eq!(last.exit_status.unwrap().code, 3);
    assert!(response.warnings.is_empty());
    assert!(!daemon.root.join("done").exists());
    assert!(daemon.container_cgroups("done").iter().all(|d| !d.exists()));
    assert_eq!(daemon.get("done").await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn d3_stopped_with_force_and_created_without_force_are_deleted() {
    let daemon = Daemon::start().await;
    let sleeper = Bundle::busybox(&["sleep", "1000"]);
    let created = daemon.create("fresh", &sleeper, None).await.unwrap().pid as i32;
    // Created, no force: killed, then destroyed (runc, crun and youki all do this).
    daemon.delete("fresh", false).await.unwrap();
    wait_gone(&[created]).await;
    assert!(!daemon.root.join("fresh").exists());

    let exits = Bundle::busybox(&["true"]);
    daemon.run("ended", &exits, None).await;
    wait_status(
        &mut daemon.client().await,
        "ended",
        ContainerStatus::Stopped,
    )
    .await;
    daemon.delete("ended", true).await.unwrap();
    assert!(!daemon.root.join("ended").exists());
}

#[tokio::test]
async fn d4_guard_running_and_paused_without_force_are_untouched() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let pid = daemon.run("busy", &bundle, None).await;
    let refused = daemon.delete("busy", false).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "cannot delete container busy that is not stopped: running"
    );
    assert!(process_alive(pid) && daemon.root.join("busy/state.json").exists());
    assert!(daemon.container_cgroups("busy").iter().all(|d| d.exists()));

    daemon
        .client()
        .await
        .pause_container(berth::proto::PauseContainerRequest { id: "busy".into() })
        .await
        .unwrap();
    let refused = daemon.delete("busy", false).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "cannot delete container busy that is not stopped: paused"
    );
    assert_eq!(
        daemon.get("busy").await.unwrap().status(),
        ContainerStatus::Paused
    );

    let cli = daemon.cli(&["delete", "busy"]);
    assert_eq!(cli.status.code(), Some(1), "D19");
    assert_eq!(
        stderr(&cli),
        "cannot delete container busy that is not stopped: paused\n"
    );

    // D7: paused + force thaws so the SIGKILL lands (cgroup v1).
    let forced = daemon.cli(&["delete", "--force", "busy"]);
    assert_eq!(forced.status.code(), Some(0), "{}", stderr(&forced));
    assert!(
        stdout(&forced).is_empty() && stderr(&forced).is_empty(),
        "D19: silent on success"
    );
    wait_gone(&[pid]).await;
    assert!(daemon.container_cgroups("busy").iter().all(|d| !d.exists()));
}

#[tokio::test]
async fn d5_force_removes_default_cgroup_and_state_dir_with_a_warning() {
    let mut daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["true"]);
    daemon.run("garbled", &bundle, None).await;
    wait_status(
        &mut daemon.client().await,
        "garbled",
        ContainerStatus::Stopped,
    )
    .await;
    daemon.crash();
    fs::write(daemon.root.join("garbled/state.json"), "{\"truncated").unwrap();
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    let unknown = daemon.get("garbled").await.unwrap();
    assert_eq!(unknown.status(), ContainerStatus::Unknown);
    assert!(
        unknown.status_reason.contains("state.json"),
        "{}",
        unknown.status_reason
    );
    let response = daemon.delete("garbled", true).await.unwrap();
    assert_eq!(response.warnings.len(), 1);
    assert!(
        response.warnings[0].contains("could not be checked"),
        "{:?}",
        response.warnings
    );
    assert!(!daemon.root.join("garbled").exists());
    assert!(daemon
        .container_cgroups("garbled")
        .iter()
        .all(|d| !d.exists()));
}

#[tokio::test]
async fn d6_reused_pid_is_never_signalled() {
    // A live process that is not the container's init: same pid, other start time.
    let stranger = HostProcess::sleep();
    let pid = stranger.pid();
    let daemon = Daemon::start_with(
        |root| {
            write_state(
                root,
                "ghost",
                &format!(r#""init":{{"pid":{pid},"startTime":1}}"#),
            )
        },
        &[],
    )
    .await;
    assert_eq!(
        daemon.get("ghost").await.unwrap().status(),
        ContainerStatus::Stopped
    );
    daemon.delete("ghost", true).await.unwrap();
    daemon.kill("ghost", 9, false).await.unwrap_err();
    assert!(
        process_alive(pid),
        "berthd signalled a process that only shares the pid"
    );
}

#[tokio::test]
async fn d7_d9_shared_pid_namespace_leftovers_are_killed_by_a_plain_delete() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    bundle.without_namespace("pid");
    let init = daemon.run("shared", &bundle, None).await;
    let dirs = daemon.container_cgroups("shared");
    let procs = |dir: &std::path::Path| -> Vec<i32> {
        fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while procs(&dirs[0]).len() < 3 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let children: Vec<i32> = procs(&dirs[0]).into_iter().filter(|&p| p != init).collect();
    // Someone kills only the init; its children live on (no PID namespace takes them down).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_status(
        &mut daemon.client().await,
        "shared",
        ContainerStatus::Stopped,
    )
    .await;
    assert!(children.iter().all(|&p| process_alive(p)));
    daemon.delete("shared", false).await.unwrap();
    wait_gone(&children).await;
    assert!(dirs.iter().all(|d| !d.exists()));
}

#[tokio::test]
async fn d7_force_kills_a_running_container_and_removes_everything() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sh", "-c", "sleep 1000 & sleep 1000"]);
    let pid = daemon.run("doomed", &bundle, None).await;
    let response = daemon.delete("doomed", true).await.unwrap();
    let last = response.container.unwrap();
    assert_eq!(last.status(), ContainerStatus::Stopped);
    let exit = last.exit_status.expect("berthd reaped the init it killed");
    assert_eq!((exit.code, exit.signal), (137, 9));
    wait_gone(&[pid]).await;
    assert!(daemon
        .container_cgroups("doomed")
        .iter()
        .all(|d| !d.exists()));
    assert!(!daemon.root.join("doomed").exists());
}

#[tokio::test]
async fn d8_wait_ends_early_on_exit() {
    // Rounds of a minute: a wait that did not end the moment the init exits would take one.
    let daemon = Daemon::start_with(
        |_| {},
        &["--kill-wait-round", "60s", "--kill-wait-rounds", "3"],
    )
    .await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("quick", &bundle, None).await;
    let started = Instant::now();
    daemon.delete("quick", true).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the wait sat out its round: {:?}",
        started.elapsed()
    );
}

/// A container whose init cannot die. On cgroup v1 its cgroup's parent is frozen by the
/// test, which is not a pause of the container (freezer.self_freezing is 0), so delete does
/// not thaw it: the honest way to hold a SIGKILLed process alive on such a kernel. On cgroup
/// v2 (whose freezer a SIGKILL goes through) the init waits in a held lookup instead.
struct FrozenByAncestor {
    // Released (and on v2 unmounted) before the bundle holding the mount point goes.
    _hold: Hold,
    _bundle: Bundle,
}

impl FrozenByAncestor {
    /// Runs `id` in cgroup `frozen-<id>/<id>` and holds its init; returns the init's pid.
    async fn run(daemon: &Daemon, id: &str) -> (i32, Self) {
        let path = format!("frozen-{id}/{id}");
        if unified_host() {
            // Mounted in the rootfs, so the container's rbind of the rootfs has it too.
            let mut bundle = Bundle::busybox(&["cat", "/held/name"]);
            bundle.edit(|c| c["linux"]["cgroupsPath"] = path.into());
            let mount_point = bundle.path().join("rootfs/held");
            fs::create_dir(&mount_point).unwrap();
            let lookups = StalledLookups::mount(&mount_point);
            let pid = daemon.run(id, &bundle, None).await;
            lookups.wait_held(pid).await;
            let hold = Hold::Lookup(lookups);
            return (
                pid,
                Self {
                    _hold: hold,
                    _bundle: bundle,
                },
            );
        }
        let mut bundle = Bundle::busybox(&["sleep", "1000"]);
        bundle.edit(|c| c["linux"]["cgroupsPath"] = path.into());
        let pid = daemon.run(id, &bundle, None).await;
        let parent_freezer = freezer_of(&cgroup_dirs(&format!(
            "{}/frozen-{id}",
            daemon.cgroup_parent
        )));
        write(&parent_freezer.join("freezer.state"), "FROZEN");
        let hold = Hold::Freezer(parent_freezer);
        (
            pid,
            Self {
                _hold: hold,
                _bundle: bundle,
            },
        )
    }
}

/// A host process in sub-cgroup `stuck` of a container that the delete cannot kill: frozen
/// there by the test (v1), or waiting in a held lookup (v2).
struct Stuck {
    // Released before the process is waited for.
    hold: Hold,
    process: HostProcess,
    dir: std::path::PathBuf,
    _mount_point: Option<tempfile::TempDir>,
}

impl Stuck {
    async fn new(container_dirs: &[std::path::PathBuf]) -> Self {
        if unified_host() {
            let dir = container_dirs[0].join("stuck");
            fs::create_dir(&dir).unwrap();
            let mount_point = tempfile::tempdir().unwrap();
            let lookups = StalledLookups::mount(mount_point.path());
            let process = HostProcess(
                Command::new("cat")
                    .arg(mount_point.path().join("name"))
                    .spawn()
                    .unwrap(),
            );
            write(&dir.join("cgroup.procs"), &process.pid().to_string());
            lookups.wait_held(process.pid()).await;
            let hold = Hold::Lookup(lookups);
            let _mount_point = Some(mount_point);
            return Self {
                hold,
                process,
                dir,
                _mount_point,
            };
        }
        let dir = freezer_of(container_dirs).join("stuck");
        fs::create_dir(&dir).unwrap();
        let process = HostProcess::sleep();
        write(&dir.join("cgroup.procs"), &process.pid().to_string());
        write(&dir.join("freezer.state"), "FROZEN");
        let hold = Hold::Freezer(dir.clone());
        Self {
            hold,
            process,
            dir,
            _mount_point: None,
        }
    }
}

#[tokio::test]
async fn d8_timeout_is_deadline_exceeded_and_the_container_stays_deletable() {
    let daemon = Daemon::start_with(
        |_| {},
        &["--kill-wait-rounds", "5", "--kill-wait-round", "100ms"],
    )
    .await;
    let (_, frozen) = FrozenByAncestor::run(&daemon, "stuck").await;
    assert_eq!(
        daemon.get("stuck").await.unwrap().status(),
        ContainerStatus::Running
    );
    let status = daemon.delete("stuck", true).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "container init still running: stuck");
    assert!(
        daemon.root.join("stuck/state.json").exists(),
        "nothing is removed"
    );
    assert!(daemon
        .container_cgroups("frozen-stuck/stuck")
        .iter()
        .all(|d| d.exists()));
    drop(frozen);
    // Thawed, the pending SIGKILL lands: the container is stopped and a plain delete finishes.
    wait_status(
        &mut daemon.client().await,
        "stuck",
        ContainerStatus::Stopped,
    )
    .await;
    daemon.delete("stuck", false).await.unwrap();
    assert!(
        cgroup_dirs(&format!("{}/frozen-stuck", daemon.cgroup_parent))
            .iter()
            .all(|d| !d.exists())
    );
}

#[tokio::test]
async fn d10_nested_sub_cgroups_in_every_hierarchy_are_removed_with_their_processes() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("nested", &bundle, None).await;
    let dirs = daemon.container_cgroups("nested");
    let mut intruders = Vec::new();
    let mut made = Vec::new();
    // Deep in the memory and pids hierarchies, and in the unified tree; on a pure cgroup v2
    // host all three in its one tree.
    let unified = unified_host();
    if unified {
        assert_eq!(dirs.len(), 1, "one tree on cgroup v2: {dirs:?}");
    }
    for (hierarchy, sub) in [("memory", "a/b"), ("pids", "c"), ("unified", "d")] {
        let Some(dir) = dirs
            .iter()
            .find(|d| unified || d.to_string_lossy().contains(&format!("/{hierarchy}/")))
        else {
            continue;
        };
        let nested = dir.join(sub);
        fs::create_dir_all(&nested).unwrap();
        let process = HostProcess::sleep();
        write(&nested.join("cgroup.procs"), &process.pid().to_string());
        made.push(nested);
        intruders.push(process);
    }
    assert!(
        made.len() >= 2,
        "expected memory and pids hierarchies: {dirs:?}"
    );
    daemon.delete("nested", true).await.unwrap();
    for process in intruders {
        assert_eq!(process.wait_killed(), Some(9));
    }
    for dir in made.iter().chain(&dirs) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[tokio::test]
async fn d11_rdt_group_removed_only_when_berth_created_it() {
    // No resctrl mount exists on these machines: a plain directory with resctrl's layout
    // stands in. rmdir fails there (it holds files), which exercises the fallback to
    // recursive removal that only a non-resctrl directory gets.
    let resctrl = tempfile::tempdir().unwrap();
    let shared = resctrl.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let root_flag = resctrl.path().to_str().unwrap().to_owned();
    let daemon = Daemon::start_with(|_| {}, &["--resctrl-root", &root_flag]).await;

    let mut own = Bundle::busybox(&["sleep", "1000"]);
    own.edit(|c| c["linux"]["intelRdt"] = serde_json::json!({ "l3CacheSchema": "L3:0=f" }));
    let pid = daemon.create("rdt-own", &own, None).await.unwrap().pid;
    let group = resctrl.path().join("rdt-own");
    assert_eq!(
        fs::read_to_string(group.join("schemata")).unwrap(),
        "L3:0=f\n"
    );
    assert!(
        !fs::read_to_string(group.join("tasks")).unwrap().is_empty(),
        "pid {pid} assigned"
    );
    let state = fs::read_to_string(daemon.root.join("rdt-own/state.json")).unwrap();
    assert!(state.contains("\"createdByBerth\": true"), "{state}");
    daemon.delete("rdt-own", true).await.unwrap();
    assert!(!group.exists());

    let mut closid = Bundle::busybox(&["sleep", "1000"]);
    closid.edit(|c| c["linux"]["intelRdt"] = serde_json::json!({ "closID": "shared" }));
    daemon.run("rdt-shared", &closid, None).await;
    daemon.delete("rdt-shared", true).await.unwrap();
    assert!(shared.is_dir(), "a group berth did not create must stay");
}

#[tokio::test]
async fn d12_failed_cgroup_removal_keeps_the_container_and_the_next_delete_finishes() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("obstacle", &bundle, None).await;
    // A process the delete cannot kill: frozen in a sub-cgroup the test froze itself (v1),
    // waiting in a held lookup in a sub-cgroup (v2).
    let stuck = Stuck::new(&daemon.container_cgroups("obstacle")).await;

    let status = daemon.delete("obstacle", true).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        status
            .message()
            .starts_with("unable to destroy container: obstacle: "),
        "{}",
        status.message()
    );
    assert!(status.message().contains("stuck"), "{}", status.message());
    assert!(daemon.root.join("obstacle/state.json").exists());
    assert_eq!(
        daemon.get("obstacle").await.unwrap().status(),
        ContainerStatus::Stopped
    );

    let dir = stuck.dir.display();
    stuck
        .hold
        .release()
        .unwrap_or_else(|e| panic!("thaw {dir}: {e}"));
    daemon.delete("obstacle", false).await.unwrap();
    assert_eq!(stuck.process.wait_killed(), Some(9));
    assert!(daemon
        .container_cgroups("obstacle")
        .iter()
        .all(|d| !d.exists()));
    assert!(!daemon.root.join("obstacle").exists());
}

#[tokio::test]
async fn d14_poststop_hooks_all_run_failures_and_timeouts_are_warnings() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let seen = output_file(&out, "state.json");
    let argv = output_file(&out, "argv");
    let orphan_pid = output_file(&out, "orphan.pid");
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit(|c| {
        c["annotations"] = serde_json::json!({ "team": "berth" });
        c["hooks"] = serde_json::json!({ "poststop": [
            { "path": "/usr/bin/busybox", "args": ["sh", "-c", "exit 3"] },
            { "path": "/usr/bin/busybox",
              "args": ["sh", "-c", format!("sleep 1000 & echo $! > {orphan_pid}; sleep 1000")],
              "timeout": 1 },
            // Python reports its argv[0] and the environment it was executed with, untouched.
            { "path": "/usr/bin/python3",
              "args": ["named-arg0", "-c", format!(
                  "import sys; open('{seen}', 'w').write(sys.stdin.read()); \
                   open('{argv}', 'w').write(sys.orig_argv[0] + '\\n' + open('/proc/self/environ').read())")],
              "env": ["HOOK_ENV=given"] },
        ]});
    });
    daemon.run("hooks", &bundle, None).await;
    let response = daemon.delete("hooks", true).await.unwrap();
    assert_eq!(response.warnings.len(), 2, "{:?}", response.warnings);
    assert!(
        response.warnings[0].starts_with("poststop hook #0"),
        "{:?}",
        response.warnings
    );
    assert!(
        response.warnings[0].contains("exited with status 3"),
        "{:?}",
        response.warnings
    );
    assert!(
        response.warnings[1].contains("timeout of 1s"),
        "{:?}",
        response.warnings
    );
    // The timed-out hook's whole process group was killed.
    let orphan: i32 = fs::read_to_string(&orphan_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(&[orphan]).await;

    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["id"], "hooks");
    assert_eq!(state["bundle"], bundle.path().to_str().unwrap());
    assert_eq!(state["annotations"]["team"], "berth");
    assert!(state["ociVersion"].is_string());
    // argv[0] and the environment exactly as given, nothing added.
    assert_eq!(
        fs::read_to_string(&argv).unwrap(),
        "named-arg0\nHOOK_ENV=given\0"
    );
    assert!(
        !daemon.root.join("hooks").exists(),
        "hook failures do not keep the container"
    );
}

#[tokio::test]
async fn d15_racing_deletes_of_one_container_exactly_one_wins() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["true"]);
    daemon.run("contested", &bundle, None).await;
    wait_status(
        &mut daemon.client().await,
        "contested",
        ContainerStatus::Stopped,
    )
    .await;
    let mut racers = Vec::new();
    for _ in 0..10 {
        let mut client = daemon.client().await;
        racers.push(tokio::spawn(async move {
            client
                .delete_container(berth::proto::DeleteContainerRequest {
                    id: "contested".into(),
                    force: false,
                })
                .await
        }));
    }
    let mut ok = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => ok += 1,
            Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert!(!daemon.root.join("contested").exists());
}

fn sigkill_pending(pid: i32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ShdPnd:")
                .or_else(|| l.strip_prefix("SigPnd:"))
        })
        .any(|mask| u64::from_str_radix(mask.trim(), 16).is_ok_and(|m| m & (1 << 8) != 0))
}

#[tokio::test]
async fn d15_a_stuck_delete_does_not_hold_up_other_containers() {
    // The jammed delete must outwait everything below until the thaw (a minute: under
    // software emulation, tests/vm, the CLI alone takes seconds); it ends a round after it.
    let daemon = Daemon::start_with(
        |_| {},
        &["--kill-wait-rounds", "600", "--kill-wait-round", "100ms"],
    )
    .await;
    let (init, frozen) = FrozenByAncestor::run(&daemon, "jammed").await;
    let free = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("free", &free, None).await;

    let mut client = daemon.client().await;
    let jammed = tokio::spawn(async move {
        client
            .delete_container(berth::proto::DeleteContainerRequest {
                id: "jammed".into(),
                force: true,
            })
            .await
    });
    // The jammed delete is waiting once its SIGKILL is pending on the frozen init.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sigkill_pending(init) {
        assert!(
            Instant::now() < deadline,
            "the jammed delete never sent SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.delete("free", true).await.unwrap();
    daemon.get("free").await.unwrap_err();
    // Get and List answer at once, with the container as its delete found it.
    assert_eq!(
        daemon.get("jammed").await.unwrap().status(),
        ContainerStatus::Running
    );
    let listed = daemon.cli(&["list", "--json"]);
    assert!(
        stdout(&listed).contains("\"jammed\""),
        "{}",
        stdout(&listed)
    );
    assert!(
        !jammed.is_finished(),
        "the jammed delete should still be waiting for its init"
    );
    drop(frozen);
    jammed.await.unwrap().unwrap();
}

#[tokio::test]
async fn d16_daemon_killed_during_parallel_deletes_restarts_into_deletable_containers() {
    let mut daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let mut pids = Vec::new();
    for round in 0..4u64 {
        let ids: Vec<String> = (0..6).map(|i| format!("crash{round}-{i}")).collect();
        for id in &ids {
            pids.push(daemon.run(id, &bundle, None).await);
        }
        let mut deletes = Vec::new();
        for id in &ids {
            let mut client = daemon.client().await;
            let id = id.clone();
            deletes.push(tokio::spawn(async move {
                client
                    .delete_container(berth::proto::DeleteContainerRequest { id, force: true })
                    .await
            }));
        }
        // Crash at a different moment of the deletes each round.
        tokio::time::sleep(Duration::from_millis(round * 3)).await;
        daemon.crash();
        for delete in deletes {
            let _ = delete.await;
        }
        daemon.spawn(&[]);
        daemon.wait_serving().await;
        // Whatever survived is listed and deletable; deleting it finishes the job.
        let listed = daemon.cli(&["list", "--json"]);
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        for container in listed.as_array().unwrap() {
            let id = container["id"].as_str().unwrap();
            daemon
                .delete(id, true)
                .await
                .unwrap_or_else(|e| panic!("second delete of {id}: {e:?}"));
        }
        for id in &ids {
            assert!(!daemon.root.join(id).exists(), "{id}: state left");
            assert!(
                daemon.container_cgroups(id).iter().all(|d| !d.exists()),
                "{id}: cgroup left"
            );
        }
    }
    wait_gone(&pids).await;
    let listed = daemon.cli(&["list", "--json"]);
    assert_eq!(stdout(&listed).trim(), "[]");
}

#[tokio::test]
async fn forty_running_containers_force_deleted_in_parallel() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let mut pids = Vec::new();
    for i in 0..40 {
        pids.push(daemon.run(&format!("many{i}"), &bundle, None).await);
    }
    let mut deletes = Vec::new();
    for i in 0..40 {
        let mut client = daemon.client().await;
        deletes.push(tokio::spawn(async move {
            client
                .delete_container(berth::proto::DeleteContainerRequest {
                    id: format!("many{i}"),
                    force: true,
                })
                .await
        }));
    }
    for delete in deletes {
        delete.await.unwrap().unwrap();
    }
    wait_gone(&pids).await;
    for i in 0..40 {
        assert!(!daemon.root.join(format!("many{i}")).exists());
        assert!(daemon
            .container_cgroups(&format!("many{i}"))
            .iter()
            .all(|d| !d.exists()));
    }
    // The cgroup parent berth made goes with the last of them, whichever that was.
    let parents = cgroup_dirs(&daemon.cgroup_parent);
    assert!(parents.iter().all(|d| !d.exists()), "{parents:?}");
}

#[tokio::test]
async fn d18_subscribers_see_exited_then_deleted() {
    let daemon = Daemon::start().await;
    let mut events = daemon
        .client()
        .await
        .watch_events(berth::proto::WatchEventsRequest {
            id: "watched".into(),
            types: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("watched", &bundle, None).await;
    daemon.delete("watched", true).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        kinds.push(event.r#type());
    }
    use berth::proto::EventType::*;
    assert_eq!(kinds, [Created, Started, Exited, Deleted]);
}

/// Issue 13, item 2: the tombstone directory removed under a running berthd.
#[tokio::test]
async fn state_dir_is_removed_even_when_the_tombstone_directory_is_missing() {
    let mut daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["true"]);
    daemon.run("orphan", &bundle, None).await;
    wait_exit_status(&mut daemon.client().await, "orphan").await;
    std::fs::remove_dir(daemon.root.join(berth::runtime::state_dir::TOMBSTONES)).unwrap();
    daemon.delete("orphan", false).await.unwrap();
    assert!(
        !daemon.root.join("orphan").exists(),
        "state directory left behind"
    );
    // And it stays gone across a restart.
    daemon.terminate().await;
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    assert_eq!(
        daemon.get("orphan").await.unwrap_err().code(),
        Code::NotFound
    );
}

fn with_cgroups_path(bundle: &mut Bundle, path: &str) {
    bundle.edit(|c| c["linux"]["cgroupsPath"] = path.into());
}

/// Issue 13, item 1: cgroups that equal, contain or lie inside another container's.
#[tokio::test]
async fn create_refuses_a_cgroup_that_overlaps_another_containers() {
    let daemon = Daemon::start().await;
    let parent = &daemon.cgroup_parent;
    let mut a = Bundle::busybox(&["sleep", "1000"]);
    with_cgroups_path(&mut a, &format!("/{parent}/x/a"));
    daemon.create("a", &a, None).await.unwrap();
    for (id, path) in [
        ("inside", format!("/{parent}/x/a/b")),
        ("same", format!("/{parent}/x/a")),
        ("around", format!("/{parent}/x")),
    ] {
        let mut bundle = Bundle::busybox(&["sleep", "1000"]);
        with_cgroups_path(&mut bundle, &path);
        let status = daemon.create(id, &bundle, None).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{id}: {status:?}");
        assert!(status.message().contains("container a"), "{id}: {status:?}");
        assert!(!daemon.root.join(id).exists(), "{id}");
    }
    // "." and "" resolve to berth's parent itself, which holds every default container.
    for (id, path) in [
        ("dot", "."),
        ("empty", ""),
        ("parent", &*format!("/{parent}")),
    ] {
        let mut bundle = Bundle::busybox(&["sleep", "1000"]);
        with_cgroups_path(&mut bundle, path);
        let status = daemon.create(id, &bundle, None).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{id}: {status:?}");
        assert!(
            status.message().contains("cgroup parent"),
            "{id}: {status:?}"
        );
    }
    daemon.delete("a", true).await.unwrap();
}

/// Issue 13, item 1, for state an older berth wrote: B's cgroup inside A's.
#[tokio::test]
async fn deleting_a_container_never_touches_a_cgroup_nested_in_its_own() {
    let mut b_process = Command::new("sleep").arg("1000").spawn().unwrap();
    let b_pid = b_process.id() as i32;
    let mut daemon = Daemon::start().await;
    let parent = daemon.cgroup_parent.clone();
    let a_dirs = cgroup_dirs(&format!("{parent}/a"));
    let b_dirs = cgroup_dirs(&format!("{parent}/a/b"));
    for dir in &b_dirs {
        std::fs::create_dir_all(dir).unwrap();
    }
    // B's process is in B's cgroup (the first hierarchy is enough to be found by a kill).
    std::fs::write(b_dirs[0].join("cgroup.procs"), b_pid.to_string()).unwrap();
    let list = |dirs: &[PathBuf]| serde_json::to_string(dirs).unwrap();
    daemon.terminate().await;
    write_state(
        &daemon.root,
        "a",
        &format!(
            r#""cgroupDirs":{},"createdCgroupDirs":{},"sharesPidNamespace":true"#,
            list(&a_dirs),
            list(&a_dirs)
        ),
    );
    write_state(
        &daemon.root,
        "b",
        &format!(
            r#""cgroupDirs":{},"createdCgroupDirs":{},"init":{{"pid":{b_pid},"startTime":{}}}"#,
            list(&b_dirs),
            list(&b_dirs),
            berth::runtime::process::ProcStat::read(b_pid)
                .unwrap()
                .unwrap()
                .start_time
        ),
    );
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    // A is stopped (no init) and shares its PID namespace: a plain delete kills what its
    // cgroup tree holds and removes it, except what is B's.
    daemon.delete("a", false).await.unwrap();
    assert!(process_alive(b_pid), "B's init was killed by A's delete");
    for dir in &b_dirs {
        assert!(dir.exists(), "{} of B was removed", dir.display());
    }
    assert_eq!(
        daemon.get("b").await.unwrap().status(),
        ContainerStatus::Running
    );
    daemon.delete("b", true).await.unwrap();
    wait_gone(&[b_pid]).await;
    let _ = b_process.wait();
    for dir in a_dirs.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Issue 13, item 3: an absolute --cgroup-parent, and a corrupt state file.
#[tokio::test]
async fn d5_force_with_an_absolute_cgroup_parent_removes_the_default_cgroup() {
    let mut daemon = Daemon::start().await;
    let relative = daemon.cgroup_parent.clone();
    // The helper passes its cgroup parent as it is: absolute, for this daemon's runs only.
    let restart_absolute = |daemon: &mut Daemon| {
        daemon.cgroup_parent = format!("/{relative}");
        daemon.spawn(&[]);
        daemon.cgroup_parent = relative.clone();
    };
    daemon.terminate().await;
    restart_absolute(&mut daemon);
    daemon.wait_serving().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let pid = daemon.run("corrupt", &bundle, None).await;
    let cgroups = daemon.container_cgroups("corrupt");
    assert!(cgroups.iter().all(|d| d.exists()));
    daemon.terminate().await;
    std::fs::write(daemon.root.join("corrupt/state.json"), "{ garbage").unwrap();
    restart_absolute(&mut daemon);
    daemon.wait_serving().await;
    let response = daemon.delete("corrupt", true).await.unwrap();
    assert!(
        response
            .warnings
            .iter()
            .any(|w| w.contains("its default cgroup")),
        "{:?}",
        response.warnings
    );
    wait_gone(&[pid]).await;
    for dir in &cgroups {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[tokio::test]
async fn a_cgroup_parent_that_climbs_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BERTHD)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--socket")
        .arg(dir.path().join("berth.sock"))
        .args(["--cgroup-parent", "a/../../b"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--cgroup-parent a/../../b"),
        "{}",
        stderr(&output)
    );
    assert!(!dir.path().join("root").exists(), "the state root was made");
}

/// Issue 13, item 13: an operator's slice that was there before berth stays.
#[tokio::test]
async fn parent_levels_that_existed_before_berth_are_kept() {
    let daemon = Daemon::start().await;
    let slice = format!("{}/operator.slice", daemon.cgroup_parent);
    // Made as an operator would: each v1 cpuset level gets CPUs and memory nodes. (A v2
    // level has the files only when its parent enables cpuset, and inherits while they are
    // empty; the kernel refuses to create them.)
    for level in [daemon.cgroup_parent.clone(), slice.clone()] {
        for dir in cgroup_dirs(&level) {
            let _ = std::fs::create_dir(&dir);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if !dir.join(file).exists() {
                    continue;
                }
                if let Ok(parent) = std::fs::read_to_string(dir.parent().unwrap().join(file)) {
                    std::fs::write(dir.join(file), parent.trim()).unwrap();
                }
            }
        }
    }
    let mut bundle = Bundle::busybox(&["true"]);
    with_cgroups_path(&mut bundle, &format!("/{slice}/c1"));
    daemon.run("c1", &bundle, None).await;
    wait_exit_status(&mut daemon.client().await, "c1").await;
    daemon.delete("c1", false).await.unwrap();
    for dir in cgroup_dirs(&slice) {
        assert!(dir.exists(), "{} was removed", dir.display());
        assert!(!dir.join("c1").exists());
        std::fs::remove_dir(dir).unwrap();
    }
}

/// A level berth made stays while a container lives below it, and goes with the last one,
/// whichever container made it.
#[tokio::test]
async fn parent_levels_berth_made_go_with_the_last_container_below_them() {
    let daemon = Daemon::start().await;
    let group = format!("{}/group", daemon.cgroup_parent);
    for id in ["first", "second"] {
        let mut bundle = Bundle::busybox(&["true"]);
        with_cgroups_path(&mut bundle, &format!("/{group}/{id}"));
        daemon.run(id, &bundle, None).await;
        wait_exit_status(&mut daemon.client().await, id).await;
    }
    daemon.delete("first", false).await.unwrap();
    assert!(cgroup_dirs(&group).iter().all(|d| d.exists()));
    daemon.delete("second", false).await.unwrap();
    for dir in cgroup_dirs(&group) {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

/// Issue 13, item 4: the exit a failed destroy saw is still published, before `deleted`.
#[tokio::test]
async fn exited_is_published_when_destroy_fails_after_kill_and_wait() {
    let daemon = Daemon::start().await;
    let mut events = daemon
        .client()
        .await
        .watch_events(berth::proto::WatchEventsRequest {
            id: "obstacle".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        let event = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        event.r#type()
    };
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("obstacle", &bundle, None).await;
    let stuck = Stuck::new(&daemon.container_cgroups("obstacle")).await;
    daemon.delete("obstacle", true).await.unwrap_err();
    use berth::proto::EventType;
    assert_eq!(next().await, EventType::Created);
    assert_eq!(next().await, EventType::Started);
    assert_eq!(next().await, EventType::Exited);
    stuck.hold.release().unwrap();
    daemon.delete("obstacle", false).await.unwrap();
    assert_eq!(next().await, EventType::Deleted);
    assert_eq!(stuck.process.wait_killed(), Some(9));
}

/// Writes `frozen` to the container's own freezer, v1's or v2's.
fn freeze_by_hand(dirs: &[std::path::PathBuf], frozen: bool) {
    if unified_host() {
        write(
            &dirs[0].join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
        );
    } else {
        let state = if frozen { "FROZEN" } else { "THAWED" };
        write(&freezer_of(dirs).join("freezer.state"), state);
    }
}

/// Issue 13, item 6: berthd died between the freeze and the thaw of a kill of the tree.
#[tokio::test]
async fn a_freeze_left_by_an_interrupted_kill_is_thawed_at_start_up() {
    let mut daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("halfway", &bundle, None).await;
    daemon.crash();
    let dirs = daemon.container_cgroups("halfway");
    freeze_by_hand(&dirs, true);
    let state_file = daemon.root.join("halfway/state.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&fs::read(&state_file).unwrap()).unwrap();
    state["frozenToKill"] = true.into();
    fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    assert_eq!(
        daemon.get("halfway").await.unwrap().status(),
        ContainerStatus::Running
    );
    let state: serde_json::Value = serde_json::from_slice(&fs::read(&state_file).unwrap()).unwrap();
    assert_eq!(state["frozenToKill"], false);
    daemon.delete("halfway", true).await.unwrap();
}

/// A user's pause is no such freeze: it survives a restart.
#[tokio::test]
async fn a_pause_survives_a_restart() {
    let mut daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    daemon.run("paused", &bundle, None).await;
    daemon
        .client()
        .await
        .pause_container(berth::proto::PauseContainerRequest {
            id: "paused".into(),
        })
        .await
        .unwrap();
    daemon.crash();
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    assert_eq!(
        daemon.get("paused").await.unwrap().status(),
        ContainerStatus::Paused
    );
    daemon.delete("paused", true).await.unwrap();
}

/// Issue 13, item 5: kill --all with another signal goes through pidfds, freezes nothing,
/// and a paused container stays paused until resumed.
#[tokio::test]
async fn kill_all_with_a_signal_leaves_a_paused_container_paused() {
    let daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    daemon.run("quiet", &bundle, None).await;
    // Paused before sh has forked both sleeps, the TERM would find only sh, which ignores it
    // as PID 1, and the container would never stop.
    let pid = daemon.get("quiet").await.unwrap().pid;
    let children = format!("/proc/{pid}/task/{pid}/children");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fs::read_to_string(&children)
        .unwrap_or_default()
        .split_whitespace()
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "sh never started its sleeps"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = daemon.client().await;
    client
        .pause_container(berth::proto::PauseContainerRequest { id: "quiet".into() })
        .await
        .unwrap();
    daemon
        .kill("quiet", libc::SIGTERM as u32, true)
        .await
        .unwrap();
    assert_eq!(
        daemon.get("quiet").await.unwrap().status(),
        ContainerStatus::Paused
    );
    client
        .resume_container(berth::proto::ResumeContainerRequest { id: "quiet".into() })
        .await
        .unwrap();
    // The sleeps die of the TERM they got while frozen; sh, PID 1, then ends its wait.
    wait_exit_status(&mut client, "quiet").await;
    daemon.delete("quiet", false).await.unwrap();
}

/// 200 KiB of annotations: the OCI state JSON on a hook's stdin is then far larger than a
/// pipe's buffer (64 KiB).
fn large_annotations() -> serde_json::Value {
    serde_json::json!({ "team": "berth", "padding": "x".repeat(200 * 1024) })
}

/// Kills what a hook left behind (its pid written to `pid_file`), if it is still there.
fn kill_leftover(pid_file: &str) {
    if let Ok(pid) = fs::read_to_string(pid_file) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[tokio::test]
async fn hook_that_ignores_a_large_stdin_does_not_hang_the_delete() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let leftover = output_file(&out, "leftover.pid");
    let seen = output_file(&out, "seen");
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit(|c| {
        c["annotations"] = large_annotations();
        c["hooks"] = serde_json::json!({ "poststop": [
            // Never reads stdin, exits at once, and leaves a process holding the pipe's
            // read end (as a hook that starts a daemon does): the pipe never fills nor breaks.
            { "path": "/usr/bin/busybox",
              "args": ["sh", "-c", format!("exec 3<&0; sleep 1000 & echo $! > {leftover}; exit 0")] },
            // Never reads stdin and exits at once.
            { "path": "/usr/bin/busybox", "args": ["true"] },
            // The next hook still gets the whole state.
            { "path": "/usr/bin/busybox", "args": ["sh", "-c", format!("cat > {seen}")] },
        ]});
    });
    daemon.run("big-state", &bundle, None).await;
    let started = Instant::now();
    let delete =
        tokio::time::timeout(Duration::from_secs(20), daemon.delete("big-state", true)).await;
    kill_leftover(&leftover);
    let response = delete
        .unwrap_or_else(|_| panic!("the delete hung on a hook that ignores its stdin"))
        .unwrap();
    assert!(response.warnings.is_empty(), "{:?}", response.warnings);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(state["annotations"]["team"], "berth");
    assert_eq!(
        state["annotations"]["padding"].as_str().unwrap().len(),
        200 * 1024
    );
    assert!(!daemon.root.join("big-state").exists());
}

#[tokio::test]
async fn a_hook_without_timeout_gets_the_default() {
    let daemon = Daemon::start_with(|_| {}, &["--hook-timeout-default", "1s"]).await;
    let out = tempfile::tempdir().unwrap();
    let orphan_pid = output_file(&out, "orphan.pid");
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({ "poststop": [
            { "path": "/usr/bin/busybox",
              "args": ["sh", "-c", format!("sleep 1000 & echo $! > {orphan_pid}; sleep 1000")] },
        ]});
    });
    daemon.run("forever", &bundle, None).await;
    let started = Instant::now();
    let delete =
        tokio::time::timeout(Duration::from_secs(20), daemon.delete("forever", true)).await;
    let response = delete
        .unwrap_or_else(|_| {
            kill_leftover(&orphan_pid);
            panic!("a hook without a timeout held the delete")
        })
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.warnings.len(), 1, "{:?}", response.warnings);
    assert!(
        response.warnings[0].starts_with("poststop hook #0")
            && response.warnings[0].contains("timeout of 1s")
            && response.warnings[0].contains("--hook-timeout-default"),
        "{:?}",
        response.warnings
    );
    // Its whole process group was killed.
    let orphan: i32 = fs::read_to_string(&orphan_pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(&[orphan]).await;
    assert!(!daemon.root.join("forever").exists());

    // The container's init runs createContainer hooks under the same default.
    let mut stuck = Bundle::busybox(&["sleep", "1000"]);
    stuck.edit(|c| {
        c["hooks"] = serde_json::json!({ "createContainer": [
            { "path": "/usr/bin/busybox", "args": ["sleep", "1000"] },
        ]});
    });
    let started = Instant::now();
    let status = daemon.create("stuck", &stuck, None).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        status.message().contains("createContainer hook #0")
            && status.message().contains("timeout of 1s"),
        "{status:?}"
    );
    assert_nothing_left(&daemon, "stuck");
}

#[tokio::test]
async fn a_hook_timeout_above_the_maximum_is_capped() {
    let daemon = Daemon::start_with(
        |_| {},
        &["--hook-timeout-default", "1s", "--hook-timeout-max", "1s"],
    )
    .await;
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({ "poststop": [
            { "path": "/usr/bin/busybox", "args": ["sleep", "1000"], "timeout": 3600 },
        ]});
    });
    daemon.run("capped", &bundle, None).await;
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(20), daemon.delete("capped", true))
        .await
        .expect("the hook's own timeout was not capped")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.warnings.len(), 1, "{:?}", response.warnings);
    assert!(
        response.warnings[0].contains("timeout of 1s")
            && response.warnings[0].contains("--hook-timeout-max"),
        "{:?}",
        response.warnings
    );
}

// ----------------------------------------------------------------------------------------
// Issue 13, items 7 and 14: RDT groups several containers share; messages and codes.
// ----------------------------------------------------------------------------------------

/// Issue 13, item 7. No resctrl exists on these machines: a plain directory stands in for
/// it (`--resctrl-root`), so this pins berth's bookkeeping (whose group it is, who still
/// uses it), not the kernel's allocation.
#[tokio::test]
async fn d11_rdt_group_shared_by_a_later_container_stays_until_the_last_one_goes() {
    let resctrl = tempfile::tempdir().unwrap();
    let root_flag = resctrl.path().to_str().unwrap().to_owned();
    let mut daemon = Daemon::start_with(|_| {}, &["--resctrl-root", &root_flag]).await;
    let group = resctrl.path().join("team");
    let mut first = Bundle::busybox(&["sleep", "1000"]);
    first.edit(|c| {
        c["linux"]["intelRdt"] = serde_json::json!({ "closID": "team", "l3CacheSchema": "L3:0=f" })
    });
    daemon.run("rdt-first", &first, None).await;
    assert!(
        group.is_dir(),
        "berth makes a closID group that does not exist"
    );
    let mut later = Bundle::busybox(&["sleep", "1000"]);
    later.edit(|c| c["linux"]["intelRdt"] = serde_json::json!({ "closID": "team" }));
    daemon.run("rdt-later", &later, None).await;

    // What the registry knows of each container's group is rebuilt from the state files.
    daemon.terminate().await;
    daemon.spawn(&["--resctrl-root", &root_flag]);
    daemon.wait_serving().await;

    daemon.delete("rdt-first", true).await.unwrap();
    assert!(group.is_dir(), "removed while rdt-later still uses it");
    assert_eq!(
        fs::read_to_string(group.join("schemata")).unwrap(),
        "L3:0=f\n",
        "the allocation rdt-later runs under is still there"
    );
    daemon.delete("rdt-later", true).await.unwrap();
    assert!(
        !group.exists(),
        "the last container of a group berth made removes it"
    );
}

/// Issue 13, item 14: the closID is the caller's input, so a name that cannot be a group's
/// directory is the caller's fault, and nothing is left of the create.
#[tokio::test]
async fn an_invalid_clos_id_is_invalid_argument() {
    let resctrl = tempfile::tempdir().unwrap();
    let root_flag = resctrl.path().to_str().unwrap().to_owned();
    let daemon = Daemon::start_with(|_| {}, &["--resctrl-root", &root_flag]).await;
    for (index, bad) in ["..", "a/b", ""].into_iter().enumerate() {
        let id = format!("bad-clos{index}");
        let mut bundle = Bundle::busybox(&["sleep", "1000"]);
        bundle.edit(|c| c["linux"]["intelRdt"] = serde_json::json!({ "closID": bad }));
        let status = daemon.create(&id, &bundle, None).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
        assert!(
            status.message().contains(&format!("container {id}"))
                && status.message().contains("closID")
                && status.message().contains("not a valid group name"),
            "{status:?}"
        );
        assert_nothing_left(&daemon, &id);
    }
    assert_eq!(fs::read_dir(resctrl.path()).unwrap().count(), 0);
}

/// Issue 13, item 14. The fault point `panic:<name>` (debug builds) panics the delete once,
/// once its cgroups are gone: the caller is told which container, berthd serves on, and the
/// next delete finishes the job.
#[tokio::test]
async fn d17_a_panic_in_a_delete_is_internal_naming_the_container_and_berthd_serves_on() {
    let mut daemon = Daemon::start().await;
    daemon.crash();
    daemon.spawn_with_env(&[], &[("BERTH_FAULT", "panic:after-cgroup-removed")]);
    daemon.wait_serving().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let pid = daemon.run("panicky", &bundle, None).await;
    daemon.run("bystander", &bundle, None).await;

    let status = daemon.delete("panicky", true).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("delete of container panicky panicked:")
            && status.message().contains("fault injection"),
        "{status:?}"
    );
    wait_gone(&[pid]).await;
    assert_eq!(
        daemon.health("").await.unwrap(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    assert_eq!(
        daemon.get("bystander").await.unwrap().status(),
        ContainerStatus::Running
    );
    // Its lease was let go: the container is there, stopped, and a plain delete finishes.
    assert_eq!(
        daemon.get("panicky").await.unwrap().status(),
        ContainerStatus::Stopped
    );
    daemon.delete("panicky", false).await.unwrap();
    assert_nothing_left(&daemon, "panicky");
    assert_eq!(daemon.list().await.len(), 1);
    daemon.delete("bystander", true).await.unwrap();
}

/// Issue 13, item 14: D19, as runc logs its warnings.
#[tokio::test]
async fn d19_warnings_of_a_successful_delete_go_to_stderr_with_exit_0() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&["true"]);
    bundle.edit(|c| {
        c["hooks"] = serde_json::json!({ "poststop": [
            { "path": "/bin/sh", "args": ["sh", "-c", "exit 3"] },
        ]});
    });
    daemon.run("warned", &bundle, None).await;
    wait_status(
        &mut daemon.client().await,
        "warned",
        ContainerStatus::Stopped,
    )
    .await;
    let deleted = daemon.cli(&["delete", "warned"]);
    assert_eq!(deleted.status.code(), Some(0), "{}", stderr(&deleted));
    assert!(stdout(&deleted).is_empty(), "{}", stdout(&deleted));
    assert_eq!(
        stderr(&deleted),
        "warning: poststop hook #0 (/bin/sh): exited with status 3\n"
    );
    assert_nothing_left(&daemon, "warned");
}

/// Sets the immutable attribute on a directory (ext4, as /tmp is here) until dropped: even
/// root can then write nothing in it, so berth cannot save a state file there.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: PathBuf) -> Self {
        Self::chattr(&dir, "+i");
        Self(dir)
    }

    fn chattr(dir: &std::path::Path, flag: &str) {
        let status = Command::new("chattr").arg(flag).arg(dir).status().unwrap();
        assert!(status.success(), "chattr {flag} {}", dir.display());
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        Self::chattr(&self.0, "-i");
    }
}

/// Issue 13, item 14: a freeze, a kill of the tree and a kill-and-wait that fail say which
/// container, even where the cause names only a path (here a cgroup path that is not the
/// id's).
#[tokio::test]
async fn failed_freezes_kills_of_the_tree_and_kill_and_wait_name_the_container() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    with_cgroups_path(&mut bundle, "held/inner");
    daemon.run("named", &bundle, None).await;
    let mut client = daemon.client().await;
    client
        .pause_container(berth::proto::PauseContainerRequest { id: "named".into() })
        .await
        .unwrap();
    // A frozen ancestor: the container's thaw never completes.
    let ancestor = cgroup_dirs(&format!("{}/held", daemon.cgroup_parent));
    freeze_by_hand(&ancestor, true);
    let status = client
        .resume_container(berth::proto::ResumeContainerRequest { id: "named".into() })
        .await
        .unwrap_err();
    freeze_by_hand(&ancestor, false);
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("cannot resume container named: ")
            && status.message().contains("did not report thawed"),
        "{status:?}"
    );

    // Killing the tree records the freeze it may make first; that write fails here.
    let immutable = Immutable::set(daemon.root.join("named"));
    let status = daemon.kill("named", 9, true).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("cannot kill container named: "),
        "{status:?}"
    );
    drop(immutable);
    daemon.delete("named", true).await.unwrap();

    // A delete of a container sharing the host's PID namespace kills its tree the same way.
    let mut shared = Bundle::busybox(&["sleep", "1000"]);
    shared.without_namespace("pid");
    daemon.run("shared", &shared, None).await;
    let immutable = Immutable::set(daemon.root.join("shared"));
    let status = daemon.delete("shared", true).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("cannot kill container shared: "),
        "{status:?}"
    );
    drop(immutable);
    daemon.delete("shared", true).await.unwrap();
    assert_nothing_left(&daemon, "shared");
}

/// The processes of the container's cgroup, once it holds at least `at_least`.
async fn cgroup_processes(dirs: &[PathBuf], at_least: usize) -> Vec<i32> {
    let read = || -> Vec<i32> {
        fs::read_to_string(dirs[0].join("cgroup.procs"))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while read().len() < at_least {
        assert!(
            Instant::now() < deadline,
            "cgroup never held {at_least} processes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    read()
}

/// Sets the soft RLIMIT_NOFILE of process `pid`, keeping its hard one (lowering it, or
/// raising it up to the hard limit, needs no CAP_SYS_RESOURCE, which root lacks here).
fn set_soft_nofile(pid: i32, soft: Option<u64>) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a null new limit only reads the current one into `limit`.
    let read = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit) };
    assert_eq!(read, 0, "{}", std::io::Error::last_os_error());
    limit.rlim_cur = soft.unwrap_or(limit.rlim_max);
    // SAFETY: `limit` is a live rlimit; the old one is not asked for.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
}

/// Puts process `pid`'s soft open-file limit back to its hard one when dropped, so a failing
/// test leaves a berthd that still accepts the connections of `Daemon`'s clean-up.
struct LoweredNofile(i32);

impl Drop for LoweredNofile {
    fn drop(&mut self) {
        set_soft_nofile(self.0, None);
    }
}

/// berthd's log without its terminal colour sequences (ESC [ ... m).
fn without_colours(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut rest = log;
    while let Some(start) = rest.find('\x1b') {
        plain.push_str(&rest[..start]);
        rest = &rest[start..];
        rest = rest.find('m').map_or("", |end| &rest[end + 1..]);
    }
    plain.push_str(rest);
    plain
}

/// The two lowest descriptor numbers process `pid` does not use: the next two it will get.
fn next_two_fds(pid: i32) -> (u32, u32) {
    let used = open_fds(pid);
    let mut free = (0..).filter(|fd| !used.contains(fd));
    (free.next().unwrap(), free.next().unwrap())
}

/// Issue 13, item 8, for real (no fault point): berthd loads live containers out of
/// descriptors. A state directory on a file system whose lookups the test holds stops the
/// load part-way; the test lowers berthd's soft RLIMIT_NOFILE so that exactly one more
/// descriptor can be opened, then lets the load go on. For every container loaded from then
/// on, pidfd_open takes that last descriptor and the identity check after it (a read of
/// /proc/<pid>/stat) fails with EMFILE. That failure says nothing about the init: the start
/// time decides, the container is RUNNING, a plain delete refuses it and one with force
/// kills it through its cgroup.
#[tokio::test]
async fn pidfd_failure_at_load_falls_back_to_the_start_time_out_of_descriptors() {
    let mut daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let ids = ["few-fds-1", "few-fds-2", "few-fds-3", "few-fds-4"];
    let mut pids = Vec::new();
    for id in ids {
        pids.push(daemon.run(id, &bundle, None).await);
    }
    daemon.crash();
    // The load goes in the order the root's entries are read, which removing others does
    // not change: of several candidates, the one read first holds the load up.
    let candidates: Vec<String> = (0..16).map(|n| format!("stall-{n:02}")).collect();
    for name in &candidates {
        fs::create_dir(daemon.root.join(name)).unwrap();
    }
    let order: Vec<String> = fs::read_dir(&daemon.root)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    let stall = order
        .iter()
        .find(|n| candidates.contains(n))
        .unwrap()
        .clone();
    for name in candidates.iter().filter(|&name| *name != stall) {
        fs::remove_dir(daemon.root.join(name)).unwrap();
    }
    let after_stall: Vec<&str> = order
        .iter()
        .skip_while(|name| **name != stall)
        .filter_map(|name| ids.iter().find(|id| **id == name.as_str()).copied())
        .collect();
    assert!(
        !after_stall.is_empty(),
        "every container is read before {stall}: {order:?}"
    );
    let lookups = StalledLookups::mount(&daemon.root.join(&stall));

    let offset = daemon.logs().len();
    daemon.spawn(&[]);
    let berthd = daemon.pid() as i32;
    lookups.wait_held(berthd).await;
    let (next, second) = next_two_fds(berthd);
    let lowered = LoweredNofile(berthd);
    set_soft_nofile(berthd, Some(second.into()));
    lookups.release();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon.logs()[offset..].contains("registry loaded") {
        assert!(Instant::now() < deadline, "no load:\n{}", daemon.logs());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(lowered);
    daemon.wait_serving().await;

    let log = without_colours(&daemon.logs()[offset..]);
    for (id, pid) in ids.iter().zip(&pids) {
        let fell_back = log.lines().any(|line| {
            line.contains("falling back to its start time")
                && line.contains(&format!("id={id} "))
                && line.contains("Too many open files")
                && line.contains("liveness=Alive")
        });
        assert_eq!(
            fell_back,
            after_stall.contains(id),
            "{id} (next fds {next}, {second}; loaded after {stall}: {after_stall:?}):\n{log}"
        );
        let container = daemon.get(id).await.unwrap();
        assert_eq!(container.status(), ContainerStatus::Running, "{id}:\n{log}");
        assert!(process_alive(*pid));
    }
    for id in &after_stall {
        let refused = daemon.delete(id, false).await.unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
    assert!(pids.iter().all(|&pid| process_alive(pid)));
    for id in ids {
        daemon.delete(id, true).await.unwrap();
    }
    wait_gone(&pids).await;
    for id in ids {
        assert_nothing_left(&daemon, id);
    }
    // The held directory's state file could not be read: UNKNOWN, gone with force.
    drop(lookups);
    daemon.delete(&stall, true).await.unwrap();
    assert!(!daemon.root.join(&stall).exists());
}

/// Issue 13, item 8: when neither a pidfd nor /proc tells whether the init lives, the
/// container is UNKNOWN and says why; a plain delete refuses it with INTERNAL and touches
/// nothing, a forced one kills everything its cgroup holds and removes it all. A pidfd that
/// fails while /proc still tells gives RUNNING. The failures come from the debug-build
/// fault points `pidfd-open` and `proc-stat` (fault.rs): the status is read again on every
/// call, so a real descriptor shortage would have to last through the call that reads it,
/// and a berthd that short cannot accept that call.
#[tokio::test]
async fn an_init_whose_liveness_cannot_be_told_is_unknown_and_goes_only_with_force() {
    let mut daemon = Daemon::start().await;
    let bundle = Bundle::busybox(&["sh", "-c", "sleep 1000 & sleep 1000"]);
    let init = daemon.run("unchecked", &bundle, None).await;
    let dirs = daemon.container_cgroups("unchecked");
    let pids = cgroup_processes(&dirs, 2).await;

    daemon.crash();
    daemon.spawn_with_env(&[], &[("BERTH_FAULT_PIDFD_OPEN", "EINVAL")]);
    daemon.wait_serving().await;
    let container = daemon.get("unchecked").await.unwrap();
    assert_eq!(container.status(), ContainerStatus::Running);
    let refused = daemon.delete("unchecked", false).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");

    daemon.crash();
    daemon.spawn_with_env(
        &[],
        &[
            ("BERTH_FAULT_PIDFD_OPEN", "EMFILE"),
            ("BERTH_FAULT_PROC_STAT", "EMFILE"),
        ],
    );
    daemon.wait_serving().await;
    let container = daemon.get("unchecked").await.unwrap();
    assert_eq!(container.status(), ContainerStatus::Unknown);
    let reason = &container.status_reason;
    for part in [&format!("pid {init}"), "pidfd", "Too many open files"] {
        assert!(reason.contains(part), "{part:?} not in {reason:?}");
    }
    let refused = daemon.delete("unchecked", false).await.unwrap_err();
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");
    for part in ["unchecked", "unknown", "force", "Too many open files"] {
        assert!(
            refused.message().contains(part),
            "{part:?} not in {refused:?}"
        );
    }
    assert!(pids.iter().all(|&pid| process_alive(pid)));
    assert!(dirs.iter().all(|d| d.exists()));
    assert!(daemon.root.join("unchecked/state.json").exists());

    daemon.delete("unchecked", true).await.unwrap();
    wait_gone(&pids).await;
    assert_nothing_left(&daemon, "unchecked");
}

/// Issue 13, item 11: start times count from boot, so after a reboot with a persistent
/// root a new process can have a recorded init's pid and start time. An init recorded in
/// another boot is dead, and its pid is never signalled; one of this boot, or of a file
/// without a boot id (an older berth's), is checked by pid and start time as before.
#[tokio::test]
async fn d6_an_init_recorded_in_another_boot_is_dead_and_never_signalled() {
    let stranger = HostProcess::sleep();
    let pid = stranger.pid();
    let start_time = berth::runtime::process::ProcStat::read(pid)
        .unwrap()
        .unwrap()
        .start_time;
    let this_boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let init = format!(r#""init":{{"pid":{pid},"startTime":{start_time}}}"#);
    let daemon = Daemon::start_with(
        |root| {
            let other = r#""bootId":"00000000-0000-4000-8000-000000000000""#;
            write_state(root, "other-boot", &format!("{init},{other}"));
            write_state(root, "other-boot-forced", &format!("{init},{other}"));
            let this = format!(r#""bootId":"{}""#, this_boot.trim());
            write_state(root, "this-boot", &format!("{init},{this}"));
            write_state(root, "no-boot-id", &init);
        },
        &[],
    )
    .await;
    for (id, status) in [
        ("other-boot", ContainerStatus::Stopped),
        ("other-boot-forced", ContainerStatus::Stopped),
        ("this-boot", ContainerStatus::Running),
        ("no-boot-id", ContainerStatus::Running),
    ] {
        assert_eq!(daemon.get(id).await.unwrap().status(), status, "{id}");
    }
    daemon.delete("other-boot", false).await.unwrap();
    assert!(!daemon.root.join("other-boot").exists());
    daemon.kill("other-boot", 9, false).await.unwrap_err();
    daemon.delete("other-boot-forced", true).await.unwrap();
    assert!(
        process_alive(pid),
        "berthd signalled a process of this boot for an init of another"
    );
    let refused = daemon.delete("this-boot", false).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(process_alive(pid));
}
