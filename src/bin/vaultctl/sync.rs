//! `vaultctl sync`: copy to a remote what it lacks; `--verify` checks the copy, `--dry-run`
//! prints the plan.

use crate::ctx::Ctx;
use crate::progress::Bar;
use crate::show::fmt_time_ns;
use anyhow::{bail, Context};
use std::process::ExitCode;
use vault::commands::{remote, sync};
use vault::units::{human, parse_size};

/// Copy to a remote what it lacks (packs, index, snapshots, then the manifest last).
#[derive(clap::Args)]
pub struct Args {
    /// Remote name (see `vaultctl remote list`); with --verify also a remote's URL, which
    /// needs no key (the copy is checked against its own manifest, nothing is changed).
    name: String,
    /// Check every object of the remote against its manifest (no upload); damaged objects
    /// are sent again by the next sync.
    #[arg(long)]
    verify: bool,
    /// Print the plan without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// Parallel uploads (and reads for --verify).
    #[arg(long, default_value_t = sync::DEFAULT_JOBS)]
    jobs: usize,
    /// Upload bandwidth limit per second, e.g. 10MiB (default: unlimited).
    #[arg(long)]
    bwlimit: Option<String>,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        if self.jobs == 0 {
            bail!("--jobs must be at least 1");
        }
        let bwlimit = match &self.bwlimit {
            Some(b) => match parse_size(b).with_context(|| format!("--bwlimit {b}"))? {
                0 => bail!("--bwlimit must be more than 0"),
                n => Some(n),
            },
            None => None,
        };
        let o = sync::SyncOptions {
            jobs: self.jobs,
            bwlimit,
            state_dir: ctx.cache_dir().map(|d| d.join("sync")),
            lock_wait: ctx.wait(),
        };
        // `--verify URL`: the copy alone, against its manifest (plaintext): no key, no vault.
        let by_url = remote::is_remote_url(&self.name) || self.name.starts_with("file://");
        if by_url && !self.verify {
            bail!("{}: a URL is only for --verify; sync names a remote (`vaultctl remote list`)", self.name);
        }
        let (v, r) = if by_url {
            (None, vault::format::remotes::Remote::new(&self.name, &self.name))
        } else {
            let v = ctx.open()?;
            let r = remote::find(&v, &self.name)?;
            (Some(v), r)
        };
        let dst = remote::open_store(&r.url)?;
        if self.verify {
            let rep = sync::verify(v.as_ref(), &r, &dst, &o)?;
            for b in &rep.bad {
                println!("damaged: {b}");
            }
            for x in &rep.extra {
                println!("extra: {x} (on the copy, not in its manifest)");
            }
            if rep.not_in_vault > 0 {
                println!("kept: {} objects the vault no longer has are still on the copy", rep.not_in_vault);
            }
            if rep.not_synced > 0 {
                println!(
                    "missing: {} objects of the vault are not on the copy yet (the next sync sends them)",
                    rep.not_synced
                );
            }
            println!(
                "verified {} objects ({}) on {}: {}",
                rep.checked,
                human(rep.bytes),
                r.name,
                match (rep.bad.len(), &v) {
                    (0, _) => "all match the manifest".to_string(),
                    (n, Some(_)) => format!("{n} missing or damaged; the next sync sends them again"),
                    (n, None) => format!(
                        "{n} missing or damaged (checked without the key, nothing changed: `vaultctl sync REMOTE \
                         --verify` on the vault's machine has the next sync send them again)"
                    ),
                }
            );
            return Ok(if rep.bad.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(4) });
        }
        let Some(v) = v else { unreachable!("a URL is only taken with --verify") };
        if self.dry_run {
            let p = sync::plan(&v, &r, &*dst, &o)?;
            if let Some(why) = &p.manifest_untrusted {
                println!("note: the copy's manifest is not trusted ({why}): every object is checked against the vault");
            }
            for (k, n, s) in &p.upload {
                println!("upload {} ({})", k.path(n), human(*s));
            }
            for (k, n) in &p.repair {
                println!("repair {} (deleted or replaced on the copy since the last sync)", k.path(n));
            }
            for (k, n) in &p.delete {
                println!("delete {}", k.path(n));
            }
            for (k, n, until) in &p.held {
                println!(
                    "keep {} (unused, retained until {})",
                    k.path(n),
                    fmt_time_ns(until.saturating_mul(1_000_000_000))
                );
            }
            if !p.extend.is_empty() {
                println!("extend the retention of {} objects", p.extend.len());
            }
            for n in &p.not_replaced {
                println!("not replaced (append-only): {n}");
            }
            println!(
                "plan for {}: upload {} objects ({}), delete {}, {} already there",
                r.name,
                p.upload.len(),
                human(p.upload_bytes()),
                p.delete.len(),
                p.unchanged
            );
            return Ok(ExitCode::SUCCESS);
        }
        let bar = Bar::new(ctx);
        bar.message(&format!("sync {}", r.name));
        let rep = sync::sync(&v, &r, &dst, &o, &|done: u64, total: u64| bar.set(done, total))?;
        bar.finish();
        if let Some(why) = &rep.plan.manifest_untrusted {
            println!("note: the copy's manifest was not trusted ({why}): every object was checked against the vault");
        }
        if !rep.plan.repair.is_empty() {
            println!("repaired {} objects deleted or replaced on the copy since the last sync", rep.plan.repair.len());
        }
        if r.object_lock.is_some() {
            println!(
                "object lock: {} retention dates extended, {} unused objects retained, {} expired versions deleted",
                rep.extended,
                rep.plan.held.len(),
                rep.pruned_versions
            );
        }
        for n in &rep.not_replaced {
            println!("not replaced (append-only remote): {n}");
        }
        // Config files change (the remotes registry, the policy); anything else that
        // differs on the copy is damage the sync cannot repair there.
        let damaged: Vec<&String> = rep.not_replaced.iter().filter(|n| n.contains('/')).collect();
        println!(
            "synced {}: uploaded {} objects ({}), {} already there from an interrupted sync, {} unchanged, deleted {}, in {:.1} s",
            r.name,
            rep.uploaded,
            human(rep.uploaded_bytes),
            rep.resumed,
            rep.plan.unchanged,
            rep.deleted,
            rep.elapsed.as_secs_f64()
        );
        if !damaged.is_empty() {
            eprintln!(
                "vaultctl: error: {} objects differ on the append-only copy and cannot be replaced there; \
                 check it with `vaultctl --repo {} check --read-data`",
                damaged.len(),
                r.url
            );
            return Ok(ExitCode::from(4));
        }
        Ok(ExitCode::SUCCESS)
    }
}
