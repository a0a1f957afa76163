//! Terminals and stdin for a container's init, on real ptys, FIFOs and sockets, and the
//! CLI's `berth run`: attached through FIFOs, on a terminal, detached, with its signals
//! forwarded.
mod common;

use std::{
    fs::File,
    io::{BufRead, Read, Write},
    os::{
        fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
        unix::{
            fs::{FileTypeExt, PermissionsExt},
            net::UnixListener,
            process::CommandExt,
        },
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use berth::proto::{ContainerStatus, CreateContainerRequest};
use common::*;
use nix::{
    sys::termios::{tcgetattr, LocalFlags},
    unistd::Pid,
};
use serde_json::json;
use tonic::Code;

/// The applets the scripts below use beyond those `Bundle::busybox` links.
fn with_applets(bundle: &Bundle, applets: &[&str]) {
    for applet in applets {
        std::os::unix::fs::symlink("busybox", bundle.path().join("rootfs/bin").join(applet))
            .unwrap();
    }
}

fn terminal_bundle(script: &str) -> Bundle {
    let mut bundle = Bundle::busybox(&["sh", "-c", script]);
    bundle.edit(|c| c["process"]["terminal"] = true.into());
    with_applets(&bundle, &["tty", "stty", "stat"]);
    bundle
}

/// A console socket, as containerd's shims and runc's recvtty hold one.
struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: String,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).unwrap();
        Self {
            path: path.to_str().unwrap().to_owned(),
            _dir: dir,
            listener,
        }
    }

    /// The master sent before CreateContainer returned, and the message's bytes.
    fn receive(&self) -> (String, Pty) {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        self.listener.set_nonblocking(true).unwrap();
        let (stream, _) = self.listener.accept().expect("berthd connected and sent");
        stream.set_nonblocking(false).unwrap();
        let mut name = [0u8; 4096];
        let mut buffers = [std::io::IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!(std::os::fd::RawFd);
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut buffers,
            Some(&mut space),
            // Tests run in parallel: a berthd another one spawns must not inherit it.
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let fds: Vec<i32> = message
            .cmsgs()
            .unwrap()
            .flat_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds,
                _ => vec![],
            })
            .collect();
        assert_eq!(fds.len(), 1, "one fd in the message");
        let length = message.bytes;
        // SAFETY: the kernel just gave this process the fd.
        let master = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        (
            String::from_utf8(name[..length].to_vec()).unwrap(),
            Pty::new(master),
        )
    }
}

/// A terminal's master, and what has been read from it.
struct Pty {
    master: File,
    seen: String,
}

impl Pty {
    fn new(master: OwnedFd) -> Self {
        Self {
            master: master.into(),
            seen: String::new(),
        }
    }

    /// Reads until the output holds `text`; panics after 10 s.
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.seen.contains(text) {
            assert!(
                Instant::now() < deadline,
                "never saw {text:?} on the terminal: {:?}",
                self.seen
            );
            self.read_for(Duration::from_millis(100));
        }
    }

    fn read_for(&mut self, time: Duration) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::try_from(time).unwrap()).unwrap();
        if ready > 0 {
            let mut buffer = [0u8; 4096];
            // EIO once every process side is closed: nothing more will come.
            if let Ok(n) = self.master.read(&mut buffer) {
                self.seen += &String::from_utf8_lossy(&buffer[..n]);
            }
        }
    }

    fn type_in(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    fn resize(&self, rows: u16, columns: u16) {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize through a live pointer.
        assert_eq!(
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) },
            0
        );
    }
}

/// Whether `pid` holds a terminal's master (an fd on a ptmx).
fn holds_a_master(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .any(|target| target.to_string_lossy().ends_with("ptmx"))
}

