//! The snapshot side: dated directories and the nodes of committed snapshots, read-only.
//! Inode numbers are stable for the life of the mount; the names of one hard-linked file in a
//! period share one inode, with its link count.

use super::attr::{Ino, SNAP_BIT};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vault::format::tree::{Node, NodeKind};
use vault::id::TreeId;
use vault::repo::{SnapshotInfo, Vault};
use vault::Result;

pub(super) enum SNode {
    Sealed { node: Node, period: Arc<str> },
    Period(String),
}

pub(super) struct Snaps {
    pub nodes: HashMap<Ino, SNode>,
    pub periods: BTreeMap<String, Ino>,
    pub sealed_roots: HashMap<String, TreeId>,
    /// Read-only mounts: roots of periods that are not sealed yet.
    pub open_roots: HashMap<String, TreeId>,
    pub children: HashMap<(Ino, Vec<u8>), Ino>,
    /// Periods shown from the writable side (mirror of the live roots).
    pub live: BTreeSet<String>,
    pub cur: String,
    /// Hard links of each period: link id -> (inode, names).
    pub links: HashMap<String, HashMap<u64, (Option<Ino>, u32)>>,
}

impl Snaps {
    pub fn new(cur: String) -> Self {
        Snaps {
            nodes: HashMap::new(),
            periods: BTreeMap::new(),
            sealed_roots: HashMap::new(),
            open_roots: HashMap::new(),
            children: HashMap::new(),
            live: BTreeSet::new(),
            cur,
            links: HashMap::new(),
        }
    }

    pub fn period_ino(&mut self, alloc: &AtomicU64, name: &str) -> Ino {
        if let Some(i) = self.periods.get(name) {
            return *i;
        }
        let ino = Ino(alloc.fetch_add(1, Ordering::SeqCst) | SNAP_BIT.0);
        self.nodes.insert(ino, SNode::Period(name.to_string()));
        self.periods.insert(name.to_string(), ino);
        ino
    }

    /// `PERIOD/path` of a snapshot inode, for messages: its directory entries followed back to
    /// its period (a scan: only for errors). A hard-linked file gives one of its names.
    pub fn path_of(&self, ino: Ino) -> Option<String> {
        let mut parts: Vec<String> = Vec::new();
        let mut cur = ino;
        for _ in 0..4096 {
            if let Some(SNode::Period(p)) = self.nodes.get(&cur) {
                parts.push(p.clone());
                parts.reverse();
                return Some(parts.join("/"));
            }
            let ((parent, name), _) = self.children.iter().find(|(_, i)| **i == cur)?;
            parts.push(String::from_utf8_lossy(name).into_owned());
            cur = *parent;
        }
        None
    }

    pub fn latest(&self) -> Option<String> {
        self.sealed_roots.keys().filter(|p| !self.live.contains(*p)).max().cloned()
    }

    /// The committed root shown for a period (sealed, or as last committed on a read-only
    /// mount).
    pub fn root_of(&self, period: &str) -> Option<TreeId> {
        self.sealed_roots.get(period).or_else(|| self.open_roots.get(period)).copied()
    }

    pub fn apply_periods(&mut self, alloc: &AtomicU64, snaps: &[SnapshotInfo], writable: bool) {
        let present: std::collections::HashSet<&str> = snaps.iter().map(|s| s.snap.period.as_str()).collect();
        // Periods forgotten by a prune disappear (unless this mount is writing in them).
        let gone: Vec<String> = self
            .periods
            .keys()
            .filter(|p| !present.contains(p.as_str()) && !self.live.contains(*p) && **p != self.cur)
            .cloned()
            .collect();
        for p in gone {
            self.periods.remove(&p);
            self.sealed_roots.remove(&p);
            self.open_roots.remove(&p);
            self.links.remove(&p);
        }
        for s in snaps {
            if s.snap.sealed {
                self.sealed_roots.insert(s.snap.period.clone(), s.snap.root);
            } else if !writable {
                // A read-only mount shows open periods as they were last committed.
                if self.open_roots.insert(s.snap.period.clone(), s.snap.root) != Some(s.snap.root) {
                    self.links.remove(&s.snap.period);
                }
            }
            self.period_ino(alloc, &s.snap.period);
        }
        if writable {
            let cur = self.cur.clone();
            self.period_ino(alloc, &cur);
        }
    }

    /// The inode of a child node: hard links of one file share theirs.
    pub fn child_ino(&mut self, alloc: &AtomicU64, parent: Ino, period: &Arc<str>, node: &Node) -> Ino {
        let key = (parent, node.name.clone());
        if let Some(i) = self.children.get(&key) {
            return *i;
        }
        let shared = (node.link != 0 && !matches!(node.kind, NodeKind::Dir { .. }))
            .then(|| self.links.get_mut(&**period).and_then(|m| m.get_mut(&node.link)))
            .flatten();
        let ino = match shared {
            Some((Some(ino), _)) => *ino,
            Some((slot, _)) => {
                let ino = Ino(alloc.fetch_add(1, Ordering::SeqCst) | SNAP_BIT.0);
                *slot = Some(ino);
                self.nodes.insert(ino, SNode::Sealed { node: node.clone(), period: period.clone() });
                ino
            }
            None => {
                let ino = Ino(alloc.fetch_add(1, Ordering::SeqCst) | SNAP_BIT.0);
                self.nodes.insert(ino, SNode::Sealed { node: node.clone(), period: period.clone() });
                ino
            }
        };
        self.children.insert(key, ino);
        ino
    }

    /// The number of names of a node of a period.
    pub fn nlink(&self, period: &str, node: &Node) -> u32 {
        if node.link == 0 {
            return 1;
        }
        self.links.get(period).and_then(|m| m.get(&node.link)).map(|x| x.1).unwrap_or(1)
    }

    /// Whether the hard links of a period were counted.
    pub fn counted(&self, period: &str) -> bool {
        self.links.contains_key(period)
    }
}

/// Counts the names of every hard-linked file of a committed period (walks its trees).
pub(super) fn count_links(v: &Vault, root: TreeId) -> Result<HashMap<u64, (Option<Ino>, u32)>> {
    let mut out: HashMap<u64, (Option<Ino>, u32)> = HashMap::new();
    let mut stack = vec![root];
    while let Some(t) = stack.pop() {
        for n in &v.load_tree(t)?.nodes {
            match &n.kind {
                NodeKind::Dir { tree } => stack.push(*tree),
                _ if n.link != 0 => out.entry(n.link).or_insert((None, 0)).1 += 1,
                _ => {}
            }
        }
    }
    Ok(out)
}
