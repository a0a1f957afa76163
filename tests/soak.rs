//! Soak: many create/start/delete --force cycles against one berthd, with a rolling window
//! of 20 live containers, checking that the daemon's open fds, threads and RSS stay flat
//! and that nothing (registry entry, state directory, cgroup, process) is left behind.
//!
//! `BERTH_SOAK_CYCLES` sets the number of cycles (default 100; the long form is 1000):
//! `BERTH_SOAK_CYCLES=1000 cargo test --release --test soak -- --nocapture`
//! See docs/reliability.md.
mod common;

use std::{
    collections::VecDeque,
    fs,
    ops::Range,
    path::Path,
    time::{Duration, Instant},
};

use berth::{
    proto::{self, container_service_client::ContainerServiceClient, ContainerStatus},
    runtime::process::ProcStat,
};
use common::*;
use tonic::transport::Channel;

/// Containers alive between rounds.
const WINDOW: usize = 20;
/// New containers per round. Each round also force-deletes as many of the oldest, all at
/// once: up to 2 * BATCH = 20 RPCs in flight, 20 to 30 containers alive during a round.
const BATCH: usize = 10;
/// Cycles before the first measurement.
const WARM_UP: usize = 40;

/// The init of one container, as recorded right after its create: the start time guards
/// the liveness checks against pid reuse (pid_max may be as low as 32768).
#[derive(Clone, Copy, Debug)]
struct Init {
    pid: i32,
    start_time: u64,
}

impl Init {
    fn alive(&self) -> bool {
        match ProcStat::read(self.pid) {
            Ok(Some(stat)) => {
                stat.start_time == self.start_time && !matches!(stat.state, 'Z' | 'X')
            }
            _ => false,
        }
    }
}

/// berthd's resource figures at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Figures {
    fds: usize,
    threads: usize,
    rss_kib: u64,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fds {}, threads {}, RSS {} KiB",
            self.fds, self.threads, self.rss_kib
        )
    }
}

fn figures(pid: u32) -> Figures {
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("berthd's /proc/<pid>/fd")
        .count();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("berthd's status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    Figures {
        fds,
        threads: field("Threads:") as usize,
        rss_kib: field("VmRSS:"),
    }
}

/// Figures once the fd count has held still for 3 readings 100 ms apart (at most 3 s):
/// a connection or pidfd being closed right after a reply is not a leak, a stable excess is.
async fn settled_figures(pid: u32) -> Figures {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = figures(pid);
    let mut same = 0;
    while same < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = figures(pid);
        same = if now.fds == last.fds { same + 1 } else { 0 };
        last = now;
    }
    last
}

fn container_id(cycle: usize) -> String {
    format!("soak-{cycle:05}")
}

