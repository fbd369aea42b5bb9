//! `remote add|list|remove`: the vault's named offsite locations, kept (encrypted) in the vault
//! itself so that every copy carries them.

use crate::crypto::Domain;
use crate::error::{Error, ErrorKind, Result};
use crate::format::remotes::{self, Remote};
use crate::repo::Vault;
use crate::store::cache::{PackCache, ReadOnly, DEFAULT_CACHE_BYTES};
use crate::store::local::LocalStore;
use crate::store::rclone::RcloneStore;
use crate::store::s3::S3Store;
use crate::store::{ObjKind, Store};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn list(v: &Vault) -> Result<Vec<Remote>> {
    match v.store.get(ObjKind::Config, "remotes") {
        Ok(b) => remotes::decode(&v.sealer.open(Domain::Remotes, &v.vault_id, &b).map_err(|e| e.context("remotes"))?),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn save(v: &Vault, all: &[Remote]) -> Result<()> {
    v.store.put(ObjKind::Config, "remotes", &v.sealer.seal(Domain::Remotes, &v.vault_id, &remotes::encode(all)))
}

pub fn find(v: &Vault, name: &str) -> Result<Remote> {
    list(v)?.into_iter().find(|r| r.name == name).ok_or_else(|| {
        Error::not_found(format!("no remote named {name:?} (add one with `vaultctl remote add {name} URL`)"))
    })
}

pub fn add(v: &Vault, name: &str, url: &str, keep_all: bool, lock_wait: Duration) -> Result<Remote> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid("a remote name is 1-64 letters, digits, '-' or '_'"));
    }
    open_store(url)?;
    let _w = v.begin_write("vaultctl remote add", lock_wait)?;
    let mut all = list(v)?;
    if all.iter().any(|r| r.name == name) {
        return Err(Error::new(ErrorKind::AlreadyExists, format!("a remote named {name:?} exists already")));
    }
    let r = Remote { name: name.to_string(), url: url.to_string(), keep_all };
    all.push(r.clone());
    save(v, &all)?;
    Ok(r)
}

pub fn remove(v: &Vault, name: &str, lock_wait: Duration) -> Result<()> {
    let _w = v.begin_write("vaultctl remote remove", lock_wait)?;
    let mut all = list(v)?;
    let before = all.len();
    all.retain(|r| r.name != name);
    if all.len() == before {
        return Err(Error::not_found(format!("no remote named {name:?}")));
    }
    save(v, &all)
}

/// True for the URLs of remote stores (`s3://`, `rclone:`); `file://` and plain paths are
/// local directories.
pub fn is_remote_url(location: &str) -> bool {
    location.starts_with("s3://") || location.starts_with("rclone:")
}

/// The store behind a remote URL: `file:///path` (any mounted disk), `s3://bucket/prefix`
/// (S3-compatible, configured by the `AWS_*` variables) or `rclone:REMOTE:path`. S3 and rclone
/// stores are checked for reachability here, so that a wrong bucket or a missing rclone is
/// reported before any work starts.
pub fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(Error::invalid(format!("{url:?}: a file URL needs an absolute path (file:///mnt/usb/vault)")));
        }
        return Ok(Arc::new(LocalStore::new(path)));
    }
    if url.starts_with("s3://") {
        return Ok(Arc::new(S3Store::open(url)?));
    }
    if url.starts_with("rclone:") {
        return Ok(Arc::new(RcloneStore::open(url)?));
    }
    Err(Error::invalid(format!(
        "{url:?} is not a remote URL (use file:///path, s3://bucket/prefix or rclone:REMOTE:path)"
    )))
}

/// A remote vault opened directly (`--repo s3://...`, `vaultfs mount rclone:...`): read-only
/// (a remote is written only by `sync`, from the vault it copies), with ranged pack reads
/// served from a bounded local pack cache under `cache_dir` when there is one.
pub fn open_for_reading(url: &str, cache_dir: Option<&Path>) -> Result<Arc<dyn Store>> {
    let mut store = open_store(url)?;
    if let Some(dir) = cache_dir {
        let key = &blake3::hash(url.as_bytes()).to_hex()[..16];
        let limit = match std::env::var("VAULT_PACK_CACHE_SIZE") {
            Ok(v) if !v.is_empty() => {
                crate::units::parse_size(&v).map_err(|e| Error::invalid(format!("VAULT_PACK_CACHE_SIZE={v:?}: {e}")))?
            }
            _ => DEFAULT_CACHE_BYTES,
        };
        store = Arc::new(PackCache::new(store, dir.join(format!("remote-packs-{key}")), limit));
    }
    Ok(Arc::new(ReadOnly::new(
        store,
        format!("{url} is a remote copy, written only by `vaultctl sync` from the vault it copies"),
    )))
}
