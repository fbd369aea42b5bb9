//! The rows of the report's tables, shared by the HTML and markdown forms: each form only
//! says how a table is drawn.

use super::when;
use vault::commands::report::{Encryption, RemoteRow, Report};
use vault::format::log::DrillRecord;
use vault::units::human;

/// A table: its column heads and its rows of cells (plain text; each form escapes).
pub struct Table {
    pub head: &'static [&'static str],
    pub rows: Vec<Vec<String>>,
}

pub fn encryption(e: &Encryption) -> Table {
    Table {
        head: &["what", "in use"],
        rows: vec![
            vec!["cipher".into(), e.cipher.into()],
            vec!["chunk ids".into(), e.chunk_ids.into()],
            vec!["keys".into(), e.key_derivation.into()],
            vec!["compression".into(), e.compression.clone()],
            vec!["average chunk".into(), human(e.chunk_avg_bytes as u64)],
        ],
    }
}

pub fn key_slots(e: &Encryption) -> Table {
    Table {
        head: &["slot", "kind", "label", "created", "key derivation"],
        rows: e
            .slots
            .iter()
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.kind.into(),
                    s.label.clone(),
                    when(s.created_unix),
                    s.kdf.clone().unwrap_or("-".into()),
                ]
            })
            .collect(),
    }
}

pub fn backups(r: &Report) -> Table {
    Table {
        head: &["period", "state", "files", "logical", "new stored", "dedup", "since previous", "jobs", "marked"],
        rows: r
            .periods
            .iter()
            .map(|p| {
                let jobs: Vec<String> = p
                    .jobs
                    .iter()
                    .map(|j| format!("{} ({}, {:.0} s)", if j.ok { "ok" } else { "FAILED" }, j.outcome(), j.seconds))
                    .collect();
                vec![
                    p.period.clone(),
                    if p.sealed { "sealed" } else { "open" }.into(),
                    p.files.to_string(),
                    human(p.logical_bytes),
                    human(p.new_bytes),
                    format!("{:.1}x", p.dedup_ratio),
                    p.rpo_hours.map(|h| format!("{h:.1} h")).unwrap_or("-".into()),
                    if jobs.is_empty() { "-".into() } else { jobs.join("; ") },
                    format!("{} failed, {} incomplete", p.failed_files, p.incomplete_files),
                ]
            })
            .collect(),
    }
}

pub fn syncs(rem: &RemoteRow) -> Table {
    Table {
        head: &["time", "result", "objects uploaded", "bytes uploaded", "seconds"],
        rows: rem
            .syncs
            .iter()
            .map(|x| {
                vec![
                    when(x.time_unix),
                    if x.complete {
                        "complete".into()
                    } else {
                        format!("INCOMPLETE: {}", x.error.as_deref().unwrap_or("?"))
                    },
                    x.uploaded.to_string(),
                    human(x.uploaded_bytes),
                    format!("{:.1}", x.seconds),
                ]
            })
            .collect(),
    }
}

pub fn drill(d: &DrillRecord) -> Table {
    let phases: Vec<String> = d.phases.iter().map(|(k, v)| format!("{k} {v:.2} s")).collect();
    Table {
        head: &["what", "value"],
        rows: vec![
            vec!["store read".into(), d.repo.clone()],
            vec!["files read".into(), format!("{} ({})", d.files, human(d.bytes_read))],
            vec!["checked".into(), d.summary()],
            vec!["RTO".into(), format!("{:.2} s ({})", d.rto_seconds, phases.join(", "))],
            vec!["RPO".into(), format!("{:.1} h", d.rpo_seconds / 3600.0)],
            vec!["errors".into(), if d.errors.is_empty() { "none".into() } else { d.errors.join("; ") }],
        ],
    }
}

/// What a drill of mongodump archives counted, per collection (`None` for other drills).
pub fn drill_collections(d: &DrillRecord) -> Option<Table> {
    (!d.collections.is_empty()).then(|| Table {
        head: &["file", "collection", "documents", "restored", "CRC"],
        rows: d
            .collections
            .iter()
            .map(|c| {
                vec![
                    c.file.clone(),
                    c.ns.clone(),
                    c.archive_count.to_string(),
                    c.restored_count.map(|n| n.to_string()).unwrap_or("-".into()),
                    if c.crc_ok { "ok".into() } else { "MISMATCH".into() },
                ]
            })
            .collect(),
    })
}

/// What a drill of PostgreSQL dumps counted, per table (`None` for other drills).
pub fn drill_tables(d: &DrillRecord) -> Option<Table> {
    (!d.tables.is_empty()).then(|| Table {
        head: &["file", "table", "rows", "restored"],
        rows: d
            .tables
            .iter()
            .map(|t| {
                vec![
                    t.file.clone(),
                    t.table.clone(),
                    t.archive_count.map(|n| n.to_string()).unwrap_or("-".into()),
                    t.restored_count.map(|n| n.to_string()).unwrap_or("-".into()),
                ]
            })
            .collect(),
    })
}

/// The prunes in the range (`None` when there was none).
pub fn prunes(r: &Report) -> Option<Table> {
    (!r.prunes.is_empty()).then(|| Table {
        head: &["time", "policy", "forgotten", "stored"],
        rows: r
            .prunes
            .iter()
            .map(|p| {
                vec![
                    when(p.time_unix),
                    p.policy.clone(),
                    if p.forgotten.is_empty() { "-".into() } else { p.forgotten.join(", ") },
                    format!("{} -> {}", human(p.stored_before), human(p.stored_after)),
                ]
            })
            .collect(),
    })
}
