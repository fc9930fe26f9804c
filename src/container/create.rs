//! Creating a container: resolve the image, make the run configuration (its mounts: the flags',
//! those of `--volumes-from` containers, the image's volumes), give the container an id, a
//! unique name and its directory (`upper/`, `work/`, `merged/`, the `/etc` files), tell the
//! store that the image is in use (so its layers outlive `rmi`/`prune`), make the volumes it
//! names, write the record.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::config::{self, ConfigError, ImageRuntime, Network, Overrides, RunConfig};
use super::mounts::{self, Mount};
use super::network::{self, NetworkError};
use super::ports::{self, PortError};
use super::record::{self, Container, RecordError, State};
use super::volumes::{self, VolumeError};
use crate::image::store::{Image, MountRecord, Store, StoreError};
use crate::sys::lock::LockKind;

/// What went wrong creating a container; each names the image, name or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The image store failed (or has no such image).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer of the image is not unpacked.
    #[error("image {image}: layer {layer} is missing from the store (load the image again)")]
    MissingLayer {
        /// The image.
        image: String,
        /// The layer's diff_id.
        layer: String,
    },
    /// The image config or the flags are not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The name is taken.
    #[error("the container name {0:?} is already in use")]
    NameInUse(String),
    /// The name has characters a name may not have.
    #[error("invalid container name {0:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-]* is allowed")]
    BadName(String),
    /// A file of the container could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The record could not be written.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The network flags are not usable.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A port cannot be published.
    #[error(transparent)]
    Ports(#[from] PortError),
    /// A volume could not be made.
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CreateError + '_ {
    move |source| CreateError::Io { path: path.to_path_buf(), source }
}

/// What `create` is asked for.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The image reference as given.
    pub image: String,
    /// `--name`.
    pub name: Option<String>,
    /// Everything else from the command line.
    pub overrides: Overrides,
}

/// Creates the container (status `created`).
pub fn create(root: &Path, req: &Request) -> Result<Container, CreateError> {
    let store = Store::open(root)?;
    let img = {
        let _lock = store.read()?;
        store.resolve(&req.image)?
    };
    for d in &img.config.rootfs.diff_ids {
        if !store.has_layer(d) {
            return Err(CreateError::MissingLayer { image: req.image.clone(), layer: d.to_string() });
        }
    }
    let rt: ImageRuntime = img.config.config.clone().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let command = config::command(&req.image, &rt, &req.overrides.command)?;
    let id = record::new_id().map_err(io_err(Path::new("/dev/urandom")))?;
    let net = network::choose(&req.overrides.network)?;
    let hostname = match (&req.overrides.hostname, net) {
        (Some(h), _) => h.clone(),
        (None, Network::Host) => rustix::system::uname().nodename().to_string_lossy().into_owned(),
        (None, _) => id[..12].to_string(),
    };
    let mut cfg = config::build(&rt, &req.overrides, hostname, net)?;
    networking(&mut cfg, &req.overrides)?;
    let inherited = volumes_from(root, &req.overrides.volumes_from)?;
    cfg.mounts = mounts::combine(std::mem::take(&mut cfg.mounts), inherited, &rt.volume_paths());
    let lowers: Vec<PathBuf> = img.config.rootfs.diff_ids.iter().map(|d| store.layer_path(d)).collect();
    cfg.no_new_privs = !needs_setuid(&lowers);
    let dirs = record::containers_dir(root);
    std::fs::create_dir_all(&dirs).map_err(io_err(&dirs))?;
    let _names = record::lock(&dirs)?;
    let name = pick_name(root, req.name.as_deref(), &id)?;
    // Held until the record names the volumes: no `volume rm` in between.
    let volumes_lock = match cfg.mounts.iter().any(|m| m.volume().is_some()) {
        true => Some(volumes::lock(root, LockKind::Shared)?),
        false => None,
    };
    let provided = volumes::provide(root, &mut cfg.mounts);
    let c = Container {
        id: id.clone(),
        name,
        image: req.image.clone(),
        image_id: img.id().to_string(),
        manifest: img.descriptor.digest.to_string(),
        created: record::now(),
        command,
        state: State::default(),
        config: cfg,
    };
    let dir = c.dir(root);
    let made = provided.map_err(CreateError::from).and_then(|()| {
        make_dir(&dir, &c.config)?;
        match_image_dirs(&dir, &lowers)?;
        keep_image(&store, &c, &img)?;
        c.save(root)?;
        Ok(())
    });
    if let Err(e) = made {
        // Nothing half-made stays: the anonymous volumes made for it, its directory.
        drop(volumes_lock);
        let _ = volumes::remove_anonymous(root, &c);
        let _ = crate::image::store::remove_path(&dir);
        return Err(e);
    }
    Ok(c)
}

