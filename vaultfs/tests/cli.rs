//! `vaultfs` as a command: the help of every command as recorded in tests/fixtures/help
//! (`VAULT_BLESS_HELP=1` rewrites them after a deliberate change), bash completion, and man
//! pages that groff renders without a warning.

use std::path::{Path, PathBuf};
use std::process::Command;

fn vaultfs(args: &[&str]) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vaultfs"));
    // The help shows the value of an `env` argument: none may leak in from the caller.
    for (k, _) in std::env::vars() {
        if k.starts_with("VAULT_") {
            c.env_remove(k);
        }
    }
    let o = c.args(args).output().unwrap();
    assert!(o.status.success(), "vaultfs {}: {}", args.join(" "), String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn require_tool(name: &str) -> PathBuf {
    let out = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    assert!(out.status.success(), "this test needs `{name}`; install it with scripts/install-deps.sh");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn help_of_every_command_is_as_recorded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/help");
    let bless = std::env::var_os("VAULT_BLESS_HELP").is_some();
    let mut differ = Vec::new();
    for cmd in [&[][..], &["mount"], &["completions"], &["man"]] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let text = vaultfs(&args);
        let name = std::iter::once("vaultfs").chain(cmd.iter().copied()).collect::<Vec<_>>().join("-");
        let file = dir.join(format!("{name}.txt"));
        if bless {
            std::fs::write(&file, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_default();
        if want != text {
            differ.push(format!("{}:\n--- recorded\n{want}\n+++ now\n{text}", file.display()));
        }
    }
    assert!(differ.is_empty(), "help output changed (VAULT_BLESS_HELP=1 rewrites the files):\n{}", differ.join("\n"));
}

#[test]
fn bash_completes_commands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vaultfs.bash");
    std::fs::write(&file, vaultfs(&["completions", "bash"])).unwrap();
    let complete = |words: &str| {
        let prog = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _vaultfs vaultfs \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let o = Command::new("bash").arg("-c").arg(&prog).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let cmds = complete("vaultfs mo");
    assert_eq!(cmds.trim(), "mount", "{cmds}");
    let flags = complete("vaultfs mount --read");
    assert_eq!(flags.trim(), "--read-only", "{flags}");
    assert!(vaultfs(&["completions", "zsh"]).contains("vaultfs"));
}

#[test]
fn man_pages_render_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man1");
    vaultfs(&["man", man.to_str().unwrap()]);
    let groff = require_tool("groff");
    for p in ["vaultfs.1", "vaultfs-mount.1"] {
        let o = Command::new(&groff).args(["-man", "-Tascii", "-ww", "-P", "-cbou"]).arg(man.join(p)).output().unwrap();
        assert!(o.status.success() && o.stderr.is_empty(), "{p}: {}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("vaultfs"), "{p}: {text}");
        if p == "vaultfs-mount.1" {
            assert!(text.contains("read-only") && text.contains("VAULT_CACHE_DIR"), "{text}");
        }
    }
}
