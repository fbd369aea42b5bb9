//! `stats`: logical vs stored bytes, deduplication and compression ratios.

use crate::error::Result;
use crate::format::tree::NodeKind;
use crate::id::{BlobKind, IndexId};
use crate::id::{BlobRef, TreeId};
use crate::repo::Vault;
use crate::store::ObjKind;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub snapshots: usize,
    pub sealed: usize,
    pub files: u64,
    /// Sum of the sizes of every file of every snapshot.
    pub logical_bytes: u64,
    /// Plaintext bytes of the distinct chunks.
    pub unique_bytes: u64,
    /// Sealed bytes of the distinct chunks (after compression and encryption; a chunk sealed in
    /// a frame with others counts its share of the frame, by plaintext length).
    pub chunk_stored_bytes: u64,
    /// Every object of the vault, as stored.
    pub stored_bytes: u64,
    pub chunks: u64,
    pub trees: u64,
    pub packs: u64,
    /// Files stored expanded (src/rebuild), counted like `files`.
    pub expanded: Expansion,
    /// Distinct contents stored expanded: their original sizes, and the sealed bytes of the
    /// chunks they use (expanded streams and recipes) that no file stored as it is uses.
    pub expanded_distinct: u64,
    pub expanded_distinct_original: u64,
    pub expanded_distinct_stored: u64,
}

/// Sizes of the files stored expanded under a tree, counted per file occurrence.
#[derive(Debug, Default, Clone, Copy)]
pub struct Expansion {
    pub files: u64,
    /// Their sizes as written.
    pub original: u64,
    /// The sizes of their expanded streams.
    pub expanded: u64,
    /// The sizes of their recipes.
    pub recipe: u64,
}

impl Expansion {
    fn add(&mut self, o: &Expansion) {
        self.files += o.files;
        self.original += o.original;
        self.expanded += o.expanded;
        self.recipe += o.recipe;
    }
}

impl Stats {
    /// Bytes of every file as chunked: expanded streams and recipes instead of the files
    /// stored expanded.
    pub fn chunked_bytes(&self) -> u64 {
        (self.logical_bytes + self.expanded.expanded + self.expanded.recipe).saturating_sub(self.expanded.original)
    }
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.chunked_bytes(), self.unique_bytes)
    }
    /// What storing the distinct expanded files as they are would have cost beyond what
    /// their chunks cost now (compressed input does not deduplicate nor compress as is).
    pub fn expansion_saved(&self) -> i64 {
        self.expanded_distinct_original as i64 - self.expanded_distinct_stored as i64
    }
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.unique_bytes, self.chunk_stored_bytes)
    }
    pub fn total_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.stored_bytes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

pub fn stats(v: &Vault) -> Result<Stats> {
    let mut s = Stats::default();
    // What cannot be read is left out (named when the vault is opened; `check` reports it).
    let (snaps, _) = v.readable_snapshots()?;
    for snap in &snaps {
        s.snapshots += 1;
        s.sealed += snap.snap.sealed as usize;
        s.files += snap.snap.files;
        s.logical_bytes += snap.snap.logical_bytes;
    }
    let mut memo = HashMap::new();
    let mut distinct = HashSet::new();
    let mut expanded_chunks = HashSet::new();
    let mut plain_chunks = HashSet::new();
    for snap in &snaps {
        let mut track: Distinct<'_> = Some(Track {
            distinct: &mut distinct,
            expanded_chunks: &mut expanded_chunks,
            plain_chunks: &mut plain_chunks,
            stats: &mut s,
        });
        let e = expansion(v, snap.snap.root, &mut memo, &mut track)?;
        s.expanded.add(&e);
    }
    // Chunks that files stored as they are use too would be stored anyway: not a cost of
    // the expansion.
    expanded_chunks.retain(|k| !plain_chunks.contains(k));
    let mut seen = HashSet::new();
    for (name, _) in v.store().list(ObjKind::Index)? {
        let Ok(id) = IndexId::from_hex(&name) else { continue };
        let packs = match v.read_index_file(&id) {
            Ok(p) => p,
            Err(e) if matches!(e.kind(), crate::ErrorKind::Corrupt | crate::ErrorKind::NotFound) => continue,
            Err(e) => return Err(e),
        };
        for p in packs {
            for e in p.entries {
                if !seen.insert(e.blob.key()) {
                    continue;
                }
                match e.blob.kind {
                    BlobKind::Data => {
                        // A member of a frame of several: its share of the frame.
                        let stored = match e.member {
                            Some(m) if e.raw_length > 0 => e.length as u64 * m.len as u64 / e.raw_length as u64,
                            _ => e.length as u64,
                        };
                        s.chunks += 1;
                        s.unique_bytes += e.plain_len() as u64;
                        s.chunk_stored_bytes += stored;
                        if expanded_chunks.contains(&e.blob.key()) {
                            s.expanded_distinct_stored += stored;
                        }
                    }
                    BlobKind::Tree | BlobKind::List => s.trees += 1,
                }
            }
        }
    }
    for k in ObjKind::ALL {
        for (_, size) in v.store().list(k)? {
            s.stored_bytes += size;
            if k == ObjKind::Pack {
                s.packs += 1;
            }
        }
    }
    Ok(s)
}

