//! Writing a bench's own section of `benches/RESULTS.md`.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

/// Puts `section` (starting with its `heading` line) into benches/RESULTS.md in place of the
/// section under the same heading — up to the next heading or marker comment, which stay — or at
/// the end; written to a temporary name, synced and renamed, so a failed write loses nothing.
pub fn replace_section(heading: &str, section: &str) -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/RESULTS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let section = format!("{}\n", section.trim_end());
    let new = match old.find(heading) {
        Some(i) => {
            let rest = &old[i + heading.len()..];
            let end = ["\n## ", "\n<!--"].iter().filter_map(|m| rest.find(m)).min().map(|j| i + heading.len() + j + 1);
            let after = &old[end.unwrap_or(old.len())..];
            let gap = if after.is_empty() { "" } else { "\n" };
            format!("{}{section}{gap}{after}", &old[..i])
        }
        None => format!("{}\n\n{section}", old.trim_end()),
    };
    let part = path.with_extension("md.part");
    let mut f = std::fs::File::create(&part)?;
    f.write_all(new.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&part, &path)?;
    Ok(())
}
