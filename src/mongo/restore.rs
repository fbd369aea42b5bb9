//! Restoring mongodump archives into a scratch database, for restore drills.
//!
//! This is the only part of the engine that talks to a MongoDB server. It owns the connection
//! (a bounded server-selection timeout), the scratch database's life (it must not exist
//! beforehand unless the caller asks to drop it; it is dropped at the end unless kept), where
//! each archive namespace is restored, and the batched, unordered, parallel inserts.
//!
//! It is fed by the archive verifier ([`super::verify_with`]): the prelude decides the targets,
//! then every data document arrives as raw bytes. Documents are never decoded, only copied into
//! per-collection batches (bounded by count and bytes, well under the 16 MiB document and
//! 48 MB message limits). A full batch goes to an insert task on a small runtime; at most
//! `in_flight` batches are outstanding, and the verifier's thread waits for a free slot, so
//! memory stays bounded whatever the archive's size: about `(in_flight + 1) x batch_bytes` plus
//! the unfilled batches, which are flushed when together they exceed `max_pending_bytes`.
//!
//! Which namespaces are restored: ordinary collections (prelude type `collection`, or none in
//! archives older than mongodump 100.4.0). Not restored, but counted and CRC-checked by the
//! verifier: the oplog, users and roles (`admin.system.users`, `admin.system.roles`), every
//! other `system.*` collection (time-series buckets included), views (no data), time-series
//! collections, and the server-internal `local` and `config` databases. Collections keep their
//! names. When two databases of one archive have a collection of the same name, those
//! collections are restored as `db.coll`. A collection name that an earlier archive of the same
//! drill already filled is refused (not restored, and the drill fails): one scratch database
//! cannot hold two copies of a collection without merging them.
//!
//! The scratch database is dropped only when the drill checked that it did not exist, or was
//! told to drop an existing one (`drop_existing`). Must never: write to any database but the
//! scratch one, or print credentials (servers are named by their host list, never by the URI).

use crate::error::{Error, ErrorKind, Result};
use crate::mongo::NamespaceReport;
use mongodb::bson::{doc, RawDocumentBuf};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// How the restore runs. [`RestoreOptions::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub uri: String,
    pub database: String,
    /// Keep the scratch database after the drill (for inspection).
    pub keep: bool,
    /// Drop the scratch database first if it exists (otherwise an existing one is refused).
    pub drop_existing: bool,
    /// A batch is sent when it holds this many documents ...
    pub batch_docs: usize,
    /// ... or this many bytes.
    pub batch_bytes: usize,
    /// Batches being inserted at the same time.
    pub in_flight: usize,
    /// Unsent batches of all collections together; above this, all are sent.
    pub max_pending_bytes: usize,
    /// Server selection timeout, unless the URI sets `serverSelectionTimeoutMS`.
    pub server_timeout: Duration,
}

impl RestoreOptions {
    pub fn new(uri: &str, database: &str) -> Self {
        RestoreOptions {
            uri: uri.to_string(),
            database: database.to_string(),
            keep: false,
            drop_existing: false,
            batch_docs: 1000,
            batch_bytes: 8 << 20,
            in_flight: 4,
            max_pending_bytes: 32 << 20,
            server_timeout: Duration::from_secs(10),
        }
    }
}

/// The verdict for one archive namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Collection in the scratch database, or `None` when not restored.
    pub target: Option<String>,
    /// Why it is not restored (system collection, oplog, collision ...).
    pub note: Option<String>,
}

/// Counts after the restore, per target collection.
#[derive(Debug, Clone, Default)]
pub struct RestoreSummary {
    /// Documents counted in each restored collection (`None`: the count failed).
    pub counts: HashMap<String, Option<u64>>,
    /// Documents the server acknowledged.
    pub inserted: u64,
    /// Time the pipeline waited for the server (free insert slots, then the last batches).
    pub insert_wait: Duration,
    /// Time counting the restored collections.
    pub verify: Duration,
}

struct Batch {
    docs: Vec<RawDocumentBuf>,
    bytes: usize,
}

struct Outcome {
    target: String,
    inserted: u64,
    error: Option<String>,
    /// The failure was not about single documents (network, server): stop sending.
    fatal: bool,
}

pub struct Restorer {
    rt: tokio::runtime::Runtime,
    client: Client,
    db: Database,
    opts: RestoreOptions,
    /// The server, named by its hosts (never the URI, which may hold a password).
    server: String,
    /// Target collection -> the source that fills it (`file: ns`).
    owners: BTreeMap<String, String>,
    /// Body namespace of the current archive -> target collection.
    current: HashMap<String, String>,
    pending: HashMap<String, Batch>,
    pending_bytes: usize,
    slots: Arc<Semaphore>,
    tasks: JoinSet<Outcome>,
    inserted: u64,
    errors: Vec<String>,
    error_count: u64,
    broken: bool,
    insert_wait: Duration,
    closed: bool,
}

