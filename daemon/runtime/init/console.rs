//! A process's terminal (`process.terminal`), made as runc makes one: a pty allocated in the
//! container's own devpts (so it belongs to the container, not to the host's /dev/pts), its
//! master sent to the caller's console socket (runc's `--console-socket` protocol: one fd
//! in an SCM_RIGHTS message whose bytes are the terminal's name), its slave the process's
//! stdin, stdout, stderr and controlling terminal. The receiver owns the master and resizes
//! it; no copy stays behind in the init or in berthd.
//!
//! `connect` runs while the socket's path still resolves as the caller meant it, in the
//! host's mount namespace; `attach` inside the container's, with its /dev in place, before
//! the process drops its privileges.
use std::{
    io::IoSlice,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    path::Path,
};

use nix::{
    fcntl::OFlag,
    sys::{
        socket::{sendmsg, ControlMessage, MsgFlags},
        stat::{fstat, makedev, Mode, SFlag},
    },
};
use oci_spec::runtime::Process;

use super::{resolve::open_in_root, rootfs};
use crate::error::{Error, IoContext, Result};

/// `/dev/pts/ptmx` of a devpts instance: always this device (TTYAUX_MAJOR, minor 2).
const PTMX: (u64, u64) = (5, 2);

fn refused(reason: String) -> Error {
    Error::InvalidConfig {
        field: "process.terminal".into(),
        reason,
    }
}

/// Connects to the console socket at `path`.
pub fn connect(path: &Path) -> Result<OwnedFd> {
    UnixStream::connect(path)
        .map(OwnedFd::from)
        .map_err(|error| Error::InvalidConfig {
            field: "console socket".into(),
            reason: format!("cannot connect to {}: {error}", path.display()),
        })
}

/// Allocates the terminal in the container's /dev/pts, gives its slave to the process's
/// user, sends its master through `socket`, and makes the slave this process's stdio and
/// controlling terminal; the process must already lead a session of its own (setsid).
/// With `bind_dev_console` (an init's terminal, as runc does it), the slave is also bound on
/// /dev/console, so that what writes to the console reaches the container's terminal.
pub fn attach(socket: OwnedFd, process: &Process, bind_dev_console: bool) -> Result<()> {
    let root: OwnedFd = std::fs::File::open("/").context(|| "open /".into())?.into();
    let master = open_ptmx(&root)?;
    // SAFETY: TIOCSPTLCK reads an int through the pointer, which is live.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &0 as *const i32) })
        .context(|| "unlock the terminal".into())?;
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int through the pointer, which is live.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) })
        .context(|| "read the terminal's number".into())?;
    let name = format!("/dev/pts/{number}");
    if let Some(size) = process.console_size() {
        resize(&master, size.height(), size.width())
            .context(|| "set process.consoleSize".into())?;
    }
    // Opened through the master, not by name: nothing can stand in for it.
    // SAFETY: TIOCGPTPEER takes open flags and returns a new fd, which is then owned here.
    let slave = unsafe {
        OwnedFd::from_raw_fd(
            check(libc::ioctl(
                master.as_raw_fd(),
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ))
            .context(|| format!("open {name}"))?,
        )
    };
    // The owner only: the group is the devpts mount's `gid=` (tty), as runc leaves it.
    let uid = nix::unistd::Uid::from_raw(process.user().uid());
    nix::unistd::fchown(&slave, Some(uid), None).context(|| format!("chown {name} to {uid}"))?;
    if bind_dev_console {
        bind_dev_console_to(&root, &slave)?;
    }
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(name.as_bytes())],
        &[ControlMessage::ScmRights(&[master.as_raw_fd()])],
        MsgFlags::empty(),
        None,
    )
    .context(|| "send the terminal to the console socket".into())?;
    drop((master, socket));
    for stdio in 0..3 {
        // SAFETY: dup2 onto 0, 1 and 2, which this process means to replace.
        check(unsafe { libc::dup2(slave.as_raw_fd(), stdio) })
            .context(|| format!("make {name} fd {stdio}"))?;
    }
    // SAFETY: TIOCSCTTY with 0: take the terminal only if no session already has it.
    check(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) })
        .context(|| format!("make {name} the controlling terminal"))?;
    Ok(())
}

/// The ptmx of the devpts mounted on the container's /dev/pts, checked to be one: a
/// rootfs without devpts there would otherwise hand out whatever its image put in place.
fn open_ptmx(root: &OwnedFd) -> Result<OwnedFd> {
    let pts = open_in_root(
        root,
        Path::new("/dev/pts"),
        libc::O_PATH | libc::O_DIRECTORY,
    )
    .map_err(|e| refused(format!("a terminal needs devpts on /dev/pts: {e}")))?;
    let statfs = nix::sys::statfs::fstatfs(&pts).context(|| "statfs /dev/pts".into())?;
    if statfs.filesystem_type() != nix::sys::statfs::DEVPTS_SUPER_MAGIC {
        return Err(refused(
            "a terminal needs devpts on /dev/pts, which holds another file system".into(),
        ));
    }
    // A devpts holds only ptmx and terminals: no link or FIFO can stand at this name.
    let master = nix::fcntl::openat(
        &pts,
        "ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .context(|| "open /dev/pts/ptmx".into())?;
    let stat = fstat(&master).context(|| "stat /dev/pts/ptmx".into())?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR
        || stat.st_rdev != makedev(PTMX.0, PTMX.1)
    {
        return Err(refused("/dev/pts/ptmx is not the pty multiplexer".into()));
    }
    Ok(master)
}

/// Binds the slave on /dev/console, made as an empty file when the image has none.
fn bind_dev_console_to(root: &OwnedFd, slave: &OwnedFd) -> Result<()> {
    let dev = open_in_root(root, Path::new("/dev"), libc::O_PATH | libc::O_DIRECTORY)
        .context(|| "open /dev".into())?;
    let open = |flags: OFlag, mode: u32| {
        nix::fcntl::openat(
            &dev,
            "console",
            flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
    };
    match open(OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY, 0o666) {
        Ok(_) | Err(nix::errno::Errno::EEXIST) => {}
        Err(error) => return Err(error).context(|| "create /dev/console".into()),
    }
    let target = open(OFlag::O_PATH, 0).context(|| "open /dev/console".into())?;
    if SFlag::from_bits_truncate(
        fstat(&target)
            .context(|| "stat /dev/console".into())?
            .st_mode,
    ) & SFlag::S_IFMT
        == SFlag::S_IFLNK
    {
        return Err(refused("/dev/console is a symlink in the image".into()));
    }
    rootfs::bind_fd(slave, &target).context(|| "bind the terminal on /dev/console".into())?;
    Ok(())
}

fn resize(master: &OwnedFd, rows: u64, columns: u64) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: rows.try_into().unwrap_or(u16::MAX),
        ws_col: columns.try_into().unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize through the pointer, which is live.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
}

fn check(result: libc::c_int) -> std::io::Result<libc::c_int> {
    match result {
        -1 => Err(std::io::Error::last_os_error()),
        fd => Ok(fd),
    }
}
