//! # trusttime
//!
//! The hosted half of trusttime: UDP/TCP transports that drive the sans-IO
//! [`trusttime_core`] state machines, the one-shot `sync`, the small NTP server, the demo, and
//! the command-line interface.
//!
//! See `ARCHITECTURE.md` at the repository root for where each piece lives.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
#![deny(unsafe_code)]
//!
//! ## Features
//! - `tls` (default): `trusttime check` and the trusted-time TLS verifier.
//! - `web` (default): the daemon's web page for setting the time by hand.
//! - `mqtt` (default, implies `tls`): `trusttime connect` and clock health reports.
//!
//! `--no-default-features` builds a smaller binary with `sync`, `serve`, `demo`, the daemon,
//! `status`, `sources`, `wait` and `set`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod conn_limit;
pub mod control;
pub mod daemon;
pub mod daemon_api;
pub mod duration;
pub mod files;
pub mod json;
pub mod metrics;
pub mod platform;
#[cfg(feature = "mqtt")]
pub mod report;
pub mod serve;
pub mod spec;

pub mod sync;
pub mod tally;
pub mod task;
pub mod transport;
#[cfg(feature = "web")]
pub mod web;

/// The crate's modules import one another without cycles.
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// `module -> modules it names as crate::module` for every file under `src/`; a folder
    /// (`daemon/`, `cli/`, `web/`) counts as one module. Comment lines are skipped (a doc link
    /// is not an import).
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    files(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        let module_of = |p: &Path| {
            let rel = p.strip_prefix(&src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            first.trim_end_matches(".rs").to_owned()
        };
        let modules: BTreeSet<String> = all.iter().map(|p| module_of(p)).collect();
        let ident = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for p in &all {
            let from = module_of(p);
            let code: String = std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let mut named = Vec::new();
            for (i, _) in code.match_indices("crate::") {
                let before = code[..i].chars().next_back();
                if before.is_some_and(|c| c == '$' || c == '_' || c.is_ascii_alphanumeric()) {
                    continue; // `$crate::` in a macro, or `trusttime_crate::`
                }
                let rest = &code[i + "crate::".len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    // `crate::{a, b::c, d}`: the first name of each item.
                    let mut depth = 0;
                    let mut item_start = true;
                    for (k, c) in group.char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' if depth == 0 => break,
                            '}' => depth -= 1,
                            ',' if depth == 0 => item_start = true,
                            c if item_start && !c.is_whitespace() => {
                                named.push(ident(&group[k..]));
                                item_start = false;
                            }
                            _ => {}
                        }
                    }
                } else {
                    named.push(ident(rest));
                }
            }
            let entry = graph.entry(from.clone()).or_default();
            for to in named {
                if to != from && modules.contains(&to) {
                    entry.insert(to);
                }
            }
        }
        graph
    }

    /// A cycle in `graph`, as the path of modules around it.
    fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            m: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            done: &mut BTreeSet<String>,
            path: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == m) {
                let mut c = path[at..].to_vec();
                c.push(m.to_owned());
                return Some(c);
            }
            if done.contains(m) {
                return None;
            }
            path.push(m.to_owned());
            for next in graph.get(m).into_iter().flatten() {
                if let Some(c) = visit(next, graph, done, path) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(m.to_owned());
            None
        }
        let mut done = BTreeSet::new();
        graph
            .keys()
            .find_map(|m| visit(m, graph, &mut done, &mut Vec::new()))
    }

    #[test]
    fn the_module_graph_has_no_cycles() {
        let graph = imports();
        // The parser sees imports (a scan that finds none would pass vacuously).
        assert!(graph["daemon"].contains("sync"), "{graph:?}");
        assert!(graph["config"].contains("spec"), "{graph:?}");
        if let Some(c) = cycle(&graph) {
            panic!("import cycle: {}\n{graph:#?}", c.join(" -> "));
        }
        // Server specs are the vocabulary below every driver: a leaf.
        assert_eq!(
            graph["spec"],
            BTreeSet::new(),
            "spec imports from the crate"
        );
        // Transports know specs, the clock and the operating system, nothing above them.
        let below: BTreeSet<String> = ["spec", "clock", "platform"].map(String::from).into();
        assert!(
            graph["transport"].is_subset(&below),
            "transport imports {:?}",
            graph["transport"]
        );
        // Observers read the daemon's published status, never the daemon itself.
        for observer in ["web", "metrics", "report", "control", "serve"] {
            assert!(
                !graph[observer].contains("daemon"),
                "{observer} imports daemon"
            );
        }
    }

    #[test]
    fn a_cycle_is_found() {
        let edge = |a: &str, b: &str| (a.to_owned(), BTreeSet::from([b.to_owned()]));
        let g = BTreeMap::from([edge("a", "b"), edge("b", "c"), edge("c", "a")]);
        assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
        let g = BTreeMap::from([edge("a", "b"), edge("b", "c")]);
        assert_eq!(cycle(&g), None);
    }
}
