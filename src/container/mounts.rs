//! The mounts a container gets besides its rootfs, as docker gives them: host paths bound in
//! (`-v /HOST:/CTR`, `--mount type=bind`), volumes of the store (`-v NAME:/CTR`, `-v /CTR`,
//! `--mount type=volume`, the image config's `Volumes`), and new tmpfs instances (`--tmpfs`,
//! `--mount type=tmpfs`). This file holds the model kept in the container record, the parsing
//! of those flags, and how they combine: one mount per target, the flags first, then what
//! `--volumes-from` containers have, then an anonymous volume at each image volume path left.
//!
//! Targets are kept as the user wrote them, cleaned (`/a//b/` is `/a/b`); they are resolved
//! inside the rootfs only when mounted ([`crate::sys::mountfd::open_target`]).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use super::volumes;

/// Why a mount flag is not usable; each names the flag's value.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A `-v` that is not `[SOURCE:]TARGET[:OPTIONS]`.
    #[error(
        "invalid volume specification {0:?}: expected [SOURCE:]TARGET[:OPTIONS], SOURCE a volume name or an absolute host path"
    )]
    BadVolume(String),
    /// A `-v` option that is not known.
    #[error("invalid volume specification {spec:?}: unknown option {option:?} (ro, rw, z, Z, nocopy)")]
    BadOption {
        /// The `-v` value.
        spec: String,
        /// The option.
        option: String,
    },
    /// A `--mount` that cannot be used.
    #[error("invalid --mount {spec:?}: {reason}")]
    BadMount {
        /// The `--mount` value.
        spec: String,
        /// Why.
        reason: String,
    },
    /// A `--tmpfs` that cannot be used.
    #[error("invalid --tmpfs {spec:?}: {reason}")]
    BadTmpfs {
        /// The `--tmpfs` value.
        spec: String,
        /// Why.
        reason: String,
    },
    /// A `--volumes-from` that is not `CONTAINER[:ro|rw]`.
    #[error("invalid --volumes-from {0:?}: expected CONTAINER[:ro|rw]")]
    BadVolumesFrom(String),
    /// A target that is not an absolute path, or climbs with `..`, or is `/`.
    #[error("invalid mount target {0:?}: it needs to be an absolute path other than / and without '..'")]
    BadTarget(String),
    /// A volume name with characters a name may not have.
    #[error(
        "{0:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; a host directory needs an absolute path"
    )]
    BadName(String),
    /// A bind mount's host path is not there.
    #[error("volume {spec:?}: host path {path} does not exist")]
    MissingHostPath {
        /// The flag's value.
        spec: String,
        /// The host path.
        path: PathBuf,
    },
    /// Two flags mount on one target.
    #[error("Duplicate mount point: {0}")]
    Duplicate(String),
}

/// What is mounted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Source {
    /// A host path (absolute, canonical), bound recursively.
    Bind {
        /// The path.
        host: PathBuf,
    },
    /// A volume of the store: its `_data` directory, bound.
    Volume {
        /// Its name (empty for an anonymous volume until it is made).
        name: String,
        /// Made for this container: `rm -v` and `run --rm` remove it with the container.
        #[serde(default)]
        anonymous: bool,
        /// Not filled with the image's content at the target when new (`volume-nocopy`).
        #[serde(default)]
        nocopy: bool,
    },
    /// A new, empty tmpfs (always `nosuid,nodev`).
    Tmpfs {
        /// Options for the kernel: `size`, `mode`, `uid`, `gid`, `nr_inodes`, `nr_blocks`.
        #[serde(default)]
        options: Vec<(String, String)>,
        /// Programs may run from it (`exec`; docker's default is `noexec`).
        #[serde(default)]
        exec: bool,
    },
}

/// One mount of a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// What is mounted.
    #[serde(flatten)]
    pub source: Source,
    /// Where inside the container (absolute, cleaned; resolved inside the rootfs at mount time).
    pub target: String,
    /// Read-only.
    #[serde(default)]
    pub readonly: bool,
    /// The options as given to `-v` (docker's `Mode`: `z` for a named volume without any).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
}

impl Mount {
    /// An anonymous volume at `target`, made when the container is.
    pub fn anonymous(target: String) -> Mount {
        let source = Source::Volume { name: String::new(), anonymous: true, nocopy: false };
        Mount { source, target, readonly: false, mode: String::new() }
    }