/// Ports, DNS servers and extra hosts: checked, free host ports picked, kept in the config.
fn networking(cfg: &mut RunConfig, o: &Overrides) -> Result<(), CreateError> {
    let net = cfg.network;
    if (!o.publish.is_empty() || o.publish_all) && net.helper().is_none() {
        let why = if net == Network::Host { "uses the host's ports directly" } else { "has no network to publish on" };
        return Err(NetworkError::NoPorts(net.name().into(), why).into());
    }
    cfg.ports = ports::bindings(&o.publish, o.publish_all, &cfg.exposed)?;
    cfg.dns = network::dns_servers(&o.dns)?.iter().map(|d| d.to_string()).collect();
    cfg.extra_hosts = network::extra_hosts(&o.add_hosts, net)?.into_iter().map(|(n, ip)| format!("{n}:{ip}")).collect();
    Ok(())
}

/// The binds and volumes of the `--volumes-from CONTAINER[:ro|rw]` containers.
fn volumes_from(root: &Path, specs: &[String]) -> Result<Vec<Mount>, CreateError> {
    let mut out = Vec::new();
    for spec in specs {
        let (name, readonly) = mounts::parse_volumes_from(spec).map_err(ConfigError::Mount)?;
        let theirs = record::find(root, name)?;
        out.extend(mounts::shared(&theirs.config.mounts, readonly));
    }
    Ok(out)
}

/// Records in the store that the container uses the image, so `rmi`/`prune` keep its layers
/// (a mount record for its `merged/` dir, dropped by `rm`).
fn keep_image(store: &Store, c: &Container, img: &Image) -> Result<(), CreateError> {
    let dir = c.dir(store.root());
    let merged = dir.join("merged").canonicalize().map_err(io_err(&dir))?;
    let lock = store.write()?;
    let rec = MountRecord {
        mountpoint: merged,
        image: format!("container {}", c.name),
        manifest: img.descriptor.digest.clone(),
        writable: true,
        mounted: false,
    };
    lock.save_mount(&rec)?;
    Ok(())
}

const ADJECTIVES: [&str; 16] = [
    "amber", "brisk", "calm", "deft", "eager", "fond", "gentle", "hardy", "keen", "lucid", "merry", "nimble", "proud",
    "quiet", "steady", "vivid",
];
const NOUNS: [&str; 16] = [
    "basalt", "chalk", "flint", "gneiss", "granite", "gypsum", "jasper", "marble", "mica", "obsidian", "onyx",
    "quartz", "schist", "shale", "slate", "tuff",
];

/// The given name if free and valid; else a `adjective_rock` name from the id, made unique.
fn pick_name(root: &Path, given: Option<&str>, id: &str) -> Result<String, CreateError> {
    let taken: Vec<String> = record::list(root)?.into_iter().map(|c| c.name).collect();
    if let Some(n) = given {
        let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(CreateError::BadName(n.into()));
        }
        if taken.iter().any(|t| t == n) {
            return Err(CreateError::NameInUse(n.into()));
        }
        return Ok(n.into());
    }
    let digit = |i: usize| id.get(i..i + 1).and_then(|d| usize::from_str_radix(d, 16).ok()).unwrap_or(0);
    let base = format!("{}_{}", ADJECTIVES[digit(0)], NOUNS[digit(1)]);
    let name = (0..).map(|i| if i == 0 { base.clone() } else { format!("{base}{i}") }).find(|n| !taken.contains(n));
    Ok(name.unwrap_or(base))
}