fn server_error(what: impl std::fmt::Display, e: mongodb::error::Error) -> Error {
    Error::new(ErrorKind::Io, format!("{what}: {e}"))
}

/// Database names the server would refuse or that belong to the server itself.
fn check_db_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 63 || name.contains(['/', '\\', '.', ' ', '"', '$', '\0']) {
        return Err(Error::invalid(format!(
            "{name:?} is not a usable database name (1-63 characters, none of / \\ . space \" $)"
        )));
    }
    if ["admin", "local", "config"].contains(&name) {
        return Err(Error::invalid(format!(
            "--restore-db {name}: a drill never restores into the server's own databases"
        )));
    }
    Ok(())
}

/// Why a namespace is not restored, or `None` when it is.
fn not_restored(n: &NamespaceReport) -> Option<&'static str> {
    if n.db.is_empty() {
        return Some("oplog entries are checked, not restored");
    }
    if n.db == "admin" && (n.collection == "system.users" || n.collection == "system.roles") {
        return Some("users and roles are checked, not restored");
    }
    if n.db == "local" || n.db == "config" {
        return Some("server-internal database, checked, not restored");
    }
    if n.collection.starts_with("system.") {
        return Some("system collection, checked, not restored");
    }
    match n.kind.as_str() {
        "" | "collection" => None,
        "view" => Some("view (no data), not restored"),
        "timeseries" => Some("time-series collection: buckets checked, not restored"),
        _ => Some("unknown collection type, checked, not restored"),
    }
}

/// Where each prelude namespace of one archive goes, in prelude order: its collection name,
/// or `db.coll` for the collections whose name occurs in several databases of the archive.
pub fn targets(prelude: &[NamespaceReport]) -> Vec<Placement> {
    let mut dbs_of: HashMap<&str, usize> = HashMap::new();
    for n in prelude.iter().filter(|n| not_restored(n).is_none()) {
        *dbs_of.entry(n.collection.as_str()).or_default() += 1;
    }
    prelude
        .iter()
        .map(|n| match not_restored(n) {
            Some(why) => Placement { target: None, note: Some(why.to_string()) },
            None if dbs_of[n.collection.as_str()] > 1 => {
                Placement { target: Some(format!("{}.{}", n.db, n.collection)), note: None }
            }
            None => Placement { target: Some(n.collection.clone()), note: None },
        })
        .collect()
}

