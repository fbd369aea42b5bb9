//! Reading an expanded file back: the original bytes from the expanded stream and the recipe.

use super::{parse_splices, read_steps, Recreate, Step};
use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// Random access to the bytes of a stored stream (the expanded stream or the recipe).
pub trait Source: Send + Sync {
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>>;
}

/// Bytes of the expanded stream copied per read.
const COPY_BLOCK: u64 = 1 << 20;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Raw,
    /// A window of the deflate stream whose first window is part `stream`.
    Window {
        stream: usize,
        hash: [u8; 32],
        corr_at: u64,
        corr_len: u32,
        splice_at: u64,
        splice_len: u32,
    },
}

/// A range of the original file and where it comes from.
#[derive(Debug, Clone, Copy)]
struct Part {
    /// Offset in the original file.
    o: u64,
    /// Offset in the expanded stream.
    p: u64,
    /// Length in the original file.
    o_len: u64,
    /// Length in the expanded stream.
    p_len: u64,
    kind: Kind,
}

/// Where every byte of an expanded file comes from: one entry per copied range and per
/// recreated window (about one per 4 MiB of compressed data), read from the recipe once.
#[derive(Debug, Clone)]
pub struct Plan {
    parts: Vec<Part>,
    pub original: u64,
    pub expanded: u64,
}

impl Plan {
    /// Reads and checks a whole recipe.
    pub fn read(recipe: &mut dyn Read) -> Result<Plan> {
        let steps = read_steps(recipe)?;
        let (mut o, mut p) = (0u64, 0u64);
        let mut parts = Vec::new();
        let mut stream: Option<usize> = None;
        for s in steps {
            match s {
                Step::Raw(n) => {
                    parts.push(Part { o, p, o_len: n, p_len: n, kind: Kind::Raw });
                    o += n;
                    p += n;
                    stream = None;
                }
                Step::Begin => stream = Some(parts.len()),
                Step::Window { plain, comp, hash, corr_at, corr_len, splice_at, splice_len } => {
                    let s = stream.ok_or_else(|| Error::corrupt("recipe: a window outside a stream"))?;
                    parts.push(Part {
                        o,
                        p,
                        o_len: comp,
                        p_len: plain,
                        kind: Kind::Window { stream: s, hash, corr_at, corr_len, splice_at, splice_len },
                    });
                    o = o.checked_add(comp).ok_or_else(|| Error::corrupt("recipe: sizes overflow"))?;
                    p = p.checked_add(plain).ok_or_else(|| Error::corrupt("recipe: sizes overflow"))?;
                }
                Step::End { original, expanded } => {
                    if (original, expanded) != (o, p) {
                        return Err(Error::corrupt("recipe: sizes do not add up"));
                    }
                }
            }
        }
        Ok(Plan { parts, original: o, expanded: p })
    }

    fn part_at(&self, off: u64) -> usize {
        self.parts.partition_point(|x| x.o + x.o_len <= off)
    }

    /// Original bytes recreated from compressed windows (the rest is copied).
    pub fn recreated_bytes(&self) -> u64 {
        self.parts.iter().filter(|x| matches!(x.kind, Kind::Window { .. })).map(|x| x.o_len).sum()
    }
}

/// Where a reader's recreation stands: windows of one stream are recreated in order, from the
/// stream's first window.
struct Cursor {
    stream: usize,
    next: usize,
    rec: Recreate,
}

/// Windows recreated last, kept for reads that arrive out of order (the mount serves a file's
/// reads on several threads).
const WINDOWS_KEPT: usize = 2;

#[derive(Default)]
struct State {
    cursor: Option<Cursor>,
    last: Vec<(usize, Arc<Vec<u8>>)>,
}

/// The original bytes of an expanded file. Reads in order cost one recompression of each
/// window; a read behind the last recreated window of a stream starts that stream again.
pub struct Rebuilder<S: Source> {
    plan: Plan,
    expanded: S,
    recipe: S,
    state: Mutex<State>,
}

