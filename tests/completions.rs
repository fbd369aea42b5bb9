//! Shell completions and man pages generated from the clap definitions: bash completes the
//! commands and their flags; groff renders every man page without a warning.

mod common;
use common::*;
use std::process::Command;

#[test]
fn bash_completes_commands_and_flags() {
    let e = Env::new();
    let script = e.ok(&["completions", "bash"]);
    let file = e.path("vaultctl.bash");
    std::fs::write(&file, &script).unwrap();
    let complete = |words: &str| {
        let prog = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _vaultctl vaultctl \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let o = Command::new("bash").arg("-c").arg(&prog).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let cmds = complete("vaultctl dr");
    assert_eq!(cmds.trim(), "drill", "{cmds}");
    let flags = complete("vaultctl sync --bw");
    assert_eq!(flags.trim(), "--bwlimit", "{flags}");
    let all = complete("vaultctl ''");
    for c in ["init", "status", "sync", "report", "completions", "man"] {
        assert!(all.lines().any(|l| l == c), "{c} not offered: {all}");
    }
    for shell in ["zsh", "fish"] {
        assert!(e.ok(&["completions", shell]).contains("vaultctl"));
    }
}

#[test]
fn man_pages_for_every_command_render_cleanly() {
    let e = Env::new();
    let dir = e.path("man1");
    e.ok(&["man", dir.to_str().unwrap()]);
    let mut pages: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|d| d.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pages.sort();
    for want in ["vaultctl.1", "vaultctl-status.1", "vaultctl-key-add.1", "vaultctl-report.1"] {
        assert!(pages.iter().any(|p| p == want), "{want} missing: {pages:?}");
    }
    let groff = require_tool("groff");
    for p in &pages {
        let o = Command::new(&groff).args(["-man", "-Tutf8", "-ww"]).arg(dir.join(p)).output().unwrap();
        assert!(o.status.success() && o.stderr.is_empty(), "{p}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(!o.stdout.is_empty(), "{p}");
    }
    // Plain text: no overstriking for bold and underline.
    let sync = Command::new(&groff)
        .args(["-man", "-Tascii", "-P", "-cbou"])
        .arg(dir.join("vaultctl-sync.1"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sync.stdout);
    assert!(text.contains("bwlimit") && text.contains("VAULT_REPO"), "{text}");
}
