//! A process's standard streams, as its caller names them (CreateContainer's and
//! ExecProcess's `stdin_path`, `stdout_path`, `stderr_path` and `console_socket`): files or
//! FIFOs on berthd's host, or /dev/null. berthd opens each one and hands it to the process;
//! nothing a process writes passes through berthd's memory, and berthd keeps no copy.
use std::{
    fs::{File, OpenOptions},
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::{Path, PathBuf},
    process::Stdio,
};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("{stream} path {} must be absolute", path.display())]
    NotAbsolute { stream: &'static str, path: PathBuf },

    #[error("cannot open {stream} {}: {source}", path.display())]
    Open {
        stream: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("process.terminal is set: a console socket is required, to receive the terminal")]
    TerminalWithoutSocket,

    #[error("a console socket is given but process.terminal is not set")]
    SocketWithoutTerminal,

    /// With a terminal the process's stdin, stdout and stderr are the terminal, which the
    /// console socket's receiver reads and writes.
    #[error("{stream} cannot be given to a process with a terminal: the terminal carries it")]
    StreamWithTerminal { stream: &'static str },

    #[error("console socket {}: {reason}", path.display())]
    BadSocket { path: PathBuf, reason: String },
}

type Result<T> = std::result::Result<T, StdioError>;

/// Checks that a terminal comes with a console socket and with no other stream, and that
/// the socket is one. `stdio` is stdin, stdout, stderr, as the caller gave them.
pub fn check_console(
    terminal: bool,
    console_socket: Option<&Path>,
    stdio: [Option<&Path>; 3],
) -> Result<()> {
    let Some(socket) = console_socket else {
        return match terminal {
            true => Err(StdioError::TerminalWithoutSocket),
            false => Ok(()),
        };
    };
    if !terminal {
        return Err(StdioError::SocketWithoutTerminal);
    }
    if let Some(stream) = ["stdin", "stdout", "stderr"]
        .into_iter()
        .zip(stdio)
        .find_map(|(stream, path)| path.map(|_| stream))
    {
        return Err(StdioError::StreamWithTerminal { stream });
    }
    absolute("console socket", socket)?;
    let bad = |reason: String| StdioError::BadSocket {
        path: socket.to_owned(),
        reason,
    };
    match std::fs::metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => Ok(()),
        Ok(_) => Err(bad("not a socket".into())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Opens stdin, stdout and stderr; /dev/null for each one not given. stdout and stderr are
/// appended to (and created, mode 0640, when missing). Blocking file work: async callers go
/// through `blocking::run`.
pub fn open_stdio(
    stdin: Option<&Path>,
    stdout: Option<&Path>,
    stderr: Option<&Path>,
) -> Result<(Stdio, Stdio, Stdio)> {
    let mut read = OpenOptions::new();
    read.read(true);
    let mut append = OpenOptions::new();
    append.append(true).create(true).mode(0o640);
    let open = |stream, path: Option<&Path>, options| -> Result<Stdio> {
        Ok(match path {
            Some(path) => open_file(stream, path, options)?.into(),
            None => Stdio::null(),
        })
    };
    Ok((
        open("stdin", stdin, &read)?,
        open("stdout", stdout, &append)?,
        open("stderr", stderr, &append)?,
    ))
}

fn absolute(stream: &'static str, path: &Path) -> Result<()> {
    match path.is_absolute() {
        true => Ok(()),
        false => Err(StdioError::NotAbsolute {
            stream,
            path: path.to_owned(),
        }),
    }
}

/// Opened without blocking, so that a FIFO whose other end nobody holds never pins a
/// thread of berthd: for writing it fails at once (ENXIO), for reading it opens at once.
/// The process then gets an ordinary blocking file.
fn open_file(stream: &'static str, path: &Path, options: &OpenOptions) -> Result<File> {
    absolute(stream, path)?;
    let failed = |source: std::io::Error| StdioError::Open {
        stream,
        path: path.to_owned(),
        source,
    };
    let file = options
        .clone()
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(failed)?;
    // A directory opens for reading, and would fail only at the process's first read.
    if file.metadata().map_err(failed)?.is_dir() {
        return Err(failed(std::io::Error::from_raw_os_error(libc::EISDIR)));
    }
    make_blocking(&file).map_err(failed)?;
    Ok(file)
}

fn make_blocking(file: &File) -> std::io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL)?);
    fcntl(file, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_needs_a_console_socket_and_no_other_stream() {
        let socket = Path::new("/nonexistent/console.sock");
        assert!(matches!(
            check_console(true, None, [None; 3]),
            Err(StdioError::TerminalWithoutSocket)
        ));
        assert!(matches!(
            check_console(false, Some(socket), [None; 3]),
            Err(StdioError::SocketWithoutTerminal)
        ));
        assert!(matches!(
            check_console(true, Some(socket), [None, Some(Path::new("/out")), None]),
            Err(StdioError::StreamWithTerminal { stream: "stdout" })
        ));
        assert!(matches!(
            check_console(true, Some(Path::new("relative.sock")), [None; 3]),
            Err(StdioError::NotAbsolute { .. })
        ));
        assert!(matches!(
            check_console(true, Some(socket), [None; 3]),
            Err(StdioError::BadSocket { .. })
        ));
        assert!(check_console(false, None, [Some(Path::new("/in")), None, None]).is_ok());
    }

    #[test]
    fn fifos_open_without_waiting_and_are_handed_on_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut read = OpenOptions::new();
        read.read(true);
        let mut write = OpenOptions::new();
        write.write(true);
        // Nobody holds the other end: reading opens at once, writing fails at once.
        let reader = open_file("stdin", &fifo, &read).unwrap();
        let flags = OFlag::from_bits_truncate(fcntl(&reader, FcntlArg::F_GETFL).unwrap());
        assert!(!flags.contains(OFlag::O_NONBLOCK));
        drop(reader);
        match open_file("stdout", &fifo, &write) {
            Err(StdioError::Open { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENXIO))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            open_file("stdin", dir.path(), &read),
            Err(StdioError::Open { .. })
        ));
        assert!(matches!(
            open_file("stdin", Path::new("relative"), &read),
            Err(StdioError::NotAbsolute { .. })
        ));
    }
}
