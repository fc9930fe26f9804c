//! Mount options in the kernel-overlayfs / fuse-overlayfs `-o` form.
//!
//! `lowerdir=TOP:...:BOTTOM` (`\:` escapes a colon, `\,` a comma), `upperdir=`, `workdir=`, and
//! the usual mount flags. Options fuse-overlayfs accepts that change nothing here are accepted;
//! the ones Strata does not implement are refused by name.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use fuser::MountOption;

use crate::fs::layers::StackSpec;

/// Everything a mount is made from.
#[derive(Debug, Default)]
pub struct MountSpec {
    /// The layers.
    pub stack: StackSpec,
    /// Entry/attribute cache time (`timeout=`).
    pub timeout: Option<Duration>,
    /// Worker threads (`threaded=` / `--threads`).
    pub threads: Option<usize>,
    /// Flags passed to the kernel mount.
    pub flags: Vec<MountOption>,
    /// `allow_other` / `allow_root` asked for explicitly.
    pub allow_other: Option<bool>,
    /// Source name shown in the mount table.
    pub fsname: Option<String>,
    /// Read-only even if an upper dir is given.
    pub read_only: bool,
    /// Inodes kept before the kernel is asked to drop the oldest (`cache_entries=`).
    pub cache_entries: Option<usize>,
    /// `debug`: debug logging in the foreground (as `-d`).
    pub debug: bool,
    /// `io_uring=on|off|auto`: the FUSE transport (`None`: auto, io_uring when the kernel
    /// offers it).
    pub io_uring: Option<fuser::IoUringMode>,
}

/// Options that fuse-overlayfs or the kernel accept and that need nothing from Strata.
const ACCEPTED: &[&str] = &[
    "default_permissions",
    "noacl",
    "acl",
    "static_nlink",
    "relatime",
    "strictatime",
    "lazytime",
    "nodiratime",
    "diratime",
    "async",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "_netdev",
    "nofail",
    "defaults",
    "nfs_export=off",
    "index=off",
    "index=on",
    "metacopy=off",
    "redirect_dir=on",
    "redirect_dir=off",
    "redirect_dir=follow",
    "redirect_dir=nofollow",
    "xino=off",
    "xino=on",
    "xino=auto",
    "uuid=on",
    "uuid=off",
    "uuid=auto",
    "uuid=null",
    "verity=off",
    "clone_fd",
    "writeback=0",
    "writeback=1",
    "noxattrs=0",
    "fast_ino=0",
    "fast_ino=1",
    "squash_to_root=0",
];

/// Options Strata refuses, with the reason.
const REFUSED: &[(&str, &str)] = &[
    ("uidmapping", "id mapping is not implemented; use a user namespace"),
    ("gidmapping", "id mapping is not implemented; use a user namespace"),
    ("squash_to_root", "ownership squashing is not implemented"),
    ("squash_to_uid", "ownership squashing is not implemented"),
    ("squash_to_gid", "ownership squashing is not implemented"),
    ("plugins", "fuse-overlayfs plugins are not supported"),
    ("metacopy=on", "metadata-only copy-up is not implemented"),
    ("xattr_permissions", "xattr permission modes are not implemented"),
    ("noxattrs=1", "extended attributes cannot be turned off"),
    ("datadir", "data-only layers are not implemented"),
    ("datadir+", "data-only layers are not implemented"),
    ("nfs_export=on", "NFS export is not implemented"),
    ("verity=on", "fs-verity of metadata-only copies is not implemented"),
    ("verity=require", "fs-verity of metadata-only copies is not implemented"),
    ("auto_unmount", "unmount with `strata umount`, umount or SIGTERM to the daemon"),
];

/// Splits an `-o` string on unescaped commas (`\,` is a literal comma; other escapes are kept).
pub fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                cur.push(',');
                chars.next();
            }
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

/// Splits a `lowerdir=` value on unescaped colons; `\:` and `\\` are unescaped.
pub fn split_layers(s: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ':' => out.push(PathBuf::from(std::mem::take(&mut cur))),
            _ => cur.push(c),
        }
    }
    out.push(PathBuf::from(cur));
    out.into_iter().filter(|p| !p.as_os_str().is_empty()).collect()
}

