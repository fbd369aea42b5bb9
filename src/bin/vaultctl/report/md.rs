//! The report as CommonMark with GFM tables.

use super::tables::{self, Table};
use super::when;
use std::fmt::Write;
use vault::commands::report::Report;

/// A table cell: no pipe or line break may end the cell early.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn draw(out: &mut String, t: &Table) {
    let (head, rows) = (t.head, &t.rows);
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
    draw(&mut o, &tables::encryption(e));
    o.push_str("### Key slots\n\n");
    draw(&mut o, &tables::key_slots(e));
    o.push_str("## Backups\n\n");
    draw(&mut o, &tables::backups(r));
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
        let t = tables::syncs(rem);
        if t.rows.is_empty() {
            o.push_str("No sync in the range.\n\n");
        } else {
            draw(&mut o, &t);
        }
    }
    o.push_str("## Restore drills\n\n");
    if r.drills.is_empty() {
        o.push_str("No drill in the range.\n\n");
    }
    for d in &r.drills {
        let _ = writeln!(o, "### Drill of {} at {}: {}\n", cell(&d.target()), when(d.started_unix), d.result().label());
        draw(&mut o, &tables::drill(d));
        for t in [tables::drill_collections(d), tables::drill_tables(d)].into_iter().flatten() {
            draw(&mut o, &t);
        }
    }
    if let Some(t) = tables::prunes(r) {
        o.push_str("## Retention (prunes)\n\n");
        draw(&mut o, &t);
    }
    o.truncate(o.trim_end().len());
    o.push('\n');
    o
}