    /// The volume's name, for a volume.
    pub fn volume(&self) -> Option<&str> {
        match &self.source {
            Source::Volume { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Whether it is a volume made for its container alone.
    pub fn is_anonymous(&self) -> bool {
        matches!(self.source, Source::Volume { anonymous: true, .. })
    }
}

/// Reads the `mounts` of a record; records written before there were volumes have binds only
/// (`{"host", "target", "readonly"}`, under `volumes`).
pub fn stored<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Mount>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Mount(Mount),
        Bind {
            host: PathBuf,
            target: String,
            #[serde(default)]
            readonly: bool,
        },
    }
    let all = Vec::<Stored>::deserialize(d)?.into_iter().map(|s| match s {
        Stored::Mount(m) => m,
        Stored::Bind { host, target, readonly } => {
            Mount { source: Source::Bind { host }, target, readonly, mode: String::new() }
        }
    });
    Ok(all.collect())
}

/// `target` cleaned (`/a//b/.` is `/a/b`); an error unless it is absolute, not `/`, without `..`.
pub fn clean_target(target: &str) -> Result<String, MountError> {
    let bad = || MountError::BadTarget(target.to_string());
    let path = Path::new(target);
    if !path.is_absolute() {
        return Err(bad());
    }
    let mut out = String::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => {
                out.push('/');
                out.push_str(n.to_str().ok_or_else(bad)?);
            }
            Component::ParentDir => return Err(bad()),
            _ => {}
        }
    }
    if out.is_empty() { Err(bad()) } else { Ok(out) }
}

/// A bind mount's host path, made canonical; it must exist.
fn host_path(spec: &str, host: &str) -> Result<PathBuf, MountError> {
    std::fs::canonicalize(host)
        .map_err(|_| MountError::MissingHostPath { spec: spec.to_string(), path: PathBuf::from(host) })
}

/// Parses one `-v`: `/CTR` (an anonymous volume), `SOURCE:/CTR[:OPTIONS]` with SOURCE an
/// absolute host path (which must exist) or a volume name (made on first use); OPTIONS a
/// comma-separated list of `ro`, `rw`, `z`, `Z`, `nocopy`.
pub fn parse_volume(spec: &str) -> Result<Mount, MountError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(MountError::BadVolume(spec.to_string())),
    };
    if (parts.len() > 1 && source.is_empty()) || target.is_empty() {
        return Err(MountError::BadVolume(spec.to_string()));
    }
    let target = clean_target(target)?;
    let (mut readonly, mut nocopy) = (false, false);
    for option in mode.split(',').filter(|o| !o.is_empty()) {
        match option {
            "ro" => readonly = true,
            "rw" => readonly = false,
            "z" | "Z" => {}
            "nocopy" if !source.starts_with('/') => nocopy = true,
            _ => return Err(MountError::BadOption { spec: spec.to_string(), option: option.to_string() }),
        }
    }
    let source = if source.starts_with('/') {
        Source::Bind { host: host_path(spec, source)? }
    } else if source.is_empty() {
        Source::Volume { name: String::new(), anonymous: true, nocopy }
    } else {
        Source::Volume { name: volume_name(source)?, anonymous: false, nocopy }
    };
    // Docker's Mode: what was given, or `z` for a named volume given none.
    let named = matches!(&source, Source::Volume { anonymous: false, .. });
    let mode = if mode.is_empty() && named { "z".to_string() } else { mode.to_string() };
    Ok(Mount { source, target, readonly, mode })
}

fn volume_name(name: &str) -> Result<String, MountError> {
    if volumes::valid_name(name) { Ok(name.to_string()) } else { Err(MountError::BadName(name.to_string())) }
}

/// A `--mount` flag's `key[=value]` fields, by name (each of docker's aliases under one).
#[derive(Default)]
struct Fields {
    kind: Option<String>,
    source: Option<String>,
    target: Option<String>,
    readonly: bool,
    nocopy: bool,
    tmpfs: Vec<(String, String)>,
}

/// `true`/`false` of a flag field: no value, `1`/`true` or `0`/`false`.
fn flag_value(value: Option<&str>) -> Option<bool> {
    match value {
        None | Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") => Some(false),
        _ => None,
    }
}

