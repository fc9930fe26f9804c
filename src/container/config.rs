//! How a container's process is set up: the command, environment, working directory, user,
//! terminal, hostname, network and mounts, from the image config (`Env`, `Cmd`,
//! `Entrypoint`, `WorkingDir`, `User`, `Volumes`) with the `run` flags overriding it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::mounts::{self, Mount, MountError};
use super::ports::PortBinding;

/// `PATH` when neither the image nor `-e` sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a run configuration cannot be made; each names the flag or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither the image nor the command line gives a command.
    #[error("image {0} has no command (Entrypoint/Cmd): give one after the image name")]
    NoCommand(String),
    /// `-w` is not absolute.
    #[error("the working directory {0:?} is invalid: it needs to be an absolute path")]
    RelativeWorkdir(String),
    /// A `-v`, `--mount`, `--tmpfs` or `--volumes-from` is not usable.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// `-e` without a name.
    #[error("invalid environment variable {0:?}")]
    BadEnv(String),
}

/// The network a container gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A network namespace of its own with only the loopback interface, up.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A network namespace of its own connected by pasta (Debian `passt`).
    Pasta,
    /// A network namespace of its own connected by slirp4netns.
    Slirp4netns,
}

/// Everything about a container's process that `start` and `exec` need again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// The working directory inside the container.
    pub cwd: String,
    /// `USER[:GROUP]` (names or ids; empty: root).
    pub user: String,
    /// Stdio is a terminal.
    pub tty: bool,
    /// Stdin stays open.
    pub interactive: bool,
    /// The hostname inside.
    pub hostname: String,
    /// The network.
    pub network: Network,
    /// Host paths, volumes and tmpfs mounted in (records made before volumes: `volumes`).
    #[serde(default, alias = "volumes", deserialize_with = "mounts::stored")]
    pub mounts: Vec<Mount>,
    /// Set `no_new_privs` (unless the image ships setuid programs it needs).
    pub no_new_privs: bool,
    /// Remove the container when its process ends.
    pub auto_remove: bool,
    /// Made by an unprivileged user (runs in a user namespace).
    pub rootless: bool,
    /// PID 1 is Strata's reaper, the command its child (`run --init`).
    #[serde(default)]
    pub init: bool,
    /// Published ports (`-p`, `-P`), one port each.
    #[serde(default)]
    pub ports: Vec<PortBinding>,
    /// The image's exposed ports (`80/tcp`).
    #[serde(default)]
    pub exposed: Vec<String>,
    /// `--dns` servers.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--add-host` entries, `NAME:IP` (host-gateway resolved).
    #[serde(default)]
    pub extra_hosts: Vec<String>,
}

/// The runtime part of an image config (`config` in OCI `config.md`), as far as `run` uses it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageRuntime {
    /// `KEY=VALUE` entries.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// The program and its first arguments.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// The working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `USER[:GROUP]`.
    #[serde(default)]
    pub user: Option<String>,
    /// `EXPOSE`d ports: `{"80/tcp": {}}`.
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// Paths that get an anonymous volume (the values are empty objects).
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
}

impl ImageRuntime {
    /// The paths of `Volumes`.
    pub fn volume_paths(&self) -> Vec<String> {
        self.volumes.iter().flat_map(|v| v.keys().cloned()).collect()
    }
}

