//! A long-lived writer shared by many threads: the write side of a mount.
//!
//! Owns the write session (the writer lock and the open packs), the journal (docs/DESIGN.md
//! §10b) and checkpoints. Many threads add chunks at once: ids, index lookups, compression
//! and sealing run outside any lock; only handing sealed blobs to the packer is serialised.
//! A change is journaled with [`Live::log`] and made durable with [`Live::sync`]; concurrent
//! syncs share one `fdatasync` (group commit). [`Live::checkpoint`] commits what the journal
//! holds (packs, index file, revisions) and [`Live::release`] gives the writer lock back.
//!
//! Lock order: `gate` (shared by every change while it is being made) → the caller's own
//! locks → `session` → `journal` → `synced`. Nothing here is held while waiting for the
//! vault's writer lock except `acquire`.
//!
//! Must never: journal an operation referring to a blob that is neither in the journal nor in
//! a pack file; delete a journal file before a revision includes its operations; give the
//! writer lock back while anything is not checkpointed.

use super::edit::{Editor, Op};
use super::journal::{blob_records, JournalWriter, Record};
use super::writer::WriteSession;
use super::{SnapshotInfo, Vault};
use crate::chunker::ChunkBatch;
use crate::error::{Error, Result};
use crate::format::snapshot::JournalMark;
use crate::format::tree::{ChunkRef, PageRef};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

/// What a close must make durable before its file is journaled.
#[derive(Debug, Clone, Copy)]
pub enum Prepare<'a> {
    /// A small file with these chunks: blobs not yet in a pack file are copied into the
    /// journal (and the few of its chunks that a large file's stream packed, too).
    Small(&'a [ChunkRef]),
    /// A large file, whose chunks went to the bulk packs: those are written as pack files
    /// (no copy in the journal), the rest is journaled as for a small file.
    Bulk,
}

/// Where a journaled change lands: durable once a sync covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    len: u64,
}

struct JState {
    writer: Option<JournalWriter>,
    /// Bumped whenever a journal file is cut (synced and closed for appends).
    generation: u64,
    /// Cut journal files whose operations no checkpoint has committed yet.
    old: Vec<String>,
    /// Operations since the last cut, in order.
    ops: Vec<(u64, String, Op)>,
    next_seq: u64,
    /// Periods with a base record in the current file.
    based: HashSet<String>,
    /// The committed revision each period builds on.
    bases: HashMap<String, Option<SnapshotInfo>>,
    /// Bytes journaled since the last checkpoint.
    bytes: u64,
    first_op: Option<Instant>,
    unsynced_since: Option<Instant>,
    /// An append or sync failed: nothing is journaled until a checkpoint succeeds.
    broken: Option<Error>,
}

#[derive(Default)]
struct SyncState {
    generation: u64,
    synced: u64,
}

/// A summary for the maintenance thread.
#[derive(Debug, Clone, Default)]
pub struct LiveStatus {
    pub holds_lock: bool,
    pub journaled_bytes: u64,
    pub pending_ops: usize,
    pub since_first_op: Option<Duration>,
    pub unsynced_for: Option<Duration>,
    pub idle_for: Duration,
    /// Packs wait to be written again after a failure, or the journal failed.
    pub failing: bool,
}

pub struct Live {
    v: &'static Vault,
    holder: String,
    mount: [u8; 16],
    lock_wait: Duration,
    acquire: Mutex<()>,
    gate: RwLock<()>,
    session: Mutex<Option<WriteSession<'static>>>,
    journal: Mutex<JState>,
    synced: Mutex<SyncState>,
    /// Sessions begun (a new one means other writers may have committed meanwhile).
    epoch: AtomicU64,
    last_activity: Mutex<Instant>,
    notices: Mutex<Vec<String>>,
}

