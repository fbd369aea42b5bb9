//! The help output of every `vaultctl` command, compared with tests/fixtures/help/*.txt: a
//! change to an argument, a default or a description shows in the diff of these files.
//! `VAULT_BLESS_HELP=1 cargo test --test help` rewrites them after a deliberate change.

mod common;
use common::vaultctl_bin;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn help(path: &[String]) -> String {
    let mut c = Command::new(vaultctl_bin());
    // The help shows the value of an `env` argument: none may leak in from the caller.
    for (k, _) in std::env::vars() {
        if k.starts_with("VAULT_") {
            c.env_remove(k);
        }
    }
    let o = c.args(path).arg("--help").output().unwrap();
    assert!(o.status.success(), "vaultctl {} --help: {}", path.join(" "), String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The sub commands a help text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| l.as_bytes().get(2).is_some_and(|b| *b != b' '))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|c| c != "help")
        .collect()
}

fn collect(path: Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    let h = help(&path);
    for sub in subcommands(&h) {
        let mut p = path.clone();
        p.push(sub);
        collect(p, out);
    }
    out.push((path, h));
}

#[test]
fn help_of_every_command_is_as_recorded() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/help");
    let bless = std::env::var_os("VAULT_BLESS_HELP").is_some();
    let mut all = Vec::new();
    collect(Vec::new(), &mut all);
    assert!(all.len() > 20, "only {} commands found: {all:?}", all.len());
    let mut names = BTreeSet::new();
    let mut differ = Vec::new();
    for (path, text) in &all {
        let name = if path.is_empty() { "vaultctl".to_string() } else { format!("vaultctl-{}", path.join("-")) };
        let file = dir.join(format!("{name}.txt"));
        names.insert(format!("{name}.txt"));
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_default();
        if want != *text {
            differ.push(format!("{}:\n--- recorded\n{want}\n+++ now\n{text}", file.display()));
        }
    }
    let recorded: BTreeSet<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let stale: Vec<&String> = recorded.difference(&names).collect();
    assert!(stale.is_empty() || bless, "help files of commands that no longer exist: {stale:?}");
    assert!(differ.is_empty(), "help output changed (VAULT_BLESS_HELP=1 rewrites the files):\n{}", differ.join("\n"));
}
