//! The report as one self-contained HTML page: inline CSS and inline SVG charts (backup size
//! and new bytes per period, RPO per period, RTO per drill); no script, nothing loaded from
//! elsewhere, so it renders the same offline and in an auditor's archive.

use super::when;
use std::fmt::Write;
use vault::commands::report::Report;
use vault::units::human;

/// A number with three significant digits or so (axis labels of small RTOs stay distinct).
fn short(v: f64) -> String {
    match v.abs() {
        0.0 => "0".into(),
        a if a < 0.01 => format!("{v:.4}"),
        a if a < 1.0 => format!("{v:.3}"),
        a if a < 100.0 => format!("{v:.1}"),
        _ => format!("{v:.0}"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>\n");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n");
}

/// A bar chart: one group of bars per label, one bar per series (name, colour, values).
fn bar_chart(
    title: &str,
    labels: &[String],
    series: &[(&str, &str, Vec<f64>)],
    unit: &dyn Fn(f64) -> String,
) -> String {
    let (w, h, left, bottom, top) = (760.0, 260.0, 80.0, 60.0, 30.0);
    let max = series.iter().flat_map(|s| s.2.iter().copied()).fold(0.0_f64, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let n = labels.len().max(1) as f64;
    // Bars no wider than 80 px a group: one drill is not a wall.
    let group = ((w - left - 10.0) / n).min(80.0);
    let bar = (group * 0.8 / series.len().max(1) as f64).max(1.0);
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / max);
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\" aria-label=\"{t}\"><title>{t}</title>",
        t = esc(title)
    );
    let _ = write!(s, "<text x=\"{left}\" y=\"18\" class=\"t\">{}</text>", esc(title));
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"g\"/><text x=\"{}\" y=\"{:.1}\" class=\"a\" \
             text-anchor=\"end\">{}</text>",
            w - 10.0,
            left - 4.0,
            y(v) + 4.0,
            esc(&unit(v)),
            y = y(v)
        );
    }
    for (i, label) in labels.iter().enumerate() {
        let x0 = left + group * i as f64 + group * 0.1;
        for (k, (name, colour, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0.0);
            let x = x0 + bar * k as f64;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{}: {} {}</title></rect>",
                y(v),
                (bar - 1.0).max(0.5),
                (h - bottom - y(v)).max(0.0),
                esc(label),
                esc(name),
                esc(&unit(v))
            );
        }
        // Every label when they fit, else about 12 of them.
        let every = (labels.len() / 12).max(1);
        if i % every == 0 {
            let (lx, ly) = (x0 + group * 0.4, h - bottom + 14.0);
            let _ = write!(
                s,
                "<text x=\"{lx:.1}\" y=\"{ly:.1}\" class=\"a\" text-anchor=\"end\" transform=\"rotate(-40 {lx:.1} {ly:.1})\">{}</text>",
                esc(label)
            );
        }
    }
    for (k, (name, colour, _)) in series.iter().enumerate() {
        let x = w - 200.0 + 100.0 * k as f64 - if series.len() == 1 { -100.0 } else { 0.0 };
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"8\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{}\" y=\"17\" class=\"a\">{}</text>",
            x + 14.0,
            esc(name)
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #bbb;padding:3px 8px;text-align:left;\
font-size:13px}th{background:#eee}.gap{color:#a00}.ok{color:#070}svg .t{font-size:14px;font-weight:bold}\
svg .a{font-size:11px;fill:#444}svg .g{stroke:#ddd}figure{margin:1em 0}";

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Backup evidence: {}</title>\
         <style>{STYLE}</style></head><body>\n<h1>Backup evidence: {}</h1>\n<p>Vault {} ({} periods, time zone {}). \
         Generated {}, covering events since {}.</p>\n",
        esc(&r.vault),
        esc(&r.vault),
        esc(&r.vault_id),
        r.period_kind,
        esc(&r.time_zone),
        when(r.generated_unix),
        when(r.since_unix)
    );
    o.push_str("<h2>Gaps</h2>\n");
    if r.gaps.is_empty() {
        o.push_str("<p class=\"ok\">None: a backup in every period, every job succeeded, every remote up to date, drills passed.</p>\n");
    } else {
        o.push_str("<ul>\n");
        for g in &r.gaps {
            let _ = writeln!(o, "<li class=\"gap\"><b>{}</b>: {}</li>", g.kind, esc(&g.what));
        }
        o.push_str("</ul>\n");
    }
    let labels: Vec<String> = r.periods.iter().map(|p| p.period.clone()).collect();
    if !r.periods.is_empty() {
        o.push_str(&bar_chart(
            "Backup size and new stored bytes per period",
            &labels,
            &[
                ("logical", "#4a7ab5", r.periods.iter().map(|p| p.logical_bytes as f64).collect()),
                ("new stored", "#e39b3b", r.periods.iter().map(|p| p.new_bytes as f64).collect()),
            ],
            &|v| human(v as u64),
        ));
        o.push_str(&bar_chart(
            "RPO: hours since the previous backup",
            &labels,
            &[("RPO", "#8a5bb0", r.periods.iter().map(|p| p.rpo_hours.unwrap_or(0.0)).collect())],
            &|v| format!("{} h", short(v)),
        ));
    }
    if !r.drills.is_empty() {
        let dl: Vec<String> = r.drills.iter().map(|d| d.target()).collect();
        o.push_str(&bar_chart(
            "RTO per drill",
            &dl,
            &[("RTO", "#3b9e6b", r.drills.iter().map(|d| d.rto_seconds).collect())],
            &|v| format!("{} s", short(v)),
        ));
    }
    let e = &r.encryption;
    o.push_str("<h2>Encryption</h2>\n");
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
    o.push_str("<h3>Key slots</h3>\n");
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
    o.push_str("<h2>Backups</h2>\n");
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
    o.push_str("<h2>Offsite syncs</h2>\n");
    if r.remotes.is_empty() {
        o.push_str("<p>No remote is registered.</p>\n");
    }
    for rem in &r.remotes {
        let _ = writeln!(
            o,
            "<h3>{} ({}{})</h3><p class=\"{}\">{}</p>",
            esc(&rem.name),
            esc(&rem.url),
            if rem.flags.is_empty() { String::new() } else { format!(", {}", esc(&rem.flags)) },
            if rem.up_to_date { "ok" } else { "gap" },
            if rem.up_to_date { "Up to date with the newest backup." } else { "Lacks the newest backup." }
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
        table(&mut o, &["time", "result", "objects uploaded", "bytes uploaded", "seconds"], &rows);
    }
    o.push_str("<h2>Restore drills</h2>\n");
    if r.drills.is_empty() {
        o.push_str("<p class=\"gap\">No drill in the range.</p>\n");
    }
    for d in &r.drills {
        let phases: Vec<String> = d.phases.iter().map(|(k, v)| format!("{k} {v:.2} s")).collect();
        let _ =
            writeln!(o, "<h3>Drill of {} at {}: {}</h3>", esc(&d.target()), when(d.started_unix), d.result().label());
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
        o.push_str("<h2>Retention (prunes)</h2>\n");
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
    o.push_str("</body></html>\n");
    o
}
