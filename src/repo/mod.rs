//! The vault facade: create, unlock, read, and write sessions.
//!
//! Owns the ordering rules of docs/DESIGN.md: packs, then index files, then snapshot
//! revisions, each one durable before the next is written; deletions (superseded revisions,
//! key slots) only under the writer lock and only after what replaces them is durable.
//! Must never write anything while merely reading, and never trust the local index cache over
//! the vault.

pub mod edit;
pub mod frame;
pub mod journal;
pub mod live;
pub mod lock;
pub mod log;
pub mod packer;
pub mod reader;
pub mod snapshots;
pub mod trees;
pub mod writer;

use crate::chunker::ChunkerParams;
use crate::crypto::{slot, Domain, Keys, MasterKey, Sealer, Secret};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::format::config::{ConfigFile, PeriodKind, Settings};
use crate::format::index as index_format;
use crate::format::keyslot::KeySlot;
use crate::id::{IndexId, SlotId};
use crate::index::Index;
use crate::period::PeriodClock;
use crate::store::{ObjKind, Store};
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

pub use reader::{ChunkReader, FileReader, Piece};
pub use snapshots::SnapshotInfo;
pub use writer::WriteSession;

/// Options fixed at `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub chunk_avg: u32,
    pub pack_target: u32,
    pub zstd_level: i32,
    pub period: PeriodKind,
    pub time_zone: String,
    pub label: String,
    /// Plaintext bytes that close a frame (docs/DESIGN.md §5); 0: one chunk per blob.
    pub frame_target: u32,
}

/// Default average chunk size: chosen by measurement on a database-dump series with 1 %
/// scattered daily churn (docs/PERFORMANCE.md).
pub const DEFAULT_CHUNK_AVG: u32 = 4 * 1024;
pub const DEFAULT_PACK_TARGET: u32 = 16 << 20;
/// zstd level of a new vault: level 1 compresses dump text about 1.3 x as fast as level 3 for
/// about 5 % more bytes, and its frames decode a little faster (docs/PERFORMANCE.md).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunk_avg: DEFAULT_CHUNK_AVG,
            pack_target: DEFAULT_PACK_TARGET,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            period: PeriodKind::Day,
            time_zone: "UTC".into(),
            label: String::new(),
            frame_target: frame::DEFAULT_FRAME_TARGET,
        }
    }
}

/// Where the local cache lives and how to open.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Base cache directory; the index lives in `<cache>/<vault id>/index`. `None`: in memory.
    pub cache_dir: Option<PathBuf>,
    /// A long-lived process (the daemon): a smaller page cache for the index
    /// ([`crate::index::CACHE_BYTES_LOW_MEMORY`]).
    pub low_memory: bool,
}

pub struct Vault {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keys: Keys,
    pub(crate) sealer: Arc<Sealer>,
    pub(crate) settings: Settings,
    pub(crate) vault_id: [u8; 16],
    pub(crate) clock: PeriodClock,
    pub(crate) index: Index,
    /// One index reload at a time (readers reload when a prune moved what they look for).
    index_sync: std::sync::Mutex<()>,
    /// The slot the user unlocked with (for `key passwd`).
    pub(crate) unlocked_slot: SlotId,
    /// Kept only to wrap new key slots; zeroized on drop.
    pub(crate) master: Option<MasterKey>,
    pub(crate) tree_cache: trees::TreeCache,
    /// Blobs of this process's write session that no index file names yet.
    pub(crate) pending: std::sync::RwLock<Option<Arc<packer::Pending>>>,
    /// Frames recently opened by single-blob reads.
    pub(crate) frame_cache: reader::FrameCache,
    pub(crate) read_buffers: reader::BufferPool,
    /// Decoded snapshot revisions by id (revisions are immutable once named).
    pub(crate) snap_cache:
        std::sync::Mutex<std::collections::HashMap<crate::id::SnapshotId, crate::format::snapshot::Snapshot>>,
    /// Index files that could not be read at the last [`Vault::sync_index`], with the reason.
    damaged_index: std::sync::Mutex<Vec<(IndexId, Error)>>,
    /// An offsite copy's manifest as last read, and when (see [`Vault::current_on_copy`]).
    #[allow(clippy::type_complexity)]
    copy_manifest: std::sync::Mutex<Option<(std::time::Instant, Option<Arc<Vec<crate::format::manifest::Entry>>>)>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vault({})", self.store.describe())
    }
}

