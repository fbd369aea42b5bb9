//! `remote add|list|remove`: the vault's named offsite locations, kept (encrypted) in the vault
//! itself so that every copy carries them.

use crate::crypto::Domain;
use crate::error::{Error, ErrorKind, Result};
use crate::format::remotes::{self, Remote};
use crate::repo::Vault;
use crate::store::local::LocalStore;
use crate::store::{ObjKind, Store};
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

/// The store behind a remote URL. `file:///path` (any mounted disk) is supported here.
pub fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(Error::invalid(format!("{url:?}: a file URL needs an absolute path (file:///mnt/usb/vault)")));
        }
        return Ok(Arc::new(LocalStore::new(path)));
    }
    if url.starts_with("s3://") || url.starts_with("rclone:") {
        return Err(Error::unsupported(format!("{url:?}: this build syncs to file:// remotes only")));
    }
    Err(Error::invalid(format!("{url:?} is not a remote URL (use file:///path)")))
}
