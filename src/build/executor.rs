//! Running a parsed Dockerfile: stages (those `--target` needs), one step per instruction,
//! each step's result an image in the store (untagged), reused from the cache when its key
//! matches; output as docker's classic builder prints it.
//!
//! History convention: `created_by` is the instruction after expansion as BuildKit writes it
//! (`RUN /bin/sh -c make`, `COPY src /app`, `CMD ["sh"]`), `comment` is `strata build`;
//! config-only steps have `empty_layer: true`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::base::{self, PullPolicy};
use super::cache::{self, Cache};
use super::config;
use super::context::{Context, Source};
use super::files::{self, Target};
use super::merged;
use super::parser::{self, Instruction};
use super::remote;
use super::shell::Lexer;
use super::sums::Sums;
use crate::container::config::Overrides;
use crate::container::create::{self, Request};
use crate::container::start::{self, Mode};
use crate::image::commit::{self, Layer};
use crate::image::diff;
use crate::image::digest::Digest;
use crate::image::lower::Lowers;
use crate::image::pack::Roots;
use crate::image::progress::{Progress, ProgressMode};
use crate::image::reference::Name;
use crate::image::source::Compression;
use crate::image::spec::{Descriptor, MediaType};
use crate::image::store::{self, Image, Store};

/// What `strata build` was asked for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The Dockerfile's text.
    pub dockerfile: String,
    /// `-t` names.
    pub tags: Vec<Name>,
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--label K=V`.
    pub labels: Vec<(String, String)>,
    /// `--network` for RUN.
    pub network: String,
    /// `-q`.
    pub quiet: bool,
    /// Where base images come from (`--pull`, the registry flags).
    pub pull: PullPolicy,
}

/// A build that failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse.
    #[error("Dockerfile parse error {0}")]
    Parse(#[from] parser::ParseError),
    /// A step failed.
    #[error("Step {step}/{total} (Dockerfile line {line}) {instruction}: {reason}")]
    Step {
        /// The step number.
        step: usize,
        /// Steps in all.
        total: usize,
        /// Its first line in the Dockerfile.
        line: usize,
        /// The instruction's keyword.
        instruction: String,
        /// What failed.
        reason: String,
    },
    /// Anything else (the target, the store).
    #[error("{0}")]
    Other(String),
}

type Fail = String;

/// COPY/ADD sources, each flagged when Strata wrote it (a heredoc, a URL's download), and
/// `NAME DIGEST` of those.
type Gathered = (Vec<(Source, bool)>, Vec<String>, Vec<(String, PathBuf)>);

/// The args every build knows without an `ARG` (docker's predefined proxy args).
const PREDEFINED: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// A stage being built.
struct Stage {
    name: Option<String>,
    image: Image,
    config: Map<String, Value>,
    author: Option<String>,
    args: BTreeMap<String, Option<String>>,
    cmd_set: bool,
}

/// The layer a step makes, over the layers so far.
enum StepLayer<'l> {
    /// A RUN container's upper dir (removed with the container).
    Container(&'l Path, &'l Lowers),
    /// An upper dir COPY, ADD or WORKDIR wrote: it becomes the layer itself when it can.
    Written(tempfile::TempDir, &'l Lowers),
}

/// A build in progress.
pub struct Builder<'a> {
    root: &'a Path,
    store: Store,
    ctx: &'a Context,
    opts: &'a Options,
    cache: Cache,
    escape: char,
    out: &'a mut dyn Write,
    done: Vec<(Option<String>, Image)>,
    step: usize,
    total: usize,
    /// Threads removing the upper dirs of committed steps while the next steps run.
    removing: Vec<std::thread::JoinHandle<()>>,
    /// Content sums of context files, kept for the next build.
    sums: Sums,
}

impl Drop for Builder<'_> {
    /// The build ends when its temporary dirs are gone.
    fn drop(&mut self) {
        if let Err(e) = self.sums.save() {
            log::warn!("build cache: saving the sums of the context's files: {e}");
        }
        for t in self.removing.drain(..) {
            let _ = t.join();
        }
    }
}

/// Builds; returns the new image's id.
pub fn build(root: &Path, ctx: &Context, opts: &Options, out: &mut dyn Write) -> Result<Digest, BuildError> {
    let df = parser::parse(&opts.dockerfile)?;
    let store = Store::open(root).map_err(|e| BuildError::Other(e.to_string()))?;
    let first_from = df.instructions.iter().position(|i| i.command() == "from");
    let Some(first_from) = first_from else { return Err(BuildError::Other("no FROM instruction".into())) };
    let stages = split_stages(&df.instructions[first_from..]);
    let last = match &opts.target {
        Some(t) => stages
            .iter()
            .position(|s| stage_name(s).as_deref() == Some(&t.to_ascii_lowercase()))
            .ok_or_else(|| BuildError::Other(format!("target stage {t:?} could not be found")))?,
        None => stages.len() - 1,
    };
    let needed = needed_stages(&stages, last);
    let total = needed.iter().map(|i| stages[*i].len()).sum();
    let mut b = Builder {
        root,
        store,
        ctx,
        opts,
        cache: Cache::new(root),
        escape: df.escape,
        out,
        done: Vec::new(),
        step: 0,
        total,
        removing: Vec::new(),
        sums: Sums::load(cache::dir(root).join("sums")),
    };
    let meta = b.meta_args(&df.instructions[..first_from])?;
    let mut result = None;
    for (i, stage) in stages.iter().enumerate() {
        if !needed.contains(&i) {
            b.done.push((stage_name(stage), scratch()));
            continue;
        }
        let image = b.run_stage(stage, &meta)?;
        b.done.push((stage_name(stage), image.clone()));
        if i == last {
            result = Some(image);
            break;
        }
    }
    let image = result.ok_or_else(|| BuildError::Other("nothing built".into()))?;
    b.finish(image)
}

/// Splits at each FROM.
fn split_stages(ins: &[Instruction]) -> Vec<&[Instruction]> {
    let starts: Vec<usize> = ins.iter().enumerate().filter(|(_, i)| i.command() == "from").map(|(n, _)| n).collect();
    starts.iter().enumerate().map(|(k, s)| &ins[*s..starts.get(k + 1).copied().unwrap_or(ins.len())]).collect()
}

/// `FROM x AS name` → `name` (lower case).
fn stage_name(stage: &[Instruction]) -> Option<String> {
    let w = &stage[0].args.words;
    (w.len() == 3 && w[1].eq_ignore_ascii_case("as")).then(|| w[2].to_ascii_lowercase())
}

/// The stages `last` depends on (FROM and COPY --from naming a stage), itself included.
fn needed_stages(stages: &[&[Instruction]], last: usize) -> BTreeSet<usize> {
    let index_of = |r: &str| {
        let r = r.to_ascii_lowercase();
        r.parse::<usize>()
            .ok()
            .filter(|i| *i < last)
            .or_else(|| stages.iter().position(|s| stage_name(s).as_deref() == Some(&r)))
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![last];
    while let Some(i) = todo.pop() {
        if !needed.insert(i) {
            continue;
        }
        let stage = stages[i];
        let mut refs: Vec<String> = stage[0].args.words.first().cloned().into_iter().collect();
        refs.extend(
            stage.iter().flat_map(|ins| ins.flags.iter()).filter_map(|f| f.strip_prefix("--from=").map(str::to_string)),
        );
        todo.extend(refs.iter().filter_map(|r| index_of(r)).filter(|j| *j < i));
    }
    needed
}

/// An empty image (`FROM scratch`).
fn scratch() -> Image {
    let config_raw = serde_json::to_vec(&serde_json::json!({
        "architecture": crate::image::spec::host_architecture(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": []
    }))
    .unwrap_or_default();
    let cdesc = Descriptor::new(MediaType::OciConfig, Digest::sha256_of(&config_raw), config_raw.len() as u64);
    let manifest = crate::image::spec::ImageManifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        config: cdesc,
        layers: Vec::new(),
        annotations: BTreeMap::new(),
    };
    let raw = serde_json::to_vec(&manifest).unwrap_or_default();
    let descriptor = Descriptor::new(MediaType::OciManifest, Digest::sha256_of(&raw), raw.len() as u64);
    let config = serde_json::from_slice(&config_raw).unwrap_or_else(|_| crate::image::spec::ImageConfig {
        created: None,
        author: None,
        architecture: String::new(),
        os: "linux".into(),
        config: None,
        rootfs: crate::image::spec::RootFs::default(),
        history: Vec::new(),
    });
    Image { descriptor, manifest, config, config_raw, names: Vec::new() }
}

impl Builder<'_> {
    fn say(&mut self, line: &str) {
        if !self.opts.quiet {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
    }

    fn fail(&self, ins: &Instruction, reason: impl std::fmt::Display) -> BuildError {
        BuildError::Step {
            step: self.step,
            total: self.total,
            line: ins.lines.0,
            instruction: ins.keyword.to_ascii_uppercase(),
            reason: reason.to_string(),
        }
    }

    /// The ARGs before the first FROM, with `--build-arg` values.
    fn meta_args(&self, ins: &[Instruction]) -> Result<BTreeMap<String, String>, BuildError> {
        let mut meta = BTreeMap::new();
        for i in ins {
            if i.command() != "arg" {
                return Err(BuildError::Other(format!("line {}: {} before the first FROM", i.lines.0, i.keyword)));
            }
            for w in &i.args.words {
                let (k, v) =
                    self.arg_value(w, &meta).map_err(|e| BuildError::Other(format!("line {}: {e}", i.lines.0)))?;
                if let Some(v) = v {
                    meta.insert(k, v);
                }
            }
        }
        Ok(meta)
    }

    /// `NAME[=default]` → the name and its value (the build arg's, else the default expanded).
    fn arg_value(&self, word: &str, vars: &BTreeMap<String, String>) -> Result<(String, Option<String>), Fail> {
        let (k, default) = match word.split_once('=') {
            Some((k, d)) => (k.to_string(), Some(Lexer::new(self.escape).word(d, vars).map_err(|e| e.to_string())?)),
            None => (word.to_string(), None),
        };
        Ok((k.clone(), self.opts.build_args.get(&k).cloned().or(default)))
    }

    fn run_stage(&mut self, stage: &[Instruction], meta: &BTreeMap<String, String>) -> Result<Image, BuildError> {
        let from = &stage[0];
        self.step += 1;
        self.say(&format!("Step {}/{} : {}", self.step, self.total, from.original.trim()));
        let base_ref = Lexer::new(self.escape).word(from.args.words.first().map(String::as_str).unwrap_or(""), meta);
        let base_ref = base_ref.map_err(|e| self.fail(from, e))?;
        if from.flags.iter().any(|f| !f.starts_with("--platform=")) {
            return Err(self.fail(from, format!("unsupported flag {}", from.flags.join(" "))));
        }
        let platform = match from.flags.iter().find_map(|f| f.strip_prefix("--platform=")) {
            Some(p) => Some(Lexer::new(self.escape).word(p, meta).map_err(|e| self.fail(from, e))?),
            None => None,
        };
        let image = self.base(&base_ref, platform.as_deref()).map_err(|e| self.fail(from, e))?;
        self.say(&format!(" ---> {}", image.id().short()));
        let config = match &image.config.config {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let mut args = BTreeMap::new();
        for p in PREDEFINED {
            if let Some(v) = self.opts.build_args.get(*p) {
                args.insert(p.to_string(), Some(v.clone()));
            }
        }
        let mut st = Stage { name: stage_name(stage), image, config, author: None, args, cmd_set: false };
        let triggers = config::strings(st.config.get("OnBuild"));
        if !triggers.is_empty() {
            st.config.remove("OnBuild");
            self.say(&format!(
                "# Executing {} build trigger{}",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            for t in triggers {
                let df = parser::parse(&t).map_err(|e| self.fail(from, format!("ONBUILD trigger {t:?}: {e}")))?;
                for mut ins in df.instructions {
                    ins.lines = from.lines;
                    self.instruction(&mut st, &ins, meta)?;
                }
            }
        }
        let _ = &st.name;
        for ins in &stage[1..] {
            self.step += 1;
            self.say(&format!("Step {}/{} : {}", self.step, self.total, ins.original.trim()));
            self.instruction(&mut st, ins, meta)?;
        }
        Ok(st.image)
    }

    /// The image FROM names: an earlier stage, `scratch`, or an image of the store or a
    /// registry.
    fn base(&self, name: &str, platform: Option<&str>) -> Result<Image, Fail> {
        let lower = name.to_ascii_lowercase();
        if let Some((_, img)) = self.done.iter().rev().find(|(n, _)| n.as_deref() == Some(lower.as_str())) {
            return Ok(img.clone());
        }
        if lower == "scratch" {
            return Ok(scratch());
        }
        base::resolve(&self.store, name, platform, &self.opts.pull, self.opts.quiet)
    }

    /// The variables an instruction expands with: the stage's args, its Env over them.
    fn vars(&self, st: &Stage) -> BTreeMap<String, String> {
        let mut v: BTreeMap<String, String> =
            st.args.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
        for e in config::env(&st.config) {
            if let Some((k, val)) = e.split_once('=') {
                v.insert(k.to_string(), val.to_string());
            }
        }
        v
    }

    fn instruction(
        &mut self,
        st: &mut Stage,
        ins: &Instruction,
        meta: &BTreeMap<String, String>,
    ) -> Result<(), BuildError> {
        let cmd = ins.command();
        let vars = self.vars(st);
        let lex = Lexer::new(self.escape);
        let expand = |w: &str| lex.expand(w, &vars).map_err(|e| self.fail(ins, e));
        let word_list = |ws: &[String]| -> Result<(Vec<String>, BTreeSet<String>), BuildError> {
            let mut out = Vec::new();
            let mut used = BTreeSet::new();
            for w in ws {
                let e = expand(w)?;
                out.push(e.word);
                used.extend(e.used);
            }
            Ok((out, used))
        };
        let allowed_flags: &[&str] = match cmd.as_str() {
            "copy" => &["--from", "--chown", "--chmod", "--link"],
            "add" => &["--chown", "--chmod", "--link", "--checksum"],
            "healthcheck" => &["--interval", "--timeout", "--start-period", "--start-interval", "--retries"],
            _ => &[],
        };
        if let Some(f) = ins.flags.iter().find(|f| !allowed_flags.contains(&f.split('=').next().unwrap_or(""))) {
            let name = f.split('=').next().unwrap_or(f);
            return Err(self.fail(ins, format!("{} {name} is not supported", ins.keyword.to_ascii_uppercase())));
        }
        match cmd.as_str() {
            "run" => return self.run(st, ins),
            "copy" | "add" => return self.copy(st, ins, &vars),
            "from" => return Err(self.fail(ins, "FROM inside a stage")),
            "arg" => {
                for w in &ins.args.words {
                    let (k, v) = self.arg_value(w, &vars).map_err(|e| self.fail(ins, e))?;
                    let v = v.or_else(|| meta.get(&k).cloned());
                    st.args.insert(k, v);
                }
                return self.config_step(st, ins, format!("ARG {}", ins.args.words.join(" ")), BTreeSet::new());
            }
            "maintainer" => {
                let (w, used) = word_list(&ins.args.words)?;
                st.author = Some(w.join(" "));
                return self.config_step(st, ins, format!("MAINTAINER {}", w.join(" ")), used);
            }
            _ => {}
        }
        let mut used = BTreeSet::new();
        let text = match cmd.as_str() {
            "cmd" | "entrypoint" | "shell" => {
                let argv = self.command_of(st, ins);
                if cmd == "shell" && !ins.args.json {
                    return Err(self.fail(ins, "SHELL requires the JSON form"));
                }
                let key = match cmd.as_str() {
                    "cmd" => {
                        st.cmd_set = true;
                        "Cmd"
                    }
                    "entrypoint" => {
                        if !st.cmd_set {
                            st.config.remove("Cmd");
                        }
                        "Entrypoint"
                    }
                    _ => "Shell",
                };
                config::set_list(&mut st.config, key, &argv);
                format!("{} {}", cmd.to_ascii_uppercase(), serde_json::to_string(&argv).unwrap_or_default())
            }
            "env" | "label" => {
                let mut pairs = Vec::new();
                for t in ins.args.words.chunks(3) {
                    let k = expand(&t[0])?;
                    let v = expand(t.get(1).map(String::as_str).unwrap_or(""))?;
                    used.extend(k.used);
                    used.extend(v.used);
                    pairs.push((k.word, v.word));
                }
                if pairs.is_empty() {
                    return Err(self.fail(ins, format!("{} needs at least one argument", cmd.to_ascii_uppercase())));
                }
                for (k, v) in &pairs {
                    if cmd == "env" {
                        config::set_env(&mut st.config, k, v);
                    } else {
                        config::add_to(&mut st.config, "Labels", [(k.clone(), Value::String(v.clone()))]);
                    }
                }
                let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} {}", cmd.to_ascii_uppercase(), shown.join(" "))
            }
            "expose" => {
                let (w, u) = word_list(&ins.args.words)?;
                used = u;
                let words: Vec<String> = w.iter().flat_map(|s| s.split_whitespace().map(str::to_string)).collect();
                let ports =
                    config::ports(&words).ok_or_else(|| self.fail(ins, format!("invalid port in {words:?}")))?;
                config::add_to(
                    &mut st.config,
                    "ExposedPorts",
                    ports.iter().map(|p| (p.clone(), Value::Object(Map::new()))),
                );
                format!("EXPOSE {}", ports.join(" "))
            }
            "volume" => {
                let (w, u) = word_list(&ins.args.words)?;
                used = u;
                if w.is_empty() || w.iter().any(|v| v.is_empty()) {
                    return Err(self.fail(ins, "VOLUME needs a path"));
                }
                config::add_to(&mut st.config, "Volumes", w.iter().map(|p| (p.clone(), Value::Object(Map::new()))));
                format!("VOLUME {}", serde_json::to_string(&w).unwrap_or_default())
            }
            "user" | "stopsignal" | "workdir" => {
                let e = expand(ins.args.words.first().map(String::as_str).unwrap_or(""))?;
                used = e.used;
                if e.word.is_empty() {
                    return Err(self.fail(ins, format!("{} needs an argument", cmd.to_ascii_uppercase())));
                }
                let (key, value) = match cmd.as_str() {
                    "user" => ("User", e.word),
                    "stopsignal" => ("StopSignal", e.word),
                    _ => ("WorkingDir", join_workdir(&st.config, &e.word)),
                };
                st.config.insert(key.into(), Value::String(value.clone()));
                if cmd == "workdir" {
                    return self.workdir(st, ins, value, used);
                }
                format!("{} {value}", cmd.to_ascii_uppercase())
            }
            "healthcheck" => {
                let shell_form = !ins.args.json;
                let h = config::healthcheck(&ins.flags, &ins.args.words, ins.args.json, shell_form)
                    .map_err(|e| self.fail(ins, e))?;
                st.config.insert("Healthcheck".into(), h);
                format!(
                    "HEALTHCHECK {}",
                    ins.original.split_once(char::is_whitespace).map(|x| x.1.trim()).unwrap_or("")
                )
            }
            "onbuild" => {
                let Some(sub) = &ins.sub else { return Err(self.fail(ins, "ONBUILD needs an instruction")) };
                if matches!(sub.command().as_str(), "onbuild" | "from" | "maintainer") {
                    return Err(self.fail(
                        ins,
                        format!("{} isn't allowed as an ONBUILD trigger", sub.keyword.to_ascii_uppercase()),
                    ));
                }
                let mut list = config::strings(st.config.get("OnBuild"));
                list.push(sub.original.trim().to_string());
                config::set_list(&mut st.config, "OnBuild", &list);
                format!("ONBUILD {}", sub.original.trim())
            }
            _ => return Err(self.fail(ins, format!("unknown instruction: {}", ins.keyword.to_ascii_uppercase()))),
        };
        self.config_step(st, ins, text, used)
    }

    /// CMD/ENTRYPOINT/RUN's argv: the JSON form as given, or the shell form under SHELL.
    fn command_of(&self, st: &Stage, ins: &Instruction) -> Vec<String> {
        if ins.args.json {
            return ins.args.words.clone();
        }
        let mut shell = config::strings(st.config.get("Shell"));
        if shell.is_empty() {
            shell = vec!["/bin/sh".into(), "-c".into()];
        }
        shell.push(ins.args.words.join(" "));
        shell
    }

    /// The values of the args named in `used` (and those RUN sees), for a cache key.
    fn used_args(&self, st: &Stage, used: &BTreeSet<String>) -> String {
        st.args
            .iter()
            .filter(|(k, v)| used.contains(*k) && v.is_some())
            .map(|(k, v)| format!("{k}={}", v.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The cache key of a step that takes no files: parent, text, the args it uses.
    fn step_key(&self, st: &Stage, text: &str, used: &BTreeSet<String>) -> String {
        cache::key(&st.image.descriptor.digest.to_string(), &format!("{text}\n{}", self.used_args(st, used)), None)
    }

    /// Looks `key` up; on a hit, takes the cached image.
    fn cached(&mut self, st: &mut Stage, key: &str) -> bool {
        if self.opts.no_cache {
            return false;
        }
        match self.cache.get(&self.store, key) {
            Some(img) => {
                self.say(" ---> Using cache");
                self.say(&format!(" ---> {}", img.id().short()));
                st.image = img;
                true
            }
            None => false,
        }
    }

    fn config_step(
        &mut self,
        st: &mut Stage,
        ins: &Instruction,
        text: String,
        used: BTreeSet<String>,
    ) -> Result<(), BuildError> {
        let key = self.step_key(st, &text, &used);
        if self.cached(st, &key) {
            return Ok(());
        }
        self.commit(st, None, &text, &key).map_err(|e| self.fail(ins, e))
    }

    /// Stores the stage's next image (with `layer`, or config only), caches it, prints its id.
    fn commit(&mut self, st: &mut Stage, layer: Option<StepLayer<'_>>, text: &str, key: &str) -> Result<(), Fail> {
        self.store_step(st, layer, text, key)?;
        self.say(&format!(" ---> {}", st.image.id().short()));
        Ok(())
    }

    /// Stores the stage's next image (with `layer`, or config only) and caches it.
    fn store_step(&mut self, st: &mut Stage, layer: Option<StepLayer<'_>>, text: &str, key: &str) -> Result<(), Fail> {
        let s = |e: &dyn std::fmt::Display| e.to_string();
        let lock = self.store.write().map_err(|e| s(&e))?;
        let mut leftover = None;
        let layer: Option<Layer> = match layer {
            Some(l) => {
                let (upper, lowers, written) = match l {
                    StepLayer::Container(p, lowers) => (p.to_path_buf(), lowers, None),
                    StepLayer::Written(d, lowers) => (d.path().to_path_buf(), lowers, Some(d)),
                };
                let plan = diff::plan(&upper, lowers).map_err(|e| s(&e))?;
                let fd = crate::sys::fd::open_user_dir(&upper).map_err(|e| format!("{}: {e}", upper.display()))?;
                let roots = Roots { upper: fd.as_fd(), lowers };
                let made = match written {
                    Some(d) if commit::is_upper_as_is(&plan) && crate::image::owners::is_privileged() => {
                        commit::adopt_layer(&lock, &plan, &roots, d)
                    }
                    other => {
                        leftover = other;
                        commit::write_layer(&lock, &plan, &roots, Compression::Gzip, &mut |_| {})
                    }
                };
                Some(made.map_err(|e| s(&e))?)
            }
            None => None,
        };
        let opts = commit::Options {
            author: st.author.clone(),
            message: Some("strata build".into()),
            created_by: text.to_string(),
            config: Some(st.config.clone()),
            ..Default::default()
        };
        let raw = commit::new_config(&st.image, layer.as_ref().map(|l| &l.diff_id), &opts).map_err(|e| s(&e))?;
        let (_, mdesc) = commit::store_image(&lock, &st.image, layer.as_ref(), &raw, &[]).map_err(|e| s(&e))?;
        st.image = self.store.load_image(&mdesc).map_err(|e| s(&e))?;
        drop(lock);
        if let Some(d) = leftover {
            self.discard(d);
        }
        self.cache.put(key, &mdesc.digest).map_err(|e| s(&e))?;
        Ok(())
    }

    /// The image's layer dirs, top first.
    fn lower_dirs(&self, img: &Image) -> Vec<PathBuf> {
        img.config.rootfs.diff_ids.iter().rev().map(|d| self.store.layer_path(d)).collect()
    }

    /// Removes `dir` in another thread (a COPY of many files leaves as many to unlink).
    fn discard(&mut self, dir: tempfile::TempDir) {
        self.removing.push(std::thread::spawn(move || drop(dir)));
    }

    /// A new upper dir under `ROOT/build-tmp/` (the store's own `tmp/` is emptied by writers).
    fn upper(&self) -> Result<tempfile::TempDir, Fail> {
        let tmp = self.root.join("build-tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
        tempfile::Builder::new().prefix("build-").tempdir_in(&tmp).map_err(|e| e.to_string())
    }

    /// WORKDIR: config, plus a layer with the directory when the image lacks it.
    fn workdir(
        &mut self,
        st: &mut Stage,
        ins: &Instruction,
        dir: String,
        used: BTreeSet<String>,
    ) -> Result<(), BuildError> {
        let text = format!("WORKDIR {dir}");
        let dirs = self.lower_dirs(&st.image);
        let t = Target { upper: Path::new("/"), lowers: &dirs, owner: None, mode: None };
        if t.is_dir_in_image(&dir) {
            return self.config_step(st, ins, text, used);
        }
        let key = self.step_key(st, &text, &used);
        if self.cached(st, &key) {
            return Ok(());
        }
        let upper = self.upper().map_err(|e| self.fail(ins, e))?;
        let t = Target { upper: upper.path(), lowers: &dirs, owner: None, mode: None };
        let made = files::make_dir(&dir, &t).map_err(|e| self.fail(ins, e));
        made?;
        let lowers = Lowers::open(&dirs).map_err(|e| self.fail(ins, e))?;
        self.commit(st, Some(StepLayer::Written(upper, &lowers)), &text, &key).map_err(|e| self.fail(ins, e))
    }
}

/// A WORKDIR relative to the current one.
fn join_workdir(config: &Map<String, Value>, dir: &str) -> String {
    if dir.starts_with('/') {
        return dir.to_string();
    }
    let cur = config.get("WorkingDir").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("/");
    format!("{}/{dir}", cur.trim_end_matches('/'))
}

impl Builder<'_> {
    /// RUN's argv; for `RUN <<EOF` whose content starts with `#!`, also the script (name,
    /// content) to run from `/dev/pipes/NAME`, as BuildKit does.
    fn run_argv(&self, st: &Stage, ins: &Instruction) -> (Vec<String>, Option<(String, String)>) {
        let mut shell = config::strings(st.config.get("Shell"));
        if shell.is_empty() {
            shell = vec!["/bin/sh".into(), "-c".into()];
        }
        let only_heredoc =
            !ins.args.json && matches!(ins.args.words.as_slice(), [w] if parser::heredoc_marker(w.trim()).is_some());
        match ins.heredocs.as_slice() {
            [h] if only_heredoc => {
                let content = if h.chomp { parser::chomp(&h.content) } else { h.content.clone() };
                if content.starts_with("#!") {
                    shell.push(format!("/dev/pipes/{}", h.name));
                    return (shell, Some((h.name.clone(), content)));
                }
                shell.push(content);
                (shell, None)
            }
            [] => (self.command_of(st, ins), None),
            heredocs => {
                let mut argv = self.command_of(st, ins);
                if let Some(last) = argv.last_mut() {
                    for h in heredocs {
                        last.push_str(&format!("\n{}{}", h.content, h.name));
                    }
                    last.push('\n');
                }
                (argv, None)
            }
        }
    }

    fn run(&mut self, st: &mut Stage, ins: &Instruction) -> Result<(), BuildError> {
        let (argv, script) = self.run_argv(st, ins);
        let run_args: Vec<String> = st
            .args
            .iter()
            .filter_map(|(k, v)| Some(format!("{k}={}", v.as_ref()?)))
            .filter(|e| !config::env(&st.config).iter().any(|x| x.split('=').next() == e.split('=').next()))
            .collect();
        let text = format!(
            "RUN {}",
            if ins.args.json { serde_json::to_string(&argv).unwrap_or_default() } else { argv.join(" ") }
        );
        let key_text = if run_args.is_empty() {
            text.clone()
        } else {
            format!("|{} {} {text}", run_args.len(), run_args.join(" "))
        };
        let script_text = script.as_ref().map(|(_, content)| content.as_str());
        let key = cache::key(&st.image.descriptor.digest.to_string(), &key_text, script_text);
        if self.cached(st, &key) {
            return Ok(());
        }
        let pipes = self.upper().map_err(|e| self.fail(ins, e))?;
        let mut volumes = Vec::new();
        if let Some((name, content)) = &script {
            let path = pipes.path().join(name);
            let written = std::fs::write(&path, content)
                .and_then(|_| std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)));
            written.map_err(|e| self.fail(ins, format!("{}: {e}", path.display())))?;
            volumes.push(format!("{}:/dev/pipes:ro", pipes.path().display()));
        }
        self.run_container(st, argv, run_args, volumes, &text, &key).map_err(|e| self.fail(ins, e))
    }

    fn run_container(
        &mut self,
        st: &mut Stage,
        argv: Vec<String>,
        env: Vec<String>,
        volumes: Vec<String>,
        text: &str,
        key: &str,
    ) -> Result<(), Fail> {
        // The step's parent must be an image of the store (a FROM scratch stage's first RUN).
        if !self.store.has_blob(&st.image.descriptor.digest) {
            return Err("RUN needs a base image with a shell (FROM scratch has none)".into());
        }
        let network = if self.opts.network.is_empty() { "bridge".to_string() } else { self.opts.network.clone() };
        let overrides = Overrides { command: argv.clone(), env, network, volumes, ..Default::default() };
        let req = Request { image: st.image.id().to_string(), name: None, overrides };
        let mut c = create::create(self.root, &req).map_err(|e| e.to_string())?;
        c.command = argv.clone();
        let cleanup = |c: &crate::container::record::Container| {
            let _ = crate::container::remove::delete(self.root, c, true);
        };
        if let Err(e) = c.save(self.root) {
            cleanup(&c);
            return Err(e.to_string());
        }
        self.say(&format!(" ---> Running in {}", c.short_id()));
        let mode = if self.opts.quiet { Mode::Detached } else { Mode::Foreground };
        // Tied: if this build is killed, the step's command is killed with it.
        let code = match start::start_tied(self.root, &c, mode) {
            Ok(s) => crate::sys::ns::wait_child(s.monitor).map(crate::sys::ns::Exit::status).unwrap_or(125),
            Err(e) => {
                cleanup(&c);
                return Err(e.to_string());
            }
        };
        let code =
            crate::container::record::load(&c.dir(self.root)).ok().and_then(|r| r.state.exit_code).unwrap_or(code);
        if code != 0 {
            cleanup(&c);
            return Err(format!("The command '{}' returned a non-zero code: {code}", shell_words(&argv)));
        }
        let dirs = self.lower_dirs(&st.image);
        let committed = Lowers::open(&dirs).map_err(|e| e.to_string()).and_then(|lowers| {
            self.store_step(st, Some(StepLayer::Container(&c.upper_dir(self.root), &lowers)), text, key)
        });
        cleanup(&c);
        // Docker's order: the container goes, then the step's image is named.
        self.say(&format!("Removing intermediate container {}", c.short_id()));
        committed?;
        self.say(&format!(" ---> {}", st.image.id().short()));
        Ok(())
    }
}

