//! `strata umount MNT`: unmount a Strata mount (as root directly, otherwise via fusermount3).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::sys::{self, Errno};

/// Arguments of `strata umount`.
#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// Detach now even if the mount is busy; it goes once no longer used.
    #[arg(short = 'l', long)]
    lazy: bool,
    /// The mount point.
    mountpoint: PathBuf,
}

/// Unmounts.
pub fn run(a: UmountArgs) -> anyhow::Result<ExitCode> {
    unmount(&a.mountpoint, a.lazy)?;
    Ok(ExitCode::SUCCESS)
}

/// Unmounts the Strata mount on `mnt` (directly as root, else through fusermount3).
pub fn unmount(mnt: &Path, lazy: bool) -> anyhow::Result<()> {
    if !sys::mount::is_mount_point(mnt) {
        bail!("{} is not a mount point", mnt.display());
    }
    // A file closed a moment ago may still hold the mount while the kernel releases it.
    let mut result = sys::mount::unmount(mnt, lazy);
    for _ in 0..20 {
        if result != Err(Errno::BUSY) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        result = sys::mount::unmount(mnt, lazy);
    }
    match result {
        Ok(()) => Ok(()),
        Err(Errno::PERM) => {
            let mut cmd = std::process::Command::new("fusermount3");
            cmd.arg("-u");
            if lazy {
                cmd.arg("-z");
            }
            let st = cmd.arg(mnt).status().context("running fusermount3")?;
            if !st.success() {
                bail!("unmounting {}: fusermount3 failed", mnt.display());
            }
            Ok(())
        }
        Err(Errno::BUSY) => bail!("unmounting {}: mount point is busy (in use); try --lazy", mnt.display()),
        Err(e) => {
            Err(anyhow::Error::new(std::io::Error::from(e))).with_context(|| format!("unmounting {}", mnt.display()))
        }
    }
}