fn mount_fields(spec: &str) -> Result<Fields, String> {
    let mut f = Fields::default();
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let text = || value.map(str::to_string).ok_or_else(|| format!("field {key:?} needs a value"));
        let flag = || flag_value(value).ok_or_else(|| format!("invalid value for {key:?}: {}", value.unwrap_or("")));
        match key.as_str() {
            "type" => f.kind = Some(text()?),
            "source" | "src" => f.source = Some(text()?),
            "target" | "destination" | "dst" => f.target = Some(text()?),
            "readonly" | "ro" => f.readonly = flag()?,
            "volume-nocopy" => f.nocopy = flag()?,
            "tmpfs-size" => f.tmpfs.push(("size".into(), bytes(&text()?).ok_or("invalid tmpfs-size")?.to_string())),
            "tmpfs-mode" => f.tmpfs.push(("mode".into(), octal_mode(&text()?).ok_or("invalid tmpfs-mode")?)),
            "bind-propagation" if matches!(value, Some("rprivate") | Some("private")) => {}
            "volume-driver" if value == Some("local") => {}
            "consistency" => {}
            "" => return Err("empty field".into()),
            _ => return Err(format!("unexpected key {key:?}")),
        }
    }
    Ok(f)
}

/// A size in bytes with an optional `k`, `m`, `g` suffix (powers of 1024, as docker's
/// `tmpfs-size`).
fn bytes(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, shift) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 10),
        'm' => (&s[..s.len() - 1], 20),
        'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    num.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// An octal file mode, as the kernel takes it (`1777`), or `None`.
fn octal_mode(s: &str) -> Option<String> {
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777).map(|m| format!("{m:o}"))
}

/// Parses one `--mount`: `type=bind|volume|tmpfs` (default volume), `source`/`src`,
/// `target`/`destination`/`dst`, `readonly`/`ro`, `volume-nocopy`, `tmpfs-size`, `tmpfs-mode`.
pub fn parse_mount(spec: &str) -> Result<Mount, MountError> {
    let bad = |reason: String| MountError::BadMount { spec: spec.to_string(), reason };
    let f = mount_fields(spec).map_err(bad)?;
    let target = clean_target(&f.target.clone().ok_or_else(|| bad("target is required".into()))?)?;
    let kind = f.kind.as_deref().unwrap_or("volume");
    if kind != "tmpfs" && !f.tmpfs.is_empty() {
        return Err(bad(format!("tmpfs options are not allowed with type={kind}")));
    }
    if kind != "volume" && f.nocopy {
        return Err(bad(format!("volume-nocopy is not allowed with type={kind}")));
    }
    let source = match (kind, f.source.as_deref()) {
        ("bind", Some(s)) if s.starts_with('/') => Source::Bind { host: host_path(spec, s)? },
        ("bind", _) => return Err(bad("a bind mount needs an absolute source path".into())),
        ("volume", None | Some("")) => Source::Volume { name: String::new(), anonymous: true, nocopy: f.nocopy },
        ("volume", Some(s)) => Source::Volume { name: volume_name(s)?, anonymous: false, nocopy: f.nocopy },
        ("tmpfs", None) => Source::Tmpfs { options: f.tmpfs, exec: false },
        ("tmpfs", Some(_)) => return Err(bad("a tmpfs mount takes no source".into())),
        (other, _) => return Err(bad(format!("unknown type {other:?} (bind, volume or tmpfs)"))),
    };
    Ok(Mount { source, target, readonly: f.readonly, mode: String::new() })
}

/// Parses one `--tmpfs /CTR[:OPTIONS]`, OPTIONS as [`tmpfs_options`] takes them.
pub fn parse_tmpfs(spec: &str) -> Result<Mount, MountError> {
    let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let target = clean_target(target)?;
    let (source, readonly) =
        tmpfs_options(opts).map_err(|reason| MountError::BadTmpfs { spec: spec.to_string(), reason })?;
    Ok(Mount { source, target, readonly, mode: String::new() })
}

/// A tmpfs from options as `mount -t tmpfs` takes them (comma-separated): `size=`, `mode=`,
/// `uid=`, `gid=`, `nr_inodes=`, `nr_blocks=`, `exec`, `noexec`, and the `nosuid`, `nodev` it
/// always has; and whether it is read-only (`ro`, `rw`).
pub fn tmpfs_options(opts: &str) -> Result<(Source, bool), String> {
    let (mut options, mut readonly, mut exec) = (Vec::new(), false, false);
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("mode", v)) => options.push(("mode".into(), octal_mode(v).ok_or(format!("invalid mode {v:?}"))?)),
            Some((k @ ("size" | "uid" | "gid" | "nr_inodes" | "nr_blocks"), v)) if !v.is_empty() => {
                options.push((k.to_string(), v.to_string()))
            }
            None if opt == "ro" || opt == "rw" => readonly = opt == "ro",
            None if opt == "exec" || opt == "noexec" => exec = opt == "exec",
            None if opt == "nosuid" || opt == "nodev" => {}
            _ => return Err(format!("unsupported option {opt:?}")),
        }
    }
    Ok((Source::Tmpfs { options, exec }, readonly))
}

