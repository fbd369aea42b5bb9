//! Background storing of a large file's appended bytes.
//!
//! A file written past [`super::file::TAIL_LIMIT`] hands each full tail to a thread of its
//! own, which cuts it into chunks, identifies, seals and packs them (through [`Live`]) while
//! the writer fills the next tail. The results come back in order and are taken in by the
//! file's next call; anything that needs the chunk table as it is (a read, a write behind the
//! tail, a truncate, a commit) first waits for all of it ([`Flow::finish`]). A failure in the
//! thread is reported by that next call, which marks the file failed like a failed write
//! (docs/SEMANTICS.md). Memory: the tail being filled and the one being stored (chunked in
//! place); the handover waits while the thread is busy, so a writer never gets further ahead
//! than one tail.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use vault::chunker::{cut_owned, ChunkerParams};
use vault::format::tree::ChunkRef;
use vault::repo::live::Live;
use vault::{Error, Result};

enum Done {
    Chunks(Vec<ChunkRef>),
    /// A handed-over buffer, emptied, for a next tail.
    Spare(Vec<u8>),
    Failed(Error),
    /// The bytes after the last final chunk boundary, once the input ended.
    Rest(Vec<u8>),
}

pub struct Flow {
    jobs: Option<SyncSender<Vec<u8>>>,
    done: Receiver<Done>,
    /// Bytes handed over whose chunks (or rest) have not been taken in yet.
    inflight: u64,
    spares: Vec<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Flow({} bytes in flight)", self.inflight)
    }
}

/// What the file takes in from the thread.
pub enum Taken {
    Chunks(Vec<ChunkRef>),
    Rest(Vec<u8>),
}

impl Flow {
    pub fn start(live: Arc<Live>, params: ChunkerParams) -> Result<Flow> {
        let (jobs, rx) = sync_channel::<Vec<u8>>(0);
        let (tx, done) = channel();
        let thread = std::thread::Builder::new()
            .name("vaultfs-store".into())
            .spawn(move || run(&live, params, rx, tx))
            .map_err(|e| Error::new(vault::ErrorKind::Io, format!("cannot start a storing thread: {e}")))?;
        Ok(Flow { jobs: Some(jobs), done, inflight: 0, spares: Vec::new(), thread: Some(thread) })
    }

    /// Bytes handed over and not yet taken in.
    pub fn inflight(&self) -> u64 {
        self.inflight
    }

    /// An empty buffer for the next tail (one the thread gave back, when there is one).
    pub fn spare(&mut self, capacity: usize) -> Vec<u8> {
        match self.spares.pop() {
            Some(b) if b.capacity() >= capacity => b,
            _ => Vec::with_capacity(capacity),
        }
    }

    /// Hands `tail` over; waits while the thread is still storing the one before.
    pub fn hand_over(&mut self, tail: Vec<u8>) -> Result<()> {
        let n = tail.len() as u64;
        let sent = self.jobs.as_ref().map(|j| j.send(tail).is_ok()).unwrap_or(false);
        if !sent {
            return Err(Error::new(vault::ErrorKind::Io, "the storing thread of this file stopped"));
        }
        self.inflight += n;
        Ok(())
    }

    /// Results ready now, in order (`wait`: all of them, after the input is ended: the last
    /// is the rest). A failure of the thread is returned once, in place of its results.
    pub fn take(&mut self, wait: bool, out: &mut Vec<Taken>) -> Result<()> {
        if wait {
            self.jobs = None;
        }
        loop {
            let d = if wait {
                match self.done.recv() {
                    Ok(d) => d,
                    Err(_) => break,
                }
            } else {
                match self.done.try_recv() {
                    Ok(d) => d,
                    Err(_) => return Ok(()),
                }
            };
            match d {
                Done::Chunks(refs) => {
                    self.inflight -= refs.iter().map(|c| c.len as u64).sum::<u64>().min(self.inflight);
                    out.push(Taken::Chunks(refs));
                }
                Done::Spare(b) => self.spares.push(b),
                Done::Failed(e) => return Err(e),
                Done::Rest(r) => {
                    self.inflight -= (r.len() as u64).min(self.inflight);
                    out.push(Taken::Rest(r));
                }
            }
        }
        let panicked = self.thread.take().map(|t| t.join().is_err()).unwrap_or(false);
        // The thread's buffers are freed: give them back rather than keep them resident.
        self.spares.clear();
        vault::release_free_memory();
        if panicked || self.inflight != 0 {
            return Err(Error::new(vault::ErrorKind::Io, "the storing thread of this file stopped before the end"));
        }
        Ok(())
    }
}

impl Drop for Flow {
    /// A file dropped while bytes are in flight (after a failure): the thread ends its current
    /// batch and stops; what it stored is not referenced by anything.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Chunks and stores each tail handed over in place (the bytes after the last boundary of the
/// tail before moved to its front), then gives the buffer back: two tails' buffers per large
/// file, the one being filled and the one being stored.
fn run(live: &Live, params: ChunkerParams, jobs: Receiver<Vec<u8>>, done: Sender<Done>) {
    let mut rest: Vec<u8> = Vec::new();
    let mut failed = false;
    for mut buf in jobs {
        if failed {
            continue;
        }
        if !rest.is_empty() {
            buf.splice(0..0, rest.drain(..));
        }
        let (batch, after) = cut_owned(params, buf, false);
        rest = after;
        match live.add_chunks(&batch, true) {
            Ok(refs) => {
                let _ = done.send(Done::Chunks(refs));
            }
            Err(e) => {
                failed = true;
                let _ = done.send(Done::Failed(e));
            }
        }
        let mut spare = batch.data;
        spare.clear();
        let _ = done.send(Done::Spare(spare));
    }
    if !failed {
        let _ = done.send(Done::Rest(rest));
    }
}
