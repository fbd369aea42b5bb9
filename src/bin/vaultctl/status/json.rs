//! `status --json`: one object, schema version 1 (docs/OPERATIONS.md, "Machine-readable
//! output"). Fields are added, never renamed or removed, without a new `schema` number.

use super::Alert;
use serde_json::{json, Value};
use vault::commands::status::Status;

pub fn render(vault: &str, current_period: &str, s: &Status, max_age_hours: f64, alert: Option<Alert>) -> Value {
    let secs = |ns: Option<i64>| ns.map(|n| n.div_euclid(1_000_000_000));
    let drill = |d: &vault::format::log::DrillRecord| {
        json!({
            "snapshot": d.snapshot,
            "path": d.path,
            "started_unix": d.started_unix,
            "result": d.result().name(),
            "rto_seconds": d.rto_seconds,
            "rpo_seconds": d.rpo_seconds,
            "checked": d.summary(),
            "errors": d.errors.len(),
        })
    };
    json!({
        "schema": 1,
        "vault": vault,
        "now_unix": s.now_unix_ns.div_euclid(1_000_000_000),
        "newest_backup": s.newest_period.as_ref().map(|p| json!({
            "period": p,
            "last_write_unix": secs(s.newest_write_unix_ns),
            "age_seconds": s.age_seconds,
        })),
        "latest_sealed": s.newest_sealed.as_ref().map(|p| json!({
            "period": p,
            "last_write_unix": secs(s.newest_sealed_write_unix_ns),
        })),
        "current_period": match &s.current {
            Some(c) => json!({"period": c.period, "written": true, "sealed": c.sealed, "files": c.files,
                              "logical_bytes": c.logical_bytes}),
            None => json!({"period": current_period, "written": false, "sealed": false, "files": 0,
                           "logical_bytes": 0}),
        },
        "remotes": s.syncs.iter().map(|(name, last)| json!({
            "name": name,
            "last_sync": last.as_ref().map(|x| json!({
                "time_unix": x.time_unix,
                "complete": x.complete,
                "uploaded": x.uploaded,
                "uploaded_bytes": x.uploaded_bytes,
                "seconds": x.seconds,
            })),
        })).collect::<Vec<_>>(),
        "last_drill": s.last_drill.as_ref().map(drill),
        "last_file_drill": s.last_file_drill.as_ref().map(drill),
        "last_job": s.last_job.as_ref().map(|j| json!({
            "ok": j.ok,
            "started_unix": j.started_unix,
            "ended_unix": j.ended_unix,
            "seconds": j.seconds,
            "exit_code": j.exit_code,
            "signal": j.signal,
            "interrupted_by": j.interrupted_by,
            "error": j.error,
            "command": j.command,
            "host": j.host,
            "files": j.files.iter().map(|f| json!({"period": f.period, "path": f.path, "size": f.size}))
                .collect::<Vec<_>>(),
        })),
        "damaged_log_entries": s.damaged_log_entries,
        "max_age_hours": max_age_hours,
        "alert": alert.map(Alert::name),
    })
}
