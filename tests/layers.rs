//! The rule src/DESIGN.md states, kept by a test: imports run one way. No module of `src/`
//! imports one that, through others, imports it back; no room (a folder, or a module at the
//! top) imports one that imports it back; and no room imports a room of a higher layer than
//! its own (`LAYERS`). Read from the sources as text — `use crate::…`, `use super::…`,
//! `use self::…`, and `crate::…`/`super::…` paths written inline — with no dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, bottom first. A room may import the rooms of its own layer (as long as no
/// circle closes) and of the layers below, never one above. A room missing here fails the
/// test until it is given its place.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "the leaves every room uses",
        &["action", "error", "log", "pretty", "tally", "time", "uuid"],
    ),
    ("what FastNetMon told us", &["fastnetmon"]),
    ("the configuration", &["config"]),
    ("what we ask of prefixd", &["prefixd"]),
    ("what the spool keeps and holds", &["spool"]),
    ("what the operator sees", &["operator"]),
    (
        "the modes and their wiring",
        &["cli", "lifecycle", "modes", "main"],
    ),
];

#[test]
fn imports_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_tree(&src, &src, &mut files);
    assert!(files.len() > 20, "read only {} files of src/", files.len());
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let problems = check(&refs);
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n"));
}

/// The checker itself, on a small tree that breaks each rule once (and mentions a higher room
/// only in a comment and a string, which do not count).
#[test]
fn a_circle_and_an_import_upward_are_named() {
    let problems = check(&[
        (
            "lib.rs",
            "pub mod fastnetmon;\npub mod operator;\npub mod spool;\n",
        ),
        ("fastnetmon/mod.rs", "pub mod notice;\n"),
        (
            "fastnetmon/notice.rs",
            "use crate::action::Action;\nuse crate::spool::queue::Entry;\n\
             // crate::operator::status says so\n\
             const S: &str = \"crate::operator::status\";\nconst C: char = '\"';\n",
        ),
        ("action.rs", "pub enum Action {}\n"),
        ("operator/mod.rs", "pub mod status;\n"),
        (
            "operator/status.rs",
            "use crate::spool::{queue, renew::Renewed};\n",
        ),
        (
            "spool/mod.rs",
            "pub mod outbox;\npub mod queue;\npub mod renew;\n",
        ),
        (
            "spool/queue.rs",
            "use crate::fastnetmon::notice::{self, Notice};\n",
        ),
        (
            "spool/outbox.rs",
            "pub fn flush() {\n    super::renew::renew_all();\n}\n",
        ),
        (
            "spool/renew.rs",
            "use super::outbox::Ctx;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
        ),
    ]);
    let all = problems.join("\n");
    assert_eq!(problems.len(), 4, "{all}");
    assert!(
        all.contains("import circle among modules: spool::outbox → spool::renew → spool::outbox"),
        "{all}"
    );
    assert!(
        all.contains(
            "import circle among modules: fastnetmon::notice → spool::queue → fastnetmon::notice"
        ),
        "{all}"
    );
    assert!(
        all.contains("import circle among rooms: fastnetmon → spool → fastnetmon"),
        "{all}"
    );
    assert!(
        all.contains(
            "fastnetmon::notice (what FastNetMon told us) imports spool::queue (what the spool keeps and holds, a higher layer) at fastnetmon/notice.rs:2"
        ),
        "{all}"
    );
    assert!(!all.contains("operator::status ("), "{all}");
}

