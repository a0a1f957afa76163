//! A process's stdio as containerd gives it, and the shim's part in it. containerd passes
//! FIFO paths (or a log URI); berthd opens the paths itself, so the process writes straight
//! into the FIFOs and nothing is copied through the shim, except for a terminal, whose
//! master berthd sends here (runc's console-socket protocol) and the shim copies.
//!
//! The shim holds a read end of each output FIFO for as long as the process lives, as the
//! runc shim does: when the reader goes away (containerd restarting, `ctr run -d` exiting)
//! a writing process then blocks once the FIFO is full instead of dying of SIGPIPE. It holds
//! a write end of the stdin FIFO until the process starts (or CloseIO comes first), so the
//! process never reads an EOF before the client has opened its side, and reads one when the
//! client closes it.
use std::{
    fs::{File, OpenOptions},
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::{fs::FileTypeExt, fs::OpenOptionsExt},
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{unix::AsyncFd, AsyncReadExt, AsyncWriteExt},
    net::unix::pipe,
    task::JoinHandle,
};

/// How long a logger gets to flush after SIGTERM before it is killed (the runc shim's 12 s).
const LOGGER_STOP_TIMEOUT: Duration = Duration::from_secs(12);
/// How long a logger may take to say it is ready.
const LOGGER_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long berthd may take to send a terminal's master once the process was spawned.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The stdio containerd asked for: FIFO paths, a `binary://` or `file://` URI, or empty.
#[derive(Debug, Clone, Default)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("unknown stdio scheme {0:?} (fifo, file and binary are known)")]
    Scheme(String),
    #[error("cannot start the logging binary {path}: {source}")]
    Logger { path: PathBuf, source: io::Error },
    #[error("cannot make the console socket: {0}")]
    ConsoleSocket(io::Error),
    #[error("no terminal master arrived on the console socket: {0}")]
    Console(String),
    #[error("cannot resize the terminal: {0}")]
    Resize(io::Error),
    #[error("the process has no terminal")]
    NoTerminal,
}

/// Where one output stream goes.
enum Target {
    /// A path berthd opens (a FIFO or a file), or nothing.
    Path(String),
    /// A logging binary started by the shim, fed through FIFOs the shim makes.
    Binary { path: PathBuf, args: Vec<String> },
}

fn target(uri: &str) -> Result<Target, StdioError> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Ok(Target::Path(uri.to_owned()));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    match scheme {
        "fifo" | "file" => Ok(Target::Path(percent_decoded(path))),
        "binary" => Ok(Target::Binary {
            path: percent_decoded(path).into(),
            args: logger_args(query),
        }),
        other => Err(StdioError::Scheme(other.to_owned())),
    }
}

