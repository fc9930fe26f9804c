//! Commit and unpack throughput: `strata commit` of a container whose upper dir holds a big
//! layer, against `tar czf` and `umoci repack` of the same tree; `strata load` of the image
//! saved from it, against `tar xzf` of its layer blob and `umoci unpack`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::systems::reset_dir;
use super::work::{Cx, timed};

/// A store with one stopped container whose upper dir holds the payload; a umoci layout with
/// an empty image to repack onto; the saved image to unpack.
pub struct Tools {
    store: PathBuf,
    upper: PathBuf,
    payload: PathBuf,
    umoci: PathBuf,
    saved: PathBuf,
    scratch: PathBuf,
    strata: PathBuf,
    commits: std::cell::Cell<u32>,
}

impl Tools {
    /// Sets everything up (not timed).
    pub fn new(cx: &Cx) -> Result<Tools> {
        let (files, bytes) = cx.sizes.payload;
        let payload = cx.cache.payload(files, bytes)?;
        let base = cx.env.scratch.join("tools");
        reset_dir(&base)?;
        let store = base.join("store");
        let t = Tools {
            store: store.clone(),
            upper: PathBuf::new(),
            payload,
            umoci: base.join("umoci"),
            saved: base.join("saved"),
            scratch: base.join("scratch"),
            strata: cx.env.strata.clone(),
            commits: Default::default(),
        };
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images/oci-multi");
        t.strata(&store, &["load", "-i"], Some(&fixture))?;
        t.strata(&store, &["run", "--name", "bench", "oci-multi", "true"], None)?;
        let ctr = fs::read_dir(store.join("containers"))?.flatten().find(|e| e.path().join("upper").is_dir());
        let upper = ctr.context("no container made")?.path().join("upper");
        super::run(Command::new("cp").arg("-a").arg(t.payload.join(".")).arg(&upper))?;
        super::run(Command::new("umoci").args(["init", "--layout"]).arg(&t.umoci))?;
        super::run(Command::new("umoci").args(["new", "--image"]).arg(format!("{}:empty", t.umoci.display())))?;
        Ok(Tools { upper, ..t })
    }

    fn strata(&self, store: &Path, args: &[&str], path: Option<&Path>) -> Result<()> {
        let mut c = Command::new(&self.strata);
        c.env("STRATA_ROOT", store).args(args);
        if let Some(p) = path {
            c.arg(p);
        }
        super::run(&mut c)
    }

    /// `strata commit` of the container (the image is removed again, not timed).
    pub fn strata_commit(&self) -> Result<f64> {
        let n = self.commits.get();
        self.commits.set(n + 1);
        let tag = format!("bench:{n}");
        let t = timed(|| self.strata(&self.store, &["commit", "bench", &tag], None))?;
        // The last commit stays: it is the image saved for the unpack workloads.
        if n > 0 {
            self.strata(&self.store, &["rmi", &format!("bench:{}", n - 1)], None)?;
            self.strata(&self.store, &["prune"], None)?;
        }
        Ok(t)
    }

    /// `tar czf` of the upper dir into a file.
    pub fn tar_czf(&self) -> Result<f64> {
        reset_dir(&self.scratch)?;
        let out = self.scratch.join("layer.tar.gz");
        timed(|| super::run(Command::new("tar").arg("czf").arg(&out).arg("-C").arg(&self.upper).arg(".")))
    }

    /// `umoci repack` of a bundle holding the payload, onto an empty image.
    pub fn umoci_repack(&self) -> Result<f64> {
        reset_dir(&self.scratch)?;
        let bundle = self.scratch.join("bundle");
        let layout = self.umoci.display().to_string();
        super::run(Command::new("umoci").args(["unpack", "--image", &format!("{layout}:empty")]).arg(&bundle))?;
        super::run(Command::new("cp").arg("-a").arg(self.payload.join(".")).arg(bundle.join("rootfs")))?;
        rustix::fs::sync();
        let n = self.commits.get();
        timed(|| super::run(Command::new("umoci").args(["repack", "--image", &format!("{layout}:r{n}")]).arg(&bundle)))
    }

    /// Saves the last committed image (committing one if none was) as an OCI layout for the
    /// unpack workloads.
    pub fn save(&self) -> Result<()> {
        if self.commits.get() == 0 {
            self.strata_commit()?;
        }
        let tag = format!("bench:{}", self.commits.get() - 1);
        reset_dir(&self.saved)?;
        fs::remove_dir(&self.saved)?;
        let out = self.saved.display().to_string();
        self.strata(&self.store, &["save", "--format", "oci-dir", "-o", &out, &tag], None)
    }

    /// `strata load` of the saved image into an empty store.
    pub fn strata_load(&self) -> Result<f64> {
        reset_dir(&self.scratch)?;
        let store = self.scratch.join("store");
        timed(|| self.strata(&store, &["load", "-i"], Some(&self.saved)))
    }

    /// `umoci unpack` of the saved image.
    pub fn umoci_unpack(&self) -> Result<f64> {
        reset_dir(&self.scratch)?;
        let bundle = self.scratch.join("bundle");
        let image = format!("{}:{}", self.saved.display(), self.saved_tag()?);
        timed(|| super::run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle)))
    }

    /// `tar xzf` of the payload layer blob (the biggest blob of the saved image).
    pub fn tar_xzf(&self) -> Result<f64> {
        reset_dir(&self.scratch)?;
        let blob = self.biggest_blob()?;
        let out = self.scratch.join("rootfs");
        fs::create_dir_all(&out)?;
        timed(|| super::run(Command::new("tar").arg("xzf").arg(&blob).arg("-C").arg(&out)))
    }

    fn saved_tag(&self) -> Result<String> {
        let index: serde_json::Value = serde_json::from_slice(&fs::read(self.saved.join("index.json"))?)?;
        let name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .context("the saved layout names no image")?;
        Ok(name.to_string())
    }

    fn biggest_blob(&self) -> Result<PathBuf> {
        let mut best: Option<(u64, PathBuf)> = None;
        for e in fs::read_dir(self.saved.join("blobs/sha256"))?.flatten() {
            let len = e.metadata()?.len();
            if best.as_ref().is_none_or(|(l, _)| len > *l) {
                best = Some((len, e.path()));
            }
        }
        match best {
            Some((_, p)) => Ok(p),
            None => bail!("no blobs in {}", self.saved.display()),
        }
    }
}
