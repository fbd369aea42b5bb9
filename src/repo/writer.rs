//! Write sessions: the only way anything is added to a vault.
//!
//! A session holds the writer lock for its lifetime. Bytes are chunked, identified, and only
//! new chunks are compressed, sealed and packed. `commit` makes the work durable in the
//! documented order: packs, then one index file naming them, then the snapshot revision;
//! superseded revisions are deleted only after the new one is durable. A session dropped
//! without commit leaves only unreferenced packs (reclaimed by prune), never a visible
//! partial file.

use super::frame::{group, seal_blob, seal_frame_joined, SealedFrame};
use super::lock::VaultLock;
use super::packer::{Packer, Pending};
use super::snapshots::SnapshotInfo;
use super::trees::show;
use super::{now_unix, now_unix_ns, Vault};
use crate::chunker::{BatchPool, ChunkBatch};
use crate::crypto::Domain;
use crate::error::{Error, Result};
use crate::format::index::{self as index_format, IndexPack};
use crate::format::snapshot::{JournalMark, Snapshot};
use crate::format::tree::{
    encode_list, ChunkRef, Content, Node, NodeKind, PageRef, Recipe, Tree, INLINE_CHUNKS, PAGE_CHUNKS,
};
use crate::id::{BlobRef, IdSet, IndexId, ListId, SnapshotId, TreeId};
use crate::index::Indexing;
use crate::rebuild::{Expanded, Piece};
use crate::store::ObjKind;
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Bytes of chunks handed to the parallel hash/compress/seal stage at once.
const BATCH_BYTES: usize = 8 << 20;
/// Blobs packed but not yet in an index file before the session flushes on its own
/// (about 256 MiB of new data at the default chunk size). Up to about twice as many are
/// pending at once (those of the index file going into the cache, and the next).
const MAX_PENDING: usize = 1 << 16;
/// The same for a session that keeps its memory low ([`WriteSession::keep_memory_low`]): twice
/// as many index files for a long write, the pending map at half the size (about 20 MiB less).
const MAX_PENDING_LOW_MEMORY: usize = 1 << 15;
/// Entries of written packs from which a flush names them in an index file of their own
/// before it writes the open packs (the cache is filled meanwhile).
const EARLY_INDEX: usize = 1 << 13;

pub struct WriteSession<'v> {
    v: &'v Vault,
    _lock: VaultLock,
    packer: Packer,
    /// Blobs packed in this session and not yet covered by a durable index file (also
    /// registered in the vault, so that reads of this process find them).
    pending: Arc<Pending>,
    /// Trees written in this session, readable before their index file exists.
    pending_trees: HashMap<TreeId, Arc<Tree>>,
    /// Sealed bytes added since the last commit (accounted to the committed period).
    uncommitted_bytes: u64,
    /// What replaying journals found when the session began.
    replayed: Option<super::journal::ReplayReport>,
    /// The entries of the last index file going into the index cache, and its packs (their
    /// blobs stay pending until then).
    indexing: Option<(Indexing, Vec<IndexPack>)>,
    /// [`MAX_PENDING`], or [`MAX_PENDING_LOW_MEMORY`].
    max_pending: usize,
}

impl Drop for WriteSession<'_> {
    fn drop(&mut self) {
        // The index file is durable; a cache left short would be completed by the next open.
        let _ = self.finish_indexing();
        let mut p = self.v.pending.write().unwrap_or_else(|e| e.into_inner());
        if p.as_ref().is_some_and(|x| Arc::ptr_eq(x, &self.pending)) {
            *p = None;
        }
    }
}

/// What storing a stream produced.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    pub content: Content,
    pub size: u64,
    pub chunks: u64,
    pub new_chunks: u64,
    /// What was expanded (nothing: stored as is).
    pub expanded: Expanded,
}

/// Collects a file's chunk references, writing a list page whenever one is full, so that a
/// file's chunk table never has to be held whole in memory.
#[derive(Debug, Default)]
pub struct ContentBuilder {
    pages: Vec<PageRef>,
    cur: Vec<ChunkRef>,
}

impl ContentBuilder {
    /// A builder continuing after pages already stored.
    pub fn with_pages(pages: Vec<PageRef>) -> Self {
        ContentBuilder { pages, cur: Vec::new() }
    }

