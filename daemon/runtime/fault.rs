//! Fault points for the crash tests, compiled into debug builds only: with
//! `BERTH_FAULT=<name>` in its environment, berthd kills itself with SIGKILL on reaching the
//! point of that name, exactly as a crash there would; with `BERTH_FAULT=panic:<name>`, the
//! first task to reach it panics instead (the operation fails, berthd lives on). Release
//! builds have none.

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
    use std::sync::atomic::{AtomicBool, Ordering};
    static PANICKED: AtomicBool = AtomicBool::new(false);

    debug_assert!(POINTS.contains(&name), "unknown fault point {name}");
    let Some(wanted) = std::env::var_os("BERTH_FAULT") else {
        return;
    };
    if wanted == name {
        tracing::error!(point = name, "fault injection: killing berthd");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    } else if wanted.to_str().and_then(|w| w.strip_prefix("panic:")) == Some(name)
        && !PANICKED.swap(true, Ordering::SeqCst)
    {
        panic!("fault injection: panic at {name}");
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn point(_name: &str) {}
