//! Terminals: a new pseudo-terminal pair, raw mode for the user's terminal (restored on drop),
//! window sizes, and making a terminal the controlling terminal of a new session.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::pty::OpenptFlags;
use rustix::termios::{OptionalActions, Termios, Winsize};

/// A pseudo-terminal: the master (kept by who relays) and the slave (the container's stdio).
pub struct Pty {
    /// The master side.
    pub master: OwnedFd,
    /// The slave side.
    pub slave: OwnedFd,
}

/// Opens a new pty pair from `/dev/ptmx` of the caller's mount namespace.
pub fn open_pty() -> io::Result<Pty> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let slave =
        rustix::pty::ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    Ok(Pty { master, slave })
}

/// A terminal's window size (rows, columns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Size {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// The window size of the terminal `fd`, if it is one.
pub fn size(fd: BorrowedFd<'_>) -> Option<Size> {
    let ws = rustix::termios::tcgetwinsize(fd).ok()?;
    Some(Size { rows: ws.ws_row, cols: ws.ws_col })
}

/// Sets the window size of the terminal `fd` (the kernel sends SIGWINCH to its foreground group).
pub fn set_size(fd: BorrowedFd<'_>, s: Size) -> io::Result<()> {
    let ws = Winsize { ws_row: s.rows, ws_col: s.cols, ws_xpixel: 0, ws_ypixel: 0 };
    Ok(rustix::termios::tcsetwinsize(fd, ws)?)
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    rustix::termios::isatty(fd)
}

/// The user's terminal in raw mode; its settings come back when this is dropped.
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// Puts the terminal `fd` in raw mode.
    pub fn enter(fd: BorrowedFd<'a>) -> io::Result<RawMode<'a>> {
        let saved = rustix::termios::tcgetattr(fd)?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, OptionalActions::Now, &raw)?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(self.fd, OptionalActions::Now, &self.saved);
    }
}

/// Starts a new session and makes the terminal `fd` its controlling terminal.
pub fn make_controlling(fd: impl AsFd) -> io::Result<()> {
    rustix::process::setsid()?;
    Ok(rustix::process::ioctl_tiocsctty(fd)?)
}
