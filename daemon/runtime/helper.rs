//! How berthd makes a container's init without forking itself: it executes a sealed copy
//! of its own binary in `init` mode (see `init`), configures it over a socket, and follows
//! its progress through the messages below. berthd sends the container's
//! [`crate::cgroups::Placement`] first, then the [`Task`]; an init's helper sets up the
//! namespaces meanwhile berthd makes the cgroups, and waits for [`CgroupsMade`] to fork.
use std::{
    fs::File,
    io::{self, BufRead, BufReader, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

/// The first argument that turns berthd into the helper; the second is the fd number of
/// its end of the socket.
pub const INIT_ARG: &str = "init";

/// What to make: berthd's second message to the helper, after the placement.
#[derive(Debug, Serialize, Deserialize)]
pub enum Task {
    /// A new container's init.
    Create(Box<InitConfig>),
    /// A process in a container that exists.
    Exec(Box<ExecConfig>),
}

/// A new container's init.
#[derive(Debug, Serialize, Deserialize)]
pub struct InitConfig {
    pub spec: oci_spec::runtime::Spec,
    /// The container's root file system, absolute.
    pub rootfs: PathBuf,
    /// The FIFO StartContainer opens; the init blocks writing to it until then.
    pub exec_fifo: PathBuf,
    /// What a `cgroup` mount in the config becomes.
    pub cgroup_mount: crate::cgroups::ContainerMount,
    /// How long the hooks the init runs may take.
    pub hook_timeouts: crate::hooks::HookTimeouts,
    /// linux.seccomp, compiled by berthd at create.
    pub seccomp: Option<crate::seccomp::Program>,
    /// Where the terminal's master goes, for a process with `process.terminal`.
    pub console_socket: Option<PathBuf>,
}

/// An exec process: it joins every namespace of the container's init.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExecConfig {
    /// The container's init. Its start time is checked after its namespaces are opened, so
    /// a pid reused by another process cannot lend its namespaces.
    pub init: crate::process::InitProcess,
    pub process: oci_spec::runtime::Process,
    /// The container's linux.seccomp, as compiled at create.
    pub seccomp: Option<crate::seccomp::Program>,
    /// With process.terminal: where the terminal's master goes.
    pub console_socket: Option<PathBuf>,
}

/// Progress reports, helper -> berthd.
#[derive(Debug, Serialize, Deserialize)]
pub enum Report {
    /// The helper created the container's user namespace and waits, for IdsMapped, until
    /// berthd (root on the host, as the maps require) has written its uid and gid maps.
    UserNamespace,
    /// The container's init (or the exec process) exists, with this pid in berthd's PID
    /// namespace and this start time (read by the helper while it is still its parent, so
    /// the pid cannot have been reused). An exec process goes on at once: berthd learns it
    /// has executed when the socket closes without a `Failed`.
    InitPid { pid: i32, start_time: u64 },
    /// Mounts are in place, pivot_root is not done: time for the runtime-namespace hooks.
    Mounted,
    /// The init waits on the exec FIFO.
    Ready,
    /// Creation failed; nothing more will come.
    Failed {
        message: String,
        /// The cause lies in the request (a missing executable or mount source, ...).
        caller_error: bool,
    },
}

/// berthd -> the helper: the user namespace's maps are written.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdsMapped;

/// berthd -> the helper making an init, once its namespaces may exist (after `IdsMapped`
/// when it makes a user namespace): the container's cgroups and RDT group exist, so it may
/// enter them and fork the init.
#[derive(Debug, Serialize, Deserialize)]
pub struct CgroupsMade;

/// berthd -> the init, once the runtime-namespace hooks ran.
#[derive(Debug, Serialize, Deserialize)]
pub struct Proceed {
    /// The OCI state JSON (status "creating") for the createContainer hooks.
    pub creating_state: String,
    /// The OCI state JSON (status "created") for the startContainer hooks.
    pub created_state: String,
}

/// One JSON document per line, in both directions.
pub struct Channel {
    reader: BufReader<UnixStream>,
}

impl Channel {
    pub fn new(stream: UnixStream) -> Self {
        Self {
            reader: BufReader::new(stream),
        }
    }

    pub fn send<T: Serialize>(&mut self, message: &T) -> io::Result<()> {
        let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
        line.push(b'\n');
        self.reader.get_mut().write_all(&line)
    }

    /// `None` when the other side hung up.
    pub fn receive<T: for<'de> Deserialize<'de>>(&mut self) -> io::Result<Option<T>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(io::Error::other)
    }

    /// Tells the other side nothing more will come, while the fd itself stays open.
    pub fn close(&self) {
        let _ = self.reader.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

/// A copy of berthd's own executable in a sealed memfd. The helper runs from it, so a
/// container that writes to /proc/self/exe while its init is still the helper hits this
/// copy (which the seals make immutable), never the binary on the host.
pub struct InitBinary {
    memfd: OwnedFd,
}

impl InitBinary {
    pub fn seal_current_exe() -> io::Result<Self> {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let memfd = memfd_create(
            "berthd-init",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )?;
        let mut copy = File::from(memfd);
        io::copy(&mut File::open("/proc/self/exe")?, &mut copy)?;
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        // SAFETY: F_ADD_SEALS on an fd we own, with seal flags only.
        if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { memfd: copy.into() })
    }

    /// Executable through /proc: the path is resolved by the spawned child before exec
    /// closes the (close-on-exec) memfd.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.memfd.as_raw_fd()))
    }
}
