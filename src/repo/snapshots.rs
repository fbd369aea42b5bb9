//! Snapshot revisions: listing, choosing the current revision of each period, resolving
//! `latest` and `PERIOD/PATH` specs.

use super::Vault;
use crate::crypto::Domain;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::store::ObjKind;
use rayon::prelude::*;
use std::collections::BTreeMap;

/// The current revision of one period, plus the superseded revisions still stored.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    pub snap: Snapshot,
    pub superseded: Vec<SnapshotId>,
}

impl Vault {
    /// Every period's current revision, oldest period first. A revision that fails to
    /// decrypt is an error: what writes (a commit choosing its base, prune choosing what
    /// stays) never skips snapshot metadata.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let (snaps, damaged) = self.readable_snapshots()?;
        match damaged.into_iter().next() {
            Some((id, e)) => Err(Error::new(
                e.kind(),
                format!(
                    "{e} (restore snapshots/{} from an offsite copy; or move it out of snapshots/ to go on \
                     without that revision)",
                    id.to_hex()
                ),
            )),
            None => Ok(snaps),
        }
    }

    /// [`Vault::snapshots`] for reading: the revisions that decrypt, and apart the ones that
    /// do not (their period cannot be known: a damaged newest revision of a period leaves the
    /// revision before it current here). Reads of the rest go on.
    #[allow(clippy::type_complexity)]
    pub fn readable_snapshots(&self) -> Result<(Vec<SnapshotInfo>, Vec<(SnapshotId, Error)>)> {
        let mut names = self.store.list(ObjKind::Snapshot)?;
        // On an object-locked copy, revisions the vault no longer has stay while retained:
        // not part of the copy's vault (their data may be gone).
        if let Some(current) = self.current_on_copy(ObjKind::Snapshot)? {
            names.retain(|(n, _)| current.contains(n));
        }
        let read: Vec<(SnapshotId, Result<Snapshot>)> = names
            .par_iter()
            .filter_map(|(n, _)| SnapshotId::from_hex(n).ok())
            .map(|id| (id, self.read_snapshot(&id)))
            .collect();
        let mut revs = Vec::new();
        let mut damaged = Vec::new();
        for (id, r) in read {
            match r {
                Ok(s) => revs.push((id, s)),
                Err(e) if matches!(e.kind(), crate::ErrorKind::Corrupt | crate::ErrorKind::NotFound) => {
                    damaged.push((id, e))
                }
                Err(e) => return Err(e),
            }
        }
        damaged.sort_by_key(|(id, _)| *id);
        let mut by_period: BTreeMap<String, Vec<(SnapshotId, Snapshot)>> = BTreeMap::new();
        for (id, s) in revs {
            by_period.entry(s.period.clone()).or_default().push((id, s));
        }
        let mut out = Vec::new();
        for (_, mut revs) in by_period {
            // A sealed revision is final; otherwise the highest sequence number wins.
            revs.sort_by_key(|(id, s)| (s.sealed, s.seq, *id));
            let (id, snap) = revs.pop().ok_or_else(|| Error::corrupt("empty period"))?;
            out.push(SnapshotInfo { id, snap, superseded: revs.into_iter().map(|(id, _)| id).collect() });
        }
        Ok((out, damaged))
    }

    pub(crate) fn read_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        if let Some(s) = self.snap_cache.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(s.clone());
        }
        let what = format!("snapshot {}", id.short());
        let raw = self.store.get(ObjKind::Snapshot, &id.to_hex()).map_err(|e| e.context(&what))?;
        let plain = self.sealer.open(Domain::Snapshot, id.as_bytes(), &raw).map_err(|e| e.context(&what))?;
        let s = Snapshot::decode(&plain).map_err(|e| e.context(&what))?;
        self.note_revision(*id, &s);
        Ok(s)
    }

    /// Remembers a decoded revision (written or read by this process).
    pub(crate) fn note_revision(&self, id: SnapshotId, s: &Snapshot) {
        let mut c = self.snap_cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() > 4096 {
            c.clear();
        }
        c.insert(id, s.clone());
    }

    /// Resolves `latest` (newest sealed), `today`/`current` (the current period) or a period
    /// name.
    pub fn resolve(&self, spec: &str) -> Result<SnapshotInfo> {
        let all = self.readable_snapshots()?.0;
        let found = match spec {
            "latest" => all.into_iter().rev().find(|s| s.snap.sealed),
            "current" => {
                let cur = self.clock.current();
                all.into_iter().find(|s| s.snap.period == cur)
            }
            p => all.into_iter().find(|s| s.snap.period == p),
        };
        found.ok_or_else(|| match spec {
            "latest" => Error::not_found("no sealed snapshot yet (`latest` is the newest sealed period)"),
            _ => Error::not_found(format!("no snapshot for period {spec:?}")),
        })
    }
}

/// Refuses new content for `period` when the vault already holds a later period: the clock of
/// this machine is behind the vault's, and writing would backdate a snapshot (sealing an ended
/// period is not new content and does not come here).
pub fn refuse_backdating(snaps: &[SnapshotInfo], period: &str) -> Result<()> {
    match snaps.iter().map(|s| s.snap.period.as_str()).filter(|p| *p > period).max() {
        Some(newest) => Err(Error::invalid(format!(
            "this machine's clock says the period is {period}, but the vault already holds {newest}: refusing to \
             write into the past (a snapshot's date comes from the clock; check it, e.g. `timedatectl`)"
        ))),
        None => Ok(()),
    }
}

/// Splits `PERIOD[/PATH]` into its two parts.
pub fn split_spec(spec: &str) -> (&str, &str) {
    match spec.split_once('/') {
        Some((p, rest)) => (p, rest),
        None => (spec, ""),
    }
}
