//! Strata's addition: whether the request being handled asks the filesystem to clear the
//! set-user-ID and set-group-ID bits (`FATTR_KILL_SUIDGID` in SETATTR, `FUSE_OPEN_KILL_SUIDGID`
//! in OPEN; the kernel sends them with `FUSE_HANDLE_KILLPRIV_V2`). The `Filesystem` methods
//! have no argument for them, so the dispatcher records them for the calling thread.
//! (WRITE carries its `FUSE_WRITE_KILL_SUIDGID` in `write_flags`.)

use std::cell::Cell;

thread_local! {
    static ASKED: Cell<bool> = const { Cell::new(false) };
}

/// True inside `setattr` or `open` when the kernel asked for suid/sgid to be cleared.
pub fn kill_suidgid_asked() -> bool {
    ASKED.with(Cell::get)
}

/// Records the flag for the duration of one dispatch.
pub(crate) struct Asked;

impl Asked {
    pub(crate) fn set(kill: bool) -> Asked {
        ASKED.with(|a| a.set(kill));
        Asked
    }
}

impl Drop for Asked {
    fn drop(&mut self) {
        ASKED.with(|a| a.set(false));
    }
}
