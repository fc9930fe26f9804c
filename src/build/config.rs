//! The config-only instructions (CMD, ENTRYPOINT, ENV, LABEL, EXPOSE, VOLUME, USER, WORKDIR,
//! STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD) as changes to an image's runtime config (the
//! `config` object of image-spec `config.md`, with docker's `Healthcheck`, `Shell`, `OnBuild`),
//! their arguments already expanded.

use serde_json::{Map, Value};

/// Sets `key` to a list of strings.
pub fn set_list(config: &mut Map<String, Value>, key: &str, items: &[String]) {
    config.insert(key.into(), Value::from(items.to_vec()));
}

/// Sets or replaces `K=V` in `Env`.
pub fn set_env(config: &mut Map<String, Value>, k: &str, v: &str) {
    let mut list: Vec<String> = env(config);
    let entry = format!("{k}={v}");
    match list.iter_mut().find(|e| e.split_once('=').map(|(n, _)| n) == Some(k)) {
        Some(e) => *e = entry,
        None => list.push(entry),
    }
    config.insert("Env".into(), Value::from(list));
}

/// `Env` as a list.
pub fn env(config: &Map<String, Value>) -> Vec<String> {
    strings(config.get("Env"))
}

/// A JSON list of strings as a vector (anything else: empty).
pub fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// Adds `key: {}` entries (or strings) to the object `field`.
pub fn add_to(config: &mut Map<String, Value>, field: &str, items: impl IntoIterator<Item = (String, Value)>) {
    let mut m = match config.remove(field) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    m.extend(items);
    config.insert(field.into(), Value::Object(m));
}

/// `EXPOSE` ports as `80/tcp` keys; `None` for a bad one.
pub fn ports(words: &[String]) -> Option<Vec<String>> {
    words
        .iter()
        .map(|p| {
            let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let proto = proto.to_ascii_lowercase();
            let ok =
                num.split('-').all(|n| n.parse::<u16>().is_ok()) && matches!(proto.as_str(), "tcp" | "udp" | "sctp");
            ok.then(|| format!("{num}/{proto}"))
        })
        .collect()
}

/// A duration flag of HEALTHCHECK (`30s`, `1m30s`, `500ms`) in nanoseconds.
pub fn duration_ns(s: &str) -> Option<u64> {
    humantime::parse_duration(s).ok().map(|d| d.as_nanos() as u64)
}

/// `HEALTHCHECK [--flags] CMD …` / `HEALTHCHECK NONE` as the `Healthcheck` object.
pub fn healthcheck(flags: &[String], words: &[String], json: bool, shell_form: bool) -> Result<Value, String> {
    let Some((typ, rest)) = words.split_first() else { return Err("HEALTHCHECK needs NONE or CMD".into()) };
    let mut m = Map::new();
    match typ.to_ascii_uppercase().as_str() {
        "NONE" if rest.is_empty() => m.insert("Test".into(), Value::from(vec!["NONE"])),
        "CMD" if rest.is_empty() => return Err("HEALTHCHECK CMD needs a command".into()),
        "CMD" => {
            let test: Vec<String> = if json && !shell_form {
                std::iter::once("CMD".to_string()).chain(rest.iter().cloned()).collect()
            } else {
                vec!["CMD-SHELL".to_string(), rest.join(" ")]
            };
            m.insert("Test".into(), Value::from(test))
        }
        other => return Err(format!("unknown HEALTHCHECK type {other:?} (NONE or CMD)")),
    };
    for f in flags {
        let (k, v) = f.trim_start_matches('-').split_once('=').ok_or(format!("bad flag {f}"))?;
        let key = match k {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                m.insert("Retries".into(), Value::from(v.parse::<u64>().map_err(|_| format!("bad --retries {v}"))?));
                continue;
            }
            _ => return Err(format!("unknown flag --{k}")),
        };
        m.insert(key.into(), Value::from(duration_ns(v).ok_or(format!("bad duration --{k}={v}"))?));
    }
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_ports_health() {
        let mut c = Map::new();
        set_env(&mut c, "A", "1");
        set_env(&mut c, "B", "2");
        set_env(&mut c, "A", "3");
        assert_eq!(env(&c), ["A=3", "B=2"]);
        assert_eq!(ports(&["80".into(), "53/UDP".into()]).unwrap(), ["80/tcp", "53/udp"]);
        assert!(ports(&["http".into()]).is_none());
        let h = healthcheck(&["--interval=5s".into()], &["CMD".into(), "true".into()], false, true).unwrap();
        assert_eq!(h, serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000u64}));
    }
}