    pub fn push(&mut self, w: &mut WriteSession<'_>, refs: &[ChunkRef]) -> Result<()> {
        for r in refs {
            self.cur.push(*r);
            if self.cur.len() == PAGE_CHUNKS {
                self.pages.push(w.write_list(&self.cur)?);
                self.cur.clear();
            }
        }
        Ok(())
    }

    pub fn finish(mut self, w: &mut WriteSession<'_>) -> Result<Content> {
        if self.pages.is_empty() && self.cur.len() <= INLINE_CHUNKS {
            return Ok(Content::inline(self.cur));
        }
        if !self.cur.is_empty() {
            self.pages.push(w.write_list(&self.cur)?);
        }
        Ok(Content { inline: Vec::new(), pages: self.pages, recipe: None })
    }
}

impl Vault {
    /// Takes the writer lock (waiting up to `wait`), brings the index up to date, removes
    /// leftovers of interrupted writers, and seals every period that has ended.
    pub fn begin_write(&self, holder: &str, wait: Duration) -> Result<WriteSession<'_>> {
        let mut s = self.begin_write_keeping_ended(holder, wait)?;
        s.seal_ended_periods()?;
        Ok(s)
    }

    /// Like [`Vault::begin_write`], but leaves ended periods open, so that a change that
    /// belongs to an ended period (the failed mark of a job that ran across the period's end)
    /// can still be written to it. The caller seals them when done.
    pub fn begin_write_keeping_ended(&self, holder: &str, wait: Duration) -> Result<WriteSession<'_>> {
        self.refuse_if_offsite_copy()?;
        let lock = VaultLock::exclusive(&*self.store, wait, holder)?;
        self.sync_index()?;
        self.store.remove_temporaries()?;
        let pending = Arc::new(Pending::default());
        *self.pending.write().unwrap_or_else(|e| e.into_inner()) = Some(pending.clone());
        let mut s = WriteSession {
            v: self,
            _lock: lock,
            packer: Packer::new(self.store.clone(), self.sealer.clone(), self.settings.pack_target, pending.clone()),
            pending,
            pending_trees: HashMap::new(),
            uncommitted_bytes: 0,
            replayed: None,
            indexing: None,
            max_pending: MAX_PENDING,
        };
        s.replayed = super::journal::replay(&mut s)?;
        Ok(s)
    }
}

impl<'v> WriteSession<'v> {
    /// For a long-lived process (the daemon): no pack buffers kept for reuse, the streams of
    /// large files spread over fewer open packs and written by one thread, and index files
    /// written twice as often. Writes of new data through a mount measured no slower
    /// (docs/PERFORMANCE.md).
    pub fn keep_memory_low(&mut self) {
        self.packer.reuse_buffers(false);
        self.packer.set_pack_writers(1);
        self.packer.set_bulk_lanes(super::packer::BULK_PACKS_LOW_MEMORY);
        self.max_pending = MAX_PENDING_LOW_MEMORY;
    }

