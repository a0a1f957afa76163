//! Attaching the CLI to a process in a container, as `runc run` and `docker run` attach:
//! its output to the CLI's, the CLI's stdin to it, the CLI's signals forwarded to it, and
//! its exit code the CLI's.
//!
//! berthd never carries the streams: the CLI makes FIFOs (or, for a terminal, a console
//! socket) in a private directory, berthd opens them by path for the process, and the data
//! flows between the process and the CLI through the kernel. So attaching works only where
//! the CLI and berthd share a file system: over a Unix socket on berthd's host.
//!
//! The process is anything that can be waited for and signalled ([`Process`]): a
//! container's init for `berth run`, an exec process for `berth exec`. Its caller creates
//! it with the paths of an [`Attachment`], connects, starts it, and follows it:
//!
//! ```text
//! let attachment = Attachment::new(terminal, stdin)?;   // before the create: signals are caught
//! create(attachment.paths())                              // berthd opens the streams
//! let attached = attachment.connect()?;                   // the terminal arrives
//! start()
//! let code = attached.follow(&process).await?;            // until the process exits
//! ```
use std::{
    fs::File,
    future::Future,
    io::Write,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd},
        unix::{
            fs::OpenOptionsExt,
            net::{UnixListener, UnixStream},
        },
    },
    path::PathBuf,
};

use anyhow::{bail, Context};
use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, OFlag},
    sys::{
        socket::{recvmsg, ControlMessageOwned, MsgFlags},
        stat::Mode,
        termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios},
    },
};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, Signal, SignalKind},
    sync::watch,
};

/// A process the CLI is attached to.
pub trait Process {
    /// Returns once the process has exited, with its exit code (128 + N when signal N
    /// ended it).
    fn wait(&self) -> impl Future<Output = anyhow::Result<u8>>;

    /// Sends the process `signal`.
    fn signal(&self, signal: i32) -> impl Future<Output = anyhow::Result<()>>;
}

/// The paths to give berthd for the process's streams, as the API's fields take them (an
/// empty string for none).
pub struct Paths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub console_socket: String,
}

/// What the process's streams will be connected to, made before the process exists.
pub struct Attachment {
    dir: PrivateDir,
    streams: Streams,
    signals: Signals,
}

enum Streams {
    Fifos {
        /// Held for reading and writing: the FIFO has a writer from the start, so the
        /// process's reads wait for the CLI's input instead of finding an end of file; it
        /// sees the end once the CLI closes this. None: the process's stdin is /dev/null.
        stdin: Option<File>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Terminal {
        console_socket: UnixListener,
        /// The CLI's stdin goes to the terminal.
        stdin: bool,
    },
}

const STDIN: &str = "stdin";
const STDOUT: &str = "stdout";
const STDERR: &str = "stderr";
const CONSOLE_SOCKET: &str = "console.sock";

/// The signals an attached CLI forwards to its process; SIGWINCH resizes its terminal.
/// Caught from the moment the attachment is made, so that none kills the CLI half-way and
/// leaves a container behind, or the user's terminal raw.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
    window_change: Signal,
}

