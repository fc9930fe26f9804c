//! `.dockerignore`: which context paths a build does not see, with docker's rules
//! (`moby/patternmatcher`): one pattern a line, `#` comments, paths cleaned and taken relative
//! to the context root, `*` and `?` within a name, `**` across any number of names, `!` to
//! take an exclusion back; the last pattern that matches a path (or one of its parents) wins.

/// The patterns of a `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    parts: Vec<String>,
    exception: bool,
}

impl Ignore {
    /// Reads the file's text.
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, p) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let parts: Vec<String> = p.split('/').filter(|s| !s.is_empty() && *s != ".").map(str::to_string).collect();
            if !parts.is_empty() {
                patterns.push(Pattern { parts, exception });
            }
        }
        Ignore { patterns }
    }

    /// Whether `rel` (a path relative to the context root, `/`-separated) is excluded.
    pub fn excludes(&self, rel: &str) -> bool {
        let names: Vec<&str> = rel.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
        let mut excluded = false;
        for p in &self.patterns {
            let hit = (1..=names.len()).any(|n| seq_match(&p.parts, &names[..n]));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether some exception could bring back a path under the excluded directory `rel`
    /// (then the directory must still be walked).
    pub fn may_include_under(&self, rel: &str) -> bool {
        self.patterns.iter().any(|p| p.exception && p.parts.join("/").starts_with(rel))
    }
}

/// Whether the pattern's names match the path's names exactly.
fn seq_match(pat: &[String], names: &[&str]) -> bool {
    match pat.split_first() {
        None => names.is_empty(),
        Some((p, rest)) if p == "**" => (0..=names.len()).any(|i| seq_match(rest, &names[i..])),
        Some((p, rest)) => !names.is_empty() && name_match(p, names[0]) && seq_match(rest, &names[1..]),
    }
}

/// `*`, `?`, `[...]` and `\` escapes within one name.
pub fn name_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    chars_match(&p, &n)
}

fn chars_match(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| chars_match(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && chars_match(&p[1..], &n[1..]),
        Some('[') => match p.iter().position(|c| *c == ']') {
            Some(end) if !n.is_empty() => class_match(&p[1..end], n[0]) && chars_match(&p[end + 1..], &n[1..]),
            _ => false,
        },
        Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && chars_match(&p[2..], &n[1..]),
        Some(c) => n.first() == Some(c) && chars_match(&p[1..], &n[1..]),
    }
}

fn class_match(class: &[char], c: char) -> bool {
    let (negate, class) = match class.first() {
        Some('^' | '!') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut hit = false;
    let mut i = 0;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == '-' {
            hit |= class[i] <= c && c <= class[i + 2];
            i += 3;
        } else {
            hit |= class[i] == c;
            i += 1;
        }
    }
    hit != negate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_rules() {
        let ig = Ignore::parse("# comment\n*.log\n!keep.log\nbuild/\n**/tmp\nsecret?\n/docs/*.md\n");
        assert!(ig.excludes("a.log"));
        assert!(!ig.excludes("keep.log"));
        assert!(!ig.excludes("sub/a.log"));
        assert!(ig.excludes("build/x/y"));
        assert!(ig.excludes("a/b/tmp/f"));
        assert!(ig.excludes("tmp"));
        assert!(ig.excludes("secret1"));
        assert!(!ig.excludes("secret12"));
        assert!(ig.excludes("docs/a.md"));
        assert!(!ig.excludes("docs/sub/a.md"));
        assert!(!ig.excludes("src/main.rs"));
        assert!(name_match("[a-c]x", "bx") && !name_match("[!a-c]x", "bx"));
    }
}