/// A logging binary's arguments, from its URI's query as the runc shim makes them: each key
/// once, then its first value (empty for a bare key).
fn logger_args(query: &str) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decoded(&key.replace('+', " "));
        if seen.insert(key.clone()) {
            args.push(key);
            args.push(percent_decoded(&value.replace('+', " ")));
        }
    }
    args
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&high), Some(&low)) if hex(high).is_some() && hex(low).is_some() => {
                decoded.push((hex(high).unwrap() * 16 + hex(low).unwrap()) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// What berthd is told for the process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Paths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub console_socket: String,
}

/// The shim's side of one process's stdio, held until the process is deleted.
pub struct Attachment {
    paths: Paths,
    output_readers: Vec<File>,
    /// Write ends of a logger's FIFOs until berthd has given the process its own: a reader
    /// of a FIFO without writers reads EOF, and the logger would stop before it began.
    spawn_writers: Vec<File>,
    stdin_writer: Option<File>,
    logger: Option<Logger>,
    console: Option<Console>,
    /// FIFOs the shim made for a logger, removed at close.
    made: Vec<PathBuf>,
}

impl Attachment {
    /// Opens what the shim holds for `stdio`. `dir` is where FIFOs for a logger go, `name`
    /// tells this process's apart from the others' there; `namespace` and `id` are a
    /// logger's CONTAINER_NAMESPACE and CONTAINER_ID.
    pub async fn open(
        stdio: &Stdio,
        dir: &Path,
        name: &str,
        namespace: &str,
        id: &str,
    ) -> Result<Self, StdioError> {
        let mut attachment = Self {
            paths: Paths::default(),
            output_readers: Vec::new(),
            spawn_writers: Vec::new(),
            stdin_writer: None,
            logger: None,
            console: None,
            made: Vec::new(),
        };
        if !stdio.stdin.is_empty() && is_fifo(&stdio.stdin) {
            attachment.stdin_writer = Some(open(
                &stdio.stdin,
                OpenOptions::new().read(true).write(true),
            )?);
        }
        if stdio.terminal {
            attachment.console = Some(Console::listen(stdio)?);
            attachment.paths.console_socket = attachment.console.as_ref().unwrap().socket_path();
            for output in [&stdio.stdout, &stdio.stderr] {
                attachment.hold_reader(output)?;
            }
            return Ok(attachment);
        }
        attachment.paths.stdin = stdio.stdin.clone();
        match (target(&stdio.stdout)?, target(&stdio.stderr)?) {
            (Target::Binary { path, args }, _) | (_, Target::Binary { path, args }) => {
                let stdout = dir.join(format!("berth-{name}-stdout"));
                let stderr = dir.join(format!("berth-{name}-stderr"));
                for fifo in [&stdout, &stderr] {
                    make_fifo(fifo)?;
                    attachment.made.push(fifo.clone());
                }
                attachment.paths.stdout = stdout.to_string_lossy().into_owned();
                attachment.paths.stderr = stderr.to_string_lossy().into_owned();
                for fifo in [&stdout, &stderr] {
                    let fifo = fifo.to_string_lossy();
                    attachment.hold_reader(&fifo)?;
                    let writer = open(
                        &fifo,
                        OpenOptions::new()
                            .write(true)
                            .custom_flags(libc::O_NONBLOCK),
                    )?;
                    attachment.spawn_writers.push(writer);
                }
                attachment.logger =
                    Some(Logger::start(&path, &args, &stdout, &stderr, namespace, id).await?);
            }
            (Target::Path(stdout), Target::Path(stderr)) => {
                for output in [&stdout, &stderr] {
                    attachment.hold_reader(output)?;
                }
                attachment.paths.stdout = stdout;
                attachment.paths.stderr = stderr;
            }
        }
        Ok(attachment)
    }

    fn hold_reader(&mut self, path: &str) -> Result<(), StdioError> {
        if !path.is_empty() && is_fifo(path) {
            let reader = open(
                path,
                OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK),
            )?;
            self.output_readers.push(reader);
        }
        Ok(())
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Once berthd has spawned the process: takes a terminal's master from the console
    /// socket and starts copying. Nothing to do without a terminal.
    pub async fn process_spawned(&mut self) -> Result<(), StdioError> {
        self.spawn_writers.clear();
        match &mut self.console {
            Some(console) => console.connect().await,
            None => Ok(()),
        }
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<(), StdioError> {
        self.console
            .as_ref()
            .ok_or(StdioError::NoTerminal)?
            .resize(width, height)
    }

    /// Waits, at most `limit`, until the client has read what the process left in its
    /// output FIFOs. containerd's client closes its FIFO readers as soon as it learns of the
    /// exit, so an exit reported while the last lines still sit in a FIFO would lose them;
    /// the runc shim's copying hides this race, writing straight into the FIFOs shows it.
    /// Bounded, since a detached task may have no reader at all.
    pub async fn wait_drained(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.output_readers.iter().any(|fifo| unread(fifo) > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The process started: the client's write end of stdin is the one that counts now.
    pub fn release_stdin(&mut self) {
        self.stdin_writer = None;
    }

    /// containerd's CloseIO: the client has no more input.
    pub fn close_stdin(&mut self) {
        self.stdin_writer = None;
        if let Some(console) = &mut self.console {
            console.close_stdin();
        }
    }

    /// Lets go of everything: a logger gets its time to flush.
    pub async fn close(mut self) {
        if let Some(console) = self.console.take() {
            console.close();
        }
        if let Some(logger) = self.logger.take() {
            logger.stop().await;
        }
        for fifo in &self.made {
            let _ = std::fs::remove_file(fifo);
        }
    }
}

/// The bytes waiting in a FIFO.
fn unread(fifo: &File) -> libc::c_int {
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which outlives the call.
    if unsafe { libc::ioctl(fifo.as_raw_fd(), libc::FIONREAD, &mut bytes) } < 0 {
        return 0;
    }
    bytes
}

fn is_fifo(path: &str) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.file_type().is_fifo())
}

fn open(path: &str, options: &OpenOptions) -> Result<File, StdioError> {
    options.open(path).map_err(|source| StdioError::Open {
        path: path.into(),
        source,
    })
}

fn make_fifo(path: &Path) -> Result<(), StdioError> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(|errno| {
        StdioError::Open {
            path: path.to_owned(),
            source: errno.into(),
        }
    })
}

/// A logging binary (`binary://PATH?ARGS`), the runc shim's protocol: the process's stdout
/// on fd 3, its stderr on fd 4, and fd 5 to close (or write to) once it is ready.
struct Logger {
    child: tokio::process::Child,
}

impl Logger {
    async fn start(
        path: &Path,
        args: &[String],
        stdout: &Path,
        stderr: &Path,
        namespace: &str,
        id: &str,
    ) -> Result<Self, StdioError> {
        let failed = |source: io::Error| StdioError::Logger {
            path: path.to_owned(),
            source,
        };
        // The logger gets open file descriptions of its own: blocking, and not shared with
        // the readers the shim keeps.
        let blocking_reader = |fifo: &Path| -> Result<File, StdioError> {
            let file = open(
                &fifo.to_string_lossy(),
                OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK),
            )?;
            set_nonblocking(file.as_raw_fd(), false).map_err(failed)?;
            Ok(file)
        };
        let (out, err) = (blocking_reader(stdout)?, blocking_reader(stderr)?);
        // Close-on-exec: the logger's fd 5 must be its only copy of the write end.
        let (ready_read, ready_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| failed(e.into()))?;
        let inherited = [out.as_raw_fd(), err.as_raw_fd(), ready_write.as_raw_fd()];
        let mut command = tokio::process::Command::new(path);
        command
            .args(args)
            .env_clear()
            .env("CONTAINER_ID", id)
            .env("CONTAINER_NAMESPACE", namespace)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(false);
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
        unsafe {
            command.pre_exec(move || place_fds(&inherited));
        }
        let child = command.spawn().map_err(failed)?;
        drop((out, err, ready_write));
        // Ready when it writes a byte or closes its end (EOF).
        let mut ready = pipe::Receiver::from_owned_fd(ready_read).map_err(failed)?;
        let mut byte = [0u8; 1];
        let mut logger = Self { child };
        match tokio::time::timeout(LOGGER_READY_TIMEOUT, ready.read(&mut byte)).await {
            Ok(Ok(_)) => Ok(logger),
            outcome => {
                let _ = logger.child.kill().await;
                Err(failed(match outcome {
                    Ok(Err(e)) => e,
                    _ => io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("it did not close fd 5 within {LOGGER_READY_TIMEOUT:?}"),
                    ),
                }))
            }
        }
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(LOGGER_STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            log::warn!(
                "the logging binary did not exit {LOGGER_STOP_TIMEOUT:?} after SIGTERM; killing it"
            );
            let _ = self.child.kill().await;
        }
    }
}

