//! One pull or push by one tool, timed from spawn to exit together with its peak resident set
//! (GNU time's `%M`: `wait4`'s `ru_maxrss`, the largest of the process and the children it
//! reaped); and the untimed work around it: an empty destination, dropping caches, checking
//! what arrived, moving the result to the trash.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};

use super::dockerd::Dockerd;
use super::image::Image;
use super::servers::Registry;

/// One measurement.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Wall time.
    pub secs: f64,
    /// Peak resident set, bytes.
    pub rss: f64,
}

/// What the measured commands work with.
pub struct Cx {
    /// The release binary.
    pub strata: PathBuf,
    /// The generated layout.
    pub image: Image,
    /// Destinations, logs and push registries.
    pub scratch: PathBuf,
    /// The registry every pull reads from (the image pushed once).
    pub source: Registry,
    /// The private dockerd, when docker is compared.
    pub docker: Option<Dockerd>,
    /// A Strata store holding the image, pushed from, and the image's name there.
    strata_src: (PathBuf, String),
    /// A podman store holding the image, and its id there.
    podman_src: Option<(PathBuf, String)>,
}

/// `sync`, then drop the page cache, dentries and inodes.
pub fn drop_caches() -> Result<()> {
    rustix::fs::sync();
    fs::write("/proc/sys/vm/drop_caches", "3").context("dropping caches (needs root)")
}

/// Runs `argv` (untimed); its stdout, or an error with its output.
pub fn run(argv: &[String]) -> Result<String> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", argv[0]))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}{}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// `podman` with its store under `dir` (overlay, as podman's default for root).
fn podman(dir: &Path, args: &[&str]) -> Vec<String> {
    let mut v = argv(&["podman", "--root"]);
    v.push(dir.join("root").display().to_string());
    v.push("--runroot".into());
    v.push(dir.join("run").display().to_string());
    v.extend(argv(&["--storage-driver", "overlay", "--events-backend", "none", "--cgroup-manager", "cgroupfs"]));
    v.extend(argv(args));
    v
}

impl Cx {
    /// Loads the image into the pull registry (with skopeo) and into the stores pushes start
    /// from: `strata load`, and podman's when podman is compared.
    pub fn new(strata: PathBuf, image: Image, scratch: PathBuf, docker: bool, with_podman: bool) -> Result<Cx> {
        let source = Registry::start(&scratch.join("source-registry"))?;
        let dest = format!("docker://{}", source.image());
        run(&argv(&["skopeo", "copy", "-q", "--dest-tls-verify=false", &format!("oci:{}", image.oci_ref()), &dest]))
            .context("loading the pull registry")?;
        let docker = if docker {
            {
                super::reset_dir(&scratch.join("dockerd"))?;
                Some(Dockerd::start(&scratch.join("dockerd"), Some(&source.host()))?)
            }
        } else {
            None
        };
        let strata_src = scratch.join("strata-src");
        super::reset_dir(&strata_src)?;
        let load = [strata.display().to_string(), "--root".into(), strata_src.display().to_string()];
        let out = run(&[&load[..], &argv(&["load", "-q", "-i"]), &[image.dir.display().to_string()]].concat())?;
        let loaded =
            out.lines().find_map(|l| l.strip_prefix("Loaded image: ")).context("strata load named no image")?;
        let strata_src = (strata_src, loaded.trim().to_string());
        let podman_src = if with_podman {
            let dir = scratch.join("podman-src");
            super::reset_dir(&dir)?;
            let out = run(&podman(&dir, &["pull", "-q", &format!("oci:{}", image.oci_ref())]))?;
            let id = out.lines().last().context("podman pull printed no id")?.trim().to_string();
            Some((dir, id))
        } else {
            None
        };
        Ok(Cx { strata, image, scratch, source, docker, strata_src, podman_src })
    }

    fn strata(&self, root: &Path, args: &[&str]) -> Vec<String> {
        let mut v = vec![self.strata.display().to_string(), "--root".into(), root.display().to_string()];
        v.extend(argv(args));
        v
    }

    /// Runs `argv` timed, its output in a log; an error with the log's end unless it succeeds.
    fn timed(&self, argv: &[String]) -> Result<Sample> {
        let rss = self.scratch.join("time.out");
        let log = self.scratch.join("command.log");
        let out = File::create(&log)?;
        let mut c = Command::new("/usr/bin/time");
        c.args(["-f", "%M", "-o"]).arg(&rss).args(argv);
        c.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let started = Instant::now();
        let status = c.status().context("starting /usr/bin/time")?;
        let secs = started.elapsed().as_secs_f64();
        if !status.success() {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("`{}` failed ({status}):\n{}", argv.join(" "), tail.join("\n"));
        }
        let kib: f64 =
            fs::read_to_string(&rss)?.lines().last().unwrap_or("").trim().parse().context("GNU time's %M")?;
        Ok(Sample { secs, rss: kib * 1024.0 })
    }

