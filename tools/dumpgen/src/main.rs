//! Command line of `dumpgen`: parse arguments, open the output, write one day, report.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use dumpgen::{write_day, Evolution, Layout};
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

/// Writes day D of a deterministic mongodump-archive series with scattered daily churn.
///
/// Day 0 holds --docs documents spread over the collections; every later day updates a
/// --churn share of the live documents in place, deletes a --delete share and appends
/// --append x docs new documents at the end.
#[derive(Parser, Debug)]
#[command(name = "dumpgen", version)]
struct Args {
    /// Seed of the series.
    #[arg(long)]
    seed: u64,
    /// Documents on day 0, all collections together.
    #[arg(long)]
    docs: u64,
    /// Day to write (0-based); days 0..D are replayed.
    #[arg(long, default_value_t = 0)]
    day: u32,
    /// Share of live documents updated in place each day.
    #[arg(long, default_value_t = 0.01)]
    churn: f64,
    /// Share of live documents deleted each day.
    #[arg(long, default_value_t = 0.001)]
    delete: f64,
    /// Documents appended each day, as a share of --docs.
    #[arg(long, default_value_t = 0.002)]
    append: f64,
    /// Number of collections (appdb.coll0, appdb.coll1, ...).
    #[arg(long, default_value_t = 2)]
    collections: u32,
    /// Wrap the whole archive in one gzip member (as mongodump --gzip --archive).
    #[arg(long, value_enum, default_value_t = YesNo::No, num_args = 0..=1, default_missing_value = "yes")]
    gzip: YesNo,
    /// Output file; stdout if absent or "-".
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Print docs, bytes and CRC per namespace to stderr.
    #[arg(long)]
    stats: bool,
    /// Also write the summary as one JSON line to this file.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Bytes of documents per segment before the next collection takes its turn.
    #[arg(long, default_value_t = 4 << 20)]
    segment_bytes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum YesNo {
    Yes,
    No,
}

/// Counts compressed bytes below the gzip encoder.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    for (name, v) in [("churn", args.churn), ("delete", args.delete)] {
        if !(0.0..=1.0).contains(&v) {
            bail!("--{name} must be a share between 0 and 1, got {v}");
        }
    }
    if !(args.append >= 0.0 && args.append.is_finite()) {
        bail!("--append must be a non-negative share, got {}", args.append);
    }
    if args.collections == 0 {
        bail!("--collections must be at least 1");
    }
    if args.segment_bytes == 0 {
        bail!("--segment-bytes must be positive");
    }
    let evolution = Evolution {
        seed: args.seed,
        docs: args.docs,
        collections: args.collections,
        churn: args.churn,
        delete: args.delete,
        append: args.append,
    };
    let layout = Layout { segment_bytes: args.segment_bytes, ..Layout::default() };

    let sink: Box<dyn Write> = match &args.output {
        Some(p) if p.as_os_str() != "-" => {
            Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        _ => Box::new(io::stdout().lock()),
    };
    let started = Instant::now();
    let (summary, compressed) = if args.gzip == YesNo::Yes {
        // Like Go's compress/gzip: no file name, mtime 0, OS byte 255 ("unknown").
        let counting = Counting { inner: BufWriter::with_capacity(1 << 20, sink), bytes: 0 };
        let gz: GzEncoder<_> = GzBuilder::new().operating_system(255).write(counting, Compression::default());
        let mut out = BufWriter::with_capacity(1 << 20, gz);
        let summary = write_day(evolution, args.day, &layout, &mut out).context("writing the archive")?;
        let gz = out.into_inner().map_err(|e| e.into_error()).context("writing the archive")?;
        let mut counting = gz.finish().context("finishing gzip")?;
        counting.flush().context("writing the archive")?;
        (summary, Some(counting.bytes))
    } else {
        let mut out = BufWriter::with_capacity(1 << 20, sink);
        let summary = write_day(evolution, args.day, &layout, &mut out).context("writing the archive")?;
        out.flush().context("writing the archive")?;
        (summary, None)
    };
    let secs = started.elapsed().as_secs_f64();

    if args.stats {
        eprint!("{}", summary.to_text());
        if let Some(c) = compressed {
            eprintln!("  gzip: {c} bytes");
        }
        eprintln!("  {:.2} s, {:.0} MB/s", secs, summary.bytes as f64 / 1e6 / secs.max(1e-9));
    }
    if let Some(path) = &args.summary {
        std::fs::write(path, summary.to_json(compressed) + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
