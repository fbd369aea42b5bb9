//! Streaming verifier for plain SQL dumps (`pg_dump` without `-F`, and `pg_dumpall`).
//!
//! A plain dump is a psql script: SQL statements, a few psql meta-commands (`\restrict`,
//! `\unrestrict`, `\connect`), and after each `COPY ... FROM stdin;` the table's rows as text,
//! one per line, ended by a line `\.`. pg_dump opens it with `-- PostgreSQL database dump`
//! (`pg_dumpall`: `-- PostgreSQL database cluster dump`) and closes it with
//! `-- PostgreSQL database dump complete`: a dump without that line was cut short.
//!
//! [`verify`] lexes the SQL as psql does, just deep enough to find where statements end and
//! where a backslash starts a meta-command: quoted strings (`'...'`, `E'...'`, `"..."`,
//! `$tag$...$tag$`) and comments (`--`, nested `/* */`) are skipped. It counts the rows of
//! every COPY block and checks each row's field count against the COPY column list.
//!
//! What it hands to `on_sql` (the text a restore into a scratch database runs) is checked
//! first: a statement is passed on only once its first words show that it stays inside the
//! database being restored. Statements that create, alter or drop databases, roles or
//! tablespaces, `ALTER SYSTEM`, `\connect`, and any meta-command but `\restrict` and
//! `\unrestrict` stop the hand-over for good and are reported as the restore blocker. Memory:
//! one line piece (at most 1 MiB) and the start of the current statement.

use super::{copy_columns, copy_target, At, DumpFormat, DumpReport, RowCounter, TableData};
use crate::error::{Error, Result};
use std::io::{self, BufRead, BufReader, Read};

const HEADER: &str = "--\n-- PostgreSQL database dump\n";
const CLUSTER_HEADER: &str = "--\n-- PostgreSQL database cluster dump\n";
const COMPLETE: &[u8] = b"-- PostgreSQL database dump complete";
const CLUSTER_COMPLETE: &[u8] = b"-- PostgreSQL database cluster dump complete";
/// Longest piece of a line handled at once.
const PIECE: usize = 1 << 20;
/// Statement text kept for classification and COPY targets.
const STMT_KEEP: usize = 64 << 10;
/// Unclassified statement text held back before it is classified on what is known.
const PENDING_MAX: usize = 1 << 20;

/// Whether `head` starts like a plain dump written by pg_dump or pg_dumpall.
pub fn is_plain(head: &[u8]) -> bool {
    head.starts_with(HEADER.as_bytes()) || head.starts_with(CLUSTER_HEADER.as_bytes())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Lex {
    Normal,
    /// In a '...' string; `e`: an E'...' string, where backslash escapes.
    Single {
        e: bool,
        esc: bool,
    },
    Double,
    /// In a $tag$ string: its tag, and how much of the closing delimiter was seen.
    Dollar {
        tag: Vec<u8>,
        close: Vec<u8>,
    },
    /// Collecting a possible opening $tag$.
    DollarOpen(Vec<u8>),
    /// After a `-` or `/` that may open a comment.
    Dash,
    Slash,
    Block(u32),
    LineComment,
    /// A backslash meta-command, to the end of the line.
    Meta(Vec<u8>),
}

struct Copy {
    table: TableData,
    rows: RowCounter,
}

struct State<'a> {
    rep: DumpReport,
    lex: Lex,
    prev: u8,
    /// The statement so far (outside comments), at most STMT_KEEP bytes, as written.
    stmt: Vec<u8>,
    stmt_start: Option<(u64, u64)>,
    /// Raw text not yet passed on (the current statement is not classified yet).
    pending: Vec<u8>,
    /// The raw text of the meta-command being read.
    meta: Vec<u8>,
    out: Vec<u8>,
    classified: bool,
    blocked: bool,
    copy_next: Option<String>,
    copy: Option<Copy>,
    complete_seen: bool,
    after_complete: bool,
    cluster: bool,
    line: u64,
    last_stmt_end: u64,
    on_sql: &'a mut dyn FnMut(&[u8]) -> Result<()>,
}