/// Parses one `--volumes-from CONTAINER[:ro|rw]`: the container and, if given, whether its
/// mounts become read-only (`ro`) or writable (`rw`).
pub fn parse_volumes_from(spec: &str) -> Result<(&str, Option<bool>), MountError> {
    match spec.split_once(':') {
        None if !spec.is_empty() => Ok((spec, None)),
        Some((c, "ro")) if !c.is_empty() => Ok((c, Some(true))),
        Some((c, "rw")) if !c.is_empty() => Ok((c, Some(false))),
        _ => Err(MountError::BadVolumesFrom(spec.to_string())),
    }
}

/// The mounts another container shares through `--volumes-from`: its binds and volumes at the
/// same targets (not its tmpfs), read-only or writable as `readonly` says, else as it has them.
pub fn shared(theirs: &[Mount], readonly: Option<bool>) -> Vec<Mount> {
    let kept = theirs.iter().filter(|m| !matches!(m.source, Source::Tmpfs { .. }));
    kept.map(|m| Mount { readonly: readonly.unwrap_or(m.readonly), ..m.clone() }).collect()
}

/// The mounts of the `-v`, `--mount` and `--tmpfs` flags; two on one target are an error.
pub fn given(volumes: &[String], mounts: &[String], tmpfs: &[String]) -> Result<Vec<Mount>, MountError> {
    let mut out: Vec<Mount> = Vec::new();
    let parsed = volumes.iter().map(|v| parse_volume(v));
    let parsed = parsed.chain(mounts.iter().map(|m| parse_mount(m))).chain(tmpfs.iter().map(|t| parse_tmpfs(t)));
    for m in parsed {
        let m = m?;
        if out.iter().any(|o| o.target == m.target) {
            return Err(MountError::Duplicate(m.target));
        }
        out.push(m);
    }
    Ok(out)
}

