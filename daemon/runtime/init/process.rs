//! The init's own process settings and the exec of the user process.
use std::{
    ffi::CString,
    path::{Path, PathBuf},
    str::FromStr,
};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Capability, LinuxCapabilities, Process, Spec};

use super::resolve::open_in_root;
use crate::{
    error::{Error, IoContext, Result},
    seccomp,
};

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

pub fn set_hostname(spec: &Spec) -> Result<()> {
    if let Some(hostname) = spec.hostname() {
        nix::unistd::sethostname(hostname).context(|| format!("set hostname {hostname:?}"))?;
    }
    if let Some(domainname) = spec.domainname() {
        // SAFETY: a pointer and length of a live buffer.
        let rc = unsafe { libc::setdomainname(domainname.as_ptr().cast(), domainname.len()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .context(|| format!("set domain name {domainname:?}"));
        }
    }
    Ok(())
}

pub fn set_oom_score_adj(process: &Process) -> Result<()> {
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .context(|| format!("set oom_score_adj {adj}"))?;
    }
    Ok(())
}

pub fn set_rlimits(process: &Process) -> Result<()> {
    for rlimit in process.rlimits().clone().unwrap_or_default() {
        // The OCI names are the kernel's (RLIMIT_NOFILE, ...); serde spells them.
        let name = serde_json::to_value(rlimit.typ())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let resource = rlimit_resource(&name)
            .ok_or_else(|| invalid(format!("unknown rlimit {name}")))
            .context(|| "set rlimits".into())?;
        let limit = libc::rlimit {
            rlim_cur: rlimit.soft(),
            rlim_max: rlimit.hard(),
        };
        // SAFETY: setrlimit with a resource number and a pointer to a live struct.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error()).context(|| format!("set {name}"));
        }
    }
    Ok(())
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// The user process, resolved before the init reports ready so a missing binary fails
/// CreateContainer, as with runc.
pub struct Program {
    path: CString,
    args: Vec<CString>,
    env: Vec<CString>,
}

fn c_string(text: &str, what: &str) -> Result<CString> {
    CString::new(text)
        .map_err(|_| invalid(format!("{what} {text:?} contains a NUL byte")))
        .context(|| "prepare the process".into())
}

pub fn prepare_exec(process: &Process) -> Result<Program> {
    let args = process.args().clone().unwrap_or_default();
    let program = args
        .first()
        .ok_or_else(|| invalid("process.args is empty".into()))
        .context(|| "prepare the process".into())?;
    let env = process.env().clone().unwrap_or_default();
    let path = find_executable(program, &env)?;
    Ok(Program {
        path: c_string(path.to_str().unwrap_or_default(), "executable")?,
        args: args
            .iter()
            .map(|a| c_string(a, "argument"))
            .collect::<Result<_>>()?,
        env: env
            .iter()
            .map(|e| c_string(e, "environment entry"))
            .collect::<Result<_>>()?,
    })
}

fn bad_cwd(reason: String) -> Error {
    Error::InvalidConfig {
        field: "process.cwd".into(),
        reason,
    }
}

/// Enters process.cwd, resolved by the kernel inside the container's root (after
/// pivot_root, so "/" is the container's) with magic links refused: a cwd of
/// `/proc/self/fd/N`, or a symlink to it, would otherwise land in whatever directory the
/// init holds open, the host's included (CVE-2024-21626).
pub fn enter_cwd(process: &Process) -> Result<()> {
    let cwd = process.cwd().clone();
    if !cwd.is_absolute() {
        return Err(bad_cwd(format!(
            "{} is not an absolute path",
            cwd.display()
        )));
    }
    let root: std::os::fd::OwnedFd = std::fs::File::open("/").context(|| "open /".into())?.into();
    let dir = open_in_root(&root, &cwd, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|error| bad_cwd(format!("{}: {error}", cwd.display())))?;
    nix::unistd::fchdir(&dir).context(|| format!("chdir to {}", cwd.display()))?;
    verify_cwd()
}

/// The kernel reports a working directory outside the process's root as unreachable,
/// which getcwd turns into ENOENT: checked after entering cwd and once more before exec.
pub fn verify_cwd() -> Result<()> {
    match nix::unistd::getcwd() {
        Ok(path) if path.is_absolute() => Ok(()),
        _ => Err(bad_cwd(
            "the working directory lies outside the container's root".into(),
        )),
    }
}

