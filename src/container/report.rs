//! What a container's processes tell each other over their sockets, one message per packet:
//! the client and the monitor (`userns`/`mapped`, then `ok PID` or `error CODE MESSAGE`), the
//! monitor and PID 1 (`go`, then `pty` or `error`), `exec`'s client and helper (`pid PID`,
//! `pty`, `error`). `pty` carries the terminal's master; the end of the stream is `End`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::sys::fdpass;

/// One message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// The monitor may let PID 1 go on.
    Go,
    /// A rootless monitor is in its new user namespace: map its ids.
    UserNs,
    /// The ids are mapped.
    Mapped,
    /// The terminal's master comes with this message.
    Pty,
    /// The pid of the process `exec` started.
    Pid(i32),
    /// The container's command runs as this pid.
    Ok(i32),
    /// A step failed: the exit status to give and why.
    Error {
        /// 125, 126 or 127.
        code: i32,
        /// One line.
        message: String,
    },
    /// The other side closed the socket (or executed the command).
    End,
    /// Anything else.
    Other(String),
}

impl Report {
    fn encode(&self) -> String {
        match self {
            Report::Go => "go".into(),
            Report::UserNs => "userns".into(),
            Report::Mapped => "mapped".into(),
            Report::Pty => "pty".into(),
            Report::Pid(p) => format!("pid {p}"),
            Report::Ok(p) => format!("ok {p}"),
            Report::Error { code, message } => format!("error {code} {message}"),
            Report::End => String::new(),
            Report::Other(s) => s.clone(),
        }
    }

    fn decode(bytes: &[u8]) -> Report {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let (word, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
        let num = |s: &str| s.parse::<i32>().ok();
        match (word, num(rest)) {
            ("", _) => Report::End,
            ("go", _) => Report::Go,
            ("userns", _) => Report::UserNs,
            ("mapped", _) => Report::Mapped,
            ("pty", _) => Report::Pty,
            ("pid", Some(p)) => Report::Pid(p),
            ("ok", Some(p)) => Report::Ok(p),
            ("error", _) => {
                let (code, message) = rest.split_once(' ').unwrap_or((rest, ""));
                match num(code) {
                    Some(code) => Report::Error { code, message: message.to_string() },
                    None => Report::Error { code: 125, message: rest.to_string() },
                }
            }
            _ => Report::Other(text),
        }
    }
}

/// Sends `r`, with `fd` attached if given.
pub fn send(sock: BorrowedFd<'_>, r: &Report, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
    fdpass::send(sock, r.encode().as_bytes(), fd)
}

/// Receives one report and the fd that came with it.
pub fn recv(sock: BorrowedFd<'_>) -> io::Result<(Report, Option<OwnedFd>)> {
    let (bytes, fd) = fdpass::recv(sock)?;
    Ok((Report::decode(&bytes), fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_survive_the_wire() {
        let all = [
            Report::Go,
            Report::UserNs,
            Report::Mapped,
            Report::Pty,
            Report::Pid(7),
            Report::Ok(42),
            Report::Error { code: 127, message: "exec \"x\": not found".into() },
            Report::End,
        ];
        for r in all {
            assert_eq!(Report::decode(r.encode().as_bytes()), r);
        }
        assert_eq!(Report::decode(b"error oops"), Report::Error { code: 125, message: "oops".into() });
        assert_eq!(Report::decode(b"ok x"), Report::Other("ok x".into()));
    }
}
