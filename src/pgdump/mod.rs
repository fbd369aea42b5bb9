//! PostgreSQL dumps kept in the vault: reading and checking `pg_dump` output, and restoring it
//! into a scratch database for drills.
//!
//! `custom` owns the custom archive format (`pg_dump -Fc`, header `PGDMP`): its header, its
//! table of contents and every data block, decompressed where this build can (none, gzip/zlib,
//! zstd). `plain` owns plain SQL dumps (`pg_dump` without `-F`, recognised by their header
//! comment): a lexer just deep enough to find statements, psql meta-commands and the COPY data
//! that follows `COPY ... FROM stdin;`. Both read their input once, front to back, count the rows
//! of every table's COPY data (and the large objects), check each row's field count against the
//! COPY column list, name the table and byte offset of any damage, and never hold more than one
//! line or one compressed chunk in memory. Neither trusts a length before checking it, nor
//! panics on bad input. `conninfo` splits a `postgresql://` URI into what may be shown or
//! passed on a command line and the password, which goes only into the environment of the
//! child processes. `restore` feeds a dump to `pg_restore` or `psql` connected to a scratch
//! database it creates, then counts the restored rows. It is the only part of the engine that
//! talks to a PostgreSQL server.

pub mod conninfo;
pub mod custom;
pub mod plain;
pub mod restore;

#[cfg(test)]
mod tests;

use std::fmt;

/// First five bytes of a custom-format archive.
pub const CUSTOM_MAGIC: &[u8; 5] = b"PGDMP";

/// Which kind of dump a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// `pg_dump -Fc`.
    Custom,
    /// `pg_dump` plain SQL (a script for psql).
    Plain,
}

impl DumpFormat {
    /// The name used in reports and the drill log.
    pub fn name(self) -> &'static str {
        match self {
            DumpFormat::Custom => "pg_custom",
            DumpFormat::Plain => "pg_plain",
        }
    }
}

/// Recognises a dump by its first bytes (at least 64 of them, when the file has that many).
pub fn sniff(head: &[u8]) -> Option<DumpFormat> {
    if head.starts_with(CUSTOM_MAGIC) {
        return Some(DumpFormat::Custom);
    }
    plain::is_plain(head).then_some(DumpFormat::Plain)
}

/// The data of one table as the dump holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableData {
    pub schema: String,
    pub table: String,
    /// Rows of its COPY data; `None` when the data are SQL statements (`pg_dump --inserts`)
    /// or could not be read (see `error`).
    pub rows: Option<u64>,
    /// Where its data start in the file: the data block (custom) or the COPY line (plain).
    pub offset: u64,
    /// Bytes of its data as stored in the file (compressed, chunk framing included).
    pub stored_bytes: u64,
    /// Bytes of its data once decompressed.
    pub data_bytes: u64,
    /// Damage found in its data.
    pub error: Option<String>,
}

impl TableData {
    /// `schema.table`, as reports show it.
    pub fn name(&self) -> String {
        if self.schema.is_empty() {
            self.table.clone()
        } else {
            format!("{}.{}", self.schema, self.table)
        }
    }
}

/// Everything a verifier learned from one dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpReport {
    pub format: DumpFormat,
    /// Custom format: the archive version (`1.14` is written by PostgreSQL 12-15, `1.15` by
    /// 16, `1.16` by 17). Plain: empty.
    pub archive_version: String,
    /// `none`, `gzip`, `lz4` or `zstd`.
    pub compression: String,
    /// The database that was dumped (custom format; empty for plain dumps).
    pub database: String,
    pub server_version: String,
    pub pg_dump_version: String,
    /// TOC entries (custom) or SQL statements (plain).
    pub entries: u64,
    /// One entry per table data, in file order.
    pub tables: Vec<TableData>,
    /// Large objects whose data the dump holds.
    pub large_objects: u64,
    /// Bytes of the file that were read.
    pub bytes: u64,
    /// Why the content could not be verified (a compression this build cannot read, an
    /// archive version newer than it knows). Whatever could be checked was.
    pub not_verifiable: Option<String>,
    /// Damage found. Each message names the table or entry and the byte offset.
    pub damage: Vec<String>,
    /// Plain dumps: why the dump must not be run against a scratch database (it creates or
    /// switches databases, creates roles, or uses psql meta-commands a drill does not run).
    pub restore_blocker: Option<String>,
    /// What else a reader of the report should know (a directory-format `toc.dat`).
    pub note: Option<String>,
}

impl DumpReport {
    /// A report with nothing read yet.
    pub fn empty(format: DumpFormat) -> Self {
        DumpReport {
            format,
            archive_version: String::new(),
            compression: "none".into(),
            database: String::new(),
            server_version: String::new(),
            pg_dump_version: String::new(),
            entries: 0,
            tables: Vec::new(),
            large_objects: 0,
            bytes: 0,
            not_verifiable: None,
            damage: Vec::new(),
            restore_blocker: None,
            note: None,
        }
    }

    /// Rows of all tables whose rows were counted.
    pub fn rows(&self) -> u64 {
        self.tables.iter().filter_map(|t| t.rows).sum()
    }

    /// No damage and everything verifiable.
    pub fn ok(&self) -> bool {
        self.damage.is_empty() && self.not_verifiable.is_none()
    }
}

