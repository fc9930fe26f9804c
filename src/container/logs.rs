//! The log of a detached container: `ROOT/containers/<id>/container.log`, where its output
//! goes (appended across restarts); `strata logs` prints it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The log file of the container in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("container.log")
}

/// Opens the log for appending, creating it.
pub fn open_for_append(dir: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path(dir))
}

/// Copies the log to `out` (nothing if the container never ran detached).
pub fn print(dir: &Path, out: &mut impl io::Write) -> io::Result<()> {
    match File::open(path(dir)) {
        Ok(mut f) => io::copy(&mut f, out).map(drop),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