    pub fn vault(&self) -> &'v Vault {
        self.v
    }

    /// Seals every open period older than the current one. Returns their names.
    pub fn seal_ended_periods(&mut self) -> Result<Vec<String>> {
        let cur = self.v.clock.current();
        let mut sealed = Vec::new();
        for info in self.v.snapshots()? {
            if !info.snap.sealed && info.snap.period < cur {
                self.seal(&info)?;
                sealed.push(info.snap.period.clone());
            } else if !info.superseded.is_empty() {
                self.delete_revisions(&info.superseded)?;
            }
        }
        Ok(sealed)
    }

    /// Writes the final, sealed revision of a period.
    pub fn seal(&mut self, info: &SnapshotInfo) -> Result<SnapshotInfo> {
        if info.snap.sealed {
            return Ok(info.clone());
        }
        let mut snap = info.snap.clone();
        snap.sealed = true;
        self.write_revision(snap, Some(info))
    }

    /// Chunks a stream and packs its new chunks. Compressed parts of the stream (gzip, zlib,
    /// zip members) are stored expanded with a recipe that recreates them (src/rebuild).
    /// Reading, expanding and chunking run on their own thread; hashing, compression and
    /// sealing run in parallel on the rest.
    pub fn store_stream(&mut self, input: &mut (dyn Read + Send)) -> Result<Stored> {
        let params = self.v.chunker_params();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Piece>>(2);
        let (ids_tx, ids_rx) = std::sync::mpsc::sync_channel::<Result<Identified>>(1);
        let (sealed_tx, sealed_rx) = std::sync::mpsc::sync_channel::<Result<Identified>>(1);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<u64>();
        let mut stored = Stored::default();
        let pool = BatchPool::default();
        let (v, pending) = (self.v, self.pending.clone());
        std::thread::scope(|scope| -> Result<()> {
            let thread_pool = &pool;
            scope.spawn(move || crate::rebuild::chunk_expanded(input, params, BATCH_BYTES, thread_pool, &tx));
            // Identification runs a batch ahead of sealing, and sealing a batch ahead of
            // packing (four stages, both cores busy): the ids of the batch after next are
            // hashed and looked up, and the next batch is compressed and sealed, while this
            // one is packed.
            scope.spawn(move || identify(v, &pending, rx, &ids_tx, &done_rx));
            scope.spawn(move || seal_stage(v, ids_rx, &sealed_tx));
            let mut builder = ContentBuilder::default();
            let mut recipe = ContentBuilder::default();
            let mut done = None;
            for item in sealed_rx {
                let Identified { seq, piece, ids, sealed, .. } = item?;
                let (batch, to) = match piece {
                    Piece::Expanded(batch) => (batch, &mut builder),
                    Piece::Recipe(batch) => (batch, &mut recipe),
                    Piece::Done(x) => {
                        done = Some(x);
                        continue;
                    }
                };
                let new = self.add_new(sealed, true)?;
                // Its new chunks are pending now: the identifying stage may forget them.
                let _ = done_tx.send(seq);
                stored.new_chunks += new as u64;
                stored.chunks += ids.len() as u64;
                to.push(self, &chunk_refs(&batch, ids))?;
                pool.give(batch);
            }
            let x = done.ok_or_else(|| Error::corrupt("the input reader stopped early"))?;
            stored.size = x.original;
            stored.content = builder.finish(self)?;
            if x.rebuilt() {
                let r = recipe.finish(self)?;
                stored.content.recipe = Some(Box::new(Recipe { size: x.original, inline: r.inline, pages: r.pages }));
            }
            stored.expanded = x;
            Ok(())
        })?;
        Ok(stored)
    }

    /// Identifies chunks and packs the ones the vault does not have yet.
    pub fn add_chunks(&mut self, chunks: &ChunkBatch) -> Result<Vec<ChunkRef>> {
        Ok(self.add_chunks_counted(chunks)?.0)
    }

    /// [`WriteSession::add_chunks`], also returning how many chunks were new.
    pub fn add_chunks_counted(&mut self, chunks: &ChunkBatch) -> Result<(Vec<ChunkRef>, usize)> {
        let ids = self.v.chunk_ids(chunks);
        let todo = self.v.unknown_chunks(&ids, &self.pending)?;
        let sealed = self.v.seal_chunks(chunks, &ids, &todo);
        let new = self.add_new(sealed, true)?;
        Ok((chunk_refs(chunks, ids), new))
    }

    /// Packs sealed frames whose members neither the vault nor this session has yet (another
    /// writer of this session may have packed the same content meanwhile: a frame all of
    /// whose members are pending is dropped, one with some is packed whole), into the bulk
    /// packs when `bulk` (a large file's stream). Returns how many new chunks it packed.
    pub fn add_new(&mut self, sealed: Vec<SealedFrame>, bulk: bool) -> Result<usize> {
        let mut n = 0;
        for s in sealed {
            let blobs: Vec<BlobRef> = s.members.iter().map(|(b, _)| *b).collect();
            let fresh = self.pending.contains_many(&blobs).iter().filter(|p| !**p).count();
            if fresh == 0 {
                continue;
            }
            self.uncommitted_bytes += s.bytes.len() as u64;
            self.packer.add_to(s, bulk)?;
            n += fresh;
        }
        let in_cache = self.indexing.as_ref().map_or(0, |(_, packs)| packs.iter().map(|p| p.entries.len()).sum());
        if self.pending.len().saturating_sub(in_cache) >= self.max_pending {
            // Bound the memory of a long write: name the packs written so far in an index file
            // (the index cache is filled while the write goes on).
            self.index_written()?;
        }
        Ok(n)
    }

    /// Packs a metadata blob unless the vault (or this session) already has it.
    fn pack_if_new(&mut self, blob: BlobRef, plain: &[u8]) -> Result<()> {
        if !self.pending.contains(&blob) && self.v.index.get(&blob)?.is_none() {
            let s = seal_blob(&self.v.sealer, self.v.settings.zstd_level, blob, plain);
            self.uncommitted_bytes += s.bytes.len() as u64;
            self.packer.add(s)?;
        }
        Ok(())
    }

    /// Stores a directory listing (deduplicated by its id) and returns its id.
    pub fn write_tree(&mut self, t: Tree) -> Result<TreeId> {
        let plain = t.encode();
        let id = self.v.keys.tree_id(&plain);
        self.pack_if_new(BlobRef::tree(id), &plain)?;
        self.pending_trees.insert(id, Arc::new(t));
        Ok(id)
    }

    /// Stores one page of a chunk list (deduplicated by its id).
    pub fn write_list(&mut self, chunks: &[ChunkRef]) -> Result<PageRef> {
        let plain = encode_list(chunks);
        let id = ListId(self.v.keys.tree_id(&plain).0);
        self.pack_if_new(BlobRef::list(id), &plain)?;
        Ok(PageRef { id, chunks: chunks.len() as u32, bytes: chunks.iter().map(|c| c.len as u64).sum() })
    }

    /// Loads a tree, including ones written in this session.
    pub fn load_tree(&self, id: TreeId) -> Result<Arc<Tree>> {
        match self.pending_trees.get(&id) {
            Some(t) => Ok(t.clone()),
            None => self.v.load_tree(id),
        }
    }

    /// Puts `node` at `path` below `root` (an empty tree when `None`), creating missing
    /// directories. Returns the new root and the node it replaced.
    pub fn set_path(&mut self, root: Option<TreeId>, path: &[Vec<u8>], node: Node) -> Result<(TreeId, Option<Node>)> {
        if path.is_empty() {
            return Err(Error::invalid("a file needs a name"));
        }
        let mut tree = match root {
            Some(r) => (*self.load_tree(r)?).clone(),
            None => Tree::default(),
        };
        let name = &path[0];
        if path.len() == 1 {
            let mut node = node;
            node.name = name.clone();
            if let Some(old) = tree.get(name) {
                if matches!(old.kind, NodeKind::Dir { .. }) && !matches!(node.kind, NodeKind::Dir { .. }) {
                    return Err(Error::invalid(format!("{}: is a directory", show(path))));
                }
            }
            let old = tree.get(name).cloned();
            tree.upsert(node);
            return Ok((self.write_tree(tree)?, old));
        }
        let (sub, mut dir_node) = match tree.get(name) {
            Some(n) => match n.kind {
                NodeKind::Dir { tree } => (Some(tree), n.clone()),
                _ => return Err(Error::invalid(format!("{}: not a directory", show(&path[..1])))),
            },
            None => (None, new_dir_node(name.clone())),
        };
        let (sub_id, old) = self.set_path(sub, &path[1..], node)?;
        dir_node.kind = NodeKind::Dir { tree: sub_id };
        tree.upsert(dir_node);
        Ok((self.write_tree(tree)?, old))
    }

    /// Writes all open packs and an index file naming them; afterwards every blob of this
    /// session is in the index. Packs already written get an index file of their own first
    /// when they hold [`EARLY_INDEX`] entries or more (docs/DESIGN.md §10, step 3).
    /// On error nothing is lost: packs not written stay in memory, written ones stay listed
    /// for the next index file.
    pub fn flush(&mut self) -> Result<()> {
        if self.packer.written().iter().map(|p| p.entries.len()).sum::<usize>() >= EARLY_INDEX {
            // Many entries of packs already written: their index file first, so that the
            // cache takes them on its thread while the open packs are written.
            self.index_written()?;
        }
        self.packer.flush()?;
        self.finish_indexing()?;
        let written = self.packer.written().to_vec();
        if written.is_empty() {
            return Ok(());
        }
        let id = self.write_index_file(&written)?;
        self.v.index.add_file(id, &written)?;
        self.v.index.flush()?;
        self.packer.indexed();
        self.pending_trees.clear();
        Ok(())
    }

    /// Writes an index file naming the packs written so far (open packs and packs being
    /// written are left to go on), and fills the index cache with it on another thread while
    /// the session goes on; what it covers stays pending (readable by this process) until then.
    fn index_written(&mut self) -> Result<()> {
        self.finish_indexing()?;
        let written = self.packer.take_written();
        if written.is_empty() {
            return Ok(());
        }
        let id = match self.write_index_file(&written) {
            Ok(id) => id,
            Err(e) => {
                // Named by the next index file instead.
                self.packer.restore_written(written);
                return Err(e);
            }
        };
        self.packer.named_by_index(&written);
        self.indexing = Some((self.v.index.add_file_in_background(id, written.clone()), written));
        Ok(())
    }

    /// Waits for the index cache to hold the entries of the last index file; they leave the
    /// pending set. On error they stay pending (and the index file, not recorded as loaded,
    /// is loaded again by the next open).
    fn finish_indexing(&mut self) -> Result<()> {
        let Some((job, packs)) = self.indexing.take() else { return Ok(()) };
        job.wait()?;
        self.packer.forget_indexed(&packs);
        Ok(())
    }

    /// Writes the index file naming `packs` (durable before it returns).
    fn write_index_file(&self, packs: &[IndexPack]) -> Result<IndexId> {
        let id = IndexId::random();
        let sealed = self.v.sealer.seal(Domain::IndexFile, id.as_bytes(), &index_format::encode(packs));
        self.v.store.put(ObjKind::Index, &id.to_hex(), &sealed).map_err(|e| e.context("writing index file"))?;
        Ok(id)
    }

    /// Commits a new state of `period`: flush, then a new revision superseding `base`.
    pub fn commit(
        &mut self,
        period: &str,
        base: Option<&SnapshotInfo>,
        root: TreeId,
        files: u64,
        logical_bytes: u64,
    ) -> Result<SnapshotInfo> {
        let mark = base.and_then(|b| b.snap.journal);
        self.commit_marked(period, base, root, files, logical_bytes, mark)
    }

    /// [`WriteSession::commit`] with the journal mark of docs/DESIGN.md §10b: the revision
    /// includes the operations of that journal up to its seq.
    pub fn commit_marked(
        &mut self,
        period: &str,
        base: Option<&SnapshotInfo>,
        root: TreeId,
        files: u64,
        logical_bytes: u64,
        journal: Option<JournalMark>,
    ) -> Result<SnapshotInfo> {
        if let Some(b) = base {
            if b.snap.sealed {
                return Err(Error::read_only(format!("period {} is sealed", b.snap.period)));
            }
        }
        let snap = Snapshot {
            period: period.to_string(),
            seq: 0,
            sealed: false,
            created_unix: base.map(|b| b.snap.created_unix).unwrap_or_else(now_unix),
            updated_unix_ns: now_unix_ns(),
            root,
            files,
            logical_bytes,
            new_bytes: base.map(|b| b.snap.new_bytes).unwrap_or(0),
            host: hostname(),
            journal,
        };
        self.write_revision(snap, base)
    }

    /// Commits a new revision of `base`'s period that changes metadata only (file states):
    /// the counts and the time of the newest write stay those of `base`.
    pub fn commit_metadata(&mut self, base: &SnapshotInfo, root: TreeId) -> Result<SnapshotInfo> {
        if base.snap.sealed {
            return Err(Error::read_only(format!("period {} is sealed", base.snap.period)));
        }
        let mut snap = base.snap.clone();
        snap.root = root;
        snap.host = hostname();
        self.write_revision(snap, Some(base))
    }

    fn write_revision(&mut self, mut snap: Snapshot, base: Option<&SnapshotInfo>) -> Result<SnapshotInfo> {
        self.flush()?;
        self.packer.release_spare();
        snap.seq = base.map(|b| b.snap.seq + 1).unwrap_or(1);
        snap.new_bytes += self.uncommitted_bytes;
        let id = SnapshotId::random();
        let sealed = self.v.sealer.seal(Domain::Snapshot, id.as_bytes(), &snap.encode());
        self.v.store.put(ObjKind::Snapshot, &id.to_hex(), &sealed).map_err(|e| e.context("writing snapshot"))?;
        self.uncommitted_bytes = 0;
        self.v.note_revision(id, &snap);
        // The new revision is durable and wins (higher seq): failing to delete the ones it
        // supersedes is not an error; they are left for the next writer to delete.
        let mut left = Vec::new();
        if let Some(b) = base {
            for old in b.superseded.iter().chain(std::iter::once(&b.id)) {
                if self.v.store.delete(ObjKind::Snapshot, &old.to_hex()).is_err() {
                    left.push(*old);
                }
            }
        }
        Ok(SnapshotInfo { id, snap, superseded: left })
    }

    /// Deletes every stored revision of a period (prune's forget). Its data stays until the
    /// packs are reclaimed.
    pub fn forget(&mut self, info: &SnapshotInfo) -> Result<()> {
        let mut ids = info.superseded.clone();
        ids.push(info.id);
        self.delete_revisions(&ids)
    }

    /// Packs an already sealed frame verbatim (prune's repacking, journal replay: the bytes
    /// keep their ids, so nothing is decrypted or sealed again), unless every member of it is
    /// pending already.
    pub fn add_sealed(&mut self, f: SealedFrame) -> Result<()> {
        let blobs: Vec<BlobRef> = f.members.iter().map(|(b, _)| *b).collect();
        if self.pending.contains_many(&blobs).iter().any(|p| !*p) {
            self.packer.add(f)?;
        }
        Ok(())
    }

    fn delete_revisions(&self, ids: &[SnapshotId]) -> Result<()> {
        for id in ids {
            self.v.store.delete(ObjKind::Snapshot, &id.to_hex())?;
        }
        Ok(())
    }

    /// Whether a blob was packed in this session and is not yet readable through the index
    /// (call [`WriteSession::flush`] before reading it).
    pub fn is_pending(&self, blob: &BlobRef) -> bool {
        self.pending.contains(blob)
    }

    /// The packer, for the journal of a long-lived writer (`repo::live`).
    pub(crate) fn packer_mut(&mut self) -> &mut Packer {
        &mut self.packer
    }

    /// What replaying journals found when this session began (`None`: there were none).
    pub fn replayed(&self) -> Option<&super::journal::ReplayReport> {
        self.replayed.as_ref()
    }

    /// Buffered bytes not yet in a pack file (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.packer.buffered()
    }
}