/// The cache directory when none is given: `$XDG_CACHE_HOME/vault`, else `~/.cache/vault`,
/// else none (the index is then kept in memory).
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("vault"));
    }
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(".cache").join("vault"))
}

pub(crate) fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) fn now_unix_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

impl Vault {
    /// Creates a new vault in an empty store.
    pub fn init(store: Arc<dyn Store>, secret: &Secret, o: &InitOptions) -> Result<()> {
        for k in ObjKind::ALL {
            if !store.list(k)?.is_empty() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{} already holds a vault or other data; init needs an empty directory", store.describe()),
                ));
            }
        }
        if let Some(p) = store.local_path() {
            if let Ok(mut rd) = std::fs::read_dir(p) {
                if rd.next().is_some() {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!("{} is not empty; init needs an empty or new directory", p.display()),
                    ));
                }
            }
        }
        let settings = Settings {
            chunk_min: (o.chunk_avg / 4).max(64),
            chunk_avg: o.chunk_avg,
            chunk_max: o.chunk_avg.saturating_mul(4).max(1024),
            pack_target: o.pack_target,
            zstd_level: o.zstd_level,
            period: o.period,
            time_zone: o.time_zone.clone(),
            created_unix: now_unix(),
            frame_target: o.frame_target,
        };
        settings.validate()?;
        crate::period::parse_tz(&settings.time_zone)?;
        let master = MasterKey::generate();
        let keys = Keys::derive(&master);
        let sealer = Sealer::new(keys.aead_key());
        let vault_id: [u8; 16] = rand::random();
        let (slot_id, slot) = slot::create(&master, secret, &o.label, &vault_id, now_unix())?;
        // Key slot first: a config without any slot would be a vault nobody can open.
        store.put(ObjKind::Key, &slot_id.to_hex(), &slot.encode())?;
        let cfg =
            ConfigFile { vault_id, sealed_settings: sealer.seal(Domain::Settings, &vault_id, &settings.encode()) };
        store.put(ObjKind::Config, "config", &cfg.encode())?;
        Ok(())
    }

    /// Reads the config and key slots and unlocks with `secret`.
    pub fn open(store: Arc<dyn Store>, secret: &Secret, o: &OpenOptions) -> Result<Vault> {
        let raw = store.get(ObjKind::Config, "config").map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                // The config is the last object a first sync sends (docs/DESIGN.md §12).
                let partial = store.list(ObjKind::Pack).is_ok_and(|p| !p.is_empty());
                Error::not_found(if partial {
                    format!(
                        "{} holds packs but no config file: an offsite copy whose first sync has not finished \
                         (run `vaultctl sync` to it again), or a vault whose config file was lost",
                        store.describe()
                    )
                } else {
                    format!("{} is not a vault (no config file); create one with `vaultctl init`", store.describe())
                })
            } else {
                e.context("reading the vault config")
            }
        })?;
        let cfg = ConfigFile::decode(&raw)?;
        // The local index cache is opened on a second thread while the key is unlocked: opening
        // it (reading its page table, replaying its log) takes about as long as Argon2id.
        let cache_dir = o.cache_dir.as_ref().map(|d| d.join(hex::encode(cfg.vault_id)).join("index"));
        let (unlocked, index) = std::thread::scope(|sc| {
            let bytes = if o.low_memory { crate::index::CACHE_BYTES_LOW_MEMORY } else { crate::index::CACHE_BYTES };
            let index = cache_dir.as_deref().map(|d| sc.spawn(move || Index::open_cache_sized(d, bytes)));
            let unlocked = unlock(&*store, &cfg.vault_id, secret);
            (unlocked, index.map(|h| h.join()))
        });
        let (master, slot_id) = unlocked?;
        let index = match index {
            Some(Ok(index)) => index,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Index::memory(),
        };
        let keys = Keys::derive(&master);
        let sealer = Arc::new(Sealer::new(keys.aead_key()));
        let settings = Settings::decode(
            &sealer.open(Domain::Settings, &cfg.vault_id, &cfg.sealed_settings).ctx("config: vault settings")?,
        )?;
        let clock = PeriodClock::new(settings.period, &settings.time_zone)?;
        let v = Vault {
            store,
            keys,
            sealer,
            settings,
            vault_id: cfg.vault_id,
            clock,
            index,
            index_sync: std::sync::Mutex::new(()),
            unlocked_slot: slot_id,
            master: Some(master),
            tree_cache: trees::TreeCache::new(256),
            pending: std::sync::RwLock::new(None),
            frame_cache: Default::default(),
            read_buffers: Default::default(),
            snap_cache: Default::default(),
            damaged_index: Default::default(),
            copy_manifest: Default::default(),
        };
        v.sync_index()?;
        Ok(v)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
    pub fn vault_id_hex(&self) -> String {
        hex::encode(self.vault_id)
    }
    pub fn clock(&self) -> &PeriodClock {
        &self.clock
    }
    pub fn index(&self) -> &Index {
        &self.index
    }
    pub fn chunker_params(&self) -> ChunkerParams {
        ChunkerParams {
            min: self.settings.chunk_min,
            avg: self.settings.chunk_avg,
            max: self.settings.chunk_max,
            seed: self.keys.chunker_seed(),
        }
    }

    /// Brings the local index cache in line with the vault's index files: loads the ones it
    /// has not seen; if it knows a file the vault no longer has, it starts over. An index file
    /// that cannot be read (damaged, unreadable) is left out and listed by
    /// [`Vault::damaged_index_files`] (loaded again at the next open): the blobs only it names
    /// read as missing until `rebuild-index`, everything else works. Prune and check read every
    /// index file themselves and refuse or report it.
    pub fn sync_index(&self) -> Result<()> {
        let _one = self.index_sync.lock().unwrap_or_else(|e| e.into_inner());
        // On an object-locked copy, index files the vault no longer uses stay while they are
        // retained, and may name packs deleted since (by an attacker, or at the end of their
        // retention): only the ones its manifest names as current count.
        let current = self.current_on_copy(ObjKind::Index)?;
        let listed: std::collections::HashSet<IndexId> = self
            .store
            .list(ObjKind::Index)?
            .into_iter()
            .filter(|(n, _)| current.as_ref().is_none_or(|c| c.contains(n)))
            .filter_map(|(n, _)| IndexId::from_hex(&n).ok())
            .collect();
        let mut known = self.index.known_files()?;
        if !known.is_subset(&listed) {
            self.index.clear()?;
            known.clear();
        }
        let missing: Vec<IndexId> = listed.difference(&known).copied().collect();
        let read: Vec<(IndexId, Result<Vec<index_format::IndexPack>>)> =
            missing.par_iter().map(|id| (*id, self.read_index_file(id))).collect();
        let mut damaged = Vec::new();
        for (id, packs) in read {
            match packs {
                Ok(packs) => self.index.add_file(id, &packs)?,
                // A store that cannot be read at all fails the open; one bad file does not.
                Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => damaged.push((id, e)),
                Err(e) => return Err(e),
            }
        }
        *self.damaged_index.lock().unwrap_or_else(|e| e.into_inner()) = damaged;
        if !missing.is_empty() {
            self.index.flush()?;
        }
        Ok(())
    }

    /// On an offsite copy (a store with a sync manifest), the names of `kind` that its manifest
    /// names as part of the vault: not objects kept only while retained (docs/DESIGN.md §12a)
    /// nor ones it does not name. `None` for a vault, or a copy whose manifest cannot be read
    /// (every object then counts).
    pub(crate) fn current_on_copy(&self, kind: ObjKind) -> Result<Option<std::collections::HashSet<String>>> {
        let Some(list) = self.copy_manifest()? else { return Ok(None) };
        Ok(Some(list.iter().filter(|e| !e.held && e.kind == kind).map(|e| e.name.clone()).collect()))
    }

    /// The copy's manifest (`None`: not a copy, or no readable manifest), read once for the
    /// listings of one command: again only when the last read is older than a few seconds (a
    /// mount of a copy follows the syncs to it).
    fn copy_manifest(&self) -> Result<Option<Arc<Vec<crate::format::manifest::Entry>>>> {
        let mut cached = self.copy_manifest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, m)) = cached.as_ref() {
            if at.elapsed() < std::time::Duration::from_secs(5) {
                return Ok(m.clone());
            }
        }
        let m = if self.is_offsite_copy()? {
            crate::commands::sync::read_manifest(&*self.store).ok().filter(|l| !l.is_empty()).map(Arc::new)
        } else {
            None
        };
        *cached = Some((std::time::Instant::now(), m.clone()));
        Ok(m)
    }

    /// Whether the store is an offsite copy: it has a sync manifest (`manifest`, or the
    /// manifests of an append-only copy).
    fn is_offsite_copy(&self) -> Result<bool> {
        Ok(self.store.size(ObjKind::Config, "manifest").is_ok() || !self.store.list(ObjKind::Manifest)?.is_empty())
    }

    /// Index files the last [`Vault::sync_index`] could not read, with the reason.
    pub fn damaged_index_files(&self) -> Vec<(IndexId, Error)> {
        let d = self.damaged_index.lock().unwrap_or_else(|e| e.into_inner());
        d.iter().map(|(id, e)| (*id, e.clone_shallow())).collect()
    }

    pub(crate) fn read_index_file(&self, id: &IndexId) -> Result<Vec<index_format::IndexPack>> {
        let what = format!("index file {}", id.short());
        let raw = self.store.get(ObjKind::Index, &id.to_hex()).ctx(&what)?;
        let plain = self.sealer.open(Domain::IndexFile, id.as_bytes(), &raw).ctx(&what)?;
        index_format::decode(&plain).ctx(&what)
    }

    /// Every key slot: id and decoded slot (undecodable ones as errors).
    /// Refuses to write an offsite copy (a store with a sync manifest): only `vaultctl sync`
    /// writes one, from the vault it copies, or the copy would disagree with its manifest
    /// (docs/DESIGN.md §12). Every writer passes here through `begin_write`.
    pub(crate) fn refuse_if_offsite_copy(&self) -> Result<()> {
        if self.is_offsite_copy()? {
            return Err(Error::read_only(format!(
                "{} is an offsite copy (it has a sync manifest): it is written only by `vaultctl sync` from the \
                 vault it copies, or it would disagree with its manifest. To make it a vault of its own (disaster \
                 recovery), copy it and delete the copy's `manifest` file first",
                self.store.describe()
            )));
        }
        Ok(())
    }

    pub fn key_slots(&self) -> Result<Vec<(SlotId, Result<KeySlot>)>> {
        read_slots(&*self.store)
    }

    pub fn unlocked_slot(&self) -> SlotId {
        self.unlocked_slot
    }
}

