//! Reading an expanded file back: the original bytes from the expanded stream and the recipe.

use super::{gzip_header_end, parse_splices, read_steps, Recreate, Step};
use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// Random access to the bytes of a stored stream (the expanded stream or the recipe).
pub trait Source: Send + Sync {
    fn read_at(&self, off: u64, len: usize) -> Result<Vec<u8>>;
    /// Fetches what a sequential reader will ask for next (from another thread); errors are
    /// left for that read.
    fn read_ahead(&self) {}
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

    /// Where the original bytes `[off, off + len)` lie in the expanded stream, as
    /// `(expanded offset, offset within the range, length)` pieces, when every one of them is
    /// a copied byte; `None` when any lies in a recreated window or past the end. A change of
    /// those bytes is then the same change of the expanded stream, with the recipe unchanged.
    pub fn copied_range(&self, off: u64, len: u64) -> Option<Vec<(u64, u64, u64)>> {
        let end = off.checked_add(len).filter(|e| *e <= self.original)?;
        let mut out = Vec::new();
        let (mut pos, mut i) = (off, self.part_at(off));
        while pos < end {
            let part = self.parts.get(i)?;
            i += 1;
            if part.o_len == 0 {
                continue;
            }
            if !matches!(part.kind, Kind::Raw) {
                return None;
            }
            let to = end.min(part.o + part.o_len);
            out.push((part.p + (pos - part.o), pos - off, to - pos));
            pos = to;
        }
        Some(out)
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

    /// Fetches the expanded stream ahead of its last read (see [`Source::read_ahead`]).
    pub fn read_ahead(&self) {
        self.expanded.read_ahead();
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

/// Most bytes between two expanded gzip streams that [`GzContent`] accepts: a trailer and the
/// next member's header. More means part of a stream was copied as it is.
const GZ_GAP_MAX: u64 = 1 << 16;

/// One gzip member of a file whose deflate stream was expanded to its end.
#[derive(Debug)]
struct GzMember {
    /// Window parts holding its decompressed content, in order.
    parts: std::ops::Range<usize>,
    crc: u32,
}

/// The decompressed content of a gzip file (one member or several, concatenated as `gzip -dc`
/// gives it), read from the stored expanded stream: no deflate byte is recreated and nothing
/// is inflated. Each member's CRC-32 is checked against its trailer at its end, like an
/// inflater does; the content itself is authenticated chunk by chunk like every stored byte.
pub struct GzContent<'a, S: Source> {
    expanded: &'a S,
    plan: &'a Plan,
    members: Vec<GzMember>,
    member: usize,
    part: usize,
    /// Offset in the current part's content.
    at: u64,
    hasher: crc32fast::Hasher,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: Source> Rebuilder<S> {
    /// The decompressed content of the file, read from the expanded stream, when the file is a
    /// gzip stream (one or more members, nothing after the last) whose every deflate stream was
    /// expanded to its end; `None` for anything else (read the original bytes and inflate).
    pub fn gzip_content(&self) -> Option<GzContent<'_, S>> {
        let parts = &self.plan.parts;
        let mut members: Vec<GzMember> = Vec::new();
        let mut i = 0;
        // The stream before the copied bytes at `i` (its content length mod 2^32, its member):
        // they start with its trailer. The copied bytes before the first stream are only a header.
        let mut prev_isize: Option<(u32, usize)> = None;
        loop {
            let start = i;
            while i < parts.len() && matches!(parts[i].kind, Kind::Raw) {
                i += 1;
            }
            if parts[start..i].iter().map(|x| x.o_len).sum::<u64>() > GZ_GAP_MAX {
                return None;
            }
            let mut raw = Vec::new();
            for x in &parts[start..i] {
                raw.extend(Self::read_exact(&self.expanded, x.p, x.p_len, "expanded stream").ok()?);
            }
            let mut rest = &raw[..];
            if let Some((size, m)) = prev_isize.take() {
                // The trailer of the stream before: CRC-32, then the content length mod 2^32.
                let t = rest.get(..8)?;
                if u32::from_le_bytes(t[4..8].try_into().ok()?) != size {
                    return None;
                }
                members[m].crc = u32::from_le_bytes(t[..4].try_into().ok()?);
                rest = &rest[8..];
            }
            if i == parts.len() {
                return (rest.is_empty() && !members.is_empty()).then(|| GzContent {
                    expanded: &self.expanded,
                    plan: &self.plan,
                    members,
                    member: 0,
                    part: 0,
                    at: 0,
                    hasher: crc32fast::Hasher::new(),
                    buf: Vec::new(),
                    pos: 0,
                });
            }
            if gzip_header_end(rest)? != rest.len() {
                return None;
            }
            let Kind::Window { stream, .. } = parts[i].kind else { return None };
            if stream != i {
                return None;
            }
            let first = i;
            let mut size = 0u32;
            while i < parts.len() && matches!(parts[i].kind, Kind::Window { stream: s, .. } if s == first) {
                size = size.wrapping_add(parts[i].p_len as u32);
                i += 1;
            }
            members.push(GzMember { parts: first..i, crc: 0 });
            prev_isize = Some((size, members.len() - 1));
        }
    }
}

impl<S: Source> GzContent<'_, S> {
    /// Bytes of the file that the content read so far stands for: the offset in the original
    /// file of the window being read (the windows before it, their headers and trailers are
    /// read); the file's size once all is read.
    pub fn original_done(&self) -> u64 {
        let Some(m) = self.members.get(self.member) else { return self.plan.original };
        self.plan.parts.get(m.parts.start + self.part).map_or(self.plan.original, |p| p.o)
    }

    fn fill(&mut self) -> Result<bool> {
        loop {
            let Some(m) = self.members.get(self.member) else { return Ok(false) };
            let idx = m.parts.start + self.part;
            if idx == m.parts.end {
                let crc = std::mem::replace(&mut self.hasher, crc32fast::Hasher::new()).finalize();
                if crc != m.crc {
                    return Err(Error::corrupt(format!(
                        "gzip member {}: the CRC-32 of its content is {crc:08x}, its trailer says {:08x}",
                        self.member + 1,
                        m.crc
                    )));
                }
                self.member += 1;
                self.part = 0;
                continue;
            }
            let part = self.plan.parts[idx];
            if self.at == part.p_len {
                self.part += 1;
                self.at = 0;
                continue;
            }
            let n = COPY_BLOCK.min(part.p_len - self.at);
            let b = Rebuilder::<S>::read_exact(self.expanded, part.p + self.at, n, "expanded stream")?;
            self.hasher.update(&b);
            self.at += n;
            self.buf = b;
            self.pos = 0;
            return Ok(true);
        }
    }
}

impl<S: Source> Read for GzContent<'_, S> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() && !self.fill().map_err(std::io::Error::other)? {
            return Ok(0);
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