/// Create, then start, on the shared connection; returns the init.
async fn run(
    mut client: ContainerServiceClient<Channel>,
    id: String,
    bundle: String,
) -> Result<(String, Init), String> {
    let created = client
        .create_container(proto::CreateContainerRequest {
            id: id.clone(),
            bundle,
            stdout_path: String::new(),
            stderr_path: String::new(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("create {id}: {:?} {}", e.code(), e.message()))?
        .into_inner()
        .container
        .ok_or_else(|| format!("create {id}: no container in the reply"))?;
    let pid = created.pid as i32;
    // The init waits on its exec FIFO until the start, so it is alive and cannot have been
    // replaced under this pid yet.
    let start_time = ProcStat::read(pid)
        .ok()
        .flatten()
        .ok_or_else(|| format!("create {id}: init {pid} is not there"))?
        .start_time;
    let started = client
        .start_container(proto::StartContainerRequest { id: id.clone() })
        .await
        .map_err(|e| format!("start {id}: {:?} {}", e.code(), e.message()))?
        .into_inner()
        .container
        .ok_or_else(|| format!("start {id}: no container in the reply"))?;
    if started.status() != ContainerStatus::Running {
        return Err(format!("start {id}: status {:?}", started.status()));
    }
    Ok((id, Init { pid, start_time }))
}

/// delete --force; the init must be dead when the reply comes (kill-and-wait, D8).
async fn delete(
    mut client: ContainerServiceClient<Channel>,
    id: String,
    init: Init,
) -> Result<(), String> {
    let response = client
        .delete_container(proto::DeleteContainerRequest {
            id: id.clone(),
            force: true,
        })
        .await
        .map_err(|e| format!("delete --force {id}: {:?} {}", e.code(), e.message()))?
        .into_inner();
    if !response.warnings.is_empty() {
        return Err(format!(
            "delete --force {id}: warnings {:?}",
            response.warnings
        ));
    }
    if init.alive() {
        return Err(format!(
            "delete --force {id} returned OK while its init {} is alive",
            init.pid
        ));
    }
    Ok(())
}

struct Soak<'a> {
    daemon: &'a Daemon,
    client: ContainerServiceClient<Channel>,
    bundle: String,
    /// Live containers, oldest first.
    window: VecDeque<(String, Init)>,
    /// Every init ever started, for the final check.
    inits: Vec<(String, Init)>,
}

impl Soak<'_> {
    /// Runs `cycles`: cycle n creates and starts container n and force-deletes the oldest
    /// container once more than WINDOW are alive. BATCH cycles run at once.
    async fn cycles(&mut self, cycles: Range<usize>) {
        let mut first = cycles.start;
        while first < cycles.end {
            let last = (first + BATCH).min(cycles.end);
            let excess = (self.window.len() + (last - first)).saturating_sub(WINDOW);
            let doomed: Vec<_> = self.window.drain(..excess).collect();
            let runs: Vec<_> = (first..last)
                .map(|n| {
                    tokio::spawn(run(
                        self.client.clone(),
                        container_id(n),
                        self.bundle.clone(),
                    ))
                })
                .collect();
            let deletes: Vec<_> = doomed
                .iter()
                .map(|(id, init)| tokio::spawn(delete(self.client.clone(), id.clone(), *init)))
                .collect();
            let mut errors = Vec::new();
            for task in runs {
                match task.await.expect("run task") {
                    Ok(started) => {
                        self.window.push_back(started.clone());
                        self.inits.push(started);
                    }
                    Err(e) => errors.push(e),
                }
            }
            for task in deletes {
                if let Err(e) = task.await.expect("delete task") {
                    errors.push(e);
                }
            }
            self.fail_on(&errors, &format!("cycles {first}..{last}"));
            if last.is_multiple_of(100) {
                eprintln!(
                    "soak: after cycle {last}, {} alive: {}",
                    self.window.len(),
                    figures(self.daemon.pid())
                );
            }
            first = last;
        }
    }

    /// Force-deletes every live container, all at once, and waits for every init ever
    /// started to be gone.
    async fn drain(&mut self) {
        let deletes: Vec<_> = self
            .window
            .drain(..)
            .map(|(id, init)| tokio::spawn(delete(self.client.clone(), id, init)))
            .collect();
        let mut errors = Vec::new();
        for task in deletes {
            if let Err(e) = task.await.expect("delete task") {
                errors.push(e);
            }
        }
        self.fail_on(&errors, "drain");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive: Vec<_> = self.inits.iter().filter(|(_, i)| i.alive()).collect();
            if alive.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "inits still alive 10 s after their delete: {alive:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn fail_on(&self, errors: &[String], during: &str) {
        if errors.is_empty() {
            return;
        }
        let logs = self.daemon.logs();
        let lines: Vec<_> = logs.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        panic!(
            "{} failure(s) during {during}:\n  {}\nlast lines of berthd's log:\n{tail}",
            errors.len(),
            errors.join("\n  ")
        );
    }
}

/// Children of `pid` (zombies included): berthd must have reaped every init it made.
fn children(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(text) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so count from the last ')'.
        let Some(after) = text.rfind(')').map(|i| &text[i + 1..]) else {
            continue;
        };
        let fields: Vec<_> = after.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            found.push(text.trim().to_owned());
        }
    }
    found
}

