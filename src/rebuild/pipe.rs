//! Expansion as a producer of chunk batches, on a thread of its own: `put` reads its input
//! there ([`chunk_expanded`]); the mount feeds a file's bytes to it as they are written
//! ([`Job`]).

use super::{expand, Expanded, Sink};
use crate::chunker::{BatchPool, ChunkBatch, ChunkerParams, StreamChunker};
use crate::error::{Error, Result};
use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

/// What the expanding thread hands on, in order.
pub enum Piece {
    /// Chunks of the expanded stream.
    Expanded(ChunkBatch),
    /// Chunks of the recipe.
    Recipe(ChunkBatch),
    /// The end: what was expanded.
    Done(Expanded),
}

struct Chunking<'a> {
    tx: &'a SyncSender<Result<Piece>>,
    batch_bytes: usize,
    pool: &'a BatchPool,
    /// Capacity of a new batch: the batch size and one cut of the chunker past it.
    capacity: usize,
    expanded: StreamChunker,
    recipe: StreamChunker,
    eb: ChunkBatch,
    rb: ChunkBatch,
}

impl Chunking<'_> {
    /// Chunks `b` into `batch` and sends the batch on as `piece` once it is large enough.
    fn push(&mut self, recipe: bool, b: &[u8]) -> Result<()> {
        let (chunker, batch, piece): (_, _, fn(ChunkBatch) -> Piece) = if recipe {
            (&mut self.recipe, &mut self.rb, Piece::Recipe)
        } else {
            (&mut self.expanded, &mut self.eb, Piece::Expanded)
        };
        chunker.push(b, batch);
        if batch.bytes() >= self.batch_bytes {
            let next = self.pool.batch(self.capacity);
            send(self.tx, piece(std::mem::replace(batch, next)))?;
        }
        Ok(())
    }
}

fn send(tx: &SyncSender<Result<Piece>>, p: Piece) -> Result<()> {
    tx.send(Ok(p)).map_err(|_| Error::io("expanding", std::io::Error::other("the writer stopped")))
}

impl Sink for Chunking<'_> {
    fn expanded(&mut self, b: &[u8]) -> Result<()> {
        self.push(false, b)
    }
    fn recipe(&mut self, b: &[u8]) -> Result<()> {
        self.push(true, b)
    }
}

/// Expands `input` to its end, chunking both streams into batches of about `batch_bytes`, and
/// sends them in order, then [`Piece::Done`] (or the error that stopped it). New batches are
/// taken from `pool`, where the receiver hands stored ones back.
pub fn chunk_expanded(
    input: &mut dyn Read,
    params: ChunkerParams,
    batch_bytes: usize,
    pool: &BatchPool,
    tx: &SyncSender<Result<Piece>>,
) {
    let capacity = batch_bytes + (1 << 20) + 2 * params.max as usize;
    let mut c = Chunking {
        tx,
        batch_bytes,
        pool,
        capacity,
        expanded: StreamChunker::new(params),
        recipe: StreamChunker::new(params),
        eb: pool.batch(capacity),
        rb: ChunkBatch::default(),
    };
    let r = expand(input, &mut c).and_then(|x| {
        c.expanded.finish(&mut c.eb);
        c.recipe.finish(&mut c.rb);
        let (e, r) = (std::mem::take(&mut c.eb), std::mem::take(&mut c.rb));
        send(c.tx, Piece::Expanded(e))?;
        send(c.tx, Piece::Recipe(r))?;
        Ok(x)
    });
    let _ = tx.send(r.map(Piece::Done));
}

/// `Read` over byte blocks received from a channel; ends when the sender is dropped.
struct ChannelRead {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(b) => (self.cur, self.pos) = (b, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Blocks of written bytes queued for the expanding thread.
const QUEUED_BLOCKS: usize = 32;
/// Batches of chunks the thread may have ready before it waits for them to be stored.
const READY_BATCHES: usize = 2;
const JOB_BATCH_BYTES: usize = 4 << 20;

/// Expansion of a file that is being written: bytes go in with [`Job::feed`] as they arrive,
/// chunk batches come out to the caller, who stores them. Dropping a job stops its thread.
#[derive(Debug)]
pub struct Job {
    tx: Option<SyncSender<Vec<u8>>>,
    rx: Receiver<Result<Piece>>,
    /// Where stored batches go back to the thread.
    pool: BatchPool,
    /// Bytes fed so far.
    pub fed: u64,
}

impl Job {
    pub fn start(params: ChunkerParams) -> Job {
        let (tx, in_rx) = sync_channel::<Vec<u8>>(QUEUED_BLOCKS);
        let (out_tx, rx) = sync_channel::<Result<Piece>>(READY_BATCHES);
        // A thread that cannot start drops both channel ends: the first feed reports it.
        let pool = BatchPool::default();
        let thread_pool = pool.clone();
        let _ = std::thread::Builder::new().name("expand".into()).spawn(move || {
            let mut input = ChannelRead { rx: in_rx, cur: Vec::new(), pos: 0 };
            chunk_expanded(&mut input, params, JOB_BATCH_BYTES, &thread_pool, &out_tx);
        });
        Job { tx: Some(tx), rx, pool, fed: 0 }
    }

    fn stopped(&self) -> Error {
        Error::io("expanding", std::io::Error::other("the expanding thread stopped"))
    }

    /// Queues `data`; batches that are ready meanwhile go to `out` (never [`Piece::Done`]).
    pub fn feed(&mut self, data: Vec<u8>, out: &mut dyn FnMut(&Piece) -> Result<()>) -> Result<()> {
        let n = data.len() as u64;
        let mut data = data;
        loop {
            while let Ok(p) = self.rx.try_recv() {
                self.take(p, out)?;
            }
            let tx = self.tx.as_ref().ok_or_else(|| self.stopped())?;
            match tx.try_send(data) {
                Ok(()) => break,
                Err(TrySendError::Full(d)) => {
                    data = d;
                    match self.rx.recv_timeout(Duration::from_millis(20)) {
                        Ok(p) => self.take(p, out)?,
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return Err(self.stopped()),
                    }
                }
                Err(TrySendError::Disconnected(_)) => return Err(self.stopped()),
            }
        }
        self.fed += n;
        Ok(())
    }

    fn take(&mut self, p: Result<Piece>, out: &mut dyn FnMut(&Piece) -> Result<()>) -> Result<()> {
        match p? {
            Piece::Done(_) => Err(Error::corrupt("expansion ended before its input")),
            p => self.stored(p, out),
        }
    }

    /// Hands a batch to `out`, then gives its buffer back to the thread.
    fn stored(&self, p: Piece, out: &mut dyn FnMut(&Piece) -> Result<()>) -> Result<()> {
        out(&p)?;
        if let Piece::Expanded(b) | Piece::Recipe(b) = p {
            self.pool.give(b);
        }
        Ok(())
    }

    /// Ends the input and hands every remaining batch to `out`; returns what was expanded.
    pub fn finish(mut self, out: &mut dyn FnMut(&Piece) -> Result<()>) -> Result<Expanded> {
        self.tx = None;
        loop {
            match self.rx.recv().map_err(|_| self.stopped())?? {
                Piece::Done(x) => return Ok(x),
                p => self.stored(p, out)?,
            }
        }
    }
}
