//! berthd killed with SIGKILL in the middle of create, start and delete, a hundred times:
//! at each crash point compiled into debug builds (`daemon/fault.rs`) and at moments chosen
//! by the clock. After a restart and a second delete, nothing may be left.
mod common;

use std::time::Duration;

use common::*;

/// What a container of this round may have left: its pid (if it got one) and id.
async fn lifecycle(daemon: &Daemon, id: &str, bundle: &Bundle) -> Option<i32> {
    let pid = daemon
        .create(id, bundle, None)
        .await
        .ok()
        .map(|c| c.pid as i32);
    let _ = daemon.start_container(id).await;
    let _ = daemon.delete(id, true).await;
    pid
}

/// Every process still in any of the container's cgroups, in every hierarchy.
fn processes_in(daemon: &Daemon, id: &str) -> Vec<i32> {
    daemon
        .container_cgroups(id)
        .iter()
        .flat_map(|dir| {
            std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter_map(|line| line.parse().ok())
        .collect()
}

#[tokio::test]
async fn a_hundred_crashes_leave_nothing_behind_after_restart_and_delete() {
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let mut daemon = Daemon::start().await;
    for round in 0..100usize {
        let id = format!("crash{round}");
        // Five rounds in six crash at a fault point, each point in turn; every sixth at a
        // moment of the clock.
        let point = berth::runtime::fault::POINTS.get(round % 6).copied();
        daemon.crash();
        match point {
            Some(point) => daemon.spawn_with_env(&[], &[("BERTH_FAULT", point)]),
            None => daemon.spawn(&[]),
        }
        daemon.wait_serving().await;
        let pid = match point {
            Some(_) => lifecycle(&daemon, &id, &bundle).await,
            None => {
                let delay = Duration::from_millis((round as u64 * 7) % 40);
                tokio::select! {
                    pid = lifecycle(&daemon, &id, &bundle) => pid,
                    _ = tokio::time::sleep(delay) => None,
                }
            }
        };
        // Crash (again, if it is still up), restart, and finish the job.
        daemon.crash();
        daemon.spawn(&[]);
        daemon.wait_serving().await;
        let leftovers = processes_in(&daemon, &id);
        match daemon.delete(&id, true).await {
            Ok(_) => {}
            Err(status) => panic!(
                "round {round} ({point:?}): second delete of {id}: {status:?}\n{}",
                daemon.logs()
            ),
        }
        wait_gone(&leftovers).await;
        if let Some(pid) = pid {
            wait_gone(&[pid]).await;
        }
        assert!(
            !daemon.root.join(&id).exists(),
            "round {round} ({point:?}): state directory left"
        );
        let left: Vec<_> = std::fs::read_dir(&daemon.root)
            .unwrap()
            .chain(std::fs::read_dir(daemon.root.join("~deleting")).unwrap())
            .flatten()
            .map(|e| e.file_name())
            .filter(|name| name != "~deleting")
            .collect();
        assert!(
            left.is_empty(),
            "round {round} ({point:?}): {left:?} left in the root"
        );
        for dir in daemon.container_cgroups(&id) {
            assert!(
                !dir.exists(),
                "round {round} ({point:?}): {} left",
                dir.display()
            );
        }
        let listed = daemon.list().await;
        assert!(
            listed.is_empty(),
            "round {round} ({point:?}): registry not empty: {listed:?}"
        );
    }
    // Every fault point is on the path the rounds take: each such round crashed there.
    let crashes_at_points = daemon
        .logs()
        .matches("fault injection: killing berthd")
        .count();
    eprintln!("{crashes_at_points} of 100 rounds crashed at a fault point");
    assert!(
        crashes_at_points >= 80,
        "only {crashes_at_points} rounds crashed at a fault point"
    );
}
