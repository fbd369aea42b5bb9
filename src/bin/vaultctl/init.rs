//! `vaultctl init`: create a vault.

use crate::ctx::{read_secret, Ctx};
use anyhow::{bail, Context};
use std::process::ExitCode;
use vault::format::config::PeriodKind;
use vault::repo::{InitOptions, Vault};
use vault::units::{human, parse_size};

/// Create a new vault in an empty directory.
#[derive(clap::Args)]
pub struct Args {
    /// Average chunk size (min = avg/4, max = avg*4).
    #[arg(long, default_value = "4KiB")]
    chunk_avg: String,
    /// Target pack file size.
    #[arg(long, default_value = "16MiB")]
    pack_size: String,
    /// Plaintext size that closes a frame of new chunks compressed and sealed together
    /// (0: one chunk per blob).
    #[arg(long, default_value = "64KiB")]
    frame_size: String,
    /// Snapshot period: day or hour.
    #[arg(long, default_value = "day")]
    period: String,
    /// IANA time zone naming the periods (default: TZ, else the system's zone).
    #[arg(long)]
    time_zone: Option<String>,
    /// zstd compression level of the vault (kept in its settings; 3 stores about 5 % less than 1, more slowly).
    #[arg(long, default_value_t = vault::repo::DEFAULT_ZSTD_LEVEL)]
    zstd_level: i32,
    /// Label of the first key slot.
    #[arg(long, default_value = "initial")]
    label: String,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let store = ctx.open_store()?;
        let period = match self.period.as_str() {
            "day" => PeriodKind::Day,
            "hour" => PeriodKind::Hour,
            p => bail!("unknown period {p:?} (use day or hour)"),
        };
        let o = InitOptions {
            chunk_avg: u32::try_from(parse_size(&self.chunk_avg)?).context("chunk size")?,
            pack_target: u32::try_from(parse_size(&self.pack_size)?).context("pack size")?,
            frame_target: u32::try_from(parse_size(&self.frame_size)?).context("frame size")?,
            zstd_level: self.zstd_level,
            period,
            time_zone: self.time_zone.clone().unwrap_or_else(vault::period::default_time_zone),
            label: self.label.clone(),
        };
        if let Some(p) = store.local_path() {
            if p.exists() && !p.is_dir() {
                bail!("{} exists and is not a directory", p.display());
            }
        }
        let secret = read_secret("VAULT_", true)?;
        Vault::init(store.clone(), &secret, &o)?;
        println!(
            "created vault in {} (periods: {}, time zone {}, chunks ~{})",
            store.describe(),
            if period == PeriodKind::Day { "days" } else { "hours" },
            o.time_zone,
            human(o.chunk_avg as u64)
        );
        Ok(ExitCode::SUCCESS)
    }
}