pub type Gate<'a> = RwLockReadGuard<'a, ()>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Live {
    pub fn new(v: &'static Vault, holder: &str, lock_wait: Duration) -> Self {
        Live {
            v,
            holder: holder.to_string(),
            mount: rand::random(),
            lock_wait,
            acquire: Mutex::new(()),
            gate: RwLock::new(()),
            session: Mutex::new(None),
            journal: Mutex::new(JState {
                writer: None,
                generation: 0,
                old: Vec::new(),
                ops: Vec::new(),
                next_seq: 1,
                based: HashSet::new(),
                bases: HashMap::new(),
                bytes: 0,
                first_op: None,
                unsynced_since: None,
                broken: None,
            }),
            synced: Mutex::new(SyncState::default()),
            epoch: AtomicU64::new(0),
            last_activity: Mutex::new(Instant::now()),
            notices: Mutex::new(Vec::new()),
        }
    }

    pub fn vault(&self) -> &'static Vault {
        self.v
    }

    fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
    }

    /// Messages worth logging (journal replays, failed checkpoints), taken once.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.notices))
    }

    fn notice(&self, msg: String) {
        lock(&self.notices).push(msg);
    }

    /// Makes sure the writer lock is held and returns a guard to keep while making a change.
    /// When the lock is taken anew, other writers may have committed meanwhile: `on_fresh`
    /// gets every period's current revision to reload what the caller shows, before the
    /// session can be used by anyone.
    pub fn begin(&self, on_fresh: &dyn Fn(&[SnapshotInfo]) -> Result<()>) -> Result<Gate<'_>> {
        self.begin_with(self.lock_wait, on_fresh)
    }

    /// [`Live::begin`], waiting at most `wait` for another writer.
    pub fn begin_with(&self, wait: Duration, on_fresh: &dyn Fn(&[SnapshotInfo]) -> Result<()>) -> Result<Gate<'_>> {
        loop {
            {
                let g = self.gate.read().unwrap_or_else(|e| e.into_inner());
                if lock(&self.session).is_some() {
                    self.touch();
                    return Ok(g);
                }
            }
            let _one = lock(&self.acquire);
            if lock(&self.session).is_some() {
                continue;
            }
            let mut s = self.v.begin_write(&self.holder, wait)?;
            // A daemon keeps its memory low rather than pack buffers for reuse.
            s.keep_memory_low();
            s.packer_mut().keep_journal_records(true);
            if let Some(r) = s.replayed() {
                self.notice(format!(
                    "applied {} journaled change(s) from {} journal file(s) left by a mount that stopped without unmounting{}",
                    r.applied,
                    r.journals,
                    if r.periods.is_empty() { String::new() } else { format!(" ({})", r.periods.join(", ")) }
                ));
                for p in &r.problems {
                    self.notice(format!("journal replay: {p}"));
                }
            }
            let snaps = self.v.snapshots()?;
            {
                let mut j = lock(&self.journal);
                for (p, b) in j.bases.iter_mut() {
                    *b = snaps.iter().find(|s| &s.snap.period == p).cloned();
                }
            }
            // The caller reloads what other writers committed before anyone can change
            // anything through this session.
            on_fresh(&snaps)?;
            *lock(&self.session) = Some(s);
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Runs `f` if the writer lock is not held, while making sure no session begins
    /// meanwhile (a reader refreshing its view of what other writers committed).
    pub fn when_idle<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        let _one = lock(&self.acquire);
        if lock(&self.session).is_some() {
            return None;
        }
        Some(f())
    }

    /// Whether the writer lock is held now.
    pub fn holds_lock(&self) -> bool {
        lock(&self.session).is_some()
    }

    /// Sessions begun so far.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Records the committed revision a period builds on (when the caller loads a period).
    pub fn set_base(&self, period: &str, base: Option<SnapshotInfo>) {
        lock(&self.journal).bases.insert(period.to_string(), base);
    }

    /// The committed revision of a period as far as this writer knows.
    pub fn base(&self, period: &str) -> Option<SnapshotInfo> {
        lock(&self.journal).bases.get(period).cloned().flatten()
    }

    fn with_session<T>(&self, f: impl FnOnce(&mut WriteSession<'static>) -> Result<T>) -> Result<T> {
        let mut s = lock(&self.session);
        let s = s.as_mut().ok_or_else(|| Error::new(crate::ErrorKind::Locked, "the writer lock is not held"))?;
        f(s)
    }

    /// Chunks identified, deduplicated and packed. Hashing, index lookups and sealing run
    /// without any lock, so several writers use both cores.
    pub fn add_chunks(&self, batch: &ChunkBatch, bulk: bool) -> Result<Vec<ChunkRef>> {
        let v = self.v;
        let ids = v.chunk_ids(batch);
        let pending = v.pending.read().unwrap_or_else(|e| e.into_inner()).clone();
        let pending = pending.ok_or_else(|| Error::new(crate::ErrorKind::Locked, "the writer lock is not held"))?;
        let todo = v.unknown_chunks(&ids, &pending)?;
        let sealed = v.seal_chunks(batch, &ids, &todo);
        if !sealed.is_empty() {
            self.with_session(|s| s.add_new(sealed, bulk))?;
        }
        self.touch();
        Ok(ids.into_iter().zip(batch.iter()).map(|(id, c)| ChunkRef { id, len: c.len() as u32 }).collect())
    }

    /// Stores one page of a file's chunk list.
    pub fn write_list(&self, chunks: &[ChunkRef]) -> Result<PageRef> {
        self.with_session(|s| s.write_list(chunks))
    }

    fn append(&self, j: &mut JState, recs: Vec<Record>) -> Result<Ticket> {
        if let Some(e) = &j.broken {
            return Err(Error::new(e.kind(), format!("the journal is unusable until a checkpoint succeeds: {e}")));
        }
        if j.writer.is_none() {
            let w = JournalWriter::create(&**self.v.store(), &self.v.sealer, self.mount, j.next_seq)
                .inspect_err(|e| j.broken = Some(e.clone_shallow()))?;
            j.writer = Some(w);
            j.based.clear();
        }
        let w = j.writer.as_mut().ok_or_else(|| Error::corrupt("journal vanished"))?;
        let before = w.len();
        match w.append(&self.v.sealer, &recs) {
            Ok(len) => {
                j.bytes += len - before;
                j.unsynced_since.get_or_insert_with(Instant::now);
                Ok(Ticket { generation: j.generation, len })
            }
            Err(e) => {
                j.broken = Some(e.clone_shallow());
                Err(e)
            }
        }
    }

    /// Makes the blobs a close needs durable: in the journal (blobs not yet in a pack file,
    /// and records of packs written since), or as pack files for a large file (`what`). Call
    /// without holding locks that other requests need: it may wait for a checkpoint.
    pub fn prepare(&self, what: Prepare<'_>) -> Result<()> {
        self.heal()?;
        let mut sg = lock(&self.session);
        let (blobs, packs) = {
            let Some(s) = sg.as_mut() else { return Ok(()) };
            let p = s.packer_mut();
            let extra = match what {
                Prepare::Bulk => {
                    p.write_bulk()?;
                    Vec::new()
                }
                Prepare::Small(chunks) => {
                    let refs: Vec<crate::id::BlobRef> = chunks.iter().map(|c| crate::id::BlobRef::data(c.id)).collect();
                    p.bulk_blobs(&refs)
                }
            };
            let (mut blobs, packs) = p.take_unjournaled();
            blobs.extend(extra);
            (blobs, packs)
        };
        if blobs.is_empty() && packs.is_empty() {
            return Ok(());
        }
        // What was taken is marked journaled: another close that finds its blobs taken must
        // not journal (and sync) its operation before these records are appended, so the
        // journal is locked before the packer is let go.
        let mut j = lock(&self.journal);
        drop(sg);
        let mut recs = blob_records(blobs);
        recs.extend(packs.into_iter().map(Record::Pack));
        self.append(&mut j, recs).map(|_| ())
    }

    /// After a failed journal append or sync, nothing more is journaled until a checkpoint
    /// has committed everything the journal may have missed.
    fn heal(&self) -> Result<()> {
        if lock(&self.journal).broken.is_some() {
            self.checkpoint(&[])?;
        }
        Ok(())
    }

    /// Appends operations on `period`, in order. They are durable once [`Live::sync`] of the
    /// returned ticket returns; until then they are in memory and in the page cache.
    pub fn log(&self, period: &str, ops: Vec<Op>) -> Result<Ticket> {
        self.touch();
        self.heal()?;
        let mut j = lock(&self.journal);
        let mut recs = Vec::new();
        if !j.based.contains(period) || j.writer.is_none() {
            let revision = j.bases.get(period).cloned().flatten().map(|b| b.id);
            recs.push(Record::Base { period: period.to_string(), revision });
        }
        let first = j.next_seq;
        for (i, op) in ops.iter().enumerate() {
            recs.push(Record::Op { seq: first + i as u64, period: period.to_string(), op: op.clone() });
        }
        let t = self.append(&mut j, recs)?;
        j.based.insert(period.to_string());
        j.next_seq += ops.len() as u64;
        for (i, op) in ops.into_iter().enumerate() {
            j.ops.push((first + i as u64, period.to_string(), op));
        }
        j.first_op.get_or_insert_with(Instant::now);
        Ok(t)
    }

    /// Waits until everything journaled up to `t` is durable. Concurrent callers share one
    /// `fdatasync`.
    pub fn sync(&self, t: Ticket) -> Result<()> {
        let mut st = lock(&self.synced);
        if t.generation < st.generation || (t.generation == st.generation && t.len <= st.synced) {
            return Ok(());
        }
        let (file, generation, len) = {
            let j = lock(&self.journal);
            if t.generation < j.generation {
                // That file was cut, and cutting synced it.
                return Ok(());
            }
            match &j.writer {
                Some(w) => (w.file(), j.generation, w.len()),
                None => return Ok(()),
            }
        };
        if let Err(e) = file.sync() {
            lock(&self.journal).broken = Some(e.clone_shallow());
            return Err(e);
        }
        st.generation = generation;
        st.synced = len;
        let mut j = lock(&self.journal);
        if j.generation == generation && j.writer.as_ref().map(|w| w.len()) == Some(len) {
            j.unsynced_since = None;
        }
        Ok(())
    }

    /// Makes everything journaled so far durable (fsyncdir, the maintenance thread).
    pub fn sync_all(&self) -> Result<()> {
        let t = {
            let j = lock(&self.journal);
            match &j.writer {
                Some(w) => Ticket { generation: j.generation, len: w.len() },
                None => return Ok(()),
            }
        };
        self.sync(t)
    }

    /// Commits everything journaled so far (docs/DESIGN.md §10b) and then seals `seal`.
    /// Returns the new current revision of every period it wrote.
    pub fn checkpoint(&self, seal: &[String]) -> Result<Vec<SnapshotInfo>> {
        let mut sg = lock(&self.session);
        let Some(s) = sg.as_mut() else { return Ok(Vec::new()) };
        // 1. Cut.
        let (ops, cut, bases) = {
            let mut j = lock(&self.journal);
            if let Some(w) = j.writer.take() {
                if let Err(e) = w.file().sync() {
                    let msg = e.to_string();
                    j.writer = Some(w);
                    j.broken = Some(e.clone_shallow());
                    return Err(Error::new(e.kind(), msg));
                }
                j.old.push(w.name().to_string());
                j.generation += 1;
                j.based.clear();
            }
            (std::mem::take(&mut j.ops), j.next_seq - 1, j.bases.clone())
        };
        let mut by_period: BTreeMap<String, Vec<(u64, Op)>> = BTreeMap::new();
        for (seq, p, op) in ops {
            by_period.entry(p).or_default().push((seq, op));
        }
        // 2-3. Apply, store, commit.
        let mark = JournalMark { mount: self.mount, seq: cut };
        let mut done: Vec<SnapshotInfo> = Vec::new();
        let mut failed: Option<Error> = None;
        for (period, ops) in &by_period {
            if failed.is_some() {
                break;
            }
            let base = bases.get(period).cloned().flatten();
            let r = (|| -> Result<Option<SnapshotInfo>> {
                let load = |id| s.load_tree(id);
                let mut ed = Editor::new(
                    base.as_ref().map(|b| b.snap.root),
                    base.as_ref().map(|b| b.snap.files).unwrap_or(0),
                    base.as_ref().map(|b| b.snap.logical_bytes).unwrap_or(0),
                    &load,
                );
                for (_, op) in ops {
                    ed.apply(op)?;
                }
                let edited = ed.finish();
                let (root, files, bytes) = edited.write(s)?;
                if let Some(b) = &base {
                    if b.snap.root == root && b.snap.files == files && b.snap.logical_bytes == bytes {
                        return Ok(None);
                    }
                }
                Ok(Some(s.commit_marked(period, base.as_ref(), root, files, bytes, Some(mark))?))
            })();
            match r {
                Ok(Some(info)) => done.push(info),
                Ok(None) => {}
                Err(e) => failed = Some(e),
            }
        }
        let flushed = if failed.is_none() { s.flush() } else { Ok(()) };
        if let Err(e) = flushed {
            failed = Some(e);
        }
        let mut j = lock(&self.journal);
        for info in &done {
            j.bases.insert(info.snap.period.clone(), Some(info.clone()));
        }
        if let Some(e) = failed {
            // Operations of periods not committed go back, ahead of any logged since.
            let committed: HashSet<&str> = done.iter().map(|i| i.snap.period.as_str()).collect();
            let mut back: Vec<(u64, String, Op)> = Vec::new();
            for (p, ops) in by_period {
                if !committed.contains(p.as_str()) {
                    back.extend(ops.into_iter().map(|(seq, op)| (seq, p.clone(), op)));
                }
            }
            back.sort_by_key(|(seq, _, _)| *seq);
            back.append(&mut j.ops);
            j.ops = back;
            let msg = format!("checkpoint failed: {e}");
            drop(j);
            self.notice(msg);
            return Err(e);
        }
        // 4. The cut files are committed: remove them.
        let old = std::mem::take(&mut j.old);
        j.bytes = j.writer.as_ref().map(|w| w.len()).unwrap_or(0);
        j.first_op = if j.ops.is_empty() { None } else { Some(Instant::now()) };
        j.broken = None;
        drop(j);
        if let Some(js) = self.v.store().journals() {
            for n in old {
                if let Err(e) = js.remove(&n) {
                    self.notice(format!("could not remove committed journal {n}: {e}"));
                }
            }
        }
        // Sealing.
        let mut out = done;
        for p in seal {
            let base = lock(&self.journal).bases.get(p).cloned().flatten();
            if let Some(b) = base {
                if !b.snap.sealed {
                    let sealed = s.seal(&b)?;
                    lock(&self.journal).bases.insert(p.clone(), Some(sealed.clone()));
                    out.retain(|i| &i.snap.period != p);
                    out.push(sealed);
                }
            }
        }
        Ok(out)
    }

    /// Checkpoints and gives the writer lock back (the caller knows no file is open for
    /// writing). On failure the lock stays held.
    pub fn release(&self) -> Result<()> {
        self.release_if(&|| true).map(|_| ())
    }

    /// [`Live::release`] when `idle()` holds once no change is in progress: it is asked under
    /// the gate, so a caller that looked for open files before calling sees a file created or
    /// opened for writing since (such a file is journaled only when it is closed). Returns
    /// whether the lock was given back.
    pub fn release_if(&self, idle: &dyn Fn() -> bool) -> Result<bool> {
        let _g = self.gate.write().unwrap_or_else(|e| e.into_inner());
        if lock(&self.session).is_none() || !idle() {
            return Ok(false);
        }
        self.checkpoint(&[])?;
        let clean = {
            let j = lock(&self.journal);
            j.ops.is_empty() && j.old.is_empty()
        };
        if !clean {
            return Ok(false);
        }
        // The current file holds no operation (only blobs of files nobody closed): drop it.
        let w = lock(&self.journal).writer.take();
        if let Some(w) = w {
            if let Some(js) = self.v.store().journals() {
                js.remove(w.name())?;
            }
            lock(&self.journal).generation += 1;
        }
        *lock(&self.session) = None;
        Ok(true)
    }

    pub fn status(&self) -> LiveStatus {
        let holds = lock(&self.session).as_mut().map(|s| s.packer_mut().has_failed());
        let j = lock(&self.journal);
        LiveStatus {
            holds_lock: holds.is_some(),
            journaled_bytes: j.bytes,
            pending_ops: j.ops.len(),
            since_first_op: j.first_op.map(|t| t.elapsed()),
            unsynced_for: j.unsynced_since.map(|t| t.elapsed()),
            idle_for: lock(&self.last_activity).elapsed(),
            failing: holds == Some(true) || j.broken.is_some(),
        }
    }
}