fn request(id: &str, bundle: &Bundle) -> CreateContainerRequest {
    CreateContainerRequest {
        id: id.into(),
        bundle: bundle.path().to_str().unwrap().into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_init_gets_a_terminal_whose_master_goes_to_the_console_socket() {
    let daemon = Daemon::start().await;
    let mut bundle = terminal_bundle(
        r#"echo "tty=$(tty)"
        test -t 0 && test -t 1 && test -t 2 && echo all-three-are-the-terminal
        echo "size=$(stty size)"
        [ "$(stat -c %t:%T /dev/console)" = "$(stat -c %t:%T "$(tty)")" ] && echo console-is-it
        while read line; do echo "got=$line size=$(stty size)"; done
        exit 3"#,
    );
    bundle.edit(|c| c["process"]["consoleSize"] = json!({"height": 30, "width": 100}));
    let console = ConsoleSocket::new();
    let mut client = daemon.client().await;
    let created = client
        .create_container(CreateContainerRequest {
            console_socket: console.path.clone(),
            ..request("t-init", &bundle)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", daemon.logs()))
        .into_inner()
        .container
        .unwrap();
    let (name, mut pty) = console.receive();
    assert!(
        name.starts_with("/dev/pts/"),
        "the message names the terminal: {name:?}"
    );
    // The receiver holds the only master: neither berthd nor the init keeps one.
    assert!(!holds_a_master(daemon.pid()));
    assert!(!holds_a_master(created.pid));
    daemon.start_container("t-init").await.unwrap();

    pty.expect(&format!("tty={name}"));
    pty.expect("all-three-are-the-terminal");
    pty.expect("size=30 100");
    pty.expect("console-is-it");
    pty.resize(40, 120);
    pty.type_in("hello\n");
    pty.expect("got=hello size=40 120");
    // ^D: the end of the terminal's input.
    pty.type_in("\x04");
    let exit = wait_exit_status(&mut client, "t-init").await;
    assert_eq!(exit.code, 3, "{}", pty.seen);
}

#[tokio::test]
async fn a_non_root_user_owns_its_terminal() {
    let daemon = Daemon::start().await;
    let mut bundle = terminal_bundle(
        r#"echo "owner=$(stat -c %u "$(tty)")"; echo by-path > "$(tty)" && echo reopened"#,
    );
    bundle.edit(|c| c["process"]["user"] = json!({"uid": 1000, "gid": 1000}));
    let console = ConsoleSocket::new();
    let mut client = daemon.client().await;
    client
        .create_container(CreateContainerRequest {
            console_socket: console.path.clone(),
            ..request("t-user", &bundle)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", daemon.logs()));
    let (_, mut pty) = console.receive();
    daemon.start_container("t-user").await.unwrap();
    pty.expect("owner=1000");
    pty.expect("by-path");
    pty.expect("reopened");
    assert_eq!(wait_exit_status(&mut client, "t-user").await.code, 0);
}

#[tokio::test]
async fn a_container_in_a_user_namespace_gets_its_terminal_too() {
    let daemon = Daemon::start().await;
    let mut bundle = terminal_bundle(r#"echo "on=$(tty) owner=$(stat -c %u "$(tty)")""#);
    bundle.in_user_namespace(100000);
    let console = ConsoleSocket::new();
    let mut client = daemon.client().await;
    client
        .create_container(CreateContainerRequest {
            console_socket: console.path.clone(),
            ..request("t-userns", &bundle)
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", daemon.logs()));
    let (name, mut pty) = console.receive();
    daemon.start_container("t-userns").await.unwrap();
    pty.expect(&format!("on={name} owner=0"));
    assert_eq!(wait_exit_status(&mut client, "t-userns").await.code, 0);
}

#[tokio::test]
async fn terminals_and_console_sockets_come_together_or_are_refused() {
    let daemon = Daemon::start().await;
    let mut client = daemon.client().await;
    let plain = Bundle::busybox(&["true"]);
    let terminal = terminal_bundle("true");
    let mut without_devpts = terminal_bundle("true");
    without_devpts.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["type"] != "devpts")
    });
    let console = ConsoleSocket::new();
    let not_a_socket = tempfile::NamedTempFile::new().unwrap();
    let nobody_listens = {
        let gone = ConsoleSocket::new();
        let path = gone.path.clone();
        drop(gone.listener);
        (gone._dir, path)
    };
    let out = tempfile::tempdir().unwrap();
    let stdout = output_file(&out, "stdout");
    let socket = console.path.as_str();
    let cases = [
        (&terminal, "", "", "console socket is required"),
        (&plain, socket, "", "process.terminal is not set"),
        (
            &terminal,
            socket,
            stdout.as_str(),
            "stdout cannot be given to a process with a terminal",
        ),
        (
            &terminal,
            not_a_socket.path().to_str().unwrap(),
            "",
            "not a socket",
        ),
        (&terminal, nobody_listens.1.as_str(), "", "cannot connect"),
        (
            &without_devpts,
            socket,
            "",
            "a terminal needs devpts on /dev/pts",
        ),
    ];
    for (index, (bundle, socket, stdout, text)) in cases.into_iter().enumerate() {
        let id = format!("t-bad{index}");
        let status = client
            .create_container(CreateContainerRequest {
                console_socket: socket.into(),
                stdout_path: stdout.into(),
                ..request(&id, bundle)
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{text}: {status:?}");
        assert!(status.message().contains(text), "{text}: {status:?}");
        assert_nothing_left(&daemon, &id);
    }
}

#[tokio::test]
async fn a_dev_console_symlink_in_the_image_is_refused_and_its_target_untouched() {
    let daemon = Daemon::start().await;
    let mut bundle = terminal_bundle("true");
    // The image's own /dev, not a tmpfs over it.
    bundle.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/dev")
    });
    let rootfs = bundle.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("dev")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/target"), "untouched").unwrap();
    std::os::unix::fs::symlink("../etc/target", rootfs.join("dev/console")).unwrap();
    let console = ConsoleSocket::new();
    let status = daemon
        .client()
        .await
        .create_container(CreateContainerRequest {
            console_socket: console.path.clone(),
            ..request("t-console-link", &bundle)
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("/dev/console is a symlink"),
        "{status:?}"
    );
    assert_nothing_left(&daemon, "t-console-link");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/target")).unwrap(),
        "untouched"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(rootfs.to_str().unwrap()), "{mounts}");
}

#[tokio::test]
async fn stdin_comes_from_a_fifo_opened_without_waiting_for_its_writer() {
    let daemon = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stdin");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let stdout = output_file(&dir, "stdout");
    let bundle = Bundle::busybox(&["cat"]);
    let mut client = daemon.client().await;
    // Nobody holds the FIFO yet: the create must not wait for a writer.
    tokio::time::timeout(
        Duration::from_secs(20),
        client.create_container(CreateContainerRequest {
            stdin_path: fifo.to_str().unwrap().into(),
            stdout_path: stdout.clone(),
            ..request("t-fifo", &bundle)
        }),
    )
    .await
    .expect("create does not wait for the FIFO's writer")
    .unwrap();
    // The init holds the reading end, so this open does not wait either.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    daemon.start_container("t-fifo").await.unwrap();
    writer.write_all(b"through the fifo\n").unwrap();
    wait_output(&stdout, "through the fifo\n").await;
    drop(writer);
    // cat ends at the FIFO's end.
    assert_eq!(wait_exit_status(&mut client, "t-fifo").await.code, 0);
}

#[tokio::test]
async fn stdin_comes_from_a_file_and_bad_stdin_paths_are_refused() {
    let daemon = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::write(&input, "line one\nline two\n").unwrap();
    let stdout = output_file(&dir, "stdout");
    let bundle = Bundle::busybox(&["cat"]);
    let mut client = daemon.client().await;
    client
        .create_container(CreateContainerRequest {
            stdin_path: input.to_str().unwrap().into(),
            stdout_path: stdout.clone(),
            ..request("t-file", &bundle)
        })
        .await
        .unwrap();
    daemon.start_container("t-file").await.unwrap();
    assert_eq!(wait_exit_status(&mut client, "t-file").await.code, 0);
    assert_eq!(
        std::fs::read_to_string(&stdout).unwrap(),
        "line one\nline two\n"
    );

    let missing = dir.path().join("missing");
    for (path, text) in [
        (
            "relative/input",
            "stdin path relative/input must be absolute",
        ),
        (missing.to_str().unwrap(), "cannot open stdin"),
        (dir.path().to_str().unwrap(), "Is a directory"),
    ] {
        let status = client
            .create_container(CreateContainerRequest {
                stdin_path: path.into(),
                ..request("t-badin", &bundle)
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        assert!(status.message().contains(text), "{path}: {status:?}");
        assert_nothing_left(&daemon, "t-badin");
    }
}

/// `berth run` against `daemon`, its temporary files under `tmp`.
fn berth_run(daemon: &Daemon, tmp: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(berth_cli());
    command
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("run")
        .args(args)
        .env("TMPDIR", tmp);
    command
}

fn wait_child(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "berth run did not end in 20s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the CLI's create of `id` has happened; panics after 10 s.
async fn wait_created(daemon: &Daemon, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.get(id).await.is_err() {
        assert!(Instant::now() < deadline, "{id} never created");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn assert_deleted(daemon: &Daemon, id: &str) {
    assert_eq!(
        daemon.get(id).await.unwrap_err().code(),
        Code::NotFound,
        "{id} is deleted after the run"
    );
    assert_nothing_left(daemon, id);
}

#[tokio::test]
async fn an_attached_run_carries_stdio_exits_with_the_code_and_deletes_the_container() {
    let daemon = Daemon::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let bundle = Bundle::busybox(&["sh", "-c", "cat; echo out; echo err >&2; exit 3"]);
    let mut child = berth_run(
        &daemon,
        tmp.path(),
        &["--bundle", bundle.path().to_str().unwrap(), "r-attached"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child.stdin.take().unwrap().write_all(b"typed\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(stdout(&output), "typed\nout\n");
    assert_eq!(stderr(&output), "err\n");
    assert_deleted(&daemon, "r-attached").await;
    // Its private directory went with it.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn an_attached_run_of_a_killed_init_exits_128_plus_the_signal() {
    let daemon = Daemon::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    let mut child = berth_run(
        &daemon,
        tmp.path(),
        &["--bundle", bundle.path().to_str().unwrap(), "r-killed"],
    )
    .stdin(Stdio::null())
    .spawn()
    .unwrap();
    let mut client = daemon.client().await;
    wait_created(&daemon, "r-killed").await;
    wait_status(&mut client, "r-killed", ContainerStatus::Running).await;
    daemon
        .kill("r-killed", libc::SIGKILL as u32, false)
        .await
        .unwrap();
    assert_eq!(wait_child(&mut child).code(), Some(128 + libc::SIGKILL));
    assert_deleted(&daemon, "r-killed").await;
}

#[tokio::test]
async fn an_attached_run_forwards_int_hup_and_term_to_the_init() {
    let daemon = Daemon::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "trap 'echo got-INT' INT; trap 'echo got-HUP' HUP; trap 'echo got-TERM; exit 7' TERM; \
         echo ready; while true; do sleep 0.1; done",
    ]);
    let mut child = berth_run(
        &daemon,
        tmp.path(),
        &["--bundle", bundle.path().to_str().unwrap(), "r-signals"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines() {
            let _ = lines.send(line.unwrap());
        }
    });
    let expect = |wanted: &str| {
        let line = received
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("waiting for {wanted:?}: {e}"));
        assert_eq!(line, wanted);
    };
    expect("ready");

    // The FIFOs sit in a directory only the CLI's user can enter.
    let dirs: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert_eq!(
        std::fs::metadata(&dirs[0]).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    for name in ["stdin", "stdout", "stderr"] {
        let meta = std::fs::metadata(dirs[0].join(name)).unwrap();
        assert!(meta.file_type().is_fifo(), "{name}");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "{name}");
    }

    let cli = Pid::from_raw(child.id() as i32);
    use nix::sys::signal::{kill, Signal};
    kill(cli, Signal::SIGINT).unwrap();
    expect("got-INT");
    kill(cli, Signal::SIGHUP).unwrap();
    expect("got-HUP");
    kill(cli, Signal::SIGTERM).unwrap();
    expect("got-TERM");
    assert_eq!(wait_child(&mut child).code(), Some(7));
    assert_deleted(&daemon, "r-signals").await;
}

#[tokio::test]
async fn a_detached_run_leaves_the_container_running() {
    let daemon = Daemon::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let output = output_file(&tmp, "out");
    let bundle = Bundle::busybox(&["sh", "-c", "echo detached; sleep 1000"]);
    let run = berth_run(
        &daemon,
        tmp.path(),
        &[
            "-d",
            "--stdout",
            &output,
            "--bundle",
            bundle.path().to_str().unwrap(),
            "r-detached",
        ],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(stdout(&run), "");
    wait_output(&output, "detached\n").await;
    assert_eq!(
        daemon.get("r-detached").await.unwrap().status(),
        ContainerStatus::Running
    );
    daemon.delete("r-detached", true).await.unwrap();
}

/// A pty for the CLI, whose controlling terminal it is, as a user's terminal would be.
struct UserTerminal {
    pty: Pty,
    /// Kept open, so the pty's settings outlive the CLI, to be checked after it.
    slave: OwnedFd,
}

impl UserTerminal {
    fn new(rows: u16, columns: u16) -> Self {
        let size = nix::pty::Winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pair = nix::pty::openpty(Some(&size), None).unwrap();
        // Tests run in parallel: what another one spawns must not inherit the pair.
        for fd in [&pair.master, &pair.slave] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .unwrap();
        }
        Self {
            pty: Pty::new(pair.master),
            slave: pair.slave,
        }
    }

    fn spawn(&self, mut command: Command) -> Child {
        let stdio = || Stdio::from(self.slave.try_clone().unwrap());
        command.stdin(stdio()).stdout(stdio()).stderr(stdio());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        command.spawn().unwrap()
    }

    /// Whether the terminal is in canonical mode with echo, as a shell leaves it.
    fn cooked(&self) -> bool {
        let flags = tcgetattr(&self.slave).unwrap().local_flags;
        flags.contains(LocalFlags::ICANON | LocalFlags::ECHO)
    }
}

#[tokio::test]
async fn a_run_on_a_terminal_proxies_the_users_terminal_and_follows_its_size() {
    let daemon = Daemon::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let bundle = terminal_bundle(
        r#"echo "size=$(stty size)"
        while read line; do echo "got=$line size=$(stty size)"; done
        exit 4"#,
    );
    let mut user = UserTerminal::new(25, 90);
    assert!(user.cooked());
    let mut child = user.spawn(berth_run(
        &daemon,
        tmp.path(),
        &["-t", "--bundle", bundle.path().to_str().unwrap(), "r-tty"],
    ));
    user.pty.expect("size=25 90");
    assert!(!user.cooked(), "the user's terminal is raw while attached");

    // The size is followed until the CLI passes it on (SIGWINCH reaches it on its own
    // time), each line typed reporting the size the container sees then.
    user.pty.resize(33, 77);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !user.pty.seen.contains("size=33 77") {
        assert!(Instant::now() < deadline, "{:?}", user.pty.seen);
        user.pty.type_in("typed\r");
        user.pty.read_for(Duration::from_millis(100));
    }
    assert!(user.pty.seen.contains("got=typed"));
    user.pty.type_in("\x04");
    assert_eq!(wait_child(&mut child).code(), Some(4), "{}", user.pty.seen);
    assert!(user.cooked(), "the user's terminal is restored");
    assert_deleted(&daemon, "r-tty").await;
}

/// The README's quick start: `berth spec` in a bundle with a busybox rootfs, then
/// `berth run` gives a shell on a terminal.
#[tokio::test]
async fn berth_spec_then_berth_run_gives_a_shell() {
    let daemon = Daemon::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tempfile::tempdir().unwrap();
    let bin = bundle.path().join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/usr/bin/busybox", bin.join("busybox")).unwrap();
    // Inside the rootfs, so the links name /bin/busybox as the container sees it.
    let install = Command::new("chroot")
        .arg(bundle.path().join("rootfs"))
        .args(["/bin/busybox", "--install", "-s", "/bin"])
        .output()
        .unwrap();
    assert!(install.status.success(), "{}", stderr(&install));
    let spec = daemon.cli(&["spec", "--bundle", bundle.path().to_str().unwrap()]);
    assert!(spec.status.success(), "{}", stderr(&spec));

    let mut user = UserTerminal::new(24, 80);
    let mut run = berth_run(&daemon, tmp.path(), &["demo"]);
    run.current_dir(bundle.path());
    let mut child = user.spawn(run);
    user.pty.type_in("echo sum=$((6*7)); hostname\r");
    user.pty.expect("sum=42");
    user.pty.expect("runc");
    user.pty.type_in("exit 9\r");
    assert_eq!(wait_child(&mut child).code(), Some(9), "{}", user.pty.seen);
    assert!(user.cooked());
    assert_deleted(&daemon, "demo").await;
}

#[tokio::test]
async fn run_refuses_what_it_cannot_attach() {
    let daemon = Daemon::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let plain = Bundle::busybox(&["true"]);
    let tty = berth_run(
        &daemon,
        tmp.path(),
        &["-t", "--bundle", plain.path().to_str().unwrap(), "r-no-tty"],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert_eq!(tty.status.code(), Some(1));
    assert!(
        stderr(&tty).contains("does not set process.terminal"),
        "{}",
        stderr(&tty)
    );
    assert_eq!(
        daemon.get("r-no-tty").await.unwrap_err().code(),
        Code::NotFound
    );

    // Over TCP berthd cannot open the CLI's FIFOs: refused before connecting.
    let tcp = Command::new(berth_cli())
        .args(["--address", "https://127.0.0.1:9", "run", "r-tcp"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(tcp.status.code(), Some(1));
    assert!(
        stderr(&tcp).contains("without -d needs berthd's Unix socket"),
        "{}",
        stderr(&tcp)
    );
}

/// A running container whose config has no terminal; exec processes ask for their own.
fn sleeping_bundle() -> Bundle {
    let bundle = Bundle::busybox(&["sleep", "1000"]);
    with_applets(&bundle, &["tty", "stty", "stat"]);
    bundle
}

#[tokio::test]
async fn an_exec_process_gets_a_terminal_whose_master_goes_to_the_console_socket() {
    let daemon = Daemon::start().await;
    let bundle = sleeping_bundle();
    daemon.run("t-exec", &bundle, None).await;
    let mut process = bundle.config["process"].clone();
    process["terminal"] = true.into();
    process["args"] = json!([
        "sh",
        "-c",
        r#"echo "tty=$(tty)"; test -t 0 && test -t 1 && test -t 2 && echo all-three
        read line; echo "got=$line size=$(stty size)"; exit 6"#
    ]);
    let console = ConsoleSocket::new();
    let mut client = daemon.client().await;
    let exec = berth::proto::ExecProcessRequest {
        id: "t-exec".into(),
        exec_id: "e1".into(),
        process: serde_json::to_vec(&process).unwrap(),
        console_socket: console.path.clone(),
        ..Default::default()
    };
    client.exec_process(exec.clone()).await.unwrap();
    // The terminal is sent before the process executes, so before StartProcess returns.
    let pid = client
        .start_process(berth::proto::StartProcessRequest {
            id: "t-exec".into(),
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    let (name, mut pty) = console.receive();
    assert!(name.starts_with("/dev/pts/"), "{name:?}");
    assert!(!holds_a_master(daemon.pid()));
    pty.expect(&format!("tty={name}"));
    pty.expect("all-three");
    pty.resize(20, 70);
    pty.type_in("hi\n");
    pty.expect("got=hi size=20 70");
    let exit = client
        .wait_process(berth::proto::WaitProcessRequest {
            id: "t-exec".into(),
            exec_id: "e1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exit.exit_status.unwrap().code, 6, "{}", pty.seen);
    assert!(pid > 0);

    // A terminal without a socket, or a socket without a terminal, is refused.
    let no_socket = client
        .exec_process(berth::proto::ExecProcessRequest {
            exec_id: "e2".into(),
            console_socket: String::new(),
            ..exec.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(no_socket.code(), Code::InvalidArgument, "{no_socket:?}");
    process["terminal"] = false.into();
    let no_terminal = client
        .exec_process(berth::proto::ExecProcessRequest {
            exec_id: "e3".into(),
            process: serde_json::to_vec(&process).unwrap(),
            ..exec
        })
        .await
        .unwrap_err();
    assert_eq!(no_terminal.code(), Code::InvalidArgument, "{no_terminal:?}");
    daemon.delete("t-exec", true).await.unwrap();
}

#[tokio::test]
async fn berth_exec_t_proxies_the_users_terminal() {
    let daemon = Daemon::start().await;
    let bundle = sleeping_bundle();
    daemon.run("t-cli-exec", &bundle, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let mut user = UserTerminal::new(24, 80);
    let mut command = Command::new(berth_cli());
    command
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["exec", "-t", "-i", "t-cli-exec", "--", "sh"])
        .env("TMPDIR", tmp.path());
    let mut child = user.spawn(command);
    user.pty.type_in("echo \"in=$(tty) size=$(stty size)\"\r");
    user.pty.expect("in=/dev/pts/");
    user.pty.expect("size=24 80");
    assert!(!user.cooked(), "the user's terminal is raw while attached");
    user.pty.type_in("exit 9\r");
    assert_eq!(wait_child(&mut child).code(), Some(9), "{}", user.pty.seen);
    assert!(user.cooked(), "the user's terminal is restored");
    daemon.delete("t-cli-exec", true).await.unwrap();
}
