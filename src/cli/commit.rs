//! `strata commit [OPTIONS] CONTAINER [REPO[:TAG]]`: a container's changes as a new image, as
//! `docker commit` makes it ([`crate::container::commit`]); prints the new image id. A running
//! container is frozen while its upper dir is read (`--pause`, on by default).

use std::path::Path;
use std::process::ExitCode;

use super::container_ref;
use super::store_root::open_store;
use crate::container::commit::{self, Request, Source};
use crate::image::commit::Options;
use crate::image::progress::{Progress, ProgressMode};
use crate::image::reference::Name;
use crate::image::source::Compression;

/// Arguments of `strata commit`.
#[derive(clap::Args, Debug)]
pub struct CommitArgs {
    /// Author of the new image ("Name <email>").
    #[arg(short = 'a', long)]
    author: Option<String>,
    /// Commit message (the history entry's comment).
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Apply a Dockerfile instruction to the image config: CMD, ENTRYPOINT, ENV, WORKDIR,
    /// EXPOSE, LABEL, USER, VOLUME (repeatable).
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Pause the container while committing (`--pause=false` to leave it running).
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pause: bool,
    /// Compression of the new layer.
    #[arg(long, value_enum, default_value_t)]
    compression: Compression,
    /// Progress of the layer being written: live on a terminal (auto), final line (plain), none.
    #[arg(long, value_enum, default_value_t)]
    progress: ProgressMode,
    /// The container: its name, id, or a unique prefix of its id.
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// Name for the new image (none: untagged).
    #[arg(value_name = "REPO[:TAG]")]
    name: Option<String>,
}

/// Commits, prints the new image id.
pub fn run(a: CommitArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let name = a.name.as_deref().map(Name::parse).transpose()?;
    let store = open_store(root)?;
    let store_lock = store.write()?;
    let c = container_ref::open(&store, &a.container)?;
    let (upper, merged) = (c.record.upper(), c.record.merged());
    let source = Source {
        name: &c.record.name,
        upper: &upper,
        merged: &merged,
        running_pid: c.record.running_pid(),
        image: &c.image,
        lowers: &c.lowers,
    };
    let request = Request {
        pause: a.pause,
        compression: a.compression,
        progress: Progress::on_stderr(a.progress),
        options: Options {
            author: a.author,
            message: a.message,
            changes: a.changes,
            created_by: created_by(&c.record.command),
            config: None,
            compression: a.compression,
        },
        name: name.as_ref(),
    };
    let id = commit::commit(&store_lock, &source, &request)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// The history's `created_by`: the container's command, as docker shows it.
fn created_by(command: &[String]) -> String {
    if command.is_empty() { "strata commit".into() } else { command.join(" ") }
}