/// What the user asked for on the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// The command after the image name (replaces Cmd).
    pub command: Vec<String>,
    /// `-e K=V` (or `-e K`: the value from this process's environment).
    pub env: Vec<String>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-v [SOURCE:]CTR[:OPTIONS]`.
    pub volumes: Vec<String>,
    /// `--mount type=bind|volume|tmpfs,...`.
    pub mounts: Vec<String>,
    /// `--tmpfs CTR[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `--volumes-from CONTAINER[:ro|rw]`.
    pub volumes_from: Vec<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--network` (empty: the default).
    pub network: String,
    /// `-p`.
    pub publish: Vec<String>,
    /// `-P`.
    pub publish_all: bool,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--add-host`.
    pub add_hosts: Vec<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--init`.
    pub init: bool,
}

/// The command PID 1 runs: Entrypoint, then the given command or else Cmd.
pub fn command(image: &str, rt: &ImageRuntime, given: &[String]) -> Result<Vec<String>, ConfigError> {
    let mut cmd: Vec<String> = rt.entrypoint.clone().unwrap_or_default();
    if given.is_empty() {
        cmd.extend(rt.cmd.clone().unwrap_or_default());
    } else {
        cmd.extend(given.iter().cloned());
    }
    if cmd.is_empty() {
        return Err(ConfigError::NoCommand(image.to_string()));
    }
    Ok(cmd)
}

/// The environment: the image's, `-e` on top (same key replaced), PATH defaulted, HOSTNAME
/// set, TERM for a terminal.
pub fn environment(rt: &ImageRuntime, flags: &[String], hostname: &str, tty: bool) -> Result<Vec<String>, ConfigError> {
    let mut env: Vec<String> = rt.env.clone().unwrap_or_default();
    let set = |env: &mut Vec<String>, entry: String| {
        let key = entry.split('=').next().unwrap_or_default().to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(entry);
    };
    for e in flags {
        match e.split_once('=') {
            Some(("", _)) => return Err(ConfigError::BadEnv(e.clone())),
            Some(_) => set(&mut env, e.clone()),
            None if e.is_empty() => return Err(ConfigError::BadEnv(e.clone())),
            None => {
                if let Ok(v) = std::env::var(e) {
                    set(&mut env, format!("{e}={v}"));
                }
            }
        }
    }
    let has = |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={hostname}"));
    }
    if tty && !has(&env, "TERM") {
        env.push("TERM=xterm".into());
    }
    Ok(env)
}

/// The whole run configuration (the hostname and the network mode chosen by the caller); the
/// mounts are those of the flags (`-v`, `--mount`, `--tmpfs`), which the caller completes
/// ([`mounts::combine`]); ports, DNS and hosts are filled in by `create`.
pub fn build(rt: &ImageRuntime, o: &Overrides, hostname: String, network: Network) -> Result<RunConfig, ConfigError> {
    let cwd = match &o.workdir {
        Some(w) if !w.starts_with('/') => return Err(ConfigError::RelativeWorkdir(w.clone())),
        Some(w) => w.clone(),
        None => rt.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()),
    };
    let mounts = mounts::given(&o.volumes, &o.mounts, &o.tmpfs)?;
    Ok(RunConfig {
        env: environment(rt, &o.env, &hostname, o.tty)?,
        cwd,
        user: o.user.clone().or_else(|| rt.user.clone()).unwrap_or_default(),
        tty: o.tty,
        interactive: o.interactive,
        hostname,
        network,
        mounts,
        no_new_privs: true,
        auto_remove: o.auto_remove,
        rootless: !rustix::process::geteuid().is_root(),
        init: o.init,
        exposed: rt.exposed_ports.as_ref().map(|m| m.keys().cloned().collect()).unwrap_or_default(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> ImageRuntime {
        serde_json::from_str(
            r#"{"Env":["PATH=/bin","FX_VAR=hello"],"Cmd":["/bin/sh"],"WorkingDir":"/data","User":"1000"}"#,
        )
        .unwrap()
    }

    #[test]
    fn command_is_entrypoint_then_given_or_cmd() {
        let mut r = rt();
        assert_eq!(command("i", &r, &[]).unwrap(), vec!["/bin/sh"]);
        assert_eq!(command("i", &r, &["echo".into(), "hi".into()]).unwrap(), vec!["echo", "hi"]);
        r.entrypoint = Some(vec!["/init".into()]);
        assert_eq!(command("i", &r, &["x".into()]).unwrap(), vec!["/init", "x"]);
        assert!(matches!(command("i", &ImageRuntime::default(), &[]), Err(ConfigError::NoCommand(_))));
    }

    #[test]
    fn flags_override_the_image() {
        let o = Overrides {
            env: vec!["FX_VAR=bye".into(), "NEW=1".into()],
            workdir: Some("/tmp".into()),
            user: Some("0:0".into()),
            ..Default::default()
        };
        let c = build(&rt(), &o, "box".into(), Network::None).unwrap();
        assert_eq!(c.env, vec!["PATH=/bin", "FX_VAR=bye", "NEW=1", "HOSTNAME=box"]);
        assert_eq!((c.cwd.as_str(), c.user.as_str()), ("/tmp", "0:0"));
        let c = build(&rt(), &Overrides::default(), "box".into(), Network::None).unwrap();
        assert_eq!((c.cwd.as_str(), c.user.as_str()), ("/data", "1000"));
    }

    #[test]
    fn path_is_defaulted_and_relative_workdir_refused() {
        let env = environment(&ImageRuntime::default(), &[], "h", true).unwrap();
        assert_eq!(env[0], format!("PATH={DEFAULT_PATH}"));
        assert!(env.contains(&"TERM=xterm".to_string()));
        let o = Overrides { workdir: Some("rel".into()), ..Default::default() };
        assert!(matches!(build(&rt(), &o, "h".into(), Network::None), Err(ConfigError::RelativeWorkdir(_))));
        assert!(matches!(environment(&rt(), &["=x".into()], "h", false), Err(ConfigError::BadEnv(_))));
    }

    #[test]
    fn mounts_come_from_the_flags_and_volumes_from_the_image() {
        let o = Overrides {
            volumes: vec!["/tmp:/mnt:ro".into()],
            tmpfs: vec!["/run".into()],
            mounts: vec!["dst=/cache".into()],
            ..Default::default()
        };
        let c = build(&rt(), &o, "h".into(), Network::None).unwrap();
        let targets: Vec<&str> = c.mounts.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(targets, ["/mnt", "/cache", "/run"]);
        let o = Overrides { volumes: vec!["/nonexistent-strata:/mnt".into()], ..Default::default() };
        assert!(matches!(
            build(&rt(), &o, "h".into(), Network::None),
            Err(ConfigError::Mount(MountError::MissingHostPath { .. }))
        ));
        let r: ImageRuntime = serde_json::from_str(r#"{"Volumes":{"/data":{},"/b":{}}}"#).unwrap();
        assert_eq!(r.volume_paths(), ["/b", "/data"]);
    }

    #[test]
    fn old_records_keep_their_bind_mounts() {
        let c: RunConfig = serde_json::from_str(
            r#"{"env":[],"cwd":"/","user":"","tty":false,"interactive":false,"hostname":"h",
            "network":"none","volumes":[{"host":"/srv","target":"/v","readonly":true}],"no_new_privs":true,
            "auto_remove":false,"rootless":false}"#,
        )
        .unwrap();
        assert_eq!(c.mounts.len(), 1);
        assert!(c.mounts[0].readonly && c.mounts[0].target == "/v" && c.mounts[0].volume().is_none());
        assert!(serde_json::to_string(&c).unwrap().contains(r#""mounts":[{"type":"bind","host":"/srv""#));
    }
}
