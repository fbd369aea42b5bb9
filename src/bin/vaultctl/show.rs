//! What several commands share: formatting of times, modes and file states, and writing an
//! output file atomically.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use vault::format::tree::{FileState, NodeKind};

/// `ls -l`'s mode column: the node type, then rwx triples with set-id and sticky bits.
pub fn mode_string(mode: u32, kind: &NodeKind) -> String {
    let t = match kind {
        NodeKind::Dir { .. } => 'd',
        NodeKind::Symlink { .. } => 'l',
        NodeKind::File { .. } => '-',
        NodeKind::Fifo => 'p',
        NodeKind::Socket => 's',
        NodeKind::CharDevice { .. } => 'c',
        NodeKind::BlockDevice { .. } => 'b',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    // Set-id and sticky bits, as ls shows them.
    let special = [(0o4000, 3, 's'), (0o2000, 6, 's'), (0o1000, 9, 't')];
    for (bit, pos, c) in special {
        if mode & bit != 0 {
            let exec = s.as_bytes()[pos] == b'x';
            let ch = if exec { c } else { c.to_ascii_uppercase() };
            s.replace_range(pos..pos + 1, &ch.to_string());
        }
    }
    s
}

/// A time in nanoseconds since the epoch, local, to the second.
pub fn fmt_time_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

pub fn state_name(s: FileState) -> &'static str {
    match s {
        FileState::Complete => "complete",
        FileState::Incomplete => "incomplete",
        FileState::Failed => "failed",
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new one, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
