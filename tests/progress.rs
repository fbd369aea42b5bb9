//! Progress bars: drawn on a terminal (a pseudo-terminal from `script`), never into a pipe,
//! never with --quiet.

mod common;
use common::*;

/// Runs vaultctl on a pseudo-terminal; returns everything it wrote there.
fn on_terminal(e: &Env, args: &[&str]) -> String {
    let script = require_tool("script");
    let mut line = shell_quote(vaultctl_bin().to_str().unwrap());
    for a in args {
        line.push(' ');
        line.push_str(&shell_quote(a));
    }
    let c = e.cmd(&[]);
    let o = std::process::Command::new(script)
        .args(["-qec", &line, "/dev/null"])
        .envs(c.get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "vaultctl {args:?} on a terminal: {out}");
    out
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn bars_are_drawn_on_a_terminal_only() {
    let e = Env::new();
    e.init();
    let f = e.path("dump");
    std::fs::write(&f, data(3_000_000, 3)).unwrap();
    let out = on_terminal(&e, &["put", "today", f.to_str().unwrap()]);
    assert!(out.contains("storing today [") && out.contains("MiB"), "{out:?}");
    assert!(out.contains("stored "), "the report follows: {out:?}");

    let quiet = on_terminal(&e, &["--quiet", "put", "again", f.to_str().unwrap()]);
    assert!(!quiet.contains("storing") && quiet.contains("stored "), "{quiet:?}");

    let dest = e.path("restored");
    let out = on_terminal(&e, &["restore", "current", dest.to_str().unwrap()]);
    assert!(out.contains("restoring ["), "{out:?}");
    let out = on_terminal(&e, &["check", "--read-data"]);
    assert!(out.contains("reading packs ["), "{out:?}");
    let out = on_terminal(&e, &["drill", "--snapshot", "current"]);
    assert!(out.contains("drill ["), "{out:?}");

    // Into pipes: the report alone, nothing on standard error.
    for args in
        [&["put", "third", f.to_str().unwrap()][..], &["check", "--read-data"], &["drill", "--snapshot", "current"]]
    {
        let o = e.run(args);
        assert!(o.status.success(), "{args:?}");
        assert!(o.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
}
