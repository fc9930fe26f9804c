//! Terminals of containers: the container's side (its stdio: given descriptors or a new pty made
//! the controlling terminal), the user's side of `run -it`/`exec -it` (raw mode, copying between
//! the user's terminal and the pty master both ways, window size), and the log of a detached
//! container with a terminal.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use crate::sys::creds;
use crate::sys::pty::{self, RawMode, Size};

/// The stdio of a container process.
pub enum Stdio {
    /// These descriptors become 0, 1 and 2.
    Fds([OwnedFd; 3]),
    /// A new terminal, of this size if known.
    Tty(Option<Size>),
}

/// A new pty from the caller's `/dev/ptmx`, sized.
pub fn open_terminal(size: Option<Size>) -> std::io::Result<pty::Pty> {
    let p = pty::open_pty()?;
    if let Some(s) = size {
        pty::set_size(p.slave.as_fd(), s)?;
    }
    Ok(p)
}

/// Makes `slave` the controlling terminal of a new session and stdio 0, 1, 2.
pub fn attach_terminal(slave: OwnedFd) -> std::io::Result<()> {
    pty::make_controlling(&slave)?;
    for i in 0..3 {
        creds::dup_to(slave.as_fd(), i)?;
    }
    Ok(())
}

/// Copies from `from` to `to` until end of input or an error (EIO from a pty master whose
/// slave side is closed counts as the end).
pub fn copy(mut from: File, mut to: impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(total),
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
        total += n as u64;
    }
}

/// Gives `master` the size of the user's terminal (stdin, else stdout), if there is one.
pub fn copy_size(master: impl AsFd) {
    let size = pty::size(io::stdin().as_fd()).or_else(|| pty::size(io::stdout().as_fd()));
    if let Some(s) = size {
        let _ = pty::set_size(master.as_fd(), s);
    }
}

/// Connects the user's terminal to the container's pty `master` until the container side
/// closes: raw mode on a terminal stdin, stdin copied in when `interactive`, output copied out.
pub fn relay(master: OwnedFd, interactive: bool) -> io::Result<()> {
    let stdin = io::stdin();
    let _raw = if pty::is_terminal(stdin.as_fd()) { RawMode::enter(stdin.as_fd()).ok() } else { None };
    copy_size(&master);
    let out = File::from(master);
    if interactive {
        let input = out.try_clone()?;
        let stdin_file = File::from(stdin.as_fd().try_clone_to_owned()?);
        // Not joined: a read of the user's terminal cannot be interrupted; the process ends soon.
        std::thread::Builder::new().name("stdin".into()).spawn(move || copy(stdin_file, input))?;
    }
    copy(out, io::stdout().lock())?;
    Ok(())
}

/// Copies everything the container writes on its terminal into the log file, until it closes.
pub fn log_output(master: OwnedFd, log: File) -> io::Result<std::thread::JoinHandle<io::Result<u64>>> {
    std::thread::Builder::new().name("log".into()).spawn(move || copy(File::from(master), log))
}