fn shell_words(argv: &[String]) -> String {
    argv.join(" ")
}

impl Builder<'_> {
    fn copy(&mut self, st: &mut Stage, ins: &Instruction, vars: &BTreeMap<String, String>) -> Result<(), BuildError> {
        let cmd = ins.command();
        let lex = Lexer::new(self.escape);
        let mut words = Vec::new();
        let mut used = BTreeSet::new();
        for w in &ins.args.words {
            let e = lex.expand(w, vars).map_err(|e| self.fail(ins, e))?;
            used.extend(e.used);
            words.push(e.word);
        }
        if words.len() < 2 {
            return Err(self.fail(ins, format!("{} requires at least two arguments", cmd.to_ascii_uppercase())));
        }
        let flag =
            |name: &str| ins.flags.iter().find_map(|f| f.strip_prefix(&format!("--{name}=")).map(str::to_string));
        let owner = match flag("chown") {
            Some(o) => Some(self.owner_of(st, &o).map_err(|e| self.fail(ins, e))?),
            None => None,
        };
        let mode = match flag("chmod") {
            Some(m) => Some(
                u32::from_str_radix(&m, 8).map_err(|_| self.fail(ins, format!("--chmod={m}: octal mode expected")))?,
            ),
            None => None,
        };
        let (srcs, dest) = words.split_at(words.len() - 1);
        if cmd == "copy" && srcs.iter().any(|s| remote::is_url(s)) {
            return Err(self.fail(ins, "COPY takes no URL (ADD fetches one)"));
        }
        let dest = join_workdir(&st.config, &dest[0]);
        let from_ctx;
        let ctx: &Context = match flag("from") {
            Some(f) => {
                from_ctx = self.stage_context(&f, srcs).map_err(|e| self.fail(ins, e))?;
                &from_ctx.1
            }
            None => self.ctx,
        };
        let checksum = match flag("checksum") {
            Some(_) if srcs.iter().any(|s| !remote::is_url(s)) => {
                return Err(self.fail(ins, "--checksum is for URL sources only"));
            }
            Some(c) => Some(remote::parse_checksum(&c).map_err(|e| self.fail(ins, e))?),
            None => None,
        };
        let downloads = self.upper().map_err(|e| self.fail(ins, e))?;
        let (sources, fetched, pending) =
            self.sources_of(ins, ctx, srcs, vars, downloads.path(), checksum.as_deref())?;
        let local: Vec<Source> = sources.iter().filter(|(_, r)| !r).map(|(s, _)| s.clone()).collect();
        let digest = ctx.digest(&local, &self.sums).map_err(|e| self.fail(ins, e))?;
        let digest = if fetched.is_empty() { digest } else { format!("{digest} {}", fetched.join(" ")) };
        let text = format!("{} {} {dest}", cmd.to_ascii_uppercase(), srcs.join(" "));
        let key_text = format!("{text}\n{:?}\n{}", ins.flags, self.used_args(st, &used));
        let key = cache::key(&st.image.descriptor.digest.to_string(), &key_text, Some(&digest));
        if self.cached(st, &key) {
            return Ok(());
        }
        for (url, sub) in &pending {
            remote::fetch(url, sub, checksum.as_deref(), self.progress()).map_err(|e| self.fail(ins, e))?;
        }
        let dirs = self.lower_dirs(&st.image);
        let upper = self.upper().map_err(|e| self.fail(ins, e))?;
        let t = Target { upper: upper.path(), lowers: &dirs, owner, mode };
        let dest_is_dir = dest.ends_with('/')
            || sources.len() > 1
            || srcs.iter().any(|s| !remote::is_url(s) && s.contains(['*', '?']))
            || t.is_dir_in_image(&dest);
        for (s, fetched) in &sources {
            let r = if cmd == "add" && !fetched && s.path.is_file() && files::is_archive(&s.path) {
                files::unpack_archive(&s.path, &dest, &t)
            } else {
                files::copy(ctx, s, dest.trim_end_matches('/'), dest_is_dir, &t)
            };
            r.map_err(|e| self.fail(ins, e))?;
        }
        let lowers = Lowers::open(&dirs).map_err(|e| self.fail(ins, e))?;
        self.commit(st, Some(StepLayer::Written(upper, &lowers)), &text, &key).map_err(|e| self.fail(ins, e))
    }

    /// Progress lines of downloads: live on a terminal, none with `-q` or off a terminal.
    fn progress(&self) -> Progress {
        Progress::new(if self.opts.quiet { ProgressMode::Quiet } else { ProgressMode::Auto })
    }

    /// What COPY/ADD take: files of `ctx`, heredocs and (ADD) URLs — the last two written
    /// under `dir` and flagged `true` (never unpacked) — with `NAME DIGEST` of each of those.
    /// A URL with a `checksum` is not downloaded yet (its digest is known): it is returned as
    /// pending `(URL, DIR)`, fetched only if the step is not cached.
    fn sources_of(
        &self,
        ins: &Instruction,
        ctx: &Context,
        srcs: &[String],
        vars: &BTreeMap<String, String>,
        dir: &Path,
        checksum: Option<&str>,
    ) -> Result<Gathered, BuildError> {
        let (mut sources, mut made, mut pending) = (Vec::new(), Vec::new(), Vec::new());
        for (i, s) in srcs.iter().enumerate() {
            let heredoc = parser::heredoc_marker(&ins.args.words[i])
                .and_then(|m| ins.heredocs.iter().find(|h| h.name == m.name && h.fd == m.fd));
            if heredoc.is_none() && !(ins.command() == "add" && remote::is_url(s)) {
                sources.extend(ctx.sources(s).map_err(|e| self.fail(ins, e))?.into_iter().map(|x| (x, false)));
                continue;
            }
            let sub = dir.join(made.len().to_string());
            std::fs::create_dir(&sub).map_err(|e| self.fail(ins, format!("{}: {e}", sub.display())))?;
            if let (None, Some(c)) = (heredoc, checksum) {
                let name = remote::file_name(s).map_err(|e| self.fail(ins, e))?;
                made.push(format!("{s} {c}"));
                sources.push((Source { path: sub.join(&name), rel: name }, true));
                pending.push((s.clone(), sub));
                continue;
            }
            let f = match heredoc {
                Some(h) => files::heredoc(h, &sub, self.escape, vars),
                None => remote::fetch(s, &sub, None, self.progress()),
            };
            let f = f.map_err(|e| self.fail(ins, e))?;
            made.push(format!("{s} {}", f.digest));
            sources.push((Source { path: f.path, rel: f.name }, true));
        }
        Ok((sources, made, pending))
    }

    /// The files `srcs` name in a stage or image, for `COPY --from`: read from its merged
    /// view into a temp dir, which becomes the step's context.
    fn stage_context(&self, from: &str, srcs: &[String]) -> Result<(tempfile::TempDir, Context), Fail> {
        let image = match from.parse::<usize>().ok().and_then(|i| self.done.get(i)) {
            Some((_, img)) => img.clone(),
            None => self.base(from, None)?,
        };
        let tmp = self.upper()?;
        let lowers = Lowers::open(&self.lower_dirs(&image)).map_err(|e| e.to_string())?;
        for s in srcs {
            merged::extract(&lowers, s, tmp.path()).map_err(|e| e.to_string())?;
        }
        let ctx = Context::dir(tmp.path()).map_err(|e| e.to_string())?;
        Ok((tmp, ctx))
    }

    /// Labels from `--label`, then the names; prints the result.
    fn finish(&mut self, image: Image) -> Result<Digest, BuildError> {
        let other = |e: &dyn std::fmt::Display| BuildError::Other(e.to_string());
        let mut image = image;
        if !self.opts.labels.is_empty() {
            let mut cfg = match &image.config.config {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            config::add_to(
                &mut cfg,
                "Labels",
                self.opts.labels.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))),
            );
            let mut st = Stage { name: None, image, config: cfg, author: None, args: BTreeMap::new(), cmd_set: false };
            let text = format!(
                "LABEL {}",
                self.opts.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            );
            let key = cache::key(&st.image.descriptor.digest.to_string(), &text, None);
            if !self.cached(&mut st, &key) {
                self.commit(&mut st, None, &text, &key).map_err(|e| other(&e))?;
            }
            image = st.image;
        }
        if !self.store.has_blob(&image.descriptor.digest) {
            let lock = self.store.write().map_err(|e| other(&e))?;
            let (_, mdesc) =
                commit::store_image(&lock, &image, None, &image.config_raw.clone(), &[]).map_err(|e| other(&e))?;
            image = self.store.load_image(&mdesc).map_err(|e| other(&e))?;
        }
        self.say(&format!("Successfully built {}", image.id().short()));
        if !self.opts.tags.is_empty() {
            let lock = self.store.write().map_err(|e| other(&e))?;
            let mut index = self.store.index().map_err(|e| other(&e))?;
            for t in &self.opts.tags {
                store::set_name(&mut index, t, &image.descriptor);
            }
            lock.save_index(&index).map_err(|e| other(&e))?;
            for t in &self.opts.tags {
                self.say(&format!("Successfully tagged {t}"));
            }
        }
        Ok(image.id().clone())
    }
}