/// `program` as exec would run it: a path when it has a slash, else the first executable
/// match in the container's PATH (its env, not berthd's).
fn find_executable(program: &str, env: &[String]) -> Result<PathBuf> {
    let is_executable = |path: &Path| {
        nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok() && path.is_file()
    };
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
                .context(|| format!("exec {program:?}"))
        };
    }
    let search = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    search
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| invalid(format!("executable {program:?} not found in $PATH")))
        .context(|| format!("exec {program:?}"))
}

impl Program {
    /// Returns only on failure.
    pub fn exec(self) -> crate::error::Error {
        let error = nix::unistd::execve(&self.path, &self.args, &self.env).unwrap_err();
        crate::error::Error::Io {
            context: format!("exec {:?}", self.path),
            source: error.into(),
        }
    }
}

/// Drops to the configured user and capabilities, and loads the seccomp filter. The
/// bounding set is trimmed while root still holds CAP_SETPCAP; the other sets are set after
/// the uid change, which (with keep-caps) preserves only the permitted set.
///
/// The filter goes in where runc puts it. With noNewPrivileges, last, just before execve,
/// so that the profile need not allow what berth itself still does. Without it, first:
/// loading a filter then takes CAP_SYS_ADMIN, which the drop below may take away; the
/// profile must then allow the setgroups, setresuid, capset and prctl that follow (every
/// real profile does). Either way after the startContainer hooks, which berth runs
/// unfiltered (runc runs them under the filter, only because it loads the filter before
/// the exec FIFO, to pass a notify fd that berth does not make).
pub fn become_user_process(process: &Process, seccomp: Option<&seccomp::Program>) -> Result<()> {
    let no_new_privileges = process.no_new_privileges().unwrap_or(false);
    if let (Some(program), false) = (seccomp, no_new_privileges) {
        seccomp::load(program)?;
    }
    let capabilities = process.capabilities().clone().unwrap_or_default();
    let set_of = |pick: fn(&LinuxCapabilities) -> &Option<oci_spec::runtime::Capabilities>| -> Result<caps::CapsHashSet> {
        pick(&capabilities).iter().flatten().map(to_caps).collect()
    };
    let bounding = set_of(|c| c.bounding())?;
    for cap in caps::all() {
        if !bounding.contains(&cap)
            && caps::has_cap(None, caps::CapSet::Bounding, cap).unwrap_or(false)
        {
            caps::drop(None, caps::CapSet::Bounding, cap)
                .map_err(|e| invalid(e.to_string()))
                .context(|| format!("drop {cap} from the bounding set"))?;
        }
    }

    let user = process.user();
    if let Some(umask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    }
    let groups: Vec<Gid> = user
        .additional_gids()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(Gid::from_raw)
        .collect();
    nix::unistd::setgroups(&groups).context(|| "setgroups".into())?;
    nix::sys::prctl::set_keepcaps(true).context(|| "keep capabilities across setuid".into())?;
    let gid = Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).context(|| format!("setgid {gid}"))?;
    let uid = Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).context(|| format!("setuid {uid}"))?;

    let apply = |set: caps::CapSet, wanted: &caps::CapsHashSet| -> Result<()> {
        caps::set(None, set, wanted)
            .map_err(|e| invalid(e.to_string()))
            .context(|| format!("set {set:?} capabilities"))
    };
    // Order matters to capset(2): the inheritable set while CAP_SETPCAP is still
    // effective, then effective before permitted (effective must stay within permitted).
    apply(caps::CapSet::Inheritable, &set_of(|c| c.inheritable())?)?;
    apply(caps::CapSet::Effective, &set_of(|c| c.effective())?)?;
    apply(caps::CapSet::Permitted, &set_of(|c| c.permitted())?)?;
    // The kernel takes into the ambient set only what is both permitted and inheritable;
    // the rest is skipped, as runc does (`runc spec` itself asks for ambient capabilities
    // it leaves out of the inheritable set).
    caps::clear(None, caps::CapSet::Ambient)
        .map_err(|e| invalid(e.to_string()))
        .context(|| "clear ambient capabilities".into())?;
    for cap in set_of(|c| c.ambient())? {
        let _ = caps::raise(None, caps::CapSet::Ambient, cap);
    }

    if no_new_privileges {
        nix::sys::prctl::set_no_new_privs().context(|| "set no_new_privs".into())?;
        if let Some(program) = seccomp {
            seccomp::load(program)?;
        }
    }
    Ok(())
}

fn to_caps(cap: &Capability) -> Result<caps::Capability> {
    let name = serde_json::to_value(cap)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    caps::Capability::from_str(&name)
        .map_err(|_| invalid(format!("unknown capability {name}")))
        .context(|| "set capabilities".into())
}
