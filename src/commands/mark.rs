//! `mark`: sets the state (complete, incomplete, failed) of files of an open period in a new
//! revision that changes nothing else: contents, sizes, counts and the time of the period's
//! newest write stay as they were. `run` uses it to mark what a failed job wrote; operators use
//! it to correct a mark.
//!
//! Must never rewrite a sealed period, and never change a file that is no longer the version
//! the caller meant (`if_content`). Takes the writer lock only for the commit, so it works
//! whenever no other writer holds it (no mount, or a mount that has committed its files).

use crate::error::{Error, Result};
use crate::format::tree::{Content, FileState, NodeKind};
use crate::id::TreeId;
use crate::repo::trees::{show, split_path};
use crate::repo::{Vault, WriteSession};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// One requested change.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub period: String,
    /// Path inside the period (`today`, `db/app.pgdump`).
    pub path: String,
    pub state: FileState,
    /// Change the file only while it still has this content (the version a job wrote).
    pub if_content: Option<Content>,
}

#[derive(Debug, Clone, Default)]
pub struct MarkReport {
    /// `PERIOD/PATH` of every file whose state was changed.
    pub changed: Vec<String>,
    /// Files that already had the requested state.
    pub unchanged: Vec<String>,
    /// Files that were not changed, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Ended periods sealed after the change.
    pub sealed_periods: Vec<String>,
}

/// Applies `changes` (any number of periods), one new revision per period that changed.
pub fn set_states(v: &Vault, changes: &[StateChange], holder: &str, lock_wait: Duration) -> Result<MarkReport> {
    // Ended periods are sealed only after their marks are written: a job that ran across the
    // end of a period still gets its files marked in the period that holds them.
    let mut w = v.begin_write_keeping_ended(holder, lock_wait)?;
    set_states_in(&mut w, changes)
}

/// [`set_states`] in a write session the caller already holds (taken with
/// `begin_write_keeping_ended`); seals ended periods afterwards.
pub fn set_states_in(w: &mut WriteSession<'_>, changes: &[StateChange]) -> Result<MarkReport> {
    let v = w.vault();
    let mut rep = MarkReport::default();
    let snaps = v.snapshots()?;
    let mut by_period: BTreeMap<&str, Vec<&StateChange>> = BTreeMap::new();
    for c in changes {
        by_period.entry(c.period.as_str()).or_default().push(c);
    }
    for (period, list) in by_period {
        let label = |c: &StateChange| format!("{period}/{}", c.path.trim_start_matches('/'));
        let Some(base) = snaps.iter().find(|s| s.snap.period == period) else {
            rep.skipped.extend(list.iter().map(|c| (label(c), "no snapshot of this period".to_string())));
            continue;
        };
        if base.snap.sealed {
            let why = "the period is sealed (a sealed snapshot is never rewritten)".to_string();
            rep.skipped.extend(list.iter().map(|c| (label(c), why.clone())));
            continue;
        }
        let mut root = base.snap.root;
        let mut changed = 0;
        for c in list {
            let comps = match split_path(&c.path) {
                Ok(p) if !p.is_empty() => p,
                Ok(_) => {
                    rep.skipped.push((label(c), "not a file".into()));
                    continue;
                }
                Err(e) => {
                    rep.skipped.push((label(c), e.to_string()));
                    continue;
                }
            };
            let Some(mut node) = lookup(w, root, &comps)? else {
                rep.skipped.push((label(c), "no such file".into()));
                continue;
            };
            let NodeKind::File { state, content } = &mut node.kind else {
                rep.skipped.push((label(c), "not a regular file".into()));
                continue;
            };
            if c.if_content.as_ref().is_some_and(|want| want != content) {
                rep.skipped.push((label(c), "changed since (another version was written)".into()));
                continue;
            }
            if *state == c.state {
                rep.unchanged.push(label(c));
                continue;
            }
            *state = c.state;
            root = w.set_path(Some(root), &comps, node)?.0;
            changed += 1;
            rep.changed.push(label(c));
        }
        if changed > 0 {
            w.commit_metadata(base, root)?;
        }
    }
    rep.sealed_periods = w.seal_ended_periods()?;
    Ok(rep)
}

/// The node at `path` below `root`, seeing the trees written in this session.
fn lookup(w: &WriteSession<'_>, root: TreeId, path: &[Vec<u8>]) -> Result<Option<crate::format::tree::Node>> {
    let mut tree = root;
    for (i, comp) in path.iter().enumerate() {
        let t = w.load_tree(tree)?;
        let Some(n) = t.get(comp) else { return Ok(None) };
        if i + 1 == path.len() {
            return Ok(Some(n.clone()));
        }
        match n.kind {
            NodeKind::Dir { tree: sub } => tree = sub,
            _ => return Err(Error::not_found(format!("{}: not a directory", show(&path[..=i])))),
        }
    }
    Ok(None)
}

/// How many files below `root` are marked failed and incomplete. `memo` carries the counts
/// of trees already seen (trees are immutable and shared between snapshots).
pub fn marked_counts(v: &Vault, root: TreeId, memo: &mut HashMap<TreeId, (u64, u64)>) -> Result<(u64, u64)> {
    if let Some(c) = memo.get(&root) {
        return Ok(*c);
    }
    let (mut failed, mut incomplete) = (0, 0);
    for n in &v.load_tree(root)?.nodes {
        match &n.kind {
            NodeKind::File { state: FileState::Failed, .. } => failed += 1,
            NodeKind::File { state: FileState::Incomplete, .. } => incomplete += 1,
            NodeKind::Dir { tree } => {
                let (f, i) = marked_counts(v, *tree, memo)?;
                failed += f;
                incomplete += i;
            }
            _ => {}
        }
    }
    memo.insert(root, (failed, incomplete));
    Ok((failed, incomplete))
}