/// Every `.rs` file under `dir`, as (path relative to `src/`, text); the build script is no
/// module of the crate.
fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel != "build.rs" {
                out.push((rel, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
}

type Module = Vec<String>;

/// `spool/outbox.rs` → `spool::outbox`; `config/mod.rs` → `config`; `lib.rs` → the root.
fn module_of(path: &str) -> Module {
    let stem = path.strip_suffix(".rs").unwrap_or(path);
    let mut m: Module = stem.split('/').map(str::to_string).collect();
    if m.last().is_some_and(|l| l == "mod") || m == ["lib"] {
        m.pop();
    }
    m
}

fn name(m: &[String]) -> String {
    m.join("::")
}

/// Where an import is written, for the message.
#[derive(Clone)]
struct At {
    file: String,
    line: usize,
}

/// Every rule broken, in words; none: the tree keeps the rule.
fn check(files: &[(&str, &str)]) -> Vec<String> {
    let modules: BTreeSet<Module> = files.iter().map(|(p, _)| module_of(p)).collect();
    // module → module it imports → where, first.
    let mut edges: BTreeMap<Module, BTreeMap<Module, At>> = BTreeMap::new();
    for (path, text) in files {
        let from = module_of(path);
        if from.is_empty() {
            continue;
        }
        for (segments, within, line) in paths(&code_only(text)) {
            let mut here = from.clone();
            here.extend(within);
            let Some(to) = resolve(&here, &segments, &modules) else {
                continue;
            };
            if to != from && !to.is_empty() {
                let at = At {
                    file: path.to_string(),
                    line,
                };
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_insert(at);
            }
        }
    }
    let mut problems = Vec::new();
    for circle in circles(&edges) {
        let said: Vec<String> = circle.iter().map(|m| name(m)).collect();
        let wheres: Vec<String> = circle
            .windows(2)
            .map(|w| {
                let at = &edges[&w[0]][&w[1]];
                format!("{}:{}", at.file, at.line)
            })
            .collect();
        problems.push(format!(
            "import circle among modules: {} (at {})",
            said.join(" → "),
            wheres.join(", ")
        ));
    }
    let room = |m: &Module| m[0].clone();
    let mut rooms: BTreeMap<Module, BTreeMap<Module, At>> = BTreeMap::new();
    for (from, tos) in &edges {
        for (to, at) in tos {
            if room(from) != room(to) {
                rooms
                    .entry(vec![room(from)])
                    .or_default()
                    .entry(vec![room(to)])
                    .or_insert_with(|| at.clone());
            }
        }
    }
    for circle in circles(&rooms) {
        let said: Vec<String> = circle.iter().map(|m| name(m)).collect();
        problems.push(format!("import circle among rooms: {}", said.join(" → ")));
    }
    let layer = |r: &str| LAYERS.iter().position(|(_, rs)| rs.contains(&r));
    let all_rooms: BTreeSet<String> = modules.iter().filter(|m| !m.is_empty()).map(room).collect();
    for r in &all_rooms {
        if layer(r).is_none() {
            problems.push(format!(
                "room {r} has no layer: give it its place in LAYERS (tests/layers.rs)"
            ));
        }
    }
    for (from, tos) in &edges {
        for (to, at) in tos {
            let (Some(lf), Some(lt)) = (layer(&room(from)), layer(&room(to))) else {
                continue;
            };
            if lt > lf {
                problems.push(format!(
                    "{} ({}) imports {} ({}, a higher layer) at {}:{}",
                    name(from),
                    LAYERS[lf].0,
                    name(to),
                    LAYERS[lt].0,
                    at.file,
                    at.line
                ));
            }
        }
    }
    problems
}

/// `here` (the module a path is written in, inline modules included) reading `segments`: the
/// module of the crate it leads into, the longest that is a file of its own. None: a path
/// outside the crate (std, a dependency) or into its root.
fn resolve(here: &[String], segments: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let first = segments.first()?.as_str();
    let (mut full, rest): (Module, &[String]) = match first {
        "crate" | "prefixd_fastnetmon" => (Vec::new(), &segments[1..]),
        "self" => (here.to_vec(), &segments[1..]),
        "super" => {
            let mut base = here.to_vec();
            let ups = segments.iter().take_while(|s| *s == "super").count();
            for _ in 0..ups {
                base.pop()?;
            }
            (base, &segments[ups..])
        }
        child => {
            let mut m = here.to_vec();
            m.push(child.to_string());
            modules.contains(&m).then_some(())?;
            (here.to_vec(), segments)
        }
    };
    full.extend(rest.iter().filter(|s| *s != "self").cloned());
    (0..=full.len())
        .rev()
        .map(|n| full[..n].to_vec())
        .find(|m| modules.contains(m))
}

/// One circle through each knot of the graph, each as its modules with the first repeated
/// at the end.
fn circles(edges: &BTreeMap<Module, BTreeMap<Module, At>>) -> Vec<Vec<Module>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        No,
        OnPath,
        Done,
    }
    fn visit(
        m: &Module,
        edges: &BTreeMap<Module, BTreeMap<Module, At>>,
        seen: &mut BTreeMap<Module, Seen>,
        path: &mut Vec<Module>,
        found: &mut Vec<Vec<Module>>,
    ) {
        seen.insert(m.clone(), Seen::OnPath);
        path.push(m.clone());
        for to in edges.get(m).into_iter().flat_map(|t| t.keys()) {
            match seen.get(to).copied().unwrap_or(Seen::No) {
                Seen::No => visit(to, edges, seen, path, found),
                Seen::OnPath => {
                    // Said from its first module, whichever module the search came in by.
                    let start = path.iter().position(|p| p == to).unwrap_or(0);
                    let mut circle = path[start..].to_vec();
                    let first = (0..circle.len()).min_by_key(|i| &circle[*i]).unwrap_or(0);
                    circle.rotate_left(first);
                    circle.push(circle[0].clone());
                    found.push(circle);
                }
                Seen::Done => {}
            }
        }
        path.pop();
        seen.insert(m.clone(), Seen::Done);
    }
    let mut seen = BTreeMap::new();
    let mut found = Vec::new();
    for m in edges.keys() {
        if seen.get(m).copied().unwrap_or(Seen::No) == Seen::No {
            visit(m, edges, &mut seen, &mut Vec::new(), &mut found);
        }
    }
    found
}

