//! `prune`: forget snapshots by a retention policy, then really reclaim their space.
//!
//! Under the writer lock, in an order that a kill at any moment cannot hurt:
//!
//! 1. decide which sealed periods go (never the current period, never the newest sealed one)
//!    and which blobs the kept snapshots still reach;
//! 2. delete the forgotten snapshot revisions (from here on their data is unreferenced);
//! 3. copy the live blobs of packs that are mostly unused, or small, into new packs (sealed
//!    bytes are copied verbatim after being authenticated) and write an index file for them;
//! 4. write new index files without the packs that go, then delete the old index files;
//! 5. delete the packs that hold nothing live any more, and packs no index file names (left by
//!    an interrupted write or prune).
//!
//! Killed after 2, 3 or 4, the vault is complete (every kept blob is in a pack some index
//! file names; duplicates are harmless) and the next prune finishes the work: what was left
//! is unreferenced or unindexed and is found again.

use crate::crypto::Domain;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{self as index_format, IndexPack};
use crate::format::log::{PruneRecord, Record};
use crate::format::pack::{frames, PackEntry};
use crate::format::policy::Policy;
use crate::format::tree::NodeKind;
use crate::id::{BlobRef, IndexId, PackId, TreeId};
use crate::repo::frame::{group, member_of, open_frame, seal_frame, SealedFrame};
use crate::repo::{SnapshotInfo, Vault};
use crate::store::ObjKind;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// The stored retention policy, if one was set.
pub fn load_policy(v: &Vault) -> Result<Option<Policy>> {
    match v.store.get(ObjKind::Config, "policy") {
        Ok(b) => {
            let plain = v.sealer.open(Domain::Policy, &v.vault_id, &b).map_err(|e| e.context("policy"))?;
            Ok(Some(Policy::decode(&plain)?))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores the retention policy (an empty policy removes it).
pub fn save_policy(v: &Vault, p: &Policy, lock_wait: Duration) -> Result<()> {
    let _w = v.begin_write("vaultctl policy set", lock_wait)?;
    if p.is_empty() {
        return v.store.delete(ObjKind::Config, "policy");
    }
    v.store.put(ObjKind::Config, "policy", &v.sealer.seal(Domain::Policy, &v.vault_id, &p.encode()))
}

#[derive(Debug, Clone)]
pub struct Options {
    pub policy: Policy,
    /// A pack is repacked when more than this share of it is unused.
    pub max_unused: f64,
}

/// What happens to one snapshot.
#[derive(Debug, Clone)]
pub struct Decision {
    pub info: SnapshotInfo,
    /// Why it is kept (empty: it is forgotten).
    pub reasons: Vec<String>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Newest first.
    pub snapshots: Vec<Decision>,
    /// Packs with nothing live: (pack, size).
    pub delete: Vec<(PackId, u64)>,
    /// Packs whose live blobs are copied out: (pack, size, live bytes).
    pub repack: Vec<(PackId, u64, u64)>,
    /// Packs no index file names.
    pub orphans: Vec<(PackId, u64)>,
    /// Index files naming a pack that goes.
    pub rewrite_index: Vec<IndexId>,
    /// Frames of the packs being repacked, with which members are live there.
    moves: HashMap<PackId, Vec<(Vec<PackEntry>, Vec<bool>)>>,
    /// Index files and their content, as read.
    index_files: Vec<(IndexId, Vec<IndexPack>)>,
    pub packs_before: usize,
    pub stored_before: u64,
    pub live_blobs: usize,
}

impl Plan {
    pub fn forgotten(&self) -> impl Iterator<Item = &Decision> {
        self.snapshots.iter().filter(|d| !d.keep())
    }

    /// Bytes of pack files removed minus the bytes copied into new packs.
    pub fn freed_bytes(&self) -> u64 {
        let gone: u64 = self.delete.iter().chain(&self.orphans).map(|(_, s)| s).sum::<u64>()
            + self.repack.iter().map(|(_, s, _)| s).sum::<u64>();
        gone.saturating_sub(self.repack_bytes())
    }

    pub fn repack_bytes(&self) -> u64 {
        self.repack.iter().map(|(_, _, l)| l).sum()
    }

    pub fn is_noop(&self) -> bool {
        self.forgotten().next().is_none()
            && self.delete.is_empty()
            && self.repack.is_empty()
            && self.orphans.is_empty()
            && self.rewrite_index.is_empty()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub plan: Plan,
    pub forgotten: usize,
    pub packs_deleted: usize,
    pub packs_written: usize,
    pub stored_after: u64,
    pub elapsed: Duration,
}

/// Bucket keys of a period name (`YYYY-MM-DD` or `YYYY-MM-DDTHH`) for each rule.
fn buckets(period: &str) -> Option<[String; 5]> {
    let day = chrono::NaiveDate::parse_from_str(period.get(..10)?, "%Y-%m-%d").ok()?;
    let week = day.format("%G-W%V").to_string();
    Some([period.to_string(), period[..10].to_string(), week, period[..7].to_string(), period[..4].to_string()])
}

/// Applies a policy to the snapshots (oldest first, as `Vault::snapshots` returns them).
/// Returns decisions newest first.
pub fn select(snaps: &[SnapshotInfo], current: &str, policy: &Policy) -> Vec<Decision> {
    let mut out: Vec<Decision> =
        snaps.iter().rev().map(|s| Decision { info: s.clone(), reasons: Vec::new() }).collect();
    for d in out.iter_mut() {
        if d.info.snap.period == current || !d.info.snap.sealed {
            d.reasons.push("current period".into());
        }
    }
    if let Some(d) = out.iter_mut().find(|d| d.info.snap.sealed) {
        d.reasons.push("newest sealed".into());
    }
    let rules = [
        (policy.last, "last", None),
        (policy.hourly, "hourly", Some(0)),
        (policy.daily, "daily", Some(1)),
        (policy.weekly, "weekly", Some(2)),
        (policy.monthly, "monthly", Some(3)),
        (policy.yearly, "yearly", Some(4)),
    ];
    for (count, name, key) in rules {
        let mut left = count;
        let mut last_bucket: Option<String> = None;
        for d in out.iter_mut() {
            if left == 0 {
                break;
            }
            let bucket = match key {
                None => d.info.snap.period.clone(),
                Some(k) => match buckets(&d.info.snap.period) {
                    Some(b) => b[k].clone(),
                    // An unparseable name is never forgotten by a calendar rule.
                    None => {
                        d.reasons.push(format!("{name} (undated)"));
                        continue;
                    }
                },
            };
            if last_bucket.as_deref() != Some(bucket.as_str()) {
                d.reasons.push(name.to_string());
                last_bucket = Some(bucket);
                left -= 1;
            }
        }
    }
    out
}

/// Every blob reachable from the given snapshots (trees, list pages, data chunks).
pub fn live_blobs(v: &Vault, snaps: &[&SnapshotInfo]) -> Result<HashSet<[u8; 33]>> {
    let mut live = HashSet::new();
    let mut seen: HashSet<TreeId> = HashSet::new();
    let mut stack: Vec<TreeId> = snaps.iter().map(|s| s.snap.root).collect();
    while let Some(t) = stack.pop() {
        if !seen.insert(t) {
            continue;
        }
        live.insert(BlobRef::tree(t).key());
        let tree = v.load_tree(t).map_err(|e| e.context(format!("tree {}", t.short())))?;
        for n in &tree.nodes {
            match &n.kind {
                NodeKind::Dir { tree } => stack.push(*tree),
                NodeKind::File { content, .. } => {
                    for (inline, pages) in content.lists() {
                        for c in inline {
                            live.insert(BlobRef::data(c.id).key());
                        }
                        for page in pages {
                            if live.insert(BlobRef::list(page.id).key()) {
                                for c in v.load_list(page)? {
                                    live.insert(BlobRef::data(c.id).key());
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(live)
}

/// What a prune with `o` would do now (reads only).
pub fn plan(v: &Vault, o: &Options) -> Result<Plan> {
    let snaps = v.snapshots()?;
    let decisions = select(&snaps, &v.clock().current(), &o.policy);
    let kept: Vec<&SnapshotInfo> = decisions.iter().filter(|d| d.keep()).map(|d| &d.info).collect();
    let live = live_blobs(v, &kept)?;

    let index_ids: Vec<IndexId> =
        v.store.list(ObjKind::Index)?.into_iter().filter_map(|(n, _)| IndexId::from_hex(&n).ok()).collect();
    // Every index file, or nothing: the packs of one left out would look unreferenced.
    let index_files: Vec<(IndexId, Vec<IndexPack>)> = index_ids
        .par_iter()
        .map(|id| Ok((*id, v.read_index_file(id)?)))
        .collect::<Result<_>>()
        .map_err(|e| e.context("prune needs every index file (run `vaultctl rebuild-index` first)"))?;
    let listed: HashMap<PackId, u64> =
        v.store.list(ObjKind::Pack)?.into_iter().filter_map(|(n, s)| Some((PackId::from_hex(&n).ok()?, s))).collect();

    let mut packs: HashMap<PackId, &IndexPack> = HashMap::new();
    for (_, f) in &index_files {
        for p in f {
            packs.entry(p.pack).or_insert(p);
        }
    }
    // Each live blob is read from one pack: prefer the fullest packs, so that duplicates left
    // by an interrupted prune end up unused.
    let mut order: Vec<&IndexPack> = packs.values().copied().filter(|p| listed.contains_key(&p.pack)).collect();
    order.sort_by_key(|p| (std::cmp::Reverse(p.entries.len()), p.pack.0));
    let mut claimed: HashSet<[u8; 33]> = HashSet::new();
    let mut live_in: HashMap<PackId, Vec<PackEntry>> = HashMap::new();
    for p in &order {
        let mine = live_in.entry(p.pack).or_default();
        for e in &p.entries {
            if live.contains(&e.blob.key()) && claimed.insert(e.blob.key()) {
                mine.push(*e);
            }
        }
    }
    if let Some(missing) = live.iter().find(|k| !claimed.contains(*k)) {
        return Err(Error::corrupt(format!(
            "a blob the kept snapshots need ({}) is in no existing pack; run `vaultctl check` (nothing was changed)",
            hex::encode(&missing[1..9])
        )));
    }

    let target = v.settings.pack_target as u64;
    let mut p = Plan {
        snapshots: decisions.clone(),
        packs_before: listed.len(),
        stored_before: listed.values().sum(),
        live_blobs: live.len(),
        ..Plan::default()
    };
    let mut small = Vec::new();
    for ip in &order {
        let size = listed[&ip.pack];
        let here: HashSet<[u8; 33]> =
            live_in.remove(&ip.pack).unwrap_or_default().iter().map(|e| e.blob.key()).collect();
        // A frame counts as live in proportion to the plaintext of its live members.
        let mut live_bytes = 0u64;
        let mut fs = Vec::new();
        for f in frames(&ip.entries) {
            let live: Vec<bool> = f.iter().map(|e| here.contains(&e.blob.key())).collect();
            let live_raw: u64 = f.iter().zip(&live).filter(|(_, l)| **l).map(|(e, _)| e.plain_len() as u64).sum();
            live_bytes += (f[0].length as u64 * live_raw).checked_div(f[0].raw_length as u64).unwrap_or(0);
            fs.push((f.to_vec(), live));
        }
        if here.is_empty() {
            p.delete.push((ip.pack, size));
        } else if (size - live_bytes.min(size)) as f64 > o.max_unused * size as f64 {
            p.repack.push((ip.pack, size, live_bytes));
            p.moves.insert(ip.pack, fs);
        } else if size < target / 4 {
            small.push((ip.pack, size, live_bytes, fs));
        }
    }
    // Small packs (one per mount commit, say) are merged when there are several of them.
    if small.len() >= 2 {
        for (pack, size, live_bytes, entries) in small {
            p.repack.push((pack, size, live_bytes));
            p.moves.insert(pack, entries);
        }
    }
    // Packs named by an index file but gone from the store (only dead blobs, as checked above).
    let going: HashSet<PackId> = p
        .delete
        .iter()
        .map(|(id, _)| *id)
        .chain(p.repack.iter().map(|(id, _, _)| *id))
        .chain(packs.keys().filter(|id| !listed.contains_key(*id)).copied())
        .collect();
    for (id, size) in &listed {
        if !packs.contains_key(id) {
            p.orphans.push((*id, *size));
        }
    }
    p.rewrite_index =
        index_files.iter().filter(|(_, f)| f.iter().any(|ip| going.contains(&ip.pack))).map(|(id, _)| *id).collect();
    p.index_files = index_files;
    p.delete.sort();
    p.repack.sort();
    p.orphans.sort();
    Ok(p)
}

/// Plans again under the writer lock and applies the plan.
pub fn prune(v: &Vault, o: &Options, lock_wait: Duration, progress: &dyn Fn(&str)) -> Result<Report> {
    let start = Instant::now();
    let mut w = v.begin_write("vaultctl prune", lock_wait)?;
    let p = plan(v, o)?;
    let mut r = Report::default();

    // 2. Forget.
    for d in p.forgotten() {
        w.forget(&d.info)?;
        r.forgotten += 1;
    }

    // 3. Copy live blobs out of the packs being repacked, a few packs at a time.
    let repack: Vec<PackId> = p.repack.iter().map(|(id, _, _)| *id).collect();
    for (i, group_ids) in repack.chunks(8).enumerate() {
        progress(&format!("repacking packs {}-{} of {}", i * 8 + 1, i * 8 + group_ids.len(), repack.len()));
        let moved: Vec<Vec<SealedFrame>> = group_ids
            .par_iter()
            .map(|id| {
                let bytes = v.store.get(ObjKind::Pack, &id.to_hex())?;
                let mut out = Vec::new();
                for (members, live) in p.moves.get(id).into_iter().flatten() {
                    if !live.iter().any(|l| *l) {
                        continue;
                    }
                    let e = members[0];
                    let what = |err: Error| {
                        err.context(format!(
                            "pack {}: frame at offset {} ({})",
                            id.short(),
                            e.offset,
                            e.blob.describe()
                        ))
                    };
                    let at = e.offset as usize..e.offset as usize + e.length as usize;
                    let sealed = bytes
                        .get(at)
                        .ok_or_else(|| Error::corrupt(format!("pack {} is shorter than its index says", id.short())))?;
                    // Never copy damage: authenticate before moving.
                    let plain = open_frame(&v.sealer, &e, sealed).map_err(what)?;
                    if live.iter().all(|l| *l) {
                        out.push(SealedFrame::from_entries(members, sealed.to_vec())?);
                        continue;
                    }
                    // Partly dead: the live members are verified and framed again.
                    let mut keep: Vec<(crate::id::BlobRef, &[u8])> = Vec::new();
                    for (m, l) in members.iter().zip(live) {
                        if *l {
                            let x = member_of(m, &plain).map_err(what)?;
                            v.verify_content(m.blob, x).map_err(what)?;
                            keep.push((m.blob, x));
                        }
                    }
                    let todo: Vec<usize> = (0..keep.len()).collect();
                    let mut at = vec![0u64];
                    for (_, x) in &keep {
                        at.push(at[at.len() - 1] + x.len() as u64);
                    }
                    for r in group(&todo, |i| keep[i].1.len(), |i| at[i], v.settings.frame_target) {
                        out.push(seal_frame(&v.sealer, v.settings.zstd_level, &keep[r]));
                    }
                }
                Ok(out)
            })
            .collect::<Result<_>>()?;
        for f in moved.into_iter().flatten() {
            w.add_sealed(f)?;
        }
    }
    let before_flush = v.store.list(ObjKind::Pack)?.len();
    w.flush()?;
    r.packs_written = v.store.list(ObjKind::Pack)?.len().saturating_sub(before_flush);

    // 4. Index files without the packs that go: new ones first, then the old ones removed.
    let going: HashSet<PackId> =
        p.delete.iter().chain(&p.orphans).map(|(id, _)| *id).chain(p.repack.iter().map(|(id, _, _)| *id)).collect();
    let listed: HashSet<PackId> =
        v.store.list(ObjKind::Pack)?.into_iter().filter_map(|(n, _)| PackId::from_hex(&n).ok()).collect();
    let rewrite: HashSet<IndexId> = p.rewrite_index.iter().copied().collect();
    let mut kept_packs: BTreeMap<PackId, IndexPack> = BTreeMap::new();
    for (id, f) in &p.index_files {
        if rewrite.contains(id) {
            for ip in f {
                if !going.contains(&ip.pack) && listed.contains(&ip.pack) {
                    kept_packs.entry(ip.pack).or_insert_with(|| ip.clone());
                }
            }
        }
    }
    if !kept_packs.is_empty() {
        let all: Vec<IndexPack> = kept_packs.into_values().collect();
        for part in all.chunks(4096) {
            let id = IndexId::random();
            let sealed = v.sealer.seal(Domain::IndexFile, id.as_bytes(), &index_format::encode(part));
            v.store.put(ObjKind::Index, &id.to_hex(), &sealed).map_err(|e| e.context("writing index file"))?;
        }
    }
    for id in &p.rewrite_index {
        v.store.delete(ObjKind::Index, &id.to_hex())?;
    }

    // 5. Packs.
    progress(&format!("deleting {} packs", going.len()));
    for id in &going {
        v.store.delete(ObjKind::Pack, &id.to_hex())?;
        r.packs_deleted += 1;
    }
    drop(w);
    v.sync_index()?;
    r.stored_after = v.store.list(ObjKind::Pack)?.iter().map(|(_, s)| s).sum();
    r.elapsed = start.elapsed();
    let entry = Record::Prune(PruneRecord {
        time_unix: crate::repo::now_unix(),
        policy: o.policy.to_string(),
        forgotten: p.forgotten().map(|d| d.info.snap.period.clone()).collect(),
        packs_deleted: r.packs_deleted as u64,
        packs_written: r.packs_written as u64,
        stored_before: p.stored_before,
        stored_after: r.stored_after,
        seconds: r.elapsed.as_secs_f64(),
    });
    crate::repo::log::append(v, &entry)?;
    r.plan = p;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Snapshot;
    use crate::id::SnapshotId;

    fn info(period: &str, sealed: bool) -> SnapshotInfo {
        SnapshotInfo {
            id: SnapshotId::random(),
            snap: Snapshot {
                period: period.into(),
                seq: 1,
                sealed,
                created_unix: 0,
                updated_unix_ns: 0,
                root: TreeId([0; 32]),
                files: 0,
                logical_bytes: 0,
                new_bytes: 0,
                host: String::new(),
                journal: None,
            },
            superseded: Vec::new(),
        }
    }

    fn kept(snaps: &[SnapshotInfo], cur: &str, p: Policy) -> Vec<String> {
        let mut v: Vec<String> =
            select(snaps, cur, &p).into_iter().filter(|d| d.keep()).map(|d| d.info.snap.period).collect();
        v.sort();
        v
    }

    fn month() -> Vec<SnapshotInfo> {
        (1..=30).map(|d| info(&format!("2026-11-{d:02}"), d != 30)).collect()
    }

    #[test]
    fn never_forgets_current_or_newest_sealed() {
        let s = month();
        assert_eq!(kept(&s, "2026-11-30", Policy::default()), vec!["2026-11-29", "2026-11-30"]);
    }

    #[test]
    fn daily_counts_from_the_newest() {
        let s = month();
        let k = kept(&s, "2026-11-30", Policy { daily: 7, ..Policy::default() });
        assert_eq!(k, (24..=30).map(|d| format!("2026-11-{d:02}")).collect::<Vec<_>>());
    }

    #[test]
    fn weekly_keeps_newest_of_each_iso_week() {
        let s = month();
        let k = kept(&s, "2026-11-30", Policy { weekly: 3, ..Policy::default() });
        // 2026-11-30 is a Monday; 11-29 ends the previous ISO week, 11-22 the one before.
        assert_eq!(k, vec!["2026-11-22", "2026-11-29", "2026-11-30"]);
    }

    #[test]
    fn monthly_and_yearly() {
        let mut s: Vec<SnapshotInfo> = Vec::new();
        for m in 1..=12 {
            s.push(info(&format!("2025-{m:02}-10"), true));
            s.push(info(&format!("2025-{m:02}-20"), true));
        }
        s.push(info("2026-01-05", false));
        let k = kept(&s, "2026-01-05", Policy { monthly: 3, yearly: 2, ..Policy::default() });
        assert_eq!(k, vec!["2025-11-20", "2025-12-20", "2026-01-05"]);
        let k = kept(&s, "2026-01-05", Policy { last: 3, ..Policy::default() });
        assert_eq!(k, vec!["2025-12-10", "2025-12-20", "2026-01-05"]);
    }

    #[test]
    fn hourly_periods() {
        let s: Vec<SnapshotInfo> = (0..24).map(|h| info(&format!("2026-11-21T{h:02}"), h != 23)).collect();
        let k = kept(&s, "2026-11-21T23", Policy { hourly: 4, ..Policy::default() });
        assert_eq!(k, vec!["2026-11-21T20", "2026-11-21T21", "2026-11-21T22", "2026-11-21T23"]);
        let k = kept(&s, "2026-11-21T23", Policy { daily: 1, ..Policy::default() });
        assert_eq!(k, vec!["2026-11-21T22", "2026-11-21T23"]);
    }
}