fn subdirectories(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn soak_create_start_delete_force_stays_flat() {
    let cycles: usize = std::env::var("BERTH_SOAK_CYCLES")
        .ok()
        .map(|v| v.parse().expect("BERTH_SOAK_CYCLES is a number"))
        .unwrap_or(100);
    // Short runs keep a warm-up of half their cycles, so both phases have some.
    let warm_up = WARM_UP.min(cycles / 2);
    let daemon = Daemon::start().await;
    let pid = daemon.pid();
    let bundle = Bundle::busybox(&["sleep", "100000"]);
    let mut soak = Soak {
        daemon: &daemon,
        // One connection, cloned into every task: the fd counts compare like with like.
        client: daemon.client().await,
        bundle: bundle.path().to_str().unwrap().into(),
        window: VecDeque::new(),
        inits: Vec::new(),
    };
    let began = Instant::now();
    eprintln!("soak: {cycles} cycles, window {WINDOW}, batch {BATCH}, warm-up {warm_up}");
    eprintln!("soak: berthd pid {pid}, start: {}", figures(pid));

    soak.cycles(0..warm_up).await;
    let warm_loaded = figures(pid);
    soak.drain().await;
    let warm = settled_figures(pid).await;
    eprintln!(
        "soak: after warm-up ({warm_up} cycles, {:.1?}): with {} alive: {warm_loaded}; drained: {warm}",
        began.elapsed(),
        WINDOW.min(warm_up)
    );

    let timed = Instant::now();
    soak.cycles(warm_up..cycles).await;
    let end_loaded = figures(pid);
    soak.drain().await;
    let end = settled_figures(pid).await;
    let measured = cycles - warm_up;
    eprintln!(
        "soak: end ({cycles} cycles, {:.1?} in all; {measured} cycles after warm-up in {:.1?}, {:.1} ms per cycle): with {} alive: {end_loaded}; drained: {end}",
        began.elapsed(),
        timed.elapsed(),
        timed.elapsed().as_secs_f64() * 1000.0 / measured.max(1) as f64,
        WINDOW.min(measured)
    );
    let per_cycle = |grown: f64| grown / measured.max(1) as f64;
    eprintln!(
        "soak: growth: fds {:+} ({:+.3}/cycle), threads {:+}, RSS {:+} KiB ({:+.2} KiB/cycle)",
        end.fds as i64 - warm.fds as i64,
        per_cycle(end.fds as f64 - warm.fds as f64),
        end.threads as i64 - warm.threads as i64,
        end.rss_kib as i64 - warm.rss_kib as i64,
        per_cycle(end.rss_kib as f64 - warm.rss_kib as f64),
    );

    // Flat: the same fds (a little slack for a connection still closing), RSS within
    // allocator noise, and threads within what tokio's blocking pool may keep: it grows to
    // the peak of concurrent blocking calls (a create makes several: the bundle, state.json,
    // exec.fifo, the cgroups), at most about one per container alive at once. A thread lost
    // per cycle would pass that bound well before the end.
    assert!(
        end.fds <= warm.fds + 2,
        "berthd's fds grew from {} to {} over {measured} cycles",
        warm.fds,
        end.fds
    );
    assert!(
        end.threads <= warm.threads + WINDOW,
        "berthd's threads grew from {} to {} over {measured} cycles",
        warm.threads,
        end.threads
    );
    assert!(
        end.rss_kib < warm.rss_kib + 8 * 1024,
        "berthd's RSS grew from {} KiB to {} KiB over {measured} cycles",
        warm.rss_kib,
        end.rss_kib
    );

    // Nothing left behind.
    let listed = daemon.cli(&["list", "--json"]);
    assert!(listed.status.success(), "berth list: {}", stderr(&listed));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed, serde_json::json!([]), "berth list --json");
    let table = daemon.cli(&["list"]);
    assert!(
        !stdout(&table).contains("soak-"),
        "berth list: {}",
        stdout(&table)
    );
    // `<root>/~deleting` is berthd's own, made at start-up; a delete renames a state
    // directory into it and then removes it, so it must be empty.
    let tombstones = daemon.root.join(berth::runtime::state_dir::TOMBSTONES);
    assert_eq!(
        subdirectories(&daemon.root)
            .into_iter()
            .filter(|name| name.as_str() != berth::runtime::state_dir::TOMBSTONES)
            .collect::<Vec<_>>(),
        Vec::<String>::new(),
        "state directories under {}",
        daemon.root.display()
    );
    if tombstones.exists() {
        assert_eq!(
            subdirectories(&tombstones),
            Vec::<String>::new(),
            "tombstones left in {}",
            tombstones.display()
        );
    }
    let mut cgroups = Vec::new();
    for (id, _) in &soak.inits {
        cgroups.extend(
            daemon
                .container_cgroups(id)
                .into_iter()
                .filter(|d| d.exists()),
        );
    }
    assert_eq!(
        cgroups,
        Vec::<std::path::PathBuf>::new(),
        "container cgroups left"
    );
    // The --cgroup-parent levels are berth's: the delete that leaves them empty removes them.
    let parents: Vec<_> = cgroup_dirs(&daemon.cgroup_parent)
        .into_iter()
        .filter(|d| d.exists())
        .collect();
    assert_eq!(
        parents,
        Vec::<std::path::PathBuf>::new(),
        "cgroup parent left"
    );
    let alive: Vec<_> = soak.inits.iter().filter(|(_, i)| i.alive()).collect();
    assert!(alive.is_empty(), "container inits alive: {alive:?}");
    assert_eq!(soak.inits.len(), cycles, "every cycle started a container");
    assert_eq!(
        children(pid),
        Vec::<String>::new(),
        "berthd's children (unreaped inits?)"
    );
    eprintln!("soak: nothing leaked; {:.1?} in all", began.elapsed());
}
