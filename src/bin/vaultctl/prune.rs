//! `vaultctl prune`: retention, and the `--keep-*` rules `policy set` shares.

use crate::ctx::Ctx;
use crate::progress::Bar;
use anyhow::{anyhow, bail};
use std::process::ExitCode;
use vault::commands::prune;
use vault::format::policy::Policy;
use vault::units::human;

/// Forget snapshots by the retention policy (flags, or the stored policy) and reclaim
/// their space. Never removes the current period or the newest sealed snapshot.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    keep: KeepArgs,
    /// Print which snapshots go and how much space is freed, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Repack a pack when more than this percentage of it is unused.
    #[arg(long, default_value_t = 25.0)]
    max_unused: f64,
}

/// Retention rules, as in restic's `forget`: a snapshot is kept when any rule keeps it.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KeepArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N")]
    keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours (hourly vaults).
    #[arg(long, value_name = "N")]
    keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days.
    #[arg(long, value_name = "N")]
    keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks.
    #[arg(long, value_name = "N")]
    keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months.
    #[arg(long, value_name = "N")]
    keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years.
    #[arg(long, value_name = "N")]
    keep_yearly: Option<u32>,
}

impl KeepArgs {
    /// The policy the flags give, or None when no flag is given.
    pub fn policy(&self) -> Option<Policy> {
        let p = Policy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
        };
        let given =
            [self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly, self.keep_monthly, self.keep_yearly]
                .iter()
                .any(Option::is_some);
        given.then_some(p)
    }
}

impl Args {
    pub fn writes(&self) -> bool {
        !self.dry_run
    }

    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        let policy = match self.keep.policy() {
            Some(p) => p,
            None => prune::load_policy(&v)?.ok_or_else(|| {
                anyhow!("no retention policy: give --keep-* flags or store one with `vaultctl policy set`")
            })?,
        };
        if !(0.0..=100.0).contains(&self.max_unused) {
            bail!("--max-unused is a percentage (0-100)");
        }
        let o = prune::Options { policy, max_unused: self.max_unused / 100.0 };
        if self.dry_run {
            print_plan(&prune::plan(&v, &o)?, &policy);
            println!("dry run: nothing was changed");
            return Ok(ExitCode::SUCCESS);
        }
        let bar = Bar::new(ctx);
        let r = prune::prune(&v, &o, ctx.wait(), &|m: &str| bar.message(m))?;
        bar.finish();
        print_plan(&r.plan, &policy);
        println!(
            "pruned: forgot {} snapshots, deleted {} packs, wrote {}; stored {} -> {} in {:.1} s",
            r.forgotten,
            r.packs_deleted,
            r.packs_written,
            human(r.plan.stored_before),
            human(r.stored_after),
            r.elapsed.as_secs_f64()
        );
        Ok(ExitCode::SUCCESS)
    }
}

fn print_plan(p: &prune::Plan, policy: &Policy) {
    println!("policy: {policy}");
    for d in &p.snapshots {
        let s = &d.info.snap;
        let what = if d.keep() { format!("keep    ({})", d.reasons.join(", ")) } else { "forget".to_string() };
        println!("  {:<13} {:>6} files {:>10}  {what}", s.period, s.files, human(s.logical_bytes));
    }
    let forgotten = p.forgotten().count();
    println!(
        "snapshots: {} kept, {} forgotten; packs: {} of {} deleted, {} repacked ({} live copied), {} unindexed",
        p.snapshots.len() - forgotten,
        forgotten,
        p.delete.len(),
        p.packs_before,
        p.repack.len(),
        human(p.repack_bytes()),
        p.orphans.len()
    );
    println!("space: {} stored, about {} freed", human(p.stored_before), human(p.freed_bytes()));
}