/// Reads and checks a whole plain dump from `r`; passes the SQL a restore may run to `on_sql`
/// (see the module doc).
pub fn verify<R: Read>(r: R, on_sql: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<DumpReport> {
    let mut r = BufReader::with_capacity(256 << 10, r);
    let mut st = State {
        rep: DumpReport::empty(DumpFormat::Plain),
        lex: Lex::Normal,
        prev: b'\n',
        stmt: Vec::new(),
        stmt_start: None,
        pending: Vec::new(),
        meta: Vec::new(),
        out: Vec::new(),
        classified: false,
        blocked: false,
        copy_next: None,
        copy: None,
        complete_seen: false,
        after_complete: false,
        cluster: false,
        line: 1,
        last_stmt_end: 0,
        on_sql,
    };
    let mut pos = 0u64;
    let mut line_start = true;
    let mut first = true;
    // The current line when it is short (to recognise `\.` and the closing comment).
    let mut short_line: Vec<u8> = Vec::new();
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::corrupt(format!("reading at {}: {e}", At(pos)))),
        };
        if buf.is_empty() {
            break;
        }
        if first {
            st.cluster = buf.starts_with(CLUSTER_HEADER.as_bytes());
            first = false;
        }
        let avail = &buf[..buf.len().min(PIECE)];
        let (n, eol) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let piece = &avail[..n];
        if line_start {
            short_line.clear();
        }
        if short_line.len() < 64 {
            short_line.extend_from_slice(&piece[..piece.len().min(64)]);
        }
        if let Some(c) = st.copy.as_mut() {
            c.rows.feed(piece);
            st.out.extend_from_slice(piece);
            let ended = eol && trim_nl(&short_line) == b"\\.";
            if ended {
                st.end_copy(pos + n as u64);
            }
        } else {
            if line_start && eol {
                let l = trim_nl(&short_line);
                if l == COMPLETE || l == CLUSTER_COMPLETE {
                    if !st.cluster || l == CLUSTER_COMPLETE {
                        st.complete_seen = true;
                        st.after_complete = false;
                    }
                } else if let Some(v) = l.strip_prefix(b"-- Dumped from database version ") {
                    st.rep.server_version = String::from_utf8_lossy(v).into_owned();
                } else if let Some(v) = l.strip_prefix(b"-- Dumped by pg_dump version ") {
                    st.rep.pg_dump_version = String::from_utf8_lossy(v).into_owned();
                } else if let Some(v) = l.strip_prefix(b"-- Dumped by pg_dumpall version ") {
                    st.rep.pg_dump_version = String::from_utf8_lossy(v).into_owned();
                }
            }
            for (i, &b) in piece.iter().enumerate() {
                st.sql_byte(b, pos + i as u64);
            }
            if eol {
                st.end_line(pos + n as u64);
            }
        }
        if eol {
            st.line += 1;
        }
        line_start = eol;
        pos += n as u64;
        r.consume(n);
        st.flush()?;
    }
    st.rep.bytes = pos;
    st.finish(pos)?;
    Ok(st.rep)
}