/// The source with its comments, strings and character literals blanked (lines kept), so
/// that only code is read for paths.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |i: usize| i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    let mut i = 0;
    while i < b.len() {
        let next = b.get(i + 1).copied();
        let end = match b[i] {
            b'/' if next == Some(b'/') => src[i..].find('\n').map_or(b.len(), |n| i + n),
            b'/' if next == Some(b'*') => {
                let (mut depth, mut j) = (0, i);
                while j < b.len() {
                    if b[j..].starts_with(b"/*") {
                        depth += 1;
                        j += 2;
                    } else if b[j..].starts_with(b"*/") {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                j
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                j + 1
            }
            // r"…", r#"…"#, br"…"
            b'r' if !ident(i) || (i > 0 && b[i - 1] == b'b' && !ident(i - 1)) => {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                src[i + 2 + hashes..]
                    .find(&close)
                    .map_or(b.len(), |n| i + 2 + hashes + n + close.len())
            }
            // 'x', '\n', '\u{1F980}'; a lifetime or a label is no literal.
            b'\'' => {
                if next == Some(b'\\') {
                    src[i + 3..].find('\'').map_or(b.len(), |n| i + 4 + n)
                } else {
                    match src[i + 1..].chars().next() {
                        Some(c) if b.get(i + 1 + c.len_utf8()) == Some(&b'\'') => {
                            i + 2 + c.len_utf8()
                        }
                        _ => {
                            i += 1;
                            continue;
                        }
                    }
                }
            }
            _ => {
                i += 1;
                continue;
            }
        };
        blank(&mut out, i, end);
        i = end;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Every path into the crate that `code` writes: in a `use` (each leaf of its tree), or
/// inline (`crate::…`, `super::…`, `self::…`, `child::…`), with the inline modules it sits
/// in and its line.
fn paths(code: &str) -> Vec<(Vec<String>, Vec<String>, usize)> {
    let mut toks: Vec<(Tok, usize)> = Vec::new();
    let mut line = 1;
    let mut chars = code.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_alphabetic() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            toks.push((Tok::Ident(code[i..end].to_string()), line));
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            toks.push((Tok::PathSep, line));
        } else if !c.is_whitespace() {
            toks.push((Tok::Punct(c), line));
        }
    }
    let ident = |k: usize| match toks.get(k) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let is = |k: usize, t: Tok| toks.get(k).is_some_and(|(x, _)| *x == t);
    let mut out = Vec::new();
    // Inline modules (`mod tests { … }`) open here, with the brace depth inside them.
    let mut within: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut k = 0;
    while k < toks.len() {
        let names = || within.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let line = toks[k].1;
        match &toks[k].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if within.last().is_some_and(|(_, d)| *d > depth) {
                    within.pop();
                }
            }
            Tok::Ident(kw) if kw == "mod" && is(k + 2, Tok::Punct('{')) => {
                if let Some(m) = ident(k + 1) {
                    within.push((m.to_string(), depth + 1));
                }
            }
            Tok::Ident(kw) if kw == "use" && (k == 0 || !is(k - 1, Tok::PathSep)) => {
                let mut leaves = Vec::new();
                let mut j = k + 1;
                use_tree(&toks, &mut j, Vec::new(), &mut leaves);
                for leaf in leaves {
                    out.push((leaf, names(), line));
                }
                while j < toks.len() && !is(j, Tok::Punct(';')) {
                    j += 1;
                }
                k = j;
            }
            Tok::Ident(first)
                if is(k + 1, Tok::PathSep) && (k == 0 || !is(k - 1, Tok::PathSep)) =>
            {
                let mut segments = vec![first.clone()];
                let mut j = k + 1;
                while is(j, Tok::PathSep) {
                    match ident(j + 1) {
                        Some(s) => segments.push(s.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                out.push((segments, names(), line));
                k = j - 1;
            }
            _ => {}
        }
        k += 1;
    }
    out
}

/// The leaves of a use tree from `toks[*k]` (`a::b::{c, d::{self, e as f}, g::*}`), each
/// after `prefix`; `*k` ends past the tree.
fn use_tree(toks: &[(Tok, usize)], k: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    if toks.get(*k).is_some_and(|(t, _)| *t == Tok::PathSep) {
        *k += 1;
    }
    loop {
        match toks.get(*k).map(|(t, _)| t) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *k += 1;
                if toks.get(*k).is_some_and(|(t, _)| *t == Tok::PathSep) {
                    *k += 1;
                    continue;
                }
                if toks
                    .get(*k)
                    .is_some_and(|(t, _)| *t == Tok::Ident("as".into()))
                {
                    *k += 2;
                }
                out.push(path);
                return;
            }
            Some(Tok::Punct('{')) => {
                *k += 1;
                while let Some((t, _)) = toks.get(*k) {
                    match t {
                        Tok::Punct('}') => {
                            *k += 1;
                            return;
                        }
                        Tok::Punct(',') => *k += 1,
                        _ => {
                            let before = *k;
                            use_tree(toks, k, path.clone(), out);
                            if *k == before {
                                *k += 1;
                            }
                        }
                    }
                }
                return;
            }
            Some(Tok::Punct('*')) => {
                *k += 1;
                out.push(path);
                return;
            }
            _ => return,
        }
    }
}