    /// A cold pull by `tool` into an empty destination.
    pub fn pull(&self, tool: &str) -> Result<Sample> {
        let dest = self.scratch.join("dest");
        super::reset_dir(&dest)?;
        let name = self.source.image();
        let sample = match tool {
            "strata" => {
                let root = dest.join("store");
                drop_caches()?;
                let s = self.timed(&self.strata(&root, &["pull", "-q", &name]))?;
                for d in &self.image.diff_ids {
                    let layer = root.join("layers").join(d.trim_start_matches("sha256:"));
                    ensure!(layer.is_dir(), "strata pull: no unpacked layer {}", layer.display());
                }
                s
            }
            "podman" => {
                drop_caches()?;
                let s = self.timed(&podman(&dest, &["pull", "-q", "--tls-verify=false", &name]))?;
                let layers = run(&podman(&dest, &["image", "inspect", "--format", "{{json .RootFS.Layers}}", &name]))?;
                self.check_diff_ids("podman", &layers)?;
                s
            }
            "docker" => {
                let d = self.docker.as_ref().context("no dockerd")?;
                drop_caches()?;
                let s = self.timed(&d.cli(&["pull", "-q", &name]))?;
                let layers = run(&d.cli(&["image", "inspect", "--format", "{{json .RootFS.Layers}}", &name]))?;
                self.check_diff_ids("docker", &layers)?;
                run(&d.cli(&["rmi", &name]))?;
                run(&d.cli(&["image", "prune", "-af"]))?;
                s
            }
            "skopeo+umoci" => {
                let oci = format!("{}:{}", dest.join("oci").display(), super::image::REF);
                let bundle = dest.join("bundle").display().to_string();
                drop_caches()?;
                let a = self.timed(&argv(&[
                    "skopeo",
                    "copy",
                    "-q",
                    "--src-tls-verify=false",
                    &format!("docker://{name}"),
                    &format!("oci:{oci}"),
                ]))?;
                let b = self.timed(&argv(&["umoci", "unpack", "--image", &oci, &bundle]))?;
                let rootfs = dest.join("bundle/rootfs");
                ensure!(rootfs.join("usr/bin/helper-hard").is_file(), "umoci unpack: no usr/bin/helper-hard");
                ensure!(!rootfs.join("usr/share/bench/d000/f00000.txt").exists(), "umoci unpack: whiteout not applied");
                Sample { secs: a.secs + b.secs, rss: a.rss.max(b.rss) }
            }
            other => bail!("no pull for {other}"),
        };
        super::reset_dir(&dest)?;
        Ok(sample)
    }

    /// A push by `tool` into a fresh, empty registry.
    pub fn push(&self, tool: &str) -> Result<Sample> {
        let reg = Registry::start(&self.scratch.join("push-registry"))?;
        let name = reg.image();
        let dest = format!("docker://{name}");
        let sample = match tool {
            "strata" => {
                let (src, loaded) = &self.strata_src;
                run(&self.strata(src, &["tag", loaded, &name]))?;
                drop_caches()?;
                let s = self.timed(&self.strata(src, &["push", "-q", &name]));
                run(&self.strata(src, &["rmi", &name]))?;
                s?
            }
            "skopeo" => {
                drop_caches()?;
                let src = format!("oci:{}", self.image.oci_ref());
                self.timed(&argv(&["skopeo", "copy", "-q", "--dest-tls-verify=false", &src, &dest]))?
            }
            "podman" => {
                let (dir, id) = self.podman_src.as_ref().context("no podman store")?;
                drop_caches()?;
                self.timed(&podman(dir, &["push", "-q", "--tls-verify=false", id, &dest]))?
            }
            other => bail!("no push for {other}"),
        };
        let config = run(&argv(&["skopeo", "inspect", "--tls-verify=false", "--config", &dest]))?;
        let config: serde_json::Value = serde_json::from_str(&config)?;
        self.check_diff_ids(&format!("{tool} push"), &config["rootfs"]["diff_ids"].to_string())?;
        let dir = reg.dir.clone();
        drop(reg);
        super::reset_dir(&dir)?;
        Ok(sample)
    }

    /// Errors unless `json` is the image's list of diff_ids.
    fn check_diff_ids(&self, who: &str, json: &str) -> Result<()> {
        let got: Vec<String> = serde_json::from_str(json.trim()).with_context(|| format!("{who}: {json}"))?;
        ensure!(got == self.image.diff_ids, "{who}: diff_ids {got:?}, expected {:?}", self.image.diff_ids);
        Ok(())
    }
}