/// The container's directory: upper, work, merged, the init layer and the `/etc` files.
fn make_dir(dir: &Path, cfg: &RunConfig) -> Result<(), CreateError> {
    for sub in ["upper", "work", "merged", "init/etc", "init/proc", "init/dev", "init/sys"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(io_err(&p))?;
    }
    // Only its owner goes in: the merged view may hold setuid programs the container made.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    for (_, target) in super::rootfs::ETC_FILES {
        let p = dir.join("init").join(target.trim_start_matches('/'));
        std::fs::write(&p, "").map_err(io_err(&p))?;
    }
    let extra = network::extra_hosts(&cfg.extra_hosts, cfg.network)?;
    let hosts = network::hosts_file(&cfg.hostname, &extra);
    let dns = network::dns_servers(&cfg.dns)?;
    let resolv = network::resolv_conf(cfg.network, &dns, &host_resolv_conf());
    for (name, content) in [("hosts", hosts), ("resolv.conf", resolv), ("hostname", format!("{}\n", cfg.hostname))] {
        let p = dir.join(name);
        std::fs::write(&p, content).map_err(io_err(&p))?;
    }
    Ok(())
}

/// Gives the init layer's directories the mode, owner and times the image gives them (from the
/// top-most layer that has them), so that they look the same inside the container and a
/// copy-up through them brings no change of its own into a commit.
fn match_image_dirs(dir: &Path, lowers: &[PathBuf]) -> Result<(), CreateError> {
    for sub in ["etc", "proc", "dev", "sys"] {
        let found =
            lowers.iter().rev().find_map(|l| std::fs::symlink_metadata(l.join(sub)).ok().filter(|m| m.is_dir()));
        let Some(md) = found else { continue };
        let p = dir.join("init").join(sub);
        std::os::unix::fs::lchown(&p, Some(md.uid()), Some(md.gid())).map_err(io_err(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(md.mode() & 0o7777)).map_err(io_err(&p))?;
        let at = |sec: i64, nsec: i64| rustix::fs::Timespec { tv_sec: sec, tv_nsec: nsec as _ };
        let times = rustix::fs::Timestamps {
            last_access: at(md.atime(), md.atime_nsec()),
            last_modification: at(md.mtime(), md.mtime_nsec()),
        };
        rustix::fs::utimensat(rustix::fs::CWD, &p, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(&p)(io::Error::from(e)))?;
    }
    Ok(())
}

/// The host's resolver config (systemd-resolved's upstream list when the stub is in use).
fn host_resolv_conf() -> String {
    let main = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if main.contains("127.0.0.53") {
        return std::fs::read_to_string("/run/systemd/resolve/resolv.conf").unwrap_or(main);
    }
    main
}

/// Whether the image ships setuid/setgid programs in the usual program directories (then it
/// needs them to work, and `no_new_privs` stays off).
fn needs_setuid(lowers: &[PathBuf]) -> bool {
    const DIRS: [&str; 7] = ["bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "usr/local/sbin", "usr/libexec"];
    lowers.iter().flat_map(|l| DIRS.iter().map(move |d| l.join(d))).any(|dir| {
        let Ok(entries) = std::fs::read_dir(&dir) else { return false };
        entries.flatten().any(|e| e.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o6000 != 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_made_unique() {
        let dir = tempfile::tempdir().unwrap();
        let id = "0011".to_string() + &"0".repeat(60);
        assert_eq!(pick_name(dir.path(), None, &id).unwrap(), "amber_basalt");
        assert!(matches!(pick_name(dir.path(), Some("-x"), &id), Err(CreateError::BadName(_))));
        assert_eq!(pick_name(dir.path(), Some("web.1"), &id).unwrap(), "web.1");
    }

    #[test]
    fn setuid_programs_are_found_in_program_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        let l = dir.path().join("layer");
        std::fs::create_dir_all(l.join("bin")).unwrap();
        std::fs::create_dir_all(l.join("data")).unwrap();
        std::fs::write(l.join("data/s"), "").unwrap();
        std::fs::set_permissions(l.join("data/s"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        assert!(!needs_setuid(std::slice::from_ref(&l)));
        std::fs::write(l.join("bin/su"), "").unwrap();
        std::fs::set_permissions(l.join("bin/su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        assert!(needs_setuid(&[l]));
    }
}