impl Restorer {
    /// Connects (failing within the server-selection timeout when no server answers) and
    /// prepares the scratch database: refuses an existing one unless `drop_existing`.
    pub fn connect(opts: RestoreOptions) -> Result<Restorer> {
        check_db_name(&opts.database)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vault-restore")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the restore runtime", e))?;
        let mut co = rt
            .block_on(ClientOptions::parse(&opts.uri).into_future())
            .map_err(|e| Error::invalid(format!("--mongo-uri: {}", e.kind)))?;
        let server = co.hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(",");
        if co.server_selection_timeout.is_none() {
            co.server_selection_timeout = Some(opts.server_timeout);
        }
        if co.connect_timeout.is_none() {
            co.connect_timeout = Some(opts.server_timeout);
        }
        co.app_name.get_or_insert_with(|| "vaultctl drill".to_string());
        let timeout = co.server_selection_timeout.unwrap_or(opts.server_timeout);
        // The driver spawns its monitors on the current runtime.
        let client = {
            let _in = rt.enter();
            Client::with_options(co).map_err(|e| Error::invalid(format!("--mongo-uri: {}", e.kind)))?
        };
        let db = client.database(&opts.database);
        let prepared = rt.block_on(async {
            let names = client.list_database_names().await.map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!(
                        "cannot reach the MongoDB server {server} (gave up after {:.0} s): {}",
                        timeout.as_secs_f64(),
                        e.kind
                    ),
                )
            })?;
            if names.iter().any(|n| n == &opts.database) {
                if !opts.drop_existing {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "the scratch database {} exists already on {server}; a drill restores only into a \
                             database it creates and drops: choose another --restore-db, or pass --drop-existing \
                             to drop it first",
                            opts.database
                        ),
                    ));
                }
                db.drop().await.map_err(|e| server_error(format!("dropping {}", opts.database), e))?;
            }
            Ok(())
        });
        if let Err(e) = prepared {
            rt.block_on(client.shutdown().immediate(true).into_future());
            return Err(e);
        }
        let slots = Arc::new(Semaphore::new(opts.in_flight.max(1)));
        Ok(Restorer {
            rt,
            client,
            db,
            server,
            owners: BTreeMap::new(),
            current: HashMap::new(),
            pending: HashMap::new(),
            pending_bytes: 0,
            slots,
            tasks: JoinSet::new(),
            inserted: 0,
            errors: Vec::new(),
            error_count: 0,
            broken: false,
            insert_wait: Duration::ZERO,
            closed: false,
            opts,
        })
    }

    /// The server's hosts, for reports.
    pub fn server(&self) -> &str {
        &self.server
    }

    pub fn database(&self) -> &str {
        &self.opts.database
    }

    /// Whether the scratch database stays after the drill.
    pub fn keeps(&self) -> bool {
        self.opts.keep
    }

    /// Time spent so far waiting for the server (free insert slots, last batches).
    pub fn insert_wait(&self) -> Duration {
        self.insert_wait
    }

    /// Decides where each namespace of the archive `file` goes, given its prelude.
    pub fn begin_archive(&mut self, file: &str, prelude: &[NamespaceReport]) -> BTreeMap<String, Placement> {
        self.current.clear();
        let mut out = BTreeMap::new();
        for (n, placement) in prelude.iter().zip(targets(prelude)) {
            let placement = match placement.target {
                Some(target) => match self.owners.get(&target) {
                    Some(owner) => {
                        self.errors.push(format!(
                            "restore: {file}: {}: not restored: collection {target} of {} is already filled \
                             from {owner} (one scratch database cannot hold both; drill them from separate \
                             snapshots)",
                            n.ns, self.opts.database
                        ));
                        Placement {
                            target: None,
                            note: Some(format!("refused: {target} already restored from {owner}")),
                        }
                    }
                    None => {
                        self.owners.insert(target.clone(), format!("{file}: {}", n.ns));
                        self.current.insert(n.ns.clone(), target.clone());
                        Placement { target: Some(target), note: None }
                    }
                },
                None => placement,
            };
            out.insert(n.ns.clone(), placement);
        }
        out
    }

    /// Takes one raw data document of body namespace `ns`; sends full batches.
    pub fn on_doc(&mut self, ns: &str, raw: &[u8]) -> Result<()> {
        let Some(target) = self.current.get(ns) else { return Ok(()) };
        if self.broken {
            return Ok(());
        }
        let doc = RawDocumentBuf::from_bytes(raw.to_vec())
            .map_err(|e| Error::corrupt(format!("document of {ns} is not BSON: {e}")))?;
        let b = self.pending.entry(target.clone()).or_insert_with(|| Batch { docs: Vec::new(), bytes: 0 });
        b.docs.push(doc);
        b.bytes += raw.len();
        self.pending_bytes += raw.len();
        if b.docs.len() >= self.opts.batch_docs || b.bytes >= self.opts.batch_bytes {
            let target = target.clone();
            self.flush(&target);
        }
        if self.pending_bytes > self.opts.max_pending_bytes {
            self.flush_all();
        }
        Ok(())
    }

    /// Sends every unsent batch (at the end of an archive, or when too much is pending).
    pub fn flush_all(&mut self) {
        let targets: Vec<String> = self.pending.keys().cloned().collect();
        for t in targets {
            self.flush(&t);
        }
    }

    fn flush(&mut self, target: &str) {
        let Some(batch) = self.pending.remove(target) else { return };
        self.pending_bytes -= batch.bytes;
        if batch.docs.is_empty() || self.broken {
            return;
        }
        let t = Instant::now();
        let permit = self.rt.block_on(self.slots.clone().acquire_owned());
        self.insert_wait += t.elapsed();
        while let Some(done) = self.tasks.try_join_next() {
            self.record(done);
        }
        let Ok(permit) = permit else { return };
        let coll = self.db.collection::<RawDocumentBuf>(target);
        let target = target.to_string();
        self.tasks.spawn_on(
            async move {
                let n = batch.docs.len() as u64;
                let r = coll.insert_many(batch.docs).ordered(false).await;
                drop(permit);
                match r {
                    Ok(_) => Outcome { target, inserted: n, error: None, fatal: false },
                    Err(e) => match &*e.kind {
                        mongodb::error::ErrorKind::InsertMany(ime) if ime.write_concern_error.is_none() => {
                            let failed = ime.write_errors.as_ref().map(|w| w.len() as u64).unwrap_or(0);
                            let first = ime.write_errors.as_ref().and_then(|w| w.first()).map(|w| w.message.clone());
                            Outcome {
                                target,
                                inserted: n.saturating_sub(failed),
                                error: Some(format!(
                                    "{failed} of {n} documents refused, first: {}",
                                    first.unwrap_or_default()
                                )),
                                fatal: false,
                            }
                        }
                        _ => Outcome { target, inserted: 0, error: Some(e.kind.to_string()), fatal: true },
                    },
                }
            },
            self.rt.handle(),
        );
    }

    fn record(&mut self, done: std::result::Result<Outcome, tokio::task::JoinError>) {
        match done {
            Ok(o) => {
                self.inserted += o.inserted;
                if let Some(e) = o.error {
                    self.error_count += 1;
                    self.broken |= o.fatal;
                    if self.errors.len() < 20 {
                        self.errors.push(format!("restore: inserting into {}.{}: {e}", self.opts.database, o.target));
                    }
                }
            }
            Err(e) => {
                self.error_count += 1;
                self.broken = true;
                self.errors.push(format!("restore: insert task failed: {e}"));
            }
        }
    }

    /// Waits for the last batches, then counts the documents of every restored collection.
    pub fn finish(&mut self) -> RestoreSummary {
        self.flush_all();
        let t = Instant::now();
        while let Some(done) = self.rt.block_on(self.tasks.join_next()) {
            self.record(done);
        }
        self.insert_wait += t.elapsed();
        if self.error_count > self.errors.len() as u64 {
            self.errors.push(format!("restore: {} insert errors in all", self.error_count));
        }
        let t = Instant::now();
        let mut counts = HashMap::new();
        for target in self.owners.keys() {
            let coll = self.db.collection::<RawDocumentBuf>(target);
            let n = match self.rt.block_on(coll.count_documents(doc! {}).into_future()) {
                Ok(n) => Some(n),
                Err(e) => {
                    self.errors.push(format!("restore: counting {}.{target}: {}", self.opts.database, e.kind));
                    None
                }
            };
            counts.insert(target.clone(), n);
        }
        RestoreSummary { counts, inserted: self.inserted, insert_wait: self.insert_wait, verify: t.elapsed() }
    }

    /// Errors met so far (collisions, refused inserts, failed counts).
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Drops the scratch database unless it is to be kept. Returns whether it was dropped.
    pub fn close(mut self) -> Result<bool> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<bool> {
        if self.closed {
            return Ok(false);
        }
        self.closed = true;
        self.tasks.abort_all();
        while self.rt.block_on(self.tasks.join_next()).is_some() {}
        let dropped = match self.opts.keep {
            true => Ok(false),
            false => self
                .rt
                .block_on(self.db.drop().into_future())
                .map(|_| true)
                .map_err(|e| server_error(format!("dropping the scratch database {}", self.opts.database), e)),
        };
        // Shut down inside the runtime, so that dropping the client afterwards spawns nothing.
        self.rt.block_on(self.client.clone().shutdown().immediate(true).into_future());
        dropped
    }
}

