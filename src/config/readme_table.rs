//! README.md's configuration table, checked against clap's definitions so
//! the two cannot drift.
//!
//! The rule for the default column:
//! - where clap has a default, the cell is exactly that default in
//!   backticks (several defaults are joined with `,`);
//! - where clap has none, the cell says so in words, in parentheses:
//!   `(none)`, `(required)`, `(required for the API, …)`.

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory as _;

use super::Cli;

/// Variables the table lists that are not clap arguments, with the default
/// the table must show for each.
const NOT_CLAP: &[(&str, &str)] = &[
    // Read by tracing's `EnvFilter`, not by clap.
    ("RUST_LOG", crate::telemetry::DEFAULT_LOG_FILTER),
];

/// Each variable clap reads, with its default (`None`: it has none), from
/// every subcommand. A variable several subcommands share must have one default.
fn clap_variables() -> BTreeMap<String, Option<String>> {
    variables_of(&Cli::command())
}

/// The variables of `cmd` and its subcommands, with their defaults.
fn variables_of(cmd: &clap::Command) -> BTreeMap<String, Option<String>> {
    fn walk(cmd: &clap::Command, out: &mut BTreeMap<String, Option<String>>) {
        for arg in cmd.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let env = env.to_str().expect("variable names are UTF-8").to_owned();
            let defaults = arg.get_default_values();
            let default = (!defaults.is_empty()).then(|| {
                let parts: Vec<_> = defaults.iter().map(|d| d.to_string_lossy()).collect();
                parts.join(",")
            });
            if let Some(seen) = out.insert(env.clone(), default.clone()) {
                assert_eq!(seen, default, "{env} has two defaults in clap");
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = BTreeMap::new();
    walk(cmd, &mut out);
    out
}

/// Each variable in README.md's configuration table, with its default cell.
/// A row may name several variables (`` `A`, `B` ``); the cell is each one's.
fn readme_variables() -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = readme
        .split_once("\n## Configuration\n")
        .expect("README.md has a ## Configuration section")
        .1;
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut out = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (names, default) = (cells[1], cells[2]);
        for name in names.split(',').map(|n| n.trim().trim_matches('`')) {
            let dup = out.insert(name.to_owned(), default.to_owned());
            assert!(dup.is_none(), "{name} has two rows in README.md's table");
        }
    }
    out
}

#[test]
fn the_readmes_configuration_table_names_every_setting_clap_reads() {
    let clap = clap_variables();
    let readme = readme_variables();
    let mut expected: BTreeSet<&str> = clap.keys().map(String::as_str).collect();
    for (name, _) in NOT_CLAP {
        assert!(!clap.contains_key(*name), "{name} is a clap argument now");
        expected.insert(name);
    }
    // The README says each is a `serve` flag too.
    let cli = Cli::command();
    let serve = variables_of(cli.find_subcommand("serve").expect("a serve command"));
    let not_serve: Vec<_> = clap.keys().filter(|k| !serve.contains_key(*k)).collect();
    assert!(not_serve.is_empty(), "not `serve` flags: {not_serve:?}");
    let listed: BTreeSet<&str> = readme.keys().map(String::as_str).collect();
    let missing: Vec<_> = expected.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&expected).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README.md's configuration table misses {missing:?} and lists {unknown:?}, which nothing reads"
    );
}

#[test]
fn the_readmes_configuration_table_shows_clap_defaults() {
    let readme = readme_variables();
    let mut wrong = Vec::new();
    let expected = clap_variables().into_iter().chain(
        NOT_CLAP
            .iter()
            .map(|(n, d)| ((*n).to_owned(), Some((*d).to_owned()))),
    );
    for (name, default) in expected {
        let Some(cell) = readme.get(&name) else {
            continue; // the test above names it
        };
        let fine = match &default {
            Some(d) => *cell == format!("`{d}`"),
            None => cell.starts_with('(') && cell.ends_with(')'),
        };
        if !fine {
            let want = default.map_or("(none) or another word in parentheses".to_owned(), |d| {
                format!("`{d}`")
            });
            wrong.push(format!("{name}: README.md says {cell}, should say {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