impl Attachment {
    /// FIFOs for stdout and stderr, or, with `terminal`, a console socket; with `stdin`,
    /// the CLI's stdin goes to the process (through a FIFO or its terminal).
    pub fn new(terminal: bool, stdin: bool) -> anyhow::Result<Self> {
        let signals = Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
            window_change: signal(SignalKind::window_change())?,
        };
        let dir = PrivateDir::new()?;
        let streams = if terminal {
            let path = dir.path.join(CONSOLE_SOCKET);
            let console_socket = UnixListener::bind(&path)
                .with_context(|| format!("listen on {}", path.display()))?;
            Streams::Terminal {
                console_socket,
                stdin,
            }
        } else {
            let names = [STDIN, STDOUT, STDERR];
            for name in &names[usize::from(!stdin)..] {
                let path = dir.path.join(name);
                nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))
                    .with_context(|| format!("mkfifo {}", path.display()))?;
            }
            let open = |name: &str, options: &mut std::fs::OpenOptions| {
                let path = dir.path.join(name);
                options
                    .open(&path)
                    .with_context(|| format!("open {}", path.display()))
            };
            // Neither waits for the other end: a FIFO opened for reading and writing has
            // both, and one opened for reading alone without blocking needs none.
            let mut output = std::fs::OpenOptions::new();
            output.read(true).custom_flags(libc::O_NONBLOCK);
            let mut input = std::fs::OpenOptions::new();
            input.read(true).write(true);
            Streams::Fifos {
                stdin: stdin.then(|| open(STDIN, &mut input)).transpose()?,
                stdout: open(STDOUT, &mut output)?.into(),
                stderr: open(STDERR, &mut output)?.into(),
            }
        };
        Ok(Self {
            dir,
            streams,
            signals,
        })
    }

    /// What to put in the create (or exec) request.
    pub fn paths(&self) -> Paths {
        let path = |name: &str| self.dir.path.join(name).to_string_lossy().into_owned();
        match &self.streams {
            Streams::Fifos { stdin, .. } => Paths {
                stdin: stdin.as_ref().map(|_| path(STDIN)).unwrap_or_default(),
                stdout: path(STDOUT),
                stderr: path(STDERR),
                console_socket: String::new(),
            },
            Streams::Terminal { .. } => Paths {
                stdin: String::new(),
                stdout: String::new(),
                stderr: String::new(),
                console_socket: path(CONSOLE_SOCKET),
            },
        }
    }

    /// Connects to the process once berthd has created it (and so opened its streams, and
    /// sent its terminal), and before it starts, so that it starts with the user's
    /// terminal size.
    pub fn connect(self) -> anyhow::Result<Attached> {
        let (input, outputs, terminal) = match self.streams {
            Streams::Fifos {
                stdin,
                stdout,
                stderr,
            } => (
                stdin.map(OwnedFd::from),
                vec![(stdout, Sink::Stdout), (stderr, Sink::Stderr)],
                None,
            ),
            Streams::Terminal {
                console_socket,
                stdin,
            } => {
                let master = receive_terminal(&console_socket)?;
                copy_window_size(&master);
                let dup = || master.try_clone().context("dup the terminal");
                let input = if stdin { Some(dup()?) } else { None };
                (input, vec![(dup()?, Sink::Stdout)], Some(master))
            }
        };
        Ok(Attached {
            _dir: self.dir,
            input,
            outputs,
            terminal,
            signals: self.signals,
        })
    }
}

/// An attachment whose process exists.
pub struct Attached {
    _dir: PrivateDir,
    /// Where the CLI's stdin goes, when it goes to the process.
    input: Option<OwnedFd>,
    outputs: Vec<(OwnedFd, Sink)>,
    /// The terminal's master, with a terminal.
    terminal: Option<OwnedFd>,
    signals: Signals,
}

impl Attached {
    /// Copies the streams and forwards signals until `process` exits; returns its exit
    /// code. With a terminal, the user's terminal is raw meanwhile when its keys go to the
    /// process (restored however this ends), and the process's size follows the user's.
    pub async fn follow(self, process: &impl Process) -> anyhow::Result<u8> {
        let Attached {
            _dir,
            input,
            outputs,
            terminal,
            mut signals,
        } = self;
        let _raw = (terminal.is_some() && input.is_some())
            .then(RawMode::enter)
            .flatten();
        let (exited, exit_seen) = watch::channel(false);
        let mut copies = Vec::new();
        for (source, sink) in outputs {
            set_nonblocking(&source)?;
            // SAFETY: the AsyncFd owns the fd, which is neither replaced nor closed while
            // registered.
            let source = unsafe { AsyncFd::register_with_interest(source, Interest::READABLE) }
                .map_err(|e| e.into_parts().1)
                .context("watch the process's output")?;
            copies.push(tokio::spawn(copy_output(source, sink, exit_seen.clone())));
        }
        if let Some(input) = input {
            // On a thread of its own, never joined: a read of the CLI's stdin cannot be
            // cancelled, and must not keep the CLI from exiting.
            std::thread::spawn(move || forward_input(input));
        }

        let exit = process.wait();
        tokio::pin!(exit);
        let code = loop {
            let forward = tokio::select! {
                code = &mut exit => break code?,
                _ = signals.interrupt.recv() => libc::SIGINT,
                _ = signals.terminate.recv() => libc::SIGTERM,
                _ = signals.hangup.recv() => libc::SIGHUP,
                _ = signals.window_change.recv() => {
                    if let Some(master) = &terminal {
                        copy_window_size(master);
                    }
                    continue;
                }
            };
            if let Err(error) = process.signal(forward).await {
                eprintln!("berth: cannot forward signal {forward}: {error:#}");
            }
        };
        let _ = exited.send(true);
        for copy in copies {
            copy.await.context("copy the output")?;
        }
        Ok(code)
    }
}

#[derive(Clone, Copy)]
enum Sink {
    Stdout,
    Stderr,
}