pub fn new_dir_node(name: Vec<u8>) -> Node {
    Node::new(
        name,
        NodeKind::Dir { tree: TreeId([0; 32]) },
        0o40755,
        // SAFETY: getuid/getgid cannot fail and take no arguments.
        unsafe { libc::getuid() },
        unsafe { libc::getgid() },
        crate::format::tree::Time::now(),
        0,
    )
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if r != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A piece of a stream with its chunks identified: `todo` are the positions of the chunks to
/// seal and pack (new to the vault, to the session and to the batches before it), `sealed`
/// their frames once the sealing stage has been through.
struct Identified {
    seq: u64,
    piece: Piece,
    ids: Vec<crate::id::ChunkId>,
    todo: Vec<usize>,
    sealed: Vec<SealedFrame>,
}

/// The sealing stage of [`WriteSession::store_stream`]: compresses and seals the new chunks
/// of each identified batch (on both cores) while the batch before it is packed.
fn seal_stage(
    v: &Vault,
    rx: std::sync::mpsc::Receiver<Result<Identified>>,
    tx: &std::sync::mpsc::SyncSender<Result<Identified>>,
) {
    for item in rx {
        let item = item.map(|mut it| {
            if let Piece::Expanded(b) | Piece::Recipe(b) = &it.piece {
                it.sealed = v.seal_chunks(b, &it.ids, &it.todo);
            }
            it
        });
        let failed = item.is_err();
        if tx.send(item).is_err() || failed {
            return;
        }
    }
}

/// The identifying stage of [`WriteSession::store_stream`]: hashes each batch and looks its
/// chunks up, a batch or two ahead of the stage that seals and packs them. The chunks it sent
/// to be packed are not pending yet when the next batch is looked up, so it remembers them
/// until that stage says (`done`) that their batch was packed; it forgets a batch's only after
/// that, and checks what it remembers before the pending set, so a chunk is sealed once.
fn identify(
    v: &Vault,
    pending: &Pending,
    rx: std::sync::mpsc::Receiver<Result<Piece>>,
    tx: &std::sync::mpsc::SyncSender<Result<Identified>>,
    done: &std::sync::mpsc::Receiver<u64>,
) {
    let mut claimed: std::collections::VecDeque<(u64, IdSet<crate::id::ChunkId>)> = std::collections::VecDeque::new();
    for (seq, piece) in (0u64..).zip(rx) {
        let item = piece.and_then(|piece| {
            let batch = match &piece {
                Piece::Expanded(b) | Piece::Recipe(b) => b,
                Piece::Done(_) => {
                    return Ok(Identified { seq, piece, ids: Vec::new(), todo: Vec::new(), sealed: Vec::new() })
                }
            };
            while let Ok(d) = done.try_recv() {
                while claimed.front().is_some_and(|(s, _)| *s <= d) {
                    claimed.pop_front();
                }
            }
            let ids = v.chunk_ids(batch);
            let sent: Vec<bool> = ids.iter().map(|id| claimed.iter().any(|(_, c)| c.contains(id))).collect();
            let todo: Vec<usize> = v.unknown_chunks(&ids, pending)?.into_iter().filter(|&i| !sent[i]).collect();
            if !todo.is_empty() {
                claimed.push_back((seq, todo.iter().map(|&i| ids[i]).collect()));
            }
            Ok(Identified { seq, piece, ids, todo, sealed: Vec::new() })
        });
        let failed = item.is_err();
        if tx.send(item).is_err() || failed {
            return;
        }
    }
}

/// Chunks hashed together by [`Vault::chunk_ids`]: enough to fill the hash's lanes at every
/// piece of a chunk, few enough that a batch of 8 MiB gives both cores several runs.
pub(crate) const ID_RUN: usize = 256;

fn chunk_refs(chunks: &ChunkBatch, ids: Vec<crate::id::ChunkId>) -> Vec<ChunkRef> {
    ids.into_iter().zip(chunks.iter()).map(|(id, c)| ChunkRef { id, len: c.len() as u32 }).collect()
}

impl Vault {
    /// Keyed ids of a batch of chunks (runs of [`ID_RUN`] hashed together, in parallel).
    pub fn chunk_ids(&self, chunks: &ChunkBatch) -> Vec<crate::id::ChunkId> {
        let all: Vec<&[u8]> = chunks.iter().collect();
        all.par_chunks(ID_RUN).flat_map_iter(|run| self.keys.chunk_ids(run)).collect()
    }

    /// Positions of the chunks that neither the index nor `pending` has, each id once. The
    /// lookups are batched: one lock of the pending set, index lookups in parallel slices.
    pub fn unknown_chunks(&self, ids: &[crate::id::ChunkId], pending: &Pending) -> Result<Vec<usize>> {
        let blobs: Vec<BlobRef> = ids.iter().map(|id| BlobRef::data(*id)).collect();
        let in_pending = pending.contains_many(&blobs);
        // Only what the cache's filter may hold is looked up (all of a new chunk's lookups
        // would walk sled's tree to a leaf to find nothing).
        let maybe = self.index.may_contain_many(&blobs);
        let ask: Vec<usize> = (0..blobs.len()).filter(|&i| maybe[i] && !in_pending[i]).collect();
        let asked: Vec<BlobRef> = ask.iter().map(|&i| blobs[i]).collect();
        let found: Vec<bool> = asked
            .par_chunks(256)
            .map(|b| Ok(self.index.get_many(b)?.iter().map(Option::is_some).collect::<Vec<bool>>()))
            .collect::<Result<Vec<Vec<bool>>>>()?
            .concat();
        let mut known = in_pending;
        for (&i, f) in ask.iter().zip(found) {
            known[i] = f;
        }
        let mut seen = IdSet::default();
        Ok((0..ids.len()).filter(|&i| !known[i] && seen.insert(ids[i])).collect())
    }

    /// Compresses and seals the chunks at `todo` (in file order) as frames of the vault's
    /// frame target (docs/DESIGN.md §5), in parallel.
    pub fn seal_chunks(&self, chunks: &ChunkBatch, ids: &[crate::id::ChunkId], todo: &[usize]) -> Vec<SealedFrame> {
        let level = self.settings.zstd_level;
        let sealer = &self.sealer;
        let mut at = Vec::with_capacity(chunks.len());
        let mut off = 0u64;
        for c in chunks.iter() {
            at.push(off);
            off += c.len() as u64;
        }
        let frames = group(todo, |i| chunks.get(i).len(), |i| at[i], self.settings.frame_target);
        frames
            .par_iter()
            .map(|r| {
                let pos = &todo[r.clone()];
                let members: Vec<(BlobRef, &[u8])> =
                    pos.iter().map(|&i| (BlobRef::data(ids[i]), chunks.get(i))).collect();
                // Consecutive chunks lie back to back in the batch's buffer.
                let (first, last) = (pos[0], pos[pos.len() - 1]);
                let joined = (last - first + 1 == pos.len())
                    .then(|| &chunks.data[at[first] as usize..at[last] as usize + chunks.get(last).len()]);
                seal_frame_joined(sealer, level, &members, joined)
            })
            .collect()
    }
}