impl Builder<'_> {
    /// `--chown=USER[:GROUP]`: numbers, or names from the image's `/etc/passwd` and
    /// `/etc/group`; without a group, the user's (docker: the uid's own number when numeric).
    fn owner_of(&self, st: &Stage, spec: &str) -> Result<(u32, u32), Fail> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let numeric = |s: &str| s.parse::<u32>().ok();
        let lowers = Lowers::open(&self.lower_dirs(&st.image)).map_err(|e| e.to_string())?;
        let table = |file: &str| -> Result<String, Fail> {
            let text = merged::read_file(&lowers, Path::new(file)).map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&text.unwrap_or_default()).into_owned())
        };
        let (uid, user_gid) = match numeric(user) {
            Some(u) => (u, u),
            None => id_entry(&table("etc/passwd")?, user, true)
                .ok_or_else(|| format!("--chown={spec}: no user {user:?} in the image's /etc/passwd"))?,
        };
        let gid = match group {
            None => user_gid,
            Some(g) => match numeric(g) {
                Some(g) => g,
                None => id_entry(&table("etc/group")?, g, false)
                    .map(|(gid, _)| gid)
                    .ok_or_else(|| format!("--chown={spec}: no group {g:?} in the image's /etc/group"))?,
            },
        };
        Ok((uid, gid))
    }
}

/// In a passwd (`name:x:uid:gid:…`) or group (`name:x:gid:…`) file, `name`'s id and (passwd
/// only) primary group.
fn id_entry(table: &str, name: &str, passwd: bool) -> Option<(u32, u32)> {
    table.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 || f[0] != name {
            return None;
        }
        let id = f[2].parse().ok()?;
        let gid = if passwd { f.get(3)?.parse().ok()? } else { id };
        Some((id, gid))
    })
}
