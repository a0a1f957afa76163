//! Process identity and liveness (delete.md D6): a pid is trusted only together with the
//! start time recorded when the process was created, so a reused pid is never mistaken for
//! the container's init.
use std::{fs, io};

use crate::state::InitProcess;

/// The two fields of `/proc/<pid>/stat` that identity and liveness need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: R, S, D, Z, X, ...
    pub state: char,
    /// Field 22: start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcStat {
    /// `None` when no process has this pid.
    pub fn read(pid: i32) -> io::Result<Option<Self>> {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(text) => Self::parse(&text)
                .map(Some)
                .ok_or_else(|| io::Error::other(format!("unexpected /proc/{pid}/stat format"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The command name (field 2) may hold spaces and parentheses, so fields are counted
    /// from the last ')'.
    fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next()?.chars().next()?;
        // `rest` starts at field 3, so field 22 is the 20th from here.
        let start_time = fields.nth(18)?.parse().ok()?;
        Some(Self { state, start_time })
    }
}

impl InitProcess {
    /// Alive: the pid exists, is neither a zombie nor dead, and is still the same process.
    pub fn is_alive(&self) -> bool {
        match ProcStat::read(self.pid) {
            Ok(Some(stat)) => stat.start_time == self.start_time && !matches!(stat.state, 'Z' | 'X' | 'x'),
            Ok(None) => false,
            // /proc unreadable for this pid (it exists but cannot be inspected): assume it
            // lives, since calling it dead would let a delete skip the kill.
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_spaces_and_parens() {
        let line = "123 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 19 20\n";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                state: 'S',
                start_time: 987654
            })
        );
    }

    #[test]
    fn d6_own_process_is_alive_only_with_its_start_time() {
        let pid = std::process::id() as i32;
        let stat = ProcStat::read(pid).unwrap().unwrap();
        let me = InitProcess {
            pid,
            start_time: stat.start_time,
        };
        assert!(me.is_alive());
        let impostor = InitProcess {
            start_time: stat.start_time + 1,
            ..me
        };
        assert!(!impostor.is_alive());
    }

    #[test]
    fn d6_zombie_is_not_alive() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // WNOWAIT waits for the exit without reaping, so the child stays a zombie.
        use nix::sys::wait::{waitid, Id, WaitPidFlag};
        waitid(
            Id::Pid(nix::unistd::Pid::from_raw(pid)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )
        .unwrap();
        let stat = ProcStat::read(pid).unwrap().unwrap();
        assert_eq!(stat.state, 'Z');
        let init = InitProcess {
            pid,
            start_time: stat.start_time,
        };
        assert!(!init.is_alive());
        drop(child.wait_with_output());
    }
}
