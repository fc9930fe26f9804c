//! BuildKit's conformance data for the Dockerfile parser and word expansion
//! (`fixtures/dockerfile/`, see its README): every parser case gives BuildKit's parse tree,
//! every Unix line of `envVarTest` and `wordsTest` BuildKit's result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use strata::build::parser;
use strata::build::shell::Lexer;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dockerfile")
}

#[test]
fn parser_cases_give_buildkits_trees() {
    let mut cases: Vec<_> = std::fs::read_dir(data().join("parser")).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let text = std::fs::read_to_string(case.join("Dockerfile")).unwrap();
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        let got = match parser::parse(&text) {
            Ok(df) => df.instructions.iter().map(|i| i.dump()).collect::<Vec<_>>().join("\n"),
            Err(e) => format!("error: {e}"),
        };
        if got.trim_end() != expected.trim_end() {
            failures.push(format!("{}:\n--- expected\n{expected}\n--- got\n{got}", case.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn env_var_test_unix_lines() {
    let text = std::fs::read_to_string(data().join("shell/envVarTest")).unwrap();
    let vars: BTreeMap<String, String> = [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lex = Lexer::new('\\');
    let (mut checked, mut failures) = (0, Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "line {}", n + 1);
        let (platform, source, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        if platform == "W" {
            continue;
        }
        checked += 1;
        let got = lex.word(source, &vars);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(w), e) => w == e,
            _ => false,
        };
        if !ok {
            failures.push(format!("line {}: {source:?} expected {expected:?}, got {got:?}", n + 1));
        }
    }
    assert!(checked > 200);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn words_test_lines() {
    // (BuildKit's test loops over a second, raw mode, but its file is read to the end by then.)
    let text = std::fs::read_to_string(data().join("shell/wordsTest")).unwrap();
    {
        let lex = Lexer::new('\\');
        let mut env: Vec<String> = Vec::new();
        let mut failures = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            if let Some(e) = line.strip_prefix("ENV ") {
                env.push(e.trim_start_matches(' ').to_string());
                continue;
            }
            let (test, expected) = line.split_once('|').unwrap();
            let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
            let got = lex.words(test.trim(), &env).unwrap_or_else(|_| vec!["error".into()]);
            if got != expected {
                failures.push(format!("line {}: {test:?} expected {expected:?}, got {got:?}", n + 1));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
