//! Out-of-memory kills as they happen: an eventfd registered on v1's `memory.oom_control`,
//! or an inotify watch on v2's `memory.events`, whose `oom_kill` count is compared.
use std::{
    fs,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::{v2_resources, CgroupError, Result};

/// Wakes (its fd turns readable) at each out-of-memory event of one container.
pub struct OomWatch {
    source: Source,
}

enum Source {
    EventFd {
        fd: OwnedFd,
        dir: PathBuf,
    },
    MemoryEvents {
        inotify: Inotify,
        path: PathBuf,
        seen: u64,
    },
}

impl AsRawFd for OomWatch {
    fn as_raw_fd(&self) -> RawFd {
        match &self.source {
            Source::EventFd { fd, .. } => fd.as_raw_fd(),
            Source::MemoryEvents { inotify, .. } => inotify.as_fd().as_raw_fd(),
        }
    }
}

impl OomWatch {
    /// Once the fd is readable: how many OOM kills happened since the last call, or `None`
    /// once the cgroup is gone (the kernel signals its removal too: not an OOM).
    pub fn take(&mut self) -> Option<u64> {
        match &mut self.source {
            Source::EventFd { fd, dir } => {
                let mut count = [0u8; 8];
                match nix::unistd::read(&*fd, &mut count) {
                    Ok(_) if dir.exists() => Some(u64::from_ne_bytes(count)),
                    Err(nix::errno::Errno::EAGAIN) => Some(0),
                    _ => None,
                }
            }
            Source::MemoryEvents {
                inotify,
                path,
                seen,
            } => {
                while let Ok(events) = inotify.read_events() {
                    if events
                        .iter()
                        .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                    {
                        return None;
                    }
                }
                let now = oom_kills(path)?;
                let new = now.saturating_sub(*seen);
                *seen = now;
                Some(new)
            }
        }
    }
}

fn oom_kills(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    v2_resources::parse_memory_events(&text)
        .ok()
        .map(|events| events.oom_kill)
}

pub fn v1(dir: &Path) -> Result<OomWatch> {
    let eventfd = nix::sys::eventfd::EventFd::from_flags(
        nix::sys::eventfd::EfdFlags::EFD_CLOEXEC | nix::sys::eventfd::EfdFlags::EFD_NONBLOCK,
    )
    .map_err(|e| CgroupError::io("make an eventfd for", dir)(e.into()))?;
    let oom_control = dir.join("memory.oom_control");
    let control = fs::File::open(&oom_control).map_err(CgroupError::io("open", &oom_control))?;
    let registration = format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd());
    let event_control = dir.join("cgroup.event_control");
    fs::write(&event_control, registration).map_err(CgroupError::io(
        "register for OOM events with",
        &event_control,
    ))?;
    Ok(OomWatch {
        source: Source::EventFd {
            fd: eventfd.into(),
            dir: dir.to_owned(),
        },
    })
}

pub fn v2(dir: &Path) -> Result<OomWatch> {
    let path = dir.join("memory.events");
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(|e| CgroupError::io("watch", &path)(e.into()))?;
    inotify
        .add_watch(&path, AddWatchFlags::IN_MODIFY)
        .map_err(|e| CgroupError::io("watch", &path)(e.into()))?;
    let seen = oom_kills(&path).unwrap_or(0);
    Ok(OomWatch {
        source: Source::MemoryEvents {
            inotify,
            path,
            seen,
        },
    })
}
