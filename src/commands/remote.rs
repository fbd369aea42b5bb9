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
use crate::store::versions::AsOf;
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

/// Adds `r` to the registry. The remote must be reachable, and an object-locked one must be an
/// S3 bucket with Object Lock enabled.
pub fn add(v: &Vault, r: Remote, lock_wait: Duration) -> Result<Remote> {
    let name = &r.name;
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::invalid("a remote name is 1-64 letters, digits, '-' or '_'"));
    }
    let store = open_store(&r.url)?;
    if let Some(l) = r.object_lock {
        if !(1..=36_500).contains(&l.days) {
            return Err(Error::invalid("--object-lock takes 1 to 36500 days"));
        }
        let ver = store.versioned().filter(|_| r.url.starts_with("s3://")).ok_or_else(|| {
            Error::invalid(format!("{}: --object-lock needs an s3:// remote (a bucket with Object Lock)", r.url))
        })?;
        if !ver.lock_enabled()? {
            return Err(Error::invalid(format!(
                "{}: the bucket has no Object Lock enabled, so --object-lock cannot protect anything there. \
                 Create the bucket with Object Lock (`aws s3api create-bucket --object-lock-enabled-for-bucket ...`) \
                 or enable it on the versioned bucket (`aws s3api put-object-lock-configuration ...`), then add the remote again",
                r.url
            )));
        }
    }
    let _w = v.begin_write("vaultctl remote add", lock_wait)?;
    let mut all = list(v)?;
    if all.iter().any(|x| x.name == r.name) {
        return Err(Error::new(ErrorKind::AlreadyExists, format!("a remote named {name:?} exists already")));
    }
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
    open_for_reading_as_of(url, cache_dir, None)
}

/// Like [`open_for_reading`]; with `as_of` = (unix nanoseconds, label), the copy as it was
/// then: the object versions current at that moment (`--as-of`, versioned S3 remotes).
pub fn open_for_reading_as_of(
    url: &str,
    cache_dir: Option<&Path>,
    as_of: Option<(i64, &str)>,
) -> Result<Arc<dyn Store>> {
    let mut store = open_store(url)?;
    let mut cache_key = url.to_string();
    if let Some((t, label)) = as_of {
        if !url.starts_with("s3://") {
            return Err(Error::invalid(format!(
                "--as-of reads the object versions of an s3:// remote; {url} has none"
            )));
        }
        store = Arc::new(AsOf::new(store, t, label)?);
        cache_key = format!("{url}@{t}");
    }
    if let Some(dir) = cache_dir {
        let key = &blake3::hash(cache_key.as_bytes()).to_hex()[..16];
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

/// A moment given to `--as-of`: RFC 3339 (`2026-11-20T10:00:00Z`), `YYYY-MM-DD HH:MM[:SS]` or
/// `YYYY-MM-DD` (local time, the start of that day) or `@UNIX-SECONDS`. Returns unix
/// nanoseconds.
pub fn parse_moment(s: &str) -> Result<i64> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone};
    let s = s.trim();
    let bad = || {
        Error::invalid(format!(
            "{s:?} is not a moment (use 2026-11-20T10:00:00Z, \"2026-11-20 10:00\" local time, 2026-11-20 or @UNIX-SECONDS)"
        ))
    };
    if let Some(secs) = s.strip_prefix('@') {
        return secs.parse::<i64>().map(|t| t.saturating_mul(1_000_000_000)).map_err(|_| bad());
    }
    let t = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        t.with_timezone(&chrono::Utc)
    } else {
        let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
            .ok_or_else(bad)?;
        chrono::Local.from_local_datetime(&naive).earliest().ok_or_else(bad)?.with_timezone(&chrono::Utc)
    };
    t.timestamp_nanos_opt().ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_parse() {
        assert_eq!(parse_moment("@1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(parse_moment("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(parse_moment("2023-11-14T23:13:20+01:00").unwrap(), 1_700_000_000_000_000_000);
        assert!(parse_moment("2023-11-14").is_ok());
        assert!(parse_moment("2023-11-14 22:13").is_ok());
        assert!(parse_moment("yesterday").unwrap_err().to_string().contains("not a moment"));
    }
}
