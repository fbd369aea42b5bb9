//! `dumpgen`: a deterministic series of mongodump archives with scattered daily churn, for
//! benchmarks and tests of the vault.
//!
//! Day D of the series is a pure function of (seed, docs, collections, churn, delete,
//! append, D) and of the segment layout: the same arguments give the same bytes on every
//! machine. Memory is one u32 per document plus one document buffer; the archive itself is
//! streamed. Randomness comes only from [`rng`], never from `rand` or the environment, so
//! that dependency upgrades cannot change the output.

pub mod archive;
pub mod bson;
pub mod crc64;
pub mod doc;
pub mod rng;
pub mod series;
mod words;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::fmt::Write as _;
use std::io::{self, Write};

pub use archive::{Layout, NsSummary, Summary};
pub use series::{DayChanges, Evolution, Series};

/// Replays the series up to `day` and writes that day's archive to `out`.
pub fn write_day<W: Write>(evolution: Evolution, day: u32, layout: &Layout, out: W) -> io::Result<Summary> {
    let series = Series::at_day(evolution, day);
    archive::write_archive(&series, layout, out)
}

impl Summary {
    /// One JSON line: `{"day":D,"bytes":B,"collections":[{"ns":..,"docs":..,"bytes":..,"crc":"0x.."}],..}`.
    pub fn to_json(&self, compressed_bytes: Option<u64>) -> String {
        let mut s = format!("{{\"day\":{},\"bytes\":{}", self.day, self.bytes);
        if let Some(c) = compressed_bytes {
            let _ = write!(s, ",\"compressed_bytes\":{c}");
        }
        s.push_str(",\"collections\":[");
        for (i, ns) in self.collections.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{{\"ns\":\"{}\",\"docs\":{},\"bytes\":{},\"segments\":{},\"crc\":\"{:#018x}\"}}",
                ns.ns, ns.docs, ns.data_bytes, ns.segments, ns.crc
            );
        }
        let c = &self.changes;
        let _ = write!(s, "],\"updated\":{},\"deleted\":{},\"appended\":{}}}", c.updated, c.deleted, c.appended);
        s
    }

    /// Human-readable lines for `--stats`.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "day {}: {} bytes, {} updated, {} deleted, {} appended since the previous day\n",
            self.day, self.bytes, self.changes.updated, self.changes.deleted, self.changes.appended
        );
        for ns in &self.collections {
            let _ = writeln!(
                s,
                "  {:<14} docs {:>10}  data bytes {:>13}  segments {:>5}  crc {:#018x}",
                ns.ns, ns.docs, ns.data_bytes, ns.segments, ns.crc
            );
        }
        s
    }
}