fn read_slots(store: &dyn Store) -> Result<Vec<(SlotId, Result<KeySlot>)>> {
    let mut out = Vec::new();
    for (name, _) in store.list(ObjKind::Key)? {
        let Ok(id) = SlotId::from_hex(&name) else { continue };
        let slot =
            store.get(ObjKind::Key, &name).and_then(|b| KeySlot::decode(&b)).ctx(format!("key slot {}", id.short()));
        out.push((id, slot));
    }
    out.sort_by_key(|(id, s)| (s.as_ref().map(|s| s.created_unix).unwrap_or(0), *id));
    Ok(out)
}

fn unlock(store: &dyn Store, vault_id: &[u8; 16], secret: &Secret) -> Result<(MasterKey, SlotId)> {
    let slots = read_slots(store)?;
    if slots.is_empty() {
        return Err(Error::corrupt(format!("{}: the vault has no key slots", store.describe())));
    }
    for (id, s) in &slots {
        let Ok(s) = s else { continue };
        if !slot::kind_matches(s, secret) {
            continue;
        }
        match slot::open(id, s, secret, vault_id) {
            Ok(m) => return Ok((m, *id)),
            Err(e) if e.kind() == ErrorKind::WrongKey => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::new(
        ErrorKind::WrongKey,
        format!("wrong {}: no key slot of this vault opens with it", secret.kind_name()),
    ))
}

#[cfg(test)]
mod frame_tests;
#[cfg(test)]
mod tests;
