//! The report as CommonMark with GFM tables.

use super::when;
use std::fmt::Write;
use vault::commands::report::Report;
use vault::units::human;

/// A table cell: no pipe or line break may end the cell early.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# Backup evidence: {}\n", cell(&r.vault));
    let _ = writeln!(
        o,
        "Vault {} ({} periods, time zone {}). Generated {}, covering events since {}.\n",
        r.vault_id,
        r.period_kind,
        r.time_zone,
        when(r.generated_unix),
        when(r.since_unix)
    );
    o.push_str("## Gaps\n\n");
    if r.gaps.is_empty() {
        o.push_str("None: a backup in every period, every job succeeded, every remote up to date, drills passed.\n\n");
    } else {
        for g in &r.gaps {
            let _ = writeln!(o, "- **{}**: {}", g.kind, g.what.replace(['\n', '\r'], " "));
        }
        o.push('\n');
    }
    let e = &r.encryption;
    o.push_str("## Encryption\n\n");
    table(
        &mut o,
        &["what", "in use"],
        &[
            vec!["cipher".into(), e.cipher.into()],
            vec!["chunk ids".into(), e.chunk_ids.into()],
            vec!["keys".into(), e.key_derivation.into()],
            vec!["compression".into(), e.compression.clone()],
            vec!["average chunk".into(), human(e.chunk_avg_bytes as u64)],
        ],
    );
    o.push_str("### Key slots\n\n");
    let slots: Vec<Vec<String>> = e
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
        .collect();
    table(&mut o, &["slot", "kind", "label", "created", "key derivation"], &slots);
    o.push_str("## Backups\n\n");
    let rows: Vec<Vec<String>> = r
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
        .collect();
    table(
        &mut o,
        &["period", "state", "files", "logical", "new stored", "dedup", "since previous", "jobs", "marked"],
        &rows,
    );
    o.push_str("## Offsite syncs\n\n");
    if r.remotes.is_empty() {
        o.push_str("No remote is registered.\n\n");
    }
    for rem in &r.remotes {
        let _ = writeln!(
            o,
            "### {} ({}{})\n\n{}\n",
            cell(&rem.name),
            cell(&rem.url),
            if rem.flags.is_empty() { String::new() } else { format!(", {}", rem.flags) },
            if rem.up_to_date { "Up to date with the newest backup." } else { "**Lacks the newest backup.**" }
        );
        let rows: Vec<Vec<String>> = rem
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
            .collect();
        if rows.is_empty() {
            o.push_str("No sync in the range.\n\n");
        } else {
            table(&mut o, &["time", "result", "objects uploaded", "bytes uploaded", "seconds"], &rows);
        }
    }
    o.push_str("## Restore drills\n\n");
    if r.drills.is_empty() {
        o.push_str("No drill in the range.\n\n");
    }
    for d in &r.drills {
        let phases: Vec<String> = d.phases.iter().map(|(k, v)| format!("{k} {v:.2} s")).collect();
        let _ = writeln!(o, "### Drill of {} at {}: {}\n", cell(&d.target()), when(d.started_unix), d.result().label());
        table(
            &mut o,
            &["what", "value"],
            &[
                vec!["store read".into(), d.repo.clone()],
                vec!["files read".into(), format!("{} ({})", d.files, human(d.bytes_read))],
                vec!["checked".into(), d.summary()],
                vec!["RTO".into(), format!("{:.2} s ({})", d.rto_seconds, phases.join(", "))],
                vec!["RPO".into(), format!("{:.1} h", d.rpo_seconds / 3600.0)],
                vec!["errors".into(), if d.errors.is_empty() { "none".into() } else { d.errors.join("; ") }],
            ],
        );
        if !d.collections.is_empty() {
            let rows: Vec<Vec<String>> = d
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
                .collect();
            table(&mut o, &["file", "collection", "documents", "restored", "CRC"], &rows);
        }
        if !d.tables.is_empty() {
            let rows: Vec<Vec<String>> = d
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
                .collect();
            table(&mut o, &["file", "table", "rows", "restored"], &rows);
        }
    }
    if !r.prunes.is_empty() {
        o.push_str("## Retention (prunes)\n\n");
        let rows: Vec<Vec<String>> = r
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
            .collect();
        table(&mut o, &["time", "policy", "forgotten", "stored"], &rows);
    }
    o.truncate(o.trim_end().len());
    o.push('\n');
    o
}
