//! Running the tools the benchmarks drive.

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Runs `cmd` (no stdin) and returns its stdout; a failure names the command and its stderr.
pub fn checked_output(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