fn trim_nl(l: &[u8]) -> &[u8] {
    let l = l.strip_suffix(b"\n").unwrap_or(l);
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

impl State<'_> {
    fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            if !self.blocked {
                (self.on_sql)(&self.out)?;
            }
            self.out.clear();
        }
        Ok(())
    }

    fn block(&mut self, why: String) {
        if !self.blocked {
            self.blocked = true;
            self.rep.restore_blocker = Some(why);
        }
        self.pending.clear();
    }

    fn keep(&mut self, b: u8) {
        if self.stmt.len() < STMT_KEEP {
            self.stmt.push(b);
        }
    }

    fn route(&mut self, b: u8) {
        if self.blocked {
            return;
        }
        if self.classified {
            self.out.push(b);
        } else {
            self.pending.push(b);
            if self.pending.len() > PENDING_MAX {
                self.classify();
            }
        }
    }

    /// Looks at the first words of the current statement; passes it on or blocks.
    fn classify(&mut self) {
        if self.classified || self.blocked {
            return;
        }
        let upper = String::from_utf8_lossy(&self.stmt).to_ascii_uppercase();
        let words: Vec<&str> = upper
            .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
            .filter(|w| !w.is_empty())
            .take(4)
            .collect();
        let w = |i: usize| words.get(i).copied().unwrap_or("");
        let cluster_object = |x: &str| matches!(x, "DATABASE" | "ROLE" | "TABLESPACE");
        let global = match (w(0), w(1)) {
            ("CREATE" | "ALTER" | "DROP", "DATABASE" | "ROLE" | "GROUP" | "TABLESPACE") => true,
            ("CREATE" | "ALTER" | "DROP", "USER") => w(2) != "MAPPING",
            ("ALTER", "SYSTEM") => true,
            ("COMMENT", "ON") => cluster_object(w(2)),
            ("SECURITY", "LABEL") => w(2) == "ON" && cluster_object(w(3)),
            _ => false,
        };
        if global {
            let line = self.stmt_start.map(|s| s.1).unwrap_or(self.line);
            let what: String = words.join(" ");
            self.block(format!(
                "line {line}: {what} ...: the dump creates or changes databases, roles or tablespaces (pg_dump \
                 --create or pg_dumpall); a drill restores only into its scratch database"
            ));
            return;
        }
        self.classified = true;
        self.out.append(&mut self.pending);
    }

    fn statement_begins(&mut self, at: u64) {
        if self.stmt_start.is_none() {
            self.stmt_start = Some((at, self.line));
            if self.complete_seen {
                self.after_complete = true;
            }
        }
    }

    fn statement_ends(&mut self, at: u64) {
        self.classify();
        self.rep.entries += 1;
        let text = String::from_utf8_lossy(&self.stmt).into_owned();
        let upper = text.to_ascii_uppercase();
        let trimmed = upper.trim_end_matches(|c: char| c == ';' || c.is_whitespace());
        if upper.starts_with("COPY ") && trimmed.ends_with("FROM STDIN") {
            self.copy_next = Some(text);
        } else if upper.starts_with("SELECT PG_CATALOG.LO_OPEN(") {
            self.rep.large_objects += 1;
        }
        self.stmt.clear();
        self.stmt_start = None;
        self.classified = false;
        self.last_stmt_end = at + 1;
    }

    fn sql_byte(&mut self, b: u8, at: u64) {
        let prev = self.prev;
        self.prev = b;
        if let Lex::Meta(_) = self.lex {
            return self.meta_byte(b);
        }
        if b == b'\\' && self.lex == Lex::Normal {
            // A meta-command: held back until its line ends.
            self.meta = vec![b];
            self.lex = Lex::Meta(Vec::new());
            return;
        }
        // Every other byte is passed on (or held back) as it is.
        self.route(b);
        self.lex_byte(b, prev, at);
    }

    fn lex_byte(&mut self, b: u8, prev: u8, at: u64) {
        match std::mem::replace(&mut self.lex, Lex::Normal) {
            Lex::Normal => self.normal_byte(b, prev, at),
            Lex::Dash => {
                if b == b'-' {
                    self.lex = Lex::LineComment;
                } else {
                    self.normal_char(b'-', at);
                    self.normal_byte(b, b'-', at);
                }
            }
            Lex::Slash => {
                if b == b'*' {
                    self.lex = Lex::Block(1);
                } else {
                    self.normal_char(b'/', at);
                    self.normal_byte(b, b'/', at);
                }
            }
            Lex::Single { e, esc } => {
                self.keep(b);
                self.lex = match b {
                    b'\\' if e => Lex::Single { e, esc: !esc },
                    b'\'' if !esc => Lex::Normal,
                    _ => Lex::Single { e, esc: false },
                };
            }
            Lex::Double => {
                self.keep(b);
                if b != b'"' {
                    self.lex = Lex::Double;
                }
            }
            Lex::DollarOpen(mut tag) => {
                if b == b'$' {
                    self.keep(b);
                    self.lex = Lex::Dollar { tag, close: Vec::new() };
                } else if is_ident(b) && !(tag.is_empty() && b.is_ascii_digit()) && tag.len() < 64 {
                    self.keep(b);
                    tag.push(b);
                    self.lex = Lex::DollarOpen(tag);
                } else {
                    // Not a dollar quote after all ($1, a$b): ordinary text.
                    self.normal_byte(b, prev, at);
                }
            }
            Lex::Dollar { tag, mut close } => {
                self.keep(b);
                if b == b'$' {
                    if close.len() == tag.len() + 1 && close[1..] == tag[..] {
                        return; // back to Normal
                    }
                    close.clear();
                    close.push(b);
                } else if !close.is_empty() && close.len() <= tag.len() {
                    close.push(b);
                } else {
                    close.clear();
                }
                self.lex = Lex::Dollar { tag, close };
            }
            Lex::Block(depth) => {
                self.lex = match b {
                    b'*' if prev == b'/' => Lex::Block(depth + 1),
                    b'/' if prev == b'*' && depth == 1 => {
                        self.prev = b' '; // `*/*` does not open a new comment
                        Lex::Normal
                    }
                    b'/' if prev == b'*' => {
                        self.prev = b' ';
                        Lex::Block(depth - 1)
                    }
                    _ => Lex::Block(depth),
                };
            }
            Lex::LineComment => {
                if b != b'\n' {
                    self.lex = Lex::LineComment;
                }
            }
            Lex::Meta(_) => {}
        }
    }

    /// A byte of ordinary SQL text (outside strings and comments).
    fn normal_byte(&mut self, b: u8, prev: u8, at: u64) {
        match b {
            b'-' => self.lex = Lex::Dash,
            b'/' => self.lex = Lex::Slash,
            b'\'' => {
                self.statement_begins(at);
                self.keep(b);
                let e = (prev == b'E' || prev == b'e') && {
                    // E'...' only when the E is not the end of a longer word.
                    let s = &self.stmt;
                    s.len() < 3 || !is_ident(s[s.len() - 3])
                };
                self.lex = Lex::Single { e, esc: false };
            }
            b'"' => {
                self.statement_begins(at);
                self.keep(b);
                self.lex = Lex::Double;
            }
            b'$' if !is_ident(prev) && prev != b'$' => {
                self.statement_begins(at);
                self.keep(b);
                self.lex = Lex::DollarOpen(Vec::new());
            }
            b';' => {
                self.keep(b);
                self.statement_ends(at);
            }
            c if c.is_ascii_whitespace() => {
                if self.stmt_start.is_some() {
                    if self.stmt.last() != Some(&b' ') {
                        self.keep(b' ');
                    }
                    if !self.classified && self.stmt.split(|&c| c == b' ').filter(|w| !w.is_empty()).count() >= 4 {
                        self.classify();
                    }
                }
            }
            _ => self.normal_char(b, at),
        }
    }

    fn normal_char(&mut self, b: u8, at: u64) {
        self.statement_begins(at);
        self.keep(b);
    }

    fn meta_byte(&mut self, b: u8) {
        self.meta.push(b);
        let Lex::Meta(cmd) = &mut self.lex else { return };
        if b != b'\n' {
            if cmd.len() < 64 {
                cmd.push(b);
            }
            return;
        }
        let cmd = std::mem::take(cmd);
        self.lex = Lex::Normal;
        self.prev = b'\n';
        self.end_meta(&cmd);
    }

    fn end_meta(&mut self, cmd: &[u8]) {
        let text = String::from_utf8_lossy(cmd);
        let name: String = text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '!' || *c == '?').collect();
        let line = self.line;
        let meta = std::mem::take(&mut self.meta);
        if self.stmt_start.is_some() {
            self.block(format!("line {line}: psql meta-command \\{name} inside a statement"));
            return;
        }
        match name.as_str() {
            "restrict" | "unrestrict" => {
                // psql runs it at once: pass it on with the text before it.
                if !self.blocked {
                    self.out.append(&mut self.pending);
                    self.out.extend_from_slice(&meta);
                }
            }
            "connect" | "c" => self.block(format!(
                "line {line}: \\connect: the dump switches databases (pg_dump --create or pg_dumpall); a drill \
                 restores only into its scratch database"
            )),
            _ => self.block(format!("line {line}: psql meta-command \\{name}, which a drill does not run")),
        }
    }

    fn end_line(&mut self, at: u64) {
        if let Some(stmt) = self.copy_next.take() {
            // The COPY statement's line is over: its rows follow.
            if self.lex == Lex::Normal {
                if !self.blocked {
                    self.out.append(&mut self.pending);
                }
                let (schema, table) = copy_target(&stmt).unwrap_or_default();
                self.copy = Some(Copy {
                    table: TableData {
                        schema,
                        table,
                        rows: None,
                        offset: at,
                        stored_bytes: 0,
                        data_bytes: 0,
                        error: None,
                    },
                    rows: RowCounter::new(copy_columns(&stmt)),
                });
            }
        }
    }

    fn end_copy(&mut self, _end: u64) {
        let Some(mut c) = self.copy.take() else { return };
        c.rows.finish(true);
        c.table.stored_bytes = c.rows.bytes;
        c.table.data_bytes = c.rows.bytes;
        match c.rows.problem.take() {
            Some((off, msg)) => {
                let m = format!("{msg} (at {} of the file)", At(c.table.offset + off));
                self.rep.damage.push(format!("table {}: COPY data: {m}", c.table.name()));
                c.table.error = Some(m);
            }
            None => c.table.rows = Some(c.rows.rows),
        }
        self.rep.tables.push(c.table);
    }

    fn finish(&mut self, end: u64) -> Result<()> {
        // psql runs a last line without a line end too.
        if let Lex::Meta(cmd) = &self.lex {
            let cmd = cmd.clone();
            self.lex = Lex::Normal;
            self.end_meta(&cmd);
        }
        if let Some(mut c) = self.copy.take() {
            c.rows.finish(true);
            let m = format!(
                "the file ends at {} inside the COPY data of table {} (begun at {}), after {} rows",
                At(end),
                c.table.name(),
                At(c.table.offset),
                c.rows.rows
            );
            c.table.error = Some(m.clone());
            c.table.stored_bytes = c.rows.bytes;
            c.table.data_bytes = c.rows.bytes;
            self.rep.tables.push(c.table);
            self.rep.damage.push(format!("truncated: {m}"));
        } else {
            let inside = match &self.lex {
                Lex::Single { .. } | Lex::Double => Some("a quoted string"),
                Lex::Dollar { .. } => Some("a dollar-quoted string"),
                Lex::Block(_) => Some("a comment"),
                _ => None,
            };
            if let Some(what) = inside {
                self.rep.damage.push(format!("truncated: the file ends at {} inside {what}", At(end)));
            } else if let Some((at, line)) = self.stmt_start {
                self.rep.damage.push(format!(
                    "truncated: the file ends at {} inside a statement begun at {} (line {line})",
                    At(end),
                    At(at)
                ));
            } else if !self.complete_seen || self.after_complete {
                let closing = if self.cluster { CLUSTER_COMPLETE } else { COMPLETE };
                self.rep.damage.push(format!(
                    "truncated: no closing \"{}\" line at the end (the last statement ends at {})",
                    String::from_utf8_lossy(closing),
                    At(self.last_stmt_end)
                ));
            }
        }
        if !self.blocked {
            self.out.append(&mut self.pending);
        }
        self.flush()
    }
}