impl<S: Source> Rebuilder<S> {
    pub fn new(plan: Plan, expanded: S, recipe: S) -> Self {
        Rebuilder { plan, expanded, recipe, state: Mutex::new(State::default()) }
    }

    pub fn size(&self) -> u64 {
        self.plan.original
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn read_exact(s: &S, off: u64, len: u64, what: &str) -> Result<Vec<u8>> {
        let b = s.read_at(off, len as usize)?;
        if b.len() as u64 != len {
            return Err(Error::corrupt(format!("recipe: the {what} is shorter than the recipe says")));
        }
        Ok(b)
    }

    /// The original bytes of window part `i`.
    fn window(&self, i: usize) -> Result<Arc<Vec<u8>>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, b)) = st.last.iter().find(|(j, _)| *j == i) {
            return Ok(b.clone());
        }
        let Kind::Window { stream, .. } = self.plan.parts[i].kind else {
            return Err(Error::corrupt("recipe: not a window"));
        };
        let mut c = match st.cursor.take() {
            Some(c) if c.stream == stream && c.next <= i => c,
            _ => Cursor { stream, next: stream, rec: Recreate::new() },
        };
        let mut out = None;
        while c.next <= i {
            let part = self.plan.parts[c.next];
            let Kind::Window { hash, corr_at, corr_len, splice_at, splice_len, .. } = part.kind else {
                return Err(Error::corrupt("recipe: a stream is interrupted"));
            };
            let plain = Self::read_exact(&self.expanded, part.p, part.p_len, "expanded stream")?;
            let corr = Self::read_exact(&self.recipe, corr_at, corr_len as u64, "recipe")?;
            let splices = match splice_len {
                0 => Vec::new(),
                n => parse_splices(&Self::read_exact(&self.recipe, splice_at, n as u64, "recipe")?)?,
            };
            let bytes = c.rec.window(&plain, &corr, &splices, part.o_len, &hash)?;
            c.next += 1;
            if c.next > i {
                out = Some(Arc::new(bytes));
            }
        }
        st.cursor = Some(c);
        let out = out.ok_or_else(|| Error::corrupt("recipe: window not recreated"))?;
        if st.last.len() >= WINDOWS_KEPT {
            st.last.remove(0);
        }
        st.last.push((i, out.clone()));
        Ok(out)
    }

    /// Up to `len` original bytes at `off` (fewer only at the end).
    pub fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let end = off.saturating_add(len as u64).min(self.plan.original);
        let mut out = Vec::with_capacity(end.saturating_sub(off) as usize);
        let mut pos = off;
        let mut i = self.plan.part_at(off);
        while pos < end {
            let part = self.plan.parts[i];
            let (from, to) = (pos - part.o, (end - part.o).min(part.o_len));
            match part.kind {
                Kind::Raw => out.extend(Self::read_exact(&self.expanded, part.p + from, to - from, "expanded stream")?),
                Kind::Window { .. } => out.extend_from_slice(&self.window(i)?[from as usize..to as usize]),
            }
            pos = part.o + to;
            i += 1;
        }
        Ok(out)
    }

    /// Writes the original bytes to `w`, in order.
    pub fn copy_to(&self, w: &mut dyn Write) -> Result<u64> {
        let mut written = 0u64;
        for (i, part) in self.plan.parts.iter().enumerate() {
            match part.kind {
                Kind::Raw => {
                    let mut at = 0;
                    while at < part.p_len {
                        let n = COPY_BLOCK.min(part.p_len - at);
                        let b = Self::read_exact(&self.expanded, part.p + at, n, "expanded stream")?;
                        w.write_all(&b).map_err(|e| Error::io("writing output", e))?;
                        at += n;
                    }
                }
                Kind::Window { .. } => {
                    w.write_all(&self.window(i)?).map_err(|e| Error::io("writing output", e))?;
                }
            }
            written += part.o_len;
        }
        Ok(written)
    }
}