/// Counts the rows of COPY text data fed to it in pieces, and checks that every row has as many
/// fields as the COPY column list names (when it names them). Rows end with `\n`; tabs separate
/// fields (a tab or newline inside a value is written as `\t` or `\n`, so counting bytes is
/// exact). A line `\.` ends the data (plain dumps always, custom archives of PostgreSQL 15 and
/// older too); only empty lines may follow it.
#[derive(Debug, Clone)]
pub(crate) struct RowCounter {
    columns: Option<u64>,
    pub rows: u64,
    pub bytes: u64,
    tabs: u64,
    line_len: u64,
    /// The current line so far, kept only while it could still be `\.`.
    head: [u8; 2],
    ended: bool,
    /// First problem found (offset within the data, message).
    pub problem: Option<(u64, String)>,
}

impl RowCounter {
    pub fn new(columns: Option<u64>) -> Self {
        RowCounter { columns, rows: 0, bytes: 0, tabs: 0, line_len: 0, head: [0; 2], ended: false, problem: None }
    }

    fn flag(&mut self, at: u64, msg: String) {
        if self.problem.is_none() {
            self.problem = Some((at, msg));
        }
    }

    pub fn feed(&mut self, data: &[u8]) {
        let mut rest = data;
        while !rest.is_empty() {
            if self.ended {
                // pg_dump follows `\.` with empty lines; anything else is damage.
                if let Some(i) = rest.iter().position(|&b| b != b'\n') {
                    let at = self.bytes + i as u64;
                    self.flag(at, "data after the end-of-data line \\.".into());
                }
                self.bytes += rest.len() as u64;
                return;
            }
            let (line, nl) = match memchr(b'\n', rest) {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            // The first two bytes of the line, to recognise `\.`.
            let take = (2u64.saturating_sub(self.line_len) as usize).min(line.len());
            for (k, &b) in line[..take].iter().enumerate() {
                self.head[self.line_len as usize + k] = b;
            }
            self.line_len += line.len() as u64;
            self.tabs += line.iter().filter(|&&b| b == b'\t').count() as u64;
            self.bytes += line.len() as u64;
            rest = &rest[line.len()..];
            if nl {
                self.bytes += 1;
                rest = &rest[1..];
                self.end_line();
            }
        }
    }

    fn end_line(&mut self) {
        let at = self.bytes;
        if self.line_len == 2 && self.head == *b"\\." {
            self.ended = true;
        } else {
            if let Some(cols) = self.columns {
                // A table without columns has empty rows.
                let fields = if cols == 0 && self.line_len == 0 { 0 } else { self.tabs + 1 };
                if fields != cols {
                    let row = self.rows + 1;
                    self.flag(at, format!("row {row} has {fields} fields, the COPY column list names {cols}"));
                }
            }
            self.rows += 1;
        }
        self.tabs = 0;
        self.line_len = 0;
    }

    /// Checks the data ended cleanly; `needs_terminator` for plain dumps.
    pub fn finish(&mut self, needs_terminator: bool) {
        let at = self.bytes;
        if self.line_len > 0 {
            self.flag(at, "the last row has no line end (data cut short)".into());
        } else if needs_terminator && !self.ended {
            self.flag(at, "the data have no end-of-data line \\.".into());
        }
    }
}

pub(crate) fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&x| x == b)
}

/// Column count of a COPY statement's column list: `COPY s.t (a, "b,c") FROM stdin;` -> 2.
/// `None` when it has no list (or the statement is not understood).
pub(crate) fn copy_columns(stmt: &str) -> Option<u64> {
    let open = stmt.find('(')?;
    let from = stmt.to_ascii_uppercase().rfind(" FROM ")?;
    if open > from {
        return None;
    }
    let list = &stmt[open + 1..from];
    let close = list.rfind(')')?;
    let list = &list[..close];
    if list.trim().is_empty() {
        return Some(0);
    }
    let (mut n, mut quoted) = (1u64, false);
    for c in list.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => n += 1,
            _ => {}
        }
    }
    Some(n)
}

/// The (schema, table) a COPY statement loads: `COPY public."Odd ""x""" (a) FROM stdin;`.
pub(crate) fn copy_target(stmt: &str) -> Option<(String, String)> {
    let s = stmt.trim_start();
    if !s.get(..5).is_some_and(|c| c.eq_ignore_ascii_case("COPY ")) {
        return None;
    }
    let mut parts = Vec::new();
    let mut chars = s[5..].trim_start().chars().peekable();
    loop {
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        name.push('"');
                    }
                    '"' => break,
                    c => name.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_alphanumeric() || c == '_' || c == '$' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                return None;
            }
            // Unquoted identifiers fold to lower case.
            name = name.to_lowercase();
        }
        parts.push(name);
        if chars.peek() == Some(&'.') {
            chars.next();
        } else {
            break;
        }
    }
    match parts.len() {
        1 => Some((String::new(), parts.remove(0))),
        2 => {
            let t = parts.remove(1);
            Some((parts.remove(0), t))
        }
        _ => None,
    }
}

/// A byte count for messages.
pub(crate) struct At(pub u64);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "offset {}", self.0)
    }
}
