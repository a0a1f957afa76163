//! How the user process is scheduled and which execution domain it runs in:
//! process.scheduler, process.ioPriority and linux.personality. Set by the init before it
//! reports ready, as runc sets them, so that a refusal by the kernel fails the create; the
//! startContainer hooks and the user process inherit them.
use oci_spec::runtime::{
    IOPriorityClass, LinuxPersonalityDomain, LinuxSchedulerFlag, Process, Spec,
};

use crate::{
    error::{IoContext, Result},
    spec_support,
};

pub fn apply(spec: &Spec) -> Result<()> {
    if let Some(process) = spec.process() {
        apply_to_process(process)?;
    }
    if let Some(personality) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        set_personality(personality.domain())?;
    }
    Ok(())
}

/// What an exec process gets too: its own scheduler and I/O priority.
pub fn apply_to_process(process: &Process) -> Result<()> {
    if let Some(scheduler) = process.scheduler() {
        set_scheduler(scheduler)?;
    }
    if let Some(priority) = process.io_priority() {
        set_io_priority(*priority)?;
    }
    Ok(())
}

fn set_scheduler(scheduler: &oci_spec::runtime::Scheduler) -> Result<()> {
    // Every policy but SCHED_ISO, which was refused at create.
    let policy = spec_support::scheduler_policy(*scheduler.policy())
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))
        .context(|| format!("set process.scheduler {scheduler:?}"))?;
    let flags = scheduler
        .flags()
        .iter()
        .flatten()
        .map(|flag| match flag {
            LinuxSchedulerFlag::SchedResetOnFork => libc::SCHED_FLAG_RESET_ON_FORK,
            LinuxSchedulerFlag::SchedFlagReclaim => libc::SCHED_FLAG_RECLAIM,
            LinuxSchedulerFlag::SchedFlagDLOverrun => libc::SCHED_FLAG_DL_OVERRUN,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => libc::SCHED_FLAG_KEEP_POLICY,
            LinuxSchedulerFlag::SchedFlagKeepParams => libc::SCHED_FLAG_KEEP_PARAMS,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => libc::SCHED_FLAG_UTIL_CLAMP_MIN,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => libc::SCHED_FLAG_UTIL_CLAMP_MAX,
        })
        .fold(0, |all, flag| all | flag);
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: policy as u32,
        sched_flags: flags as u64,
        sched_nice: scheduler.nice().unwrap_or(0),
        sched_priority: scheduler.priority().unwrap_or(0) as u32,
        sched_runtime: scheduler.runtime().unwrap_or(0),
        sched_deadline: scheduler.deadline().unwrap_or(0),
        sched_period: scheduler.period().unwrap_or(0),
    };
    // SAFETY: sched_setattr on this process with a pointer to a live, fully set struct.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .context(|| format!("set process.scheduler {scheduler:?}"));
    }
    Ok(())
}

/// From linux/ioprio.h, which libc does not carry.
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
const IOPRIO_CLASS_SHIFT: u32 = 13;

fn set_io_priority(priority: oci_spec::runtime::LinuxIOPriority) -> Result<()> {
    let class: u32 = match priority.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    // Within 0 to 7, checked at create.
    let value = (class << IOPRIO_CLASS_SHIFT) | priority.priority() as u32;
    // SAFETY: ioprio_set on this process with integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .context(|| format!("set process.ioPriority {priority:?}"));
    }
    Ok(())
}

/// From linux/personality.h, which libc does not carry.
const PER_LINUX: libc::c_ulong = 0x0000;
const PER_LINUX32: libc::c_ulong = 0x0008;

fn set_personality(domain: LinuxPersonalityDomain) -> Result<()> {
    let persona = match domain {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    // SAFETY: personality(2) with a plain integer.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(std::io::Error::last_os_error())
            .context(|| format!("set linux.personality {domain}"));
    }
    Ok(())
}