/// The files stored expanded under tree `t` (each tree summed once, `memo` shared between
/// calls), for `snapshots`.
pub fn expanded_files(v: &Vault, t: TreeId, memo: &mut HashMap<TreeId, Expansion>) -> Result<Expansion> {
    expansion(v, t, memo, &mut None)
}

/// What `stats` records on the way: the keys of the distinct expanded contents, the chunks
/// they use, the chunks of the files stored as they are, and the totals.
struct Track<'a> {
    distinct: &'a mut HashSet<[u8; 33]>,
    expanded_chunks: &'a mut HashSet<[u8; 33]>,
    plain_chunks: &'a mut HashSet<[u8; 33]>,
    stats: &'a mut Stats,
}
type Distinct<'a> = Option<Track<'a>>;

/// The files stored expanded under tree `t` (each tree summed once); with `track`, records
/// every distinct expanded content and the chunks it uses.
fn expansion(
    v: &Vault,
    t: TreeId,
    memo: &mut HashMap<TreeId, Expansion>,
    track: &mut Distinct<'_>,
) -> Result<Expansion> {
    if let Some(e) = memo.get(&t) {
        return Ok(*e);
    }
    let mut sum = Expansion::default();
    let tree = v.load_tree(t)?;
    for n in &tree.nodes {
        match &n.kind {
            NodeKind::Dir { tree } => {
                let e = expansion(v, *tree, memo, track)?;
                sum.add(&e);
            }
            NodeKind::File { content, .. } => {
                let Some(r) = &content.recipe else {
                    if let Some(t) = track.as_mut() {
                        for (inline, pages) in content.lists() {
                            t.plain_chunks.extend(inline.iter().map(|c| BlobRef::data(c.id).key()));
                            for p in pages {
                                t.plain_chunks.extend(v.load_list(p)?.iter().map(|c| BlobRef::data(c.id).key()));
                            }
                        }
                    }
                    continue;
                };
                let recipe = r.content();
                sum.add(&Expansion {
                    files: 1,
                    original: r.size,
                    expanded: content.chunk_bytes(),
                    recipe: recipe.chunk_bytes(),
                });
                let Some(Track { distinct, expanded_chunks: chunks, stats: s, .. }) = track.as_mut() else { continue };
                // A content is known by its expanded stream's and its recipe's chunk lists.
                let mut h = blake3::Hasher::new();
                for (inline, pages) in content.lists() {
                    inline.iter().for_each(|c| {
                        h.update(c.id.as_bytes());
                    });
                    pages.iter().for_each(|p| {
                        h.update(p.id.as_bytes());
                    });
                    h.update(b"|");
                }
                let mut key = [0u8; 33];
                key[..32].copy_from_slice(h.finalize().as_bytes());
                if !distinct.insert(key) {
                    continue;
                }
                s.expanded_distinct += 1;
                s.expanded_distinct_original += r.size;
                for (inline, pages) in content.lists() {
                    chunks.extend(inline.iter().map(|c| BlobRef::data(c.id).key()));
                    for p in pages {
                        chunks.extend(v.load_list(p)?.iter().map(|c| BlobRef::data(c.id).key()));
                    }
                }
            }
            _ => {}
        }
    }
    memo.insert(t, sum);
    Ok(sum)
}
