//! `strata inspect NAME...`: containers and images as JSON, in docker inspect's shape. A
//! container shows its state, configuration and `Mounts`; an image its config and layers (plus
//! each layer's blob digest, diff_id, sizes and unpacked dir). A name is looked up among the
//! containers first, as docker does.

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;
use serde_json::{Value, json};

use super::store_root::open_store;
use crate::container::mounts::{Mount, Source};
use crate::container::record::{self, Container, RecordError, Status};
use crate::container::{network, ports, state, volumes};
use crate::image::store::{Image, Store};

/// What kind of object a name is looked up as.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A container.
    Container,
    /// An image.
    Image,
}

/// Arguments of `strata inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Print each object through this template ({{.Id}}, {{json .Mounts}}).
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Only look for this kind of object.
    #[arg(long = "type", value_enum)]
    kind: Option<Kind>,
    /// Containers or images: names or ids.
    #[arg(required = true, value_name = "NAME")]
    names: Vec<String>,
}

/// One object found.
#[derive(Serialize)]
#[serde(untagged)]
enum Described {
    Container(Box<ContainerView>),
    Image(Value),
}

/// Prints a JSON array with one object per name.
pub fn run(a: InspectArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let mut out = Vec::new();
    for name in &a.names {
        if a.kind != Some(Kind::Image) {
            match record::find(root, name) {
                Ok(c) => {
                    out.push(Described::Container(Box::new(ContainerView::of(root, &state::refresh(root, &c)?))));
                    continue;
                }
                Err(RecordError::NoSuchContainer(_)) if a.kind.is_none() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let _lock = store.read()?;
        out.push(Described::Image(describe(&store, &store.resolve(name)?)));
    }
    print(&out, a.format.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// Prints `items` as one JSON array, or each through the `--format` template.
pub fn print<T: Serialize>(items: &[T], format: Option<&str>) -> anyhow::Result<()> {
    let Some(format) = format else {
        println!("{}", serde_json::to_string_pretty(items)?);
        return Ok(());
    };
    for item in items {
        println!("{}", super::template::render(format, &serde_json::to_value(item)?)?);
    }
    Ok(())
}

/// A container as docker inspect shows it (the fields Strata has, in docker's order).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerView {
    id: String,
    created: String,
    path: String,
    args: Vec<String>,
    state: StateView,
    image: String,
    name: String,
    host_config: HostConfigView,
    mounts: Vec<MountPoint>,
    config: ConfigView,
    network_settings: NetworkView,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StateView {
    status: &'static str,
    running: bool,
    pid: i32,
    exit_code: i32,
    error: String,
    started_at: String,
    finished_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HostConfigView {
    network_mode: &'static str,
    port_bindings: Value,
    dns: Vec<String>,
    extra_hosts: Vec<String>,
    auto_remove: bool,
    init: bool,
}

/// `NetworkSettings`: docker's `Ports` (published ports while the container runs, exposed ones
/// as `null`), the network namespace, and which user-mode networking program connects it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NetworkView {
    /// `pasta` or `slirp4netns` (its path), empty for `none` and `host`.
    helper: String,
    sandbox_key: String,
    ports: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigView {
    hostname: String,
    user: String,
    tty: bool,
    open_stdin: bool,
    env: Vec<String>,
    cmd: Vec<String>,
    image: String,
    working_dir: String,
    exposed_ports: Value,
}

/// One of docker's `Mounts`.
#[derive(Serialize)]
struct MountPoint {
    #[serde(rename = "Type")]
    kind: &'static str,
    #[serde(rename = "Name", skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(rename = "Source")]
    source: String,
    #[serde(rename = "Destination")]
    destination: String,
    #[serde(rename = "Driver", skip_serializing_if = "Option::is_none")]
    driver: Option<&'static str>,
    #[serde(rename = "Mode")]
    mode: String,
    #[serde(rename = "RW")]
    rw: bool,
    #[serde(rename = "Propagation")]
    propagation: &'static str,
}

impl MountPoint {
    fn of(root: &Path, m: &Mount) -> MountPoint {
        let (kind, name, source, driver, propagation) = match &m.source {
            Source::Volume { name, .. } => {
                let data = volumes::data_dir(root, name).display().to_string();
                ("volume", Some(name.clone()), data, Some(volumes::DRIVER), "")
            }
            Source::Bind { host } => ("bind", None, host.display().to_string(), None, "rprivate"),
            Source::Tmpfs { .. } => ("tmpfs", None, String::new(), None, ""),
        };
        let (destination, mode, rw) = (m.target.clone(), m.mode.clone(), !m.readonly);
        MountPoint { kind, name, source, destination, driver, mode, rw, propagation }
    }
}

impl NetworkView {
    fn of(c: &Container) -> NetworkView {
        let (cfg, running) = (&c.config, c.state.status == Status::Running);
        let helper = cfg.network.helper().and_then(network::find_program);
        NetworkView {
            helper: helper.map(|p| p.display().to_string()).unwrap_or_default(),
            sandbox_key: match c.state.pid {
                Some(pid) if running && cfg.network.own_namespace() => format!("/proc/{pid}/ns/net"),
                _ => String::new(),
            },
            ports: if running {
                ports::settings(&cfg.ports, &cfg.exposed, cfg.network.publishes_ipv6())
            } else {
                json!({})
            },
        }
    }
}

/// Docker's time for "never".
const NEVER: &str = "0001-01-01T00:00:00Z";

impl ContainerView {
    fn of(root: &Path, c: &Container) -> ContainerView {
        let (cfg, st) = (&c.config, &c.state);
        let time = |t: &Option<String>| t.clone().unwrap_or_else(|| NEVER.into());
        ContainerView {
            id: c.id.clone(),
            created: c.created.clone(),
            path: c.command.first().cloned().unwrap_or_default(),
            args: c.command.iter().skip(1).cloned().collect(),
            state: StateView {
                status: st.status.as_str(),
                running: st.status == Status::Running,
                pid: st.pid.unwrap_or(0),
                exit_code: st.exit_code.unwrap_or(0),
                error: st.error.clone().unwrap_or_default(),
                started_at: time(&st.started),
                finished_at: time(&st.finished),
            },
            image: c.image_id.clone(),
            name: format!("/{}", c.name),
            host_config: HostConfigView {
                network_mode: cfg.network.name(),
                port_bindings: ports::host_config(&cfg.ports),
                dns: cfg.dns.clone(),
                extra_hosts: cfg.extra_hosts.clone(),
                auto_remove: cfg.auto_remove,
                init: cfg.init,
            },
            mounts: cfg.mounts.iter().map(|m| MountPoint::of(root, m)).collect(),
            config: ConfigView {
                hostname: cfg.hostname.clone(),
                user: cfg.user.clone(),
                tty: cfg.tty,
                open_stdin: cfg.interactive,
                env: cfg.env.clone(),
                cmd: c.command.clone(),
                image: c.image.clone(),
                working_dir: cfg.cwd.clone(),
                exposed_ports: cfg.exposed.iter().map(|p| (p.clone(), json!({}))).collect(),
            },
            network_settings: NetworkView::of(c),
        }
    }
}

fn describe(store: &Store, img: &Image) -> Value {
    let c = &img.config;
    let layers: Vec<Value> = img
        .manifest
        .layers
        .iter()
        .zip(&c.rootfs.diff_ids)
        .map(|(l, diff_id)| {
            json!({
                "Digest": l.digest,
                "MediaType": l.media_type,
                "Size": l.size,
                "DiffID": diff_id,
                "UnpackedSize": store.layer_meta(diff_id).size,
                "Path": store.layer_path(diff_id),
            })
        })
        .collect();
    json!({
        "Id": img.id(),
        "RepoTags": img.names,
        "RepoDigests": repo_digests(img),
        "ManifestDigest": img.descriptor.digest,
        "ManifestMediaType": img.descriptor.media_type,
        "Created": c.created,
        "Author": c.author,
        "Architecture": c.architecture,
        "Os": c.os,
        "Size": store.image_size(img),
        "Config": c.config,
        "RootFS": {"Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids},
        "Layers": layers,
        "History": c.history,
    })
}

/// `REPOSITORY@DIGEST` for each repository that names the image, as docker lists where an
/// image can be pulled by digest (its manifest is kept byte for byte, so the digest is the
/// registry's).
fn repo_digests(img: &Image) -> Vec<String> {
    let mut out: Vec<String> = img
        .names
        .iter()
        .filter_map(|n| crate::image::reference::Name::parse(n).ok())
        .map(|n| format!("{}@{}", n.repository(), img.descriptor.digest))
        .collect();
    out.dedup();
    out
}