/// In the child: `fds` become 3, 4, 5... Each goes through a fresh copy first, so one
/// already numbered 3 to 5 is not overwritten before it is moved.
fn place_fds(fds: &[RawFd]) -> io::Result<()> {
    let mut copies = Vec::with_capacity(fds.len());
    for &fd in fds {
        // SAFETY: plain fcntl on an fd this process owns.
        let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        copies.push(copy);
    }
    for (target, copy) in (3..).zip(copies) {
        // SAFETY: dup2 onto a number this child reserves for the logger.
        if unsafe { libc::dup2(copy, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn set_nonblocking(fd: RawFd, nonblocking: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A terminal: the console socket berthd sends the master to, then the master itself and
/// the copies between it and the FIFOs.
struct Console {
    stdio: Stdio,
    dir: tempfile::TempDir,
    pending: Option<JoinHandle<Result<OwnedFd, StdioError>>>,
    master: Option<Arc<AsyncFd<OwnedFd>>>,
    input: Option<JoinHandle<()>>,
    output: Option<JoinHandle<()>>,
}

impl Console {
    /// Listens on a fresh socket. It lives in the temporary directory, not the bundle:
    /// a socket path must fit in 108 bytes, and containerd's bundle paths can be longer.
    fn listen(stdio: &Stdio) -> Result<Self, StdioError> {
        let dir = tempfile::Builder::new()
            .prefix("berth-console-")
            .tempdir()
            .map_err(StdioError::ConsoleSocket)?;
        let listener = tokio::net::UnixListener::bind(dir.path().join("console.sock"))
            .map_err(StdioError::ConsoleSocket)?;
        let pending = tokio::spawn(async move {
            let (stream, _) = listener
                .accept()
                .await
                .map_err(|e| StdioError::Console(e.to_string()))?;
            let stream = stream
                .into_std()
                .map_err(|e| StdioError::Console(e.to_string()))?;
            tokio::task::spawn_blocking(move || receive_fd(&stream))
                .await
                .map_err(|e| StdioError::Console(e.to_string()))?
        });
        Ok(Self {
            stdio: stdio.clone(),
            dir,
            pending: Some(pending),
            master: None,
            input: None,
            output: None,
        })
    }

    fn socket_path(&self) -> String {
        self.dir
            .path()
            .join("console.sock")
            .to_string_lossy()
            .into_owned()
    }

    async fn connect(&mut self) -> Result<(), StdioError> {
        let Some(pending) = self.pending.take() else {
            return Ok(());
        };
        let master = match tokio::time::timeout(CONSOLE_TIMEOUT, pending).await {
            Ok(Ok(received)) => received?,
            Ok(Err(e)) => return Err(StdioError::Console(e.to_string())),
            Err(_) => {
                return Err(StdioError::Console(format!(
                    "none within {CONSOLE_TIMEOUT:?}"
                )))
            }
        };
        set_nonblocking(master.as_raw_fd(), true)
            .map_err(|e| StdioError::Console(e.to_string()))?;
        // SAFETY: the OwnedFd moves into the AsyncFd, which alone closes it.
        let master =
            unsafe { AsyncFd::register(master) }.map_err(|e| StdioError::Console(e.to_string()))?;
        let master = Arc::new(master);
        if is_fifo(&self.stdio.stdout) {
            let sender = pipe::OpenOptions::new()
                .open_sender(&self.stdio.stdout)
                .map_err(|source| StdioError::Open {
                    path: self.stdio.stdout.clone().into(),
                    source,
                })?;
            self.output = Some(tokio::spawn(copy_from_master(master.clone(), sender)));
        }
        if is_fifo(&self.stdio.stdin) {
            let receiver = pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(&self.stdio.stdin)
                .map_err(|source| StdioError::Open {
                    path: self.stdio.stdin.clone().into(),
                    source,
                })?;
            self.input = Some(tokio::spawn(copy_to_master(receiver, master.clone())));
        }
        self.master = Some(master);
        Ok(())
    }

    fn resize(&self, width: u32, height: u32) -> Result<(), StdioError> {
        let master = self
            .master
            .as_ref()
            .ok_or_else(|| StdioError::Console("not received yet".into()))?;
        let size = libc::winsize {
            ws_row: height as u16,
            ws_col: width as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        if unsafe { libc::ioctl(master.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(StdioError::Resize(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn close_stdin(&mut self) {
        if let Some(input) = self.input.take() {
            input.abort();
        }
    }

    fn close(mut self) {
        self.close_stdin();
        if let Some(pending) = self.pending.take() {
            pending.abort();
        }
        if let Some(output) = self.output.take() {
            output.abort();
        }
    }
}

/// Receives one fd sent with SCM_RIGHTS (runc's console-socket protocol).
fn receive_fd(stream: &std::os::unix::net::UnixStream) -> Result<OwnedFd, StdioError> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    stream
        .set_nonblocking(false)
        .map_err(|e| StdioError::Console(e.to_string()))?;
    let mut name = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| StdioError::Console(e.to_string()))?;
    for control in message
        .cmsgs()
        .map_err(|e| StdioError::Console(e.to_string()))?
    {
        if let ControlMessageOwned::ScmRights(fds) = control {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(StdioError::Console("the message carried no fd".into()))
}

async fn copy_from_master(master: Arc<AsyncFd<OwnedFd>>, mut sender: pipe::Sender) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let read = master
            .async_io(tokio::io::Interest::READABLE, |fd| {
                // SAFETY: reads into a buffer of the length given.
                let n =
                    unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            })
            .await;
        // EIO: every slave fd is closed, the terminal's processes are gone.
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if sender.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn copy_to_master(mut receiver: pipe::Receiver, master: Arc<AsyncFd<OwnedFd>>) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        let n = match receiver.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut written = 0;
        while written < n {
            let chunk = &buffer[written..n];
            let result = master
                .async_io(tokio::io::Interest::WRITABLE, |fd| {
                    // SAFETY: writes from a slice of the length given.
                    let w =
                        unsafe { libc::write(fd.as_raw_fd(), chunk.as_ptr().cast(), chunk.len()) };
                    if w < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(w as usize)
                    }
                })
                .await;
            match result {
                Ok(w) => written += w,
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_become_targets() {
        assert!(
            matches!(target("/run/fifo/1-stdout").unwrap(), Target::Path(p) if p == "/run/fifo/1-stdout")
        );
        assert!(matches!(target("").unwrap(), Target::Path(p) if p.is_empty()));
        assert!(
            matches!(target("file:///var/log/c%20d.log").unwrap(), Target::Path(p) if p == "/var/log/c d.log")
        );
        match target("binary:///usr/bin/logger?tag=web&verbose&to=a%2Fb").unwrap() {
            Target::Binary { path, args } => {
                assert_eq!(path, Path::new("/usr/bin/logger"));
                assert_eq!(args, ["tag", "web", "verbose", "", "to", "a/b"]);
            }
            Target::Path(p) => panic!("not a logger: {p}"),
        }
        let error = target("tcp://host:1").err().unwrap().to_string();
        assert!(error.contains("tcp"), "{error}");
    }

    #[tokio::test]
    async fn the_shim_holds_the_fifos_so_nobody_reads_eof_or_dies_of_sigpipe() {
        let dir = tempfile::tempdir().unwrap();
        let [stdin, stdout] = ["in", "out"].map(|name| dir.path().join(name));
        for fifo in [&stdin, &stdout] {
            make_fifo(fifo).unwrap();
        }
        let stdio = Stdio {
            stdin: stdin.to_string_lossy().into(),
            stdout: stdout.to_string_lossy().into(),
            stderr: String::new(),
            terminal: false,
        };
        let mut attachment = Attachment::open(&stdio, dir.path(), "init", "ns", "id")
            .await
            .unwrap();
        assert_eq!(attachment.paths().stdout, stdio.stdout);
        // A writer opens at once (a reader is there) and writes without SIGPIPE.
        let mut writer = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&stdout)
            .unwrap();
        std::io::Write::write_all(&mut writer, b"kept").unwrap();
        // A reader of stdin sees no EOF while the shim holds its write end...
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&stdin)
            .unwrap();
        let mut buffer = [0u8; 8];
        let early = std::io::Read::read(&mut reader, &mut buffer).unwrap_err();
        assert_eq!(early.kind(), io::ErrorKind::WouldBlock);
        // ...and reads EOF once CloseIO let it go.
        attachment.close_stdin();
        assert_eq!(std::io::Read::read(&mut reader, &mut buffer).unwrap(), 0);
        attachment.close().await;
    }
}
