//! Fault points for the crash tests, compiled into debug builds only: with
//! `BERTH_FAULT=<name>` in its environment, berthd kills itself with SIGKILL on reaching the
//! point of that name, exactly as a crash there would; with `BERTH_FAULT=panic:<name>`, the
//! first task to reach it panics instead (the operation fails, berthd lives on). Release
//! builds have none.
//!
//! Failures of what berthd reads from the kernel, likewise debug builds only: with
//! `BERTH_FAULT_<POINT>=<errno>` (`BERTH_FAULT_PIDFD_OPEN=EMFILE`, a name or a number), the
//! call at that point fails with that errno, for the tests of what berthd cannot check
//! that no real limit provokes at the right moment.

/// The points, in the order a container's life reaches them.
pub const POINTS: [&str; 5] = [
    "after-state-written",
    "after-cgroup-created",
    "after-init-spawned",
    "after-cgroup-removed",
    "after-state-dir-removed",
];

/// The failure points: opening an init's pidfd, reading /proc/<pid>/stat to check it.
pub const ERRNO_POINTS: [&str; 2] = ["pidfd-open", "proc-stat"];

#[cfg(debug_assertions)]
pub fn errno(name: &str) -> Option<std::io::Error> {
    debug_assert!(ERRNO_POINTS.contains(&name), "unknown fault point {name}");
    let variable = format!("BERTH_FAULT_{}", name.replace('-', "_").to_uppercase());
    let value = std::env::var(&variable).ok()?;
    let errno = match value.as_str() {
        "EMFILE" => libc::EMFILE,
        "ENFILE" => libc::ENFILE,
        "EINVAL" => libc::EINVAL,
        "ENOMEM" => libc::ENOMEM,
        number => number.parse().ok()?,
    };
    tracing::warn!(point = name, errno, "fault injection: failing");
    Some(std::io::Error::from_raw_os_error(errno))
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn errno(_name: &str) -> Option<std::io::Error> {
    None
}

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
