//! The sha256 of context files, remembered across builds by what `stat` says of them (device,
//! inode, size, mtime, ctime) in `ROOT/build-cache/sums`, so that a rebuild hashes only the
//! files that changed. ctime moves on every write and cannot be set by a user, so a file whose
//! stat is the same has the same content; a file changed less than [`RACY`] before it was
//! hashed is not remembered (its next write could keep the same ctime tick).

use std::collections::HashMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Files changed this recently are hashed but not remembered.
const RACY: Duration = Duration::from_secs(2);

/// What identifies a file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Key {
    fn of(md: &Metadata) -> Key {
        Key {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }

    fn parse(line: &str) -> Option<(Key, [u8; 32])> {
        let f: Vec<&str> = line.split(' ').collect();
        let [dev, ino, size, ms, mn, cs, cn, sum] = f.as_slice() else { return None };
        let key = Key {
            dev: dev.parse().ok()?,
            ino: ino.parse().ok()?,
            size: size.parse().ok()?,
            mtime: (ms.parse().ok()?, mn.parse().ok()?),
            ctime: (cs.parse().ok()?, cn.parse().ok()?),
        };
        let sum = hex::decode(sum).ok()?.try_into().ok()?;
        Some((key, sum))
    }

    fn line(&self, sum: &[u8; 32]) -> String {
        let k = self;
        format!(
            "{} {} {} {} {} {} {} {}\n",
            k.dev,
            k.ino,
            k.size,
            k.mtime.0,
            k.mtime.1,
            k.ctime.0,
            k.ctime.1,
            hex::encode(sum)
        )
    }
}

/// The sums known (from the file) and those used by this build (saved back).
#[derive(Default)]
pub struct Sums {
    path: Option<PathBuf>,
    known: HashMap<Key, [u8; 32]>,
    used: Mutex<HashMap<Key, [u8; 32]>>,
}

impl Sums {
    /// Sums remembered nowhere.
    pub fn none() -> Sums {
        Sums::default()
    }

    /// The sums kept in `path` (none yet, or unreadable: empty).
    pub fn load(path: PathBuf) -> Sums {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let known = text.lines().filter_map(Key::parse).collect();
        Sums { path: Some(path), known, used: Mutex::default() }
    }

    /// The sum of the file `md` describes: remembered, or `compute`d.
    pub fn get_or(&self, md: &Metadata, compute: impl FnOnce() -> io::Result<[u8; 32]>) -> io::Result<[u8; 32]> {
        let key = Key::of(md);
        if let Some(sum) = self.known.get(&key) {
            self.remember(key, *sum);
            return Ok(*sum);
        }
        let sum = compute()?;
        let changed = UNIX_EPOCH + Duration::new(key.ctime.0.max(0) as u64, key.ctime.1 as u32);
        if SystemTime::now().duration_since(changed).is_ok_and(|age| age >= RACY) {
            self.remember(key, sum);
        }
        Ok(sum)
    }

    fn remember(&self, key: Key, sum: [u8; 32]) {
        if let Ok(mut used) = self.used.lock() {
            used.insert(key, sum);
        }
    }

    /// Writes the sums this build used (those of its context), replacing the file.
    pub fn save(&self) -> io::Result<()> {
        let (Some(path), Ok(used)) = (&self.path, self.used.lock()) else { return Ok(()) };
        if used.is_empty() || (used.len() == self.known.len() && used.iter().all(|(k, _)| self.known.contains_key(k))) {
            return Ok(());
        }
        let text: String = used.iter().map(|(k, s)| k.line(s)).collect();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sum_is_remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (file, store) = (dir.path().join("f"), dir.path().join("sums"));
        std::fs::write(&file, "a").unwrap();
        let old = SystemTime::now() - Duration::from_secs(10);
        let md = std::fs::metadata(&file).unwrap();
        let sums = Sums::load(store.clone());
        // Just written: hashed, not remembered.
        assert_eq!(sums.get_or(&md, || Ok([1; 32])).unwrap(), [1; 32]);
        sums.save().unwrap();
        assert!(!store.exists());
        // Old enough (ctime cannot be set back: a key made so stands for it).
        let mut key = Key::of(&md);
        key.ctime = (old.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64, 0);
        let text = key.line(&[2; 32]);
        let (parsed, sum) = Key::parse(text.trim_end()).unwrap();
        assert_eq!((parsed, sum), (key, [2; 32]));
        std::fs::write(&store, text).unwrap();
        let sums = Sums::load(store.clone());
        assert_eq!(sums.known.get(&key), Some(&[2; 32]));
        // The real file's key differs (its ctime): computed again.
        assert_eq!(sums.get_or(&md, || Ok([3; 32])).unwrap(), [3; 32]);
    }
}
