//! `strata image mount IMAGE MNT [--writable]` and `strata image umount MNT`: mount an image's
//! layers with Strata (read-only, or over a scratch upper dir kept under the store).
//!
//! A mount is recorded in the store (`mounts/KEY/`) before it is made, so `rmi` and `prune`
//! keep the image's layers while it is mounted; `image umount` removes the record and the
//! scratch upper. The store lock is not held while the mount daemon forks (the daemon would
//! keep it for its whole life).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::mount::{RunMode, mount_spec};
use super::store_root::open_store;
use crate::fs::layers::StackSpec;
use crate::fs::options::MountSpec;
use crate::image::store::{MountRecord, Store};
use crate::sys;

/// `strata image ...` verbs.
#[derive(clap::Subcommand, Debug)]
pub enum ImageCommand {
    /// Mount an image's layers (read-only unless --writable).
    Mount(ImageMountArgs),
    /// Unmount an image mount and drop its scratch upper dir.
    #[command(alias = "unmount")]
    Umount(ImageUmountArgs),
}

/// Arguments of `strata image mount`.
#[derive(clap::Args, Debug)]
pub struct ImageMountArgs {
    /// The image: a name or an id.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Where to mount (an existing directory).
    #[arg(value_name = "MNT")]
    mountpoint: PathBuf,
    /// Writable, over a scratch upper dir under the store (dropped at umount).
    #[arg(short = 'w', long)]
    writable: bool,
    /// Pull the image lazily first if the store does not have it (see `strata pull --lazy`).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "only")]
    lazy: Option<super::pull::LazyArg>,
}

/// Arguments of `strata image umount`.
#[derive(clap::Args, Debug)]
pub struct ImageUmountArgs {
    /// Detach now even if the mount is busy.
    #[arg(short = 'l', long)]
    lazy: bool,
    /// The mount point.
    #[arg(value_name = "MNT")]
    mountpoint: PathBuf,
}

/// Runs `strata image ...`.
pub fn run(cmd: ImageCommand, root: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Mount(a) => mount(a, root),
        ImageCommand::Umount(a) => umount(a, root),
    }
}

fn mount(a: ImageMountArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let mnt = a.mountpoint.canonicalize().with_context(|| format!("mount point {}", a.mountpoint.display()))?;
    if let Some(lazy) = a.lazy {
        super::pull::lazy_if_missing(root, &a.image, lazy)?;
    }
    let store = open_store(root)?;
    let (spec, mut rec, dir) = {
        let lock = store.write()?;
        let img = store.resolve(&a.image)?;
        let mut lowers = Vec::new();
        for diff_id in img.config.rootfs.diff_ids.iter().rev() {
            if !store.has_layer(diff_id) {
                bail!("image {}: layer {diff_id} is missing from the store (load the image again)", a.image);
            }
            lowers.push(store.layer_path(diff_id));
        }
        if lowers.is_empty() {
            bail!("image {} has no layers to mount", a.image);
        }
        replace_stale_record(&store, &lock, &mnt)?;
        let rec = MountRecord {
            mountpoint: mnt.clone(),
            image: a.image.clone(),
            manifest: img.descriptor.digest.clone(),
            writable: a.writable,
            mounted: false,
        };
        let dir = lock.save_mount(&rec)?;
        (stack_spec(lowers, &dir, a.writable, &a.image)?, rec, dir)
    };
    let mounted = mount_spec(&spec, &mnt, RunMode::Background);
    let lock = store.write()?;
    match mounted {
        Ok(code) => {
            rec.mounted = true;
            lock.save_mount(&rec)?;
            Ok(code)
        }
        Err(e) => {
            lock.remove_mount(&dir)?;
            Err(e).with_context(|| format!("mounting image {}", a.image))
        }
    }
}

/// A record left for `mnt` by a mount that is gone is dropped; a live one is an error.
fn replace_stale_record(store: &Store, lock: &crate::image::store::WriteLock<'_>, mnt: &Path) -> anyhow::Result<()> {
    let dir = store.mount_dir(mnt);
    if !dir.exists() {
        return Ok(());
    }
    if sys::mount::is_mount_point(mnt) {
        bail!("{} is already mounted (strata image umount it first)", mnt.display());
    }
    lock.remove_mount(&dir)?;
    Ok(())
}

fn stack_spec(lowers: Vec<PathBuf>, dir: &Path, writable: bool, image: &str) -> anyhow::Result<MountSpec> {
    let rootless = !crate::image::owners::is_privileged();
    let mut stack = StackSpec { lowers, userxattr: rootless, ..Default::default() };
    if writable {
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        for d in [&upper, &work] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        stack.upper = Some(upper);
        stack.work = Some(work);
    }
    Ok(MountSpec { stack, fsname: Some(format!("strata:{image}")), ..Default::default() })
}

fn umount(a: ImageUmountArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let mnt = a.mountpoint.canonicalize().unwrap_or_else(|_| a.mountpoint.clone());
    let store = open_store(root)?;
    let lock = store.write()?;
    let dir = store.mount_dir(&mnt);
    let recorded = dir.exists();
    let mounted = sys::mount::is_mount_point(&mnt);
    if !recorded && !mounted {
        bail!("{} is not an image mount", mnt.display());
    }
    if mounted {
        super::umount::unmount(&mnt, a.lazy)?;
    }
    if recorded {
        lock.remove_mount(&dir)?;
    }
    Ok(ExitCode::SUCCESS)
}
