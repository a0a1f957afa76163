//! Crash points for the crash tests, compiled into debug builds only: with
//! `BERTH_FAULT=<name>` in its environment, berthd kills itself with SIGKILL on reaching the
//! point of that name, exactly as a crash there would. Release builds have none.

/// The points, in the order a container's life reaches them.
pub const POINTS: [&str; 5] = [
    "after-state-written",
    "after-cgroup-created",
    "after-init-spawned",
    "after-cgroup-removed",
    "after-state-dir-removed",
];

#[cfg(debug_assertions)]
pub fn point(name: &str) {
    debug_assert!(POINTS.contains(&name), "unknown fault point {name}");
    if std::env::var_os("BERTH_FAULT").is_some_and(|wanted| wanted == name) {
        tracing::error!(point = name, "fault injection: killing berthd");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &str) {}