/// All mounts of a container: `given` (the flags), then `inherited` (from `--volumes-from`) at
/// targets the flags leave free, then an anonymous volume at each path of the image's
/// `Volumes` still free.
pub fn combine(given: Vec<Mount>, inherited: Vec<Mount>, image_volumes: &[String]) -> Vec<Mount> {
    let mut out = given;
    for m in inherited {
        if !out.iter().any(|o| o.target == m.target) {
            out.push(m);
        }
    }
    for path in image_volumes {
        // A path the image gives that is no usable target is left out, as docker does with `/`.
        let Ok(target) = clean_target(path) else { continue };
        if !out.iter().any(|o| o.target == target) {
            out.push(Mount::anonymous(target));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(name: &str, anonymous: bool, nocopy: bool) -> Source {
        Source::Volume { name: name.into(), anonymous, nocopy }
    }

    #[test]
    fn dash_v_is_a_bind_a_named_or_an_anonymous_volume() {
        let m = parse_volume("/tmp:/mnt//x/:ro").unwrap();
        assert_eq!(m.source, Source::Bind { host: std::fs::canonicalize("/tmp").unwrap() });
        assert_eq!((m.target.as_str(), m.readonly, m.mode.as_str()), ("/mnt/x", true, "ro"));
        let m = parse_volume("data:/srv").unwrap();
        assert_eq!((m.source, m.readonly, m.mode.as_str()), (volume("data", false, false), false, "z"));
        let m = parse_volume("data:/srv:ro,nocopy").unwrap();
        assert_eq!((m.source, m.readonly), (volume("data", false, true), true));
        let m = parse_volume("/cache").unwrap();
        assert_eq!((m.source, m.target.as_str(), m.mode.as_str()), (volume("", true, false), "/cache", ""));
        assert!(matches!(parse_volume("/nonexistent-strata:/mnt"), Err(MountError::MissingHostPath { .. })));
        assert!(matches!(parse_volume("bad name:/x"), Err(MountError::BadName(_))));
        assert!(matches!(parse_volume("/tmp:/x:nocopy"), Err(MountError::BadOption { .. })));
        assert!(matches!(parse_volume("/tmp:/mnt:xx"), Err(MountError::BadOption { .. })));
        for bad in ["/tmp:mnt", "/tmp:/a/../b", "x:/"] {
            assert!(matches!(parse_volume(bad), Err(MountError::BadTarget(_))), "{bad}");
        }
        for bad in ["/tmp:/a:/b:ro", ":/x", ""] {
            assert!(matches!(parse_volume(bad), Err(MountError::BadVolume(_))), "{bad}");
        }
    }

    #[test]
    fn dash_dash_mount_takes_docker_fields() {
        let m = parse_mount("type=volume,src=v1,dst=/data,readonly,volume-nocopy").unwrap();
        assert_eq!((m.source, m.target.as_str(), m.readonly), (volume("v1", false, true), "/data", true));
        let m = parse_mount("target=/anon").unwrap();
        assert_eq!(m.source, volume("", true, false));
        let m = parse_mount("type=bind,source=/tmp,destination=/t,ro=false").unwrap();
        assert!(matches!(m.source, Source::Bind { .. }) && !m.readonly);
        let m = parse_mount("type=tmpfs,dst=/run,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        let opts = vec![("size".into(), (64u64 << 20).to_string()), ("mode".into(), "1770".into())];
        assert_eq!(m.source, Source::Tmpfs { options: opts, exec: false });
        for bad in [
            "type=bind,dst=/x",
            "type=bind,src=rel,dst=/x",
            "type=tmpfs,src=x,dst=/x",
            "type=nfs,dst=/x",
            "src=v",
            "dst=/x,bogus=1",
            "type=bind,src=/tmp,dst=/x,volume-nocopy",
            "type=tmpfs,dst=/x,tmpfs-mode=999",
        ] {
            assert!(matches!(parse_mount(bad), Err(MountError::BadMount { .. })), "{bad}");
        }
    }

    #[test]
    fn dash_dash_tmpfs_takes_kernel_options() {
        let m = parse_tmpfs("/run:size=64m,mode=1777,exec,ro").unwrap();
        let opts = vec![("size".into(), "64m".into()), ("mode".into(), "1777".into())];
        assert_eq!((m.source, m.readonly), (Source::Tmpfs { options: opts, exec: true }, true));
        assert_eq!(parse_tmpfs("/t").unwrap().source, Source::Tmpfs { options: vec![], exec: false });
        assert!(matches!(parse_tmpfs("/t:suid"), Err(MountError::BadTmpfs { .. })));
        assert!(matches!(parse_tmpfs("rel"), Err(MountError::BadTarget(_))));
    }

    #[test]
    fn flags_then_inherited_then_image_volumes_one_per_target() {
        let given = given(&["data:/data".into(), "/tmp:/etc/x".into()], &[], &["/run".into()]).unwrap();
        let mut theirs = vec![parse_volume("other:/data").unwrap(), parse_volume("/shared").unwrap()];
        theirs.push(parse_tmpfs("/t").unwrap());
        let inherited = shared(&theirs, Some(true));
        assert_eq!(inherited.len(), 2, "tmpfs is not shared");
        let all = combine(given, inherited, &["/data".into(), "/shared/".into(), "/cache".into(), "rel".into()]);
        let targets: Vec<&str> = all.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/data", "/etc/x", "/run", "/shared", "/cache"]);
        assert_eq!(all[0].volume(), Some("data"), "the flag wins over --volumes-from");
        assert!(all[3].readonly && all[3].is_anonymous());
        assert!(all[4].is_anonymous() && !all[4].readonly);
        let dup = super::given(&["ab:/x".into()], &["dst=/x/".into()], &[]);
        assert!(matches!(dup, Err(MountError::Duplicate(t)) if t == "/x"));
        assert_eq!(parse_volumes_from("c:ro").unwrap(), ("c", Some(true)));
        assert_eq!(parse_volumes_from("c").unwrap(), ("c", None));
        assert!(parse_volumes_from("c:xx").is_err());
    }

    #[test]
    fn old_records_read_as_binds_and_new_ones_round_trip() {
        #[derive(Deserialize)]
        struct R {
            #[serde(deserialize_with = "stored")]
            m: Vec<Mount>,
        }
        let r: R = serde_json::from_str(r#"{"m":[{"host":"/srv","target":"/v","readonly":true}]}"#).unwrap();
        assert_eq!(
            r.m[0],
            Mount {
                source: Source::Bind { host: "/srv".into() },
                target: "/v".into(),
                readonly: true,
                mode: "".into()
            }
        );
        let all =
            vec![parse_volume("nv:/a").unwrap(), parse_tmpfs("/t:size=1m").unwrap(), Mount::anonymous("/c".into())];
        let json = serde_json::to_string(&serde_json::json!({ "m": all })).unwrap();
        assert!(json.contains(r#""type":"volume""#), "{json}");
        let back: R = serde_json::from_str(&json).unwrap();
        assert_eq!(back.m, all);
    }
}
