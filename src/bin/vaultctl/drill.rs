//! `vaultctl drill`: prove a snapshot restores; exit 4 when it does not.

use crate::ctx::Ctx;
use crate::progress::Bar;
use std::process::ExitCode;
use vault::commands::drill;
use vault::mongo::restore::{RestoreOptions, Restorer};
use vault::pgdump::restore::{PgRestoreOptions, PgRestorer};

/// Prove a snapshot restores: read every byte back, check every mongodump archive, pg_dump
/// dump, zip and tar archive by content, report RTO/RPO.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("server").multiple(true).args(["mongo_uri", "pg_uri"])))]
pub struct Args {
    /// PERIOD, `latest` (the newest sealed snapshot) or `current` (the current period).
    #[arg(long, default_value = "latest")]
    snapshot: String,
    /// Only the file at PATH in the snapshot (or the files below it).
    #[arg(long, value_name = "PATH")]
    path: Option<String>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Also restore every mongodump archive into a scratch database on this server
    /// (mongodb://...) and compare the counts per collection.
    #[arg(long, value_name = "URI")]
    mongo_uri: Option<String>,
    /// Also restore every pg_dump dump into a scratch database on this server
    /// (postgresql://...; the password goes to psql/pg_restore through their environment)
    /// and compare the rows per table.
    #[arg(long, value_name = "URI")]
    pg_uri: Option<String>,
    /// The scratch database: must not exist (see --drop-existing); dropped at the end.
    /// Further PostgreSQL dumps of the snapshot go to NAME_2, NAME_3, ... Default:
    /// `vault_drill_` and 8 random hex digits (a name no database has yet).
    #[arg(long, value_name = "NAME", requires = "server")]
    restore_db: Option<String>,
    /// Keep the scratch database after the drill.
    #[arg(long, requires = "server")]
    keep: bool,
    /// Drop the scratch database first if it exists.
    #[arg(long, requires = "server")]
    drop_existing: bool,
    /// Read gzip files that the vault stored expanded as their original bytes (recreated and
    /// inflated again, as `mongorestore --gzip` reading the mount gets them) instead of their
    /// stored decompressed content: slower, and it also proves the gzip bytes come back.
    #[arg(long)]
    original: bool,
}

impl Args {
    pub fn run(&self, ctx: &Ctx) -> anyhow::Result<ExitCode> {
        let v = ctx.open()?;
        // Connect first: an unreachable server or an existing scratch database stops the
        // drill before anything is read (exit 1), and is not a failed drill.
        let restore_db =
            Some(self.restore_db.clone().unwrap_or_else(|| format!("vault_drill_{:08x}", rand::random::<u32>())));
        let mut restorer = match (&self.mongo_uri, &restore_db) {
            (Some(uri), Some(db)) => {
                let mut o = RestoreOptions::new(uri, db);
                o.keep = self.keep;
                o.drop_existing = self.drop_existing;
                Some(Restorer::connect(o)?)
            }
            _ => None,
        };
        let mut pg = match (&self.pg_uri, &restore_db) {
            (Some(uri), Some(db)) => {
                let mut o = PgRestoreOptions::new(uri, db);
                o.keep = self.keep;
                o.drop_existing = self.drop_existing;
                Some(PgRestorer::connect(o)?)
            }
            _ => None,
        };
        let restorers = drill::Restorers { mongo: restorer.as_mut(), pg: pg.as_mut() };
        let bar = Bar::new(ctx);
        let mut rep = drill::drill_files(&v, &self.snapshot, self.path.as_deref(), restorers, &bar, self.original)?;
        bar.finish();
        if let Some(r) = restorer {
            let what = format!("{} on {}", r.database(), r.server());
            match r.close() {
                Ok(true) => eprintln!("dropped the scratch database {what}"),
                Ok(false) => eprintln!("kept the scratch database {what}"),
                Err(e) => {
                    rep.errors.push(format!("restore: {e}"));
                    rep.ok = false;
                }
            }
        }
        if let Some(r) = pg {
            let (server, kept) = (r.server().to_string(), r.databases().to_vec());
            match r.close() {
                Ok(d) if !d.is_empty() => eprintln!("dropped the scratch database(s) {} on {server}", d.join(", ")),
                Ok(_) if !kept.is_empty() => {
                    eprintln!("kept the scratch database(s) {} on {server}", kept.join(", "))
                }
                Ok(_) => {}
                Err(e) => {
                    rep.errors.push(format!("restore: {e}"));
                    rep.ok = false;
                }
            }
        }
        // A drill of a remote named by --repo is logged in the vault that names it: `status`
        // shows it there, and the next sync carries it to every copy under its manifest.
        let logged = match ctx.home_of_remote() {
            Some(home) => {
                drop(v);
                ctx.open_url(&home).and_then(|h| Ok(drill::log(&h, &rep)?))
            }
            None => drill::log(&v, &rep).map_err(anyhow::Error::from),
        };
        if let Err(e) = logged {
            eprintln!("warning: could not append to the drill log: {e:#}");
        }
        if self.json {
            println!("{}", rep.to_json());
        } else {
            print!("{}", rep.to_text());
        }
        Ok(if rep.ok { ExitCode::SUCCESS } else { ExitCode::from(4) })
    }
}