impl Drop for Restorer {
    /// A drill that stops early (an error, a panic) still drops its scratch database.
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(db: &str, coll: &str, kind: &str) -> NamespaceReport {
        NamespaceReport {
            ns: format!("{db}.{coll}"),
            db: db.into(),
            collection: coll.into(),
            kind: kind.into(),
            docs: 0,
            body_bytes: 0,
            crc: 0,
            expected_crc: None,
            crc_ok: false,
            metadata_json_ok: true,
        }
    }

    #[test]
    fn collections_keep_their_names_unless_two_databases_share_one() {
        let prelude = [
            ns("shop", "orders", "collection"),
            ns("shop", "users", ""),
            ns("crm", "users", "collection"),
            ns("admin", "system.users", ""),
            ns("admin", "system.roles", ""),
            ns("admin", "system.version", "collection"),
            ns("", "oplog", ""),
            ns("shop", "recent", "view"),
            ns("metrics", "cpu", "timeseries"),
            ns("local", "startup_log", ""),
            ns("crm", "notes", "secret-new-type"),
        ];
        let t: Vec<Option<String>> = targets(&prelude).into_iter().map(|p| p.target).collect();
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            t,
            vec![s("orders"), s("shop.users"), s("crm.users"), None, None, None, None, None, None, None, None]
        );
        let notes: Vec<String> = targets(&prelude).into_iter().filter_map(|p| p.note).collect();
        assert!(notes[0].contains("users and roles"), "{notes:?}");
        assert!(notes[3].contains("oplog"), "{notes:?}");
        assert!(notes[5].contains("time-series"), "{notes:?}");
    }

    #[test]
    fn scratch_database_names_are_checked() {
        for bad in ["", "admin", "local", "config", "a.b", "a b", "x/y", "$x"] {
            assert!(check_db_name(bad).is_err(), "{bad:?}");
        }
        check_db_name("capstone_db_restore_test").unwrap();
    }
}