impl Sink {
    fn write(self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(data)?;
                out.flush()
            }
            Sink::Stderr => std::io::stderr().lock().write_all(data),
        }
    }
}

/// Copies `source` to `sink` until its end (every writer gone, or, for a terminal, EIO
/// once the process's side is closed). Once the process has exited, what is left in
/// `source` is copied and the copy ends there: a process that outlived the exit and keeps
/// the stream open (in a shared PID namespace) does not hold the CLI. A sink that fails
/// (the CLI's stdout closed) is given nothing more, but the source is still read, so the
/// process never blocks on a full FIFO.
async fn copy_output(source: AsyncFd<OwnedFd>, sink: Sink, mut exited: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut sink = Some(sink);
    let mut pass_on = |data: &[u8]| {
        if sink.is_some_and(|to| to.write(data).is_err()) {
            sink = None;
        }
    };
    loop {
        tokio::select! {
            biased;
            ready = source.readable() => {
                let Ok(mut guard) = ready else { return };
                match guard.try_io(|fd| read(fd.get_ref().as_fd(), &mut buffer)) {
                    Ok(Ok(Some(0) | None) | Err(_)) => return,
                    Ok(Ok(Some(n))) => pass_on(&buffer[..n]),
                    Err(_would_block) => continue,
                }
            }
            _ = exited.wait_for(|exited| *exited) => break,
        }
    }
    while let Ok(Some(n @ 1..)) = read(source.get_ref().as_fd(), &mut buffer) {
        pass_on(&buffer[..n]);
    }
}

/// `Some(n)` bytes read, `None` when a terminal's other side is closed (EIO).
fn read(fd: BorrowedFd<'_>, buffer: &mut [u8]) -> std::io::Result<Option<usize>> {
    loop {
        match nix::unistd::read(fd, buffer) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::EIO) => return Ok(None),
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

/// Copies the CLI's stdin to the process until its end, then closes `destination`: the
/// process's stdin FIFO then ends too. (A terminal stays open: its master has other fds.)
fn forward_input(destination: OwnedFd) {
    let mut buffer = vec![0u8; 64 * 1024];
    let stdin = std::io::stdin();
    while let Ok(Some(n)) = read(stdin.as_fd(), &mut buffer) {
        if n == 0 || write_all(destination.as_fd(), &buffer[..n]).is_err() {
            break;
        }
    }
}

/// Writes all of `data`, waiting for room when `fd` is non-blocking (a terminal's master).
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EAGAIN) => {
                poll(
                    &mut [PollFd::new(fd, PollFlags::POLLOUT)],
                    PollTimeout::NONE,
                )?;
            }
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno),
        }
    }
    Ok(())
}

fn set_nonblocking(fd: &OwnedFd) -> anyhow::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// The master berthd's init sent to the console socket before the create returned.
fn receive_terminal(listener: &UnixListener) -> anyhow::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let (stream, _) = match listener.accept() {
        Ok(accepted) => accepted,
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
            bail!("berthd sent no terminal to the console socket")
        }
        Err(error) => return Err(error).context("accept on the console socket"),
    };
    stream.set_nonblocking(false)?;
    receive_fd(&stream)
}

/// One fd in an SCM_RIGHTS message; the message's bytes (the terminal's name) are not
/// needed.
fn receive_fd(stream: &UnixStream) -> anyhow::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut name = [0u8; 4096];
    let mut buffers = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!(RawFd);
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut buffers,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receive the terminal")?;
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = control {
            if let [fd] = fds[..] {
                // SAFETY: the kernel just installed this fd in this process for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    bail!("the console socket's message held no terminal")
}

/// Gives the process's terminal the size of the user's, when the CLI has one.
fn copy_window_size(master: &OwnedFd) {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        // SAFETY: TIOCGWINSZ writes a winsize through the pointer, which is live.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0 {
            // SAFETY: TIOCSWINSZ reads a winsize through the pointer, which is live.
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
            return;
        }
    }
}

/// The user's terminal in raw mode, so every key reaches the process's terminal (whose own
/// line discipline then echoes, edits and turns ^C into SIGINT); restored when dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// `None` when stdin is no terminal: nothing to change.
    fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// A directory only the CLI's user can enter, removed with all it holds when dropped.
struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    fn new() -> anyhow::Result<Self> {
        let template = std::env::temp_dir().join("berth-attach-XXXXXX");
        // mkdtemp makes it mode 0700.
        let path = nix::unistd::mkdtemp(&template)
            .with_context(|| format!("make a private directory like {}", template.display()))?;
        Ok(Self { path })
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