impl MountSpec {
    /// Applies one `-o` option.
    pub fn apply(&mut self, opt: &str) -> anyhow::Result<()> {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let need = || value.with_context(|| format!("option {key} needs a value ({key}=...)"));
        match key {
            "lowerdir" => self.stack.lowers = split_layers(need()?),
            "lowerdir+" => self.stack.lowers.extend(split_layers(need()?)),
            "upperdir" => self.stack.upper = Some(PathBuf::from(need()?)),
            "workdir" => self.stack.work = Some(PathBuf::from(need()?)),
            "userxattr" => self.stack.userxattr = true,
            "volatile" => self.stack.volatile = true,
            "fsync" => self.stack.volatile = need()? == "0",
            "timeout" => {
                let secs: f64 =
                    need()?.parse().with_context(|| format!("timeout={}: not a number", need().unwrap_or("")))?;
                self.timeout = Some(Duration::from_secs_f64(secs.max(0.0)));
            }
            "debug" => self.debug = true,
            "io_uring" => {
                self.io_uring = Some(match need()? {
                    "on" => fuser::IoUringMode::Required,
                    "off" => fuser::IoUringMode::Off,
                    "auto" => fuser::IoUringMode::Auto,
                    v => bail!("io_uring={v}: expected on, off or auto"),
                })
            }
            "max_idle_threads" => {
                need()?.parse::<i64>().with_context(|| format!("{key}: not a number"))?;
            }
            "threaded" | "threads" | "max_threads" => {
                let n: usize = need()?.parse().with_context(|| format!("{key}: not a number"))?;
                self.threads = Some(n.max(1));
            }
            "fsname" => self.fsname = Some(need()?.to_string()),
            "cache_entries" => {
                let n: usize = need()?.parse().with_context(|| format!("{key}: not a number"))?;
                self.cache_entries = Some(n.max(1000));
            }
            "subtype" => {}
            "allow_other" | "allow_root" => self.allow_other = Some(true),
            "ro" => self.read_only = true,
            "rw" => self.read_only = false,
            "suid" => self.flag(MountOption::Suid),
            "nosuid" => self.flag(MountOption::NoSuid),
            "dev" => self.flag(MountOption::Dev),
            "nodev" => self.flag(MountOption::NoDev),
            "exec" => self.flag(MountOption::Exec),
            "noexec" => self.flag(MountOption::NoExec),
            "noatime" => self.flag(MountOption::NoAtime),
            "atime" => self.flag(MountOption::Atime),
            "sync" => self.flag(MountOption::Sync),
            "dirsync" => self.flag(MountOption::DirSync),
            "context" | "fscontext" | "defcontext" | "rootcontext" | "max_read" | "max_write" => {
                log::debug!("option {key} ignored");
            }
            _ if ACCEPTED.contains(&opt) => log::debug!("option {opt} accepted (nothing to do)"),
            _ => {
                if let Some((_, why)) = REFUSED.iter().find(|(k, _)| *k == key || *k == opt) {
                    bail!("option {opt} is not supported by strata: {why}");
                }
                bail!("unknown mount option {opt}");
            }
        }
        Ok(())
    }

    fn flag(&mut self, f: MountOption) {
        let opposite = match &f {
            MountOption::Suid => Some(MountOption::NoSuid),
            MountOption::NoSuid => Some(MountOption::Suid),
            MountOption::Dev => Some(MountOption::NoDev),
            MountOption::NoDev => Some(MountOption::Dev),
            MountOption::Exec => Some(MountOption::NoExec),
            MountOption::NoExec => Some(MountOption::Exec),
            MountOption::Atime => Some(MountOption::NoAtime),
            MountOption::NoAtime => Some(MountOption::Atime),
            _ => None,
        };
        self.flags.retain(|x| Some(x) != opposite.as_ref() && *x != f);
        self.flags.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_options_and_layers_with_escapes() {
        assert_eq!(split_options("lowerdir=a\\:b:c,upperdir=u\\,x,ro"), vec!["lowerdir=a\\:b:c", "upperdir=u,x", "ro"]);
        assert_eq!(split_layers("a\\:b:c"), vec![PathBuf::from("a:b"), PathBuf::from("c")]);
    }

    #[test]
    fn refuses_unsupported_options_by_name() {
        let mut s = MountSpec::default();
        let e = s.apply("uidmapping=0:1000:1").unwrap_err().to_string();
        assert!(e.contains("uidmapping"), "{e}");
        assert!(s.apply("bogus").unwrap_err().to_string().contains("unknown mount option bogus"));
        s.apply("lowerdir=/a:/b").unwrap();
        s.apply("fsync=0").unwrap();
        assert!(s.stack.volatile);
        assert_eq!(s.stack.lowers.len(), 2);
    }

    #[test]
    fn chooses_the_transport() {
        let mut s = MountSpec::default();
        assert_eq!(s.io_uring, None);
        s.apply("io_uring=on").unwrap();
        assert_eq!(s.io_uring, Some(fuser::IoUringMode::Required));
        s.apply("io_uring=off").unwrap();
        assert_eq!(s.io_uring, Some(fuser::IoUringMode::Off));
        assert!(s.apply("io_uring=maybe").unwrap_err().to_string().contains("expected on, off or auto"));
        assert!(s.apply("io_uring").is_err());
    }

    #[test]
    fn takes_every_option_fuse_overlayfs_takes_or_names_why_not() {
        let mut s = MountSpec::default();
        for ok in ["debug", "max_threads=4", "max_idle_threads=-1", "clone_fd", "noxattrs=0", "static_nlink", "noacl"] {
            s.apply(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert!(s.debug);
        assert_eq!(s.threads, Some(4));
        for no in ["noxattrs=1", "auto_unmount", "squash_to_root", "plugins=a", "datadir+=/x", "nfs_export=on"] {
            let e = s.apply(no).unwrap_err().to_string();
            assert!(e.contains(no) && e.contains("not supported"), "{no}: {e}");
        }
    }
}
