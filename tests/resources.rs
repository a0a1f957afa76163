//! UpdateResources and ContainerStats on real containers and cgroups, and the CLI's
//! `update` and `stats`. On a host (or view) without a controller, the update that needs it
//! is refused naming it, and its figures are absent.
mod common;

use std::path::PathBuf;

use berth::proto::{
    ContainerStatsRequest, ContainerStatsResponse, ContainerStatus, ListProcessesRequest,
    PauseContainerRequest, ResumeContainerRequest, UpdateResourcesRequest,
};
use common::*;
use serde_json::{json, Value};
use tonic::Code;

const MIB: u64 = 1 << 20;

async fn update(daemon: &Daemon, id: &str, resources: Value) -> Result<(), tonic::Status> {
    daemon
        .client()
        .await
        .update_resources(UpdateResourcesRequest {
            id: id.into(),
            resources: resources.to_string().into_bytes(),
        })
        .await
        .map(drop)
}

/// Where a container of these tests writes its stdout and stderr.
fn output_of(daemon: &Daemon, id: &str) -> String {
    daemon
        .dir
        .path()
        .join(format!("{id}.out"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Runs the limited bundle as `id`, its output kept for the failure messages. The caller
/// keeps the bundle while the container runs: the init execs from its rootfs after the
/// start returns.
async fn run_limited(daemon: &Daemon, id: &str) -> Bundle {
    let bundle = limited_bundle();
    daemon.run(id, &bundle, Some(&output_of(daemon, id))).await;
    bundle
}

/// An update that must be taken; berthd's log and the container's output say why when it
/// is not.
async fn updated(daemon: &Daemon, id: &str, resources: Value) {
    if let Err(status) = update(daemon, id, resources.clone()).await {
        let output = std::fs::read_to_string(output_of(daemon, id)).unwrap_or_default();
        panic!(
            "update {id} with {resources}: {status:?}\ncontainer output: {output}\n{}",
            daemon.logs()
        );
    }
}

async fn stats(daemon: &Daemon, id: &str) -> ContainerStatsResponse {
    daemon
        .client()
        .await
        .container_stats(ContainerStatsRequest { id: id.into() })
        .await
        .unwrap_or_else(|e| panic!("stats of {id}: {e:?}"))
        .into_inner()
}

/// The content of `file` in whichever of the container's cgroup directories has it.
fn cgroup_file(daemon: &Daemon, id: &str, file: &str) -> String {
    let dirs = daemon.container_cgroups(id);
    let dir: &PathBuf = dirs
        .iter()
        .find(|d| d.join(file).exists())
        .unwrap_or_else(|| panic!("no {file} in {dirs:?}"));
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_owned()
}

fn persisted(daemon: &Daemon, id: &str) -> Value {
    let state = std::fs::read(daemon.root.join(id).join("state.json")).unwrap();
    serde_json::from_slice::<Value>(&state).unwrap()["resources"].clone()
}

/// What the kernel holds for the limits the update test sets, whatever the layout.
struct Limits {
    memory: String,
    pids: String,
    /// (quota, period) in microseconds.
    cpu: (String, String),
}

fn limits(daemon: &Daemon, id: &str) -> Limits {
    let file = |name: &str| cgroup_file(daemon, id, name);
    if unified_host() {
        let cpu_max = file("cpu.max");
        let (quota, period) = cpu_max.split_once(' ').unwrap();
        Limits {
            memory: file("memory.max"),
            pids: file("pids.max"),
            cpu: (quota.into(), period.into()),
        }
    } else {
        Limits {
            memory: file("memory.limit_in_bytes"),
            pids: file("pids.max"),
            cpu: (file("cpu.cfs_quota_us"), file("cpu.cfs_period_us")),
        }
    }
}

/// Limits in config.json, each where the host has its controller (a create that asks for
/// one it lacks is refused).
fn limited_bundle() -> Bundle {
    let mut bundle = Bundle::busybox(&["sleep", "1000"]);
    bundle.edit(|c| {
        let resources = &mut c["linux"]["resources"];
        for (section, controller, limits) in [
            ("memory", "memory", json!({ "limit": 64 * MIB })),
            ("pids", "pids", json!({ "limit": 32 })),
            (
                "cpu",
                "cpu",
                json!({ "shares": 512, "quota": 50000, "period": 100000 }),
            ),
        ] {
            if !v2_controller_missing(controller) {
                resources[section] = limits;
            }
        }
    });
    bundle
}

#[tokio::test]
async fn an_update_reaches_the_cgroup_files_and_state_json_and_survives_a_restart() {
    if skip_unless_controllers(&["memory", "pids", "cpu"]) {
        return;
    }
    let mut daemon = Daemon::start().await;
    let _bundle = run_limited(&daemon, "upd").await;
    let first = json!({
        "memory": {"limit": 96 * MIB},
        "pids": {"limit": 64},
        "cpu": {"quota": 20000, "cpus": "0"}
    });
    updated(&daemon, "upd", first).await;
    assert_eq!(cgroup_file(&daemon, "upd", "cpuset.cpus"), "0");
    let now = limits(&daemon, "upd");
    assert_eq!(now.memory, (96 * MIB).to_string());
    assert_eq!(now.pids, "64");
    // The period was left out: it keeps config.json's.
    assert_eq!(now.cpu, ("20000".into(), "100000".into()));
    let saved = persisted(&daemon, "upd");
    assert_eq!(saved["memory"]["limit"], 96 * MIB);
    assert_eq!(saved["pids"]["limit"], 64);
    assert_eq!(
        saved["cpu"],
        json!({"shares": 512, "quota": 20000, "period": 100000, "cpus": "0"})
    );
    // config.json's devices stay in the record, untouched by the update.
    assert_eq!(saved["devices"], json!([{"allow": false, "access": "rwm"}]));

    daemon.terminate().await;
    daemon.spawn(&[]);
    daemon.wait_serving().await;
    assert_eq!(
        daemon.get("upd").await.unwrap().status(),
        ContainerStatus::Running
    );
    assert_eq!(limits(&daemon, "upd").memory, (96 * MIB).to_string());
    // The next update starts from what the first one persisted, not from config.json.
    updated(&daemon, "upd", json!({"cpu": {"period": 200000}})).await;
    let now = limits(&daemon, "upd");
    assert_eq!(now.cpu, ("20000".into(), "200000".into()));
    assert_eq!(
        (now.memory, now.pids),
        ((96 * MIB).to_string(), "64".into())
    );

    // Paused, as runc allows; the container stays paused.
    let mut client = daemon.client().await;
    client
        .pause_container(PauseContainerRequest { id: "upd".into() })
        .await
        .unwrap();
    updated(&daemon, "upd", json!({"pids": {"limit": 48}})).await;
    assert_eq!(limits(&daemon, "upd").pids, "48");
    assert_eq!(
        daemon.get("upd").await.unwrap().status(),
        ContainerStatus::Paused
    );
    client
        .resume_container(ResumeContainerRequest { id: "upd".into() })
        .await
        .unwrap();
    daemon.delete("upd", true).await.unwrap();
}

#[tokio::test]
async fn a_created_container_takes_an_update_and_containerds_whole_object_passes() {
    if skip_unless_controllers(&["pids"]) {
        return;
    }
    let daemon = Daemon::start().await;
    let bundle = limited_bundle();
    daemon
        .create("made", &bundle, Some(&output_of(&daemon, "made")))
        .await
        .unwrap();
    // What containerd sends: every field of the config's resources, devices included.
    let mut whole = bundle.config["linux"]["resources"].clone();
    whole["pids"]["limit"] = json!(16);
    updated(&daemon, "made", whole).await;
    assert_eq!(cgroup_file(&daemon, "made", "pids.max"), "16");
    daemon.delete("made", true).await.unwrap();
}

#[tokio::test]
async fn updates_that_cannot_be_taken_are_refused_naming_why_and_change_nothing() {
    let daemon = Daemon::start().await;
    assert_eq!(
        update(&daemon, "nobody", json!({}))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let _bundle = run_limited(&daemon, "strict").await;
    let before = persisted(&daemon, "strict");
    for (request, code, named) in [
        (
            json!({"memory": {"limit": "lots"}}),
            Code::InvalidArgument,
            "linux.resources.memory.limit",
        ),
        (
            json!({"cpu": {"shares": 1}}),
            Code::InvalidArgument,
            "linux.resources.cpu.shares",
        ),
        (
            json!({"cpu": {"quota": 10}}),
            Code::InvalidArgument,
            "linux.resources.cpu.quota",
        ),
        (
            json!({"memory": {"limit": 128 * MIB, "swap": 64 * MIB}}),
            Code::InvalidArgument,
            "linux.resources.memory.swap",
        ),
        // runc update takes no devices; changing them is refused, not dropped.
        (
            json!({"devices": [{"allow": true, "access": "rwm"}]}),
            Code::InvalidArgument,
            "linux.resources.devices",
        ),
        (
            json!({"memory": {"swappiness": 5}}),
            Code::InvalidArgument,
            "linux.resources.memory.swappiness",
        ),
    ] {
        let status = update(&daemon, "strict", request.clone())
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            code,
            "{request}: {}\ncontainer output: {:?}",
            status.message(),
            std::fs::read_to_string(output_of(&daemon, "strict"))
        );
        assert!(
            status.message().contains(named) && status.message().contains("strict"),
            "{request}: {}",
            status.message()
        );
    }
    let status = daemon
        .client()
        .await
        .update_resources(UpdateResourcesRequest {
            id: "strict".into(),
            resources: b"{not json".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    // A value only the kernel can judge: CPUs this machine does not have.
    if !v2_controller_missing("cpuset") {
        let status = update(&daemon, "strict", json!({"cpu": {"cpus": "0-4095"}}))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().contains("the kernel refused") && status.message().contains("cpus"),
            "{}",
            status.message()
        );
    }

    // A field whose controller (or interface file) the host lacks.
    let dirs = daemon.container_cgroups("strict");
    let lacking = if v2_controller_missing("memory") {
        Some((json!({"memory": {"limit": 32 * MIB}}), "memory"))
    } else if !unified_host()
        && !dirs
            .iter()
            .any(|d| d.join("blkio.weight").exists() || d.join("io.weight").exists())
    {
        // v1 blkio without a proportional-weight scheduler (no CFQ or BFQ weight file).
        Some((json!({"blockIO": {"weight": 500}}), "blkio"))
    } else {
        None
    };
    match lacking {
        Some((request, controller)) => {
            let status = update(&daemon, "strict", request.clone())
                .await
                .unwrap_err();
            assert_eq!(
                status.code(),
                Code::FailedPrecondition,
                "{request}: {}",
                status.message()
            );
            assert!(
                status
                    .message()
                    .contains(&format!("the {controller} controller")),
                "{}",
                status.message()
            );
        }
        None => {
            eprintln!("this host lacks neither memory nor a block I/O weight: nothing to refuse")
        }
    }
    assert_eq!(persisted(&daemon, "strict"), before);

    // Stopped: nothing to limit any more.
    daemon
        .kill("strict", libc::SIGKILL as u32, false)
        .await
        .unwrap();
    wait_exit_status(&mut daemon.client().await, "strict").await;
    let status = update(&daemon, "strict", json!({"pids": {"limit": 8}}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("stopped"), "{}", status.message());
    assert_eq!(persisted(&daemon, "strict"), before);
    daemon.delete("strict", true).await.unwrap();
}

#[tokio::test]
async fn stats_count_what_the_container_does_and_leave_out_what_the_host_lacks() {
    let daemon = Daemon::start().await;
    let out = tempfile::tempdir().unwrap();
    let stdout = output_file(&out, "stdout");
    let mut bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=16 2>/dev/null && echo filled && exec sleep 1000",
    ]);
    if !v2_controller_missing("memory") {
        bundle.edit(|c| c["linux"]["resources"]["memory"] = json!({ "limit": 256 * MIB }));
    }
    daemon.create("busy", &bundle, Some(&stdout)).await.unwrap();
    let created = stats(&daemon, "busy").await;
    daemon.start_container("busy").await.unwrap();
    wait_output(&stdout, "filled").await;
    let running = stats(&daemon, "busy").await;
    assert!(running.timestamp.is_some());

    // cgroup v2 counts CPU time without a controller (cpu.stat is a core file); v1 needs
    // cpuacct, which every v1 host here has.
    let cpu_total = |s: &ContainerStatsResponse| {
        s.cpu
            .as_ref()
            .and_then(|c| c.usage_total_ns)
            .expect("CPU usage")
    };
    assert!(
        cpu_total(&running) > cpu_total(&created),
        "dd ran, yet CPU usage went from {} to {} ns",
        cpu_total(&created),
        cpu_total(&running)
    );
    let cpu = running.cpu.as_ref().unwrap();
    assert!(cpu.usage_user_ns.is_some() && cpu.usage_system_ns.is_some());
    assert_eq!(
        cpu.periods.is_some(),
        !v2_controller_missing("cpu"),
        "throttling is counted by the cpu controller alone: {cpu:?}"
    );

    let processes = daemon
        .client()
        .await
        .list_processes(ListProcessesRequest { id: "busy".into() })
        .await
        .unwrap()
        .into_inner()
        .pids;
    match &running.pids {
        None => assert!(v2_controller_missing("pids"), "no pids figures"),
        Some(pids) => {
            assert_eq!(pids.current, Some(processes.len() as u64), "{processes:?}");
            // Unlimited: absent, not 0.
            assert_eq!(pids.limit, None);
        }
    }
    match &running.memory {
        None => assert!(v2_controller_missing("memory"), "no memory figures"),
        Some(memory) => {
            let usage = memory.usage_bytes.unwrap();
            assert!(
                usage >= 16 * MIB,
                "usage {usage} after writing 16 MiB to shm"
            );
            assert!(memory.cache_bytes.unwrap() >= 16 * MIB, "{memory:?}");
            assert_eq!(memory.limit_bytes, Some(256 * MIB));
            assert!(
                memory.max_usage_bytes.unwrap_or(usage) >= usage,
                "{memory:?}"
            );
            assert!(memory.inactive_file_bytes.is_some() && memory.rss_bytes.is_some());
            assert_eq!(memory.oom_kills, Some(0));
        }
    }
    assert_eq!(
        running.io.is_some(),
        !v2_controller_missing("io"),
        "{:?}",
        running.io
    );
    if v2_controller_missing("memory") {
        assert!(running.memory.is_none() && running.pids.is_none());
    }

    // A stopped container's cgroups keep their totals until delete.
    daemon
        .kill("busy", libc::SIGKILL as u32, false)
        .await
        .unwrap();
    wait_exit_status(&mut daemon.client().await, "busy").await;
    let stopped = stats(&daemon, "busy").await;
    assert!(cpu_total(&stopped) >= cpu_total(&running));
    if let Some(pids) = &stopped.pids {
        assert_eq!(pids.current, Some(0));
    }
    daemon.delete("busy", true).await.unwrap();
    let gone = daemon
        .client()
        .await
        .container_stats(ContainerStatsRequest { id: "busy".into() })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn the_cli_updates_from_flags_or_a_file_and_prints_stats() {
    let daemon = Daemon::start().await;
    let _bundle = run_limited(&daemon, "cli").await;

    let nothing = daemon.cli(&["update", "cli"]);
    assert!(!nothing.status.success());
    assert!(
        stderr(&nothing).contains("nothing to update"),
        "{}",
        stderr(&nothing)
    );

    let flags = daemon.cli(&["update", "cli", "--pids-limit", "40", "--memory", "80m"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resources.json");
    std::fs::write(&file, json!({"pids": {"limit": 24}}).to_string()).unwrap();
    let from_file = daemon.cli(&["update", "-r", file.to_str().unwrap(), "cli"]);
    if v2_controller_missing("pids") {
        for refused in [&flags, &from_file] {
            assert!(!refused.status.success());
            assert!(
                stderr(refused).contains("controller"),
                "{}",
                stderr(refused)
            );
        }
    } else {
        assert!(
            flags.status.success(),
            "{}\ncontainer output: {:?}\n{}",
            stderr(&flags),
            std::fs::read_to_string(output_of(&daemon, "cli")),
            daemon.logs()
        );
        assert!(from_file.status.success(), "{}", stderr(&from_file));
        assert_eq!(cgroup_file(&daemon, "cli", "pids.max"), "24");
        assert_eq!(limits(&daemon, "cli").memory, (80 * MIB).to_string());
        assert_eq!(persisted(&daemon, "cli")["memory"]["limit"], 80 * MIB);
    }
    let with_both = daemon.cli(&["update", "-r", "-", "--memory", "1g", "cli"]);
    assert!(!with_both.status.success());

    let table = daemon.cli(&["stats", "cli"]);
    assert!(table.status.success(), "{}", stderr(&table));
    let lines: Vec<String> = stdout(&table).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("PIDS"),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("cli "), "{lines:?}");

    let json_out = daemon.cli(&["stats", "--json", "cli"]);
    assert!(json_out.status.success(), "{}", stderr(&json_out));
    let figures: Value = serde_json::from_str(stdout(&json_out).trim()).unwrap();
    assert_eq!(figures["id"], "cli");
    assert!(figures["cpu"]["usageTotalNs"].as_u64().unwrap() > 0);
    if v2_controller_missing("pids") {
        assert!(figures.get("pids").is_none(), "{figures}");
        assert!(lines[1].trim_end().ends_with('-'), "{lines:?}");
    } else {
        // The init alone: sleep.
        assert_eq!(figures["pids"]["current"], 1, "{figures}");
        assert_eq!(figures["pids"]["limit"], 24, "{figures}");
        assert!(lines[1].trim_end().ends_with(" 1"), "{lines:?}");
    }

    // Without ids: every container with an init.
    let all = daemon.cli(&["stats"]);
    assert!(
        stdout(&all).lines().any(|l| l.starts_with("cli ")),
        "{}",
        stdout(&all)
    );
    daemon.delete("cli", true).await.unwrap();
}
