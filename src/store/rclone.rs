//! A vault on any rclone remote: `rclone:REMOTE:path` (Google Drive, SFTP, B2, S3, a local
//! directory...), through the `rclone` binary.
//!
//! Every operation goes to one long-lived `rclone rcd` per store (`rcd.rs`): starting a Go
//! program per object cost more than moving the object, and `rclone rcat` with a streaming
//! cutoff held a whole object many times over in memory. Uploads are staged in a private
//! temporary file and copied from it (`operations/copyfile`), so rclone streams them with
//! their size known; reads, ranged or whole, are GETs on the daemon's file server.
//!
//! Atomicity: backends that rename on the server (local, sftp, smb, ftp...; rclone's `Move`
//! feature) write an upload in place, so a reader could see a prefix. There `put` uploads to
//! `.tmp-<random>` in the target directory and then moves it over the final name (a rename).
//! Backends without server-side move are object stores, where an upload becomes visible only
//! once complete; there `put` uploads to the final name directly (a temporary plus a
//! server-side copy would double the traffic, and on a versioned bucket leave a copy behind).
//! Listings skip `.tmp-*`; `remove_temporaries` deletes leftovers of a killed upload.
//!
//! Environment: rclone reads its remotes from its config file or `RCLONE_CONFIG_<NAME>_*`
//! variables, as the user set them up. Debian's rclone 1.60 refuses its S3 backend while
//! `AWS_CA_BUNDLE` is set, so the variable is removed from rclone's environment and, when it
//! names a readable file, passed as `--ca-cert` instead: the user's choice of CA still holds.

use super::rcd::{Rcd, RcdConfig};
use super::{local::check_name, ObjKind, Store};
use crate::error::{Error, ErrorKind, Result};
use rand::RngCore;
use serde_json::json;
use std::path::Path;
use std::sync::OnceLock;

const TMP_PREFIX: &str = ".tmp-";

pub struct RcloneStore {
    url: String,
    /// `REMOTE:path` without a trailing slash.
    target: String,
    binary: String,
    /// Extra environment for rclone (tests configure remotes this way).
    env: Vec<(String, String)>,
    rcd: OnceLock<Rcd>,
    /// Whether the backend renames on the server (then uploads go through a temporary).
    can_move: OnceLock<bool>,
}

impl RcloneStore {
    /// `rclone:REMOTE:path`; the binary is `rclone` from PATH (or `VAULT_RCLONE`).
    pub fn new(url: &str) -> Result<RcloneStore> {
        let target = url
            .strip_prefix("rclone:")
            .ok_or_else(|| Error::invalid(format!("{url:?} is not an rclone URL (rclone:REMOTE:path)")))?;
        let (remote, path) = target.split_once(':').ok_or_else(|| {
            Error::invalid(format!("{url:?}: name the rclone remote and a path, as in rclone:gdrive:backups/vault"))
        })?;
        if remote.is_empty() && !path.starts_with('/') {
            return Err(Error::invalid(format!("{url:?}: the remote name is missing")));
        }
        let path = path.trim_end_matches('/');
        if path.split('/').any(|c| c == "..") {
            return Err(Error::invalid(format!("{url:?}: the path must not contain '..'")));
        }
        if target.contains(']') {
            return Err(Error::invalid(format!("{url:?}: the remote or path must not contain ']'")));
        }
        let binary = std::env::var("VAULT_RCLONE").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "rclone".into());
        Ok(RcloneStore {
            url: url.to_string(),
            target: format!("{remote}:{path}"),
            binary,
            env: Vec::new(),
            rcd: OnceLock::new(),
            can_move: OnceLock::new(),
        })
    }

    /// Adds variables to rclone's environment (`RCLONE_CONFIG_<NAME>_*`, `AWS_CA_BUNDLE`).
    pub fn with_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(vars);
        self
    }

    /// Like `new`, and checks that rclone runs.
    pub fn open(url: &str) -> Result<RcloneStore> {
        RcloneStore::new(url)?.checked()
    }

    /// Starts the daemon and checks that it answers.
    pub fn checked(self) -> Result<RcloneStore> {
        let r = self.rcd().call("core/version", &json!({}))?;
        if r.status != 200 {
            return Err(self.failure("rclone core/version", &r));
        }
        Ok(self)
    }

    fn rcd(&self) -> &Rcd {
        self.rcd.get_or_init(|| {
            let bundle = match self.env.iter().rev().find(|(k, _)| k == "AWS_CA_BUNDLE") {
                Some((_, v)) => Some(std::ffi::OsString::from(v)),
                None => std::env::var_os("AWS_CA_BUNDLE"),
            };
            // No read-ahead buffer: rclone's default of 16 MiB per transfer held 117 MB with 8
            // packs in flight, 52 MB without (and no slower; docs/PERFORMANCE.md).
            let mut args: Vec<String> = ["--low-level-retries", "10", "--buffer-size", "0"].map(String::from).to_vec();
            if let Some(bundle) = bundle.filter(|v| !v.is_empty()) {
                if std::fs::File::open(&bundle).is_ok() {
                    args.push("--ca-cert".into());
                    args.push(bundle.to_string_lossy().into_owned());
                }
            }
            Rcd::new(RcdConfig {
                binary: self.binary.clone(),
                args,
                env: self.env.iter().filter(|(k, _)| k != "AWS_CA_BUNDLE").cloned().collect(),
                env_remove: vec!["AWS_CA_BUNDLE".into()],
                what: self.url.clone(),
            })
        })
    }

    fn failure(&self, what: &str, r: &super::rcd::Response) -> Error {
        Error::new(ErrorKind::Io, format!("{}: {what} failed ({}): {}", self.url, r.status, r.error_text()))
    }

    /// Calls `operations/<op>` on the target; `Ok(None)` for a 404.
    fn op(&self, op: &str, params: serde_json::Value, what: &str) -> Result<Option<serde_json::Value>> {
        let r = self.rcd().call(&format!("operations/{op}"), &params)?;
        match r.status {
            200 => Ok(Some(r.json())),
            404 => Ok(None),
            _ => Err(self.failure(what, &r)),
        }
    }

    fn can_move(&self) -> Result<bool> {
        if let Some(m) = self.can_move.get() {
            return Ok(*m);
        }
        let info = self.op("fsinfo", json!({"fs": self.target}), "asking for the backend's features")?;
        let m = info.map(|i| i["Features"]["Move"] == true).unwrap_or(false);
        Ok(*self.can_move.get_or_init(|| m))
    }

    /// Files below `rel` (recursively when `recursive`): (path relative to `rel`, size).
    fn list_files(&self, rel: &str, recursive: bool) -> Result<Vec<(String, u64)>> {
        let params = json!({"fs": self.target, "remote": rel,
            "opt": {"recurse": recursive, "filesOnly": true, "noModTime": true, "noMimeType": true}});
        let Some(v) = self.op("list", params, &format!("listing {rel:?}"))? else { return Ok(Vec::new()) };
        let prefix = if rel.is_empty() { String::new() } else { format!("{rel}/") };
        let items = v["list"].as_array().cloned().unwrap_or_default();
        Ok(items
            .iter()
            .filter(|i| i["IsDir"] != true)
            .filter_map(|i| {
                let p = i["Path"].as_str()?;
                Some((p.strip_prefix(&prefix).unwrap_or(p).to_string(), i["Size"].as_u64()?))
            })
            .collect())
    }

    /// Copies the local file `dir/file` to the object (through a temporary and a rename on
    /// backends that write in place).
    fn upload(&self, kind: ObjKind, name: &str, dir: &str, file: &str) -> Result<()> {
        let rel = kind.path(name);
        let copy = |to: &str| {
            let params = json!({"srcFs": dir, "srcRemote": file, "dstFs": self.target, "dstRemote": to});
            match self.op("copyfile", params, &format!("uploading {rel}"))? {
                Some(_) => Ok(()),
                None => Err(Error::new(
                    ErrorKind::Io,
                    format!("{}: uploading {rel}: the source file {dir}/{file} vanished", self.url),
                )),
            }
        };
        if !self.can_move()? {
            return copy(&rel);
        }
        let d = rel.rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
        let mut r = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut r);
        let tmp = format!("{d}{TMP_PREFIX}{}", hex::encode(r));
        let moved = copy(&tmp).and_then(|()| {
            let params = json!({"srcFs": self.target, "srcRemote": tmp, "dstFs": self.target, "dstRemote": rel});
            match self.op("movefile", params, &format!("moving {rel} into place"))? {
                Some(_) => Ok(()),
                None => Err(Error::new(
                    ErrorKind::Io,
                    format!("{}: moving {rel} into place: the upload vanished", self.url),
                )),
            }
        });
        if moved.is_err() {
            let _ = self.delete_rel(&tmp);
        }
        moved
    }

    fn delete_rel(&self, rel: &str) -> Result<()> {
        self.op("deletefile", json!({"fs": self.target, "remote": rel}), &format!("deleting {rel}"))?;
        Ok(())
    }
}

impl Store for RcloneStore {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn put(&self, kind: ObjKind, name: &str, data: &[u8]) -> Result<()> {
        check_name(kind, name)?;
        let (staged, dir) = self.rcd().stage(data)?;
        self.upload(kind, name, &dir, &staged.name())
    }

    fn put_file(&self, kind: ObjKind, name: &str, data: &[u8], file: &Path) -> Result<()> {
        check_name(kind, name)?;
        match (file.parent(), file.file_name()) {
            // Straight from the vault's own file: nothing staged.
            (Some(dir), Some(f)) if dir.is_absolute() => {
                self.upload(kind, name, &dir.to_string_lossy(), &f.to_string_lossy())
            }
            _ => self.put(kind, name, data),
        }
    }

    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>> {
        check_name(kind, name)?;
        let rel = kind.path(name);
        let r = self.rcd().read(&self.target, &rel, None)?;
        match r.status {
            200 => Ok(r.body),
            404 => Err(Error::not_found(format!("{}/{rel}: no such object", self.url))),
            _ => Err(self.failure(&format!("reading {rel}"), &r)),
        }
    }

    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        check_name(kind, name)?;
        let rel = kind.path(name);
        let truncated = |size: u64| {
            Error::corrupt(format!(
                "{}/{rel}: truncated (wanted {len} bytes at offset {offset}, size {size})",
                self.url
            ))
        };
        if len == 0 {
            let size = self.size(kind, name)?;
            return if size < offset { Err(truncated(size)) } else { Ok(Vec::new()) };
        }
        let r = self.rcd().read(&self.target, &rel, Some((offset, len)))?;
        match r.status {
            206 if r.body.len() == len as usize => Ok(r.body),
            206 => Err(truncated(offset + r.body.len() as u64)),
            // A server that ignores the range sends everything.
            200 => {
                let end = offset.saturating_add(len as u64);
                if (r.body.len() as u64) < end {
                    return Err(truncated(r.body.len() as u64));
                }
                Ok(r.body[offset as usize..end as usize].to_vec())
            }
            404 => Err(Error::not_found(format!("{}/{rel}: no such object", self.url))),
            416 => Err(truncated(self.size(kind, name)?)),
            _ => Err(self.failure(&format!("reading {rel}"), &r)),
        }
    }

    fn list(&self, kind: ObjKind) -> Result<Vec<(String, u64)>> {
        let skip_tmp = |(n, _): &(String, u64)| !n.rsplit('/').next().unwrap_or("").starts_with(TMP_PREFIX);
        if kind == ObjKind::Config {
            return Ok(self
                .list_files("", false)?
                .into_iter()
                .filter(|(n, _)| super::CONFIG_NAMES.contains(&n.as_str()))
                .collect());
        }
        let mut out = Vec::new();
        for (path, size) in self.list_files(kind.dir(), true)?.into_iter().filter(skip_tmp) {
            let parts: Vec<&str> = path.split('/').collect();
            let name = match (kind, parts.as_slice()) {
                (ObjKind::Pack, [fan, n]) if n.len() > 2 && n.starts_with(fan) => *n,
                (ObjKind::Pack, [n]) if n.len() <= 2 => *n,
                (k, [n]) if k != ObjKind::Pack => *n,
                _ => continue,
            };
            if check_name(kind, name).is_ok() {
                out.push((name.to_string(), size));
            }
        }
        Ok(out)
    }

    fn delete(&self, kind: ObjKind, name: &str) -> Result<()> {
        check_name(kind, name)?;
        self.delete_rel(&kind.path(name))
    }

    fn size(&self, kind: ObjKind, name: &str) -> Result<u64> {
        check_name(kind, name)?;
        let rel = kind.path(name);
        let missing = || Error::not_found(format!("{}/{rel}: no such object", self.url));
        let params = json!({"fs": self.target, "remote": rel, "opt": {"noModTime": true, "noMimeType": true}});
        let v = self.op("stat", params, &format!("stat {rel}"))?.ok_or_else(missing)?;
        let item = &v["item"];
        if item.is_null() || item["IsDir"] == true {
            return Err(missing());
        }
        item["Size"].as_u64().ok_or_else(missing)
    }

    fn remove_temporaries(&self) -> Result<usize> {
        let mut n = 0;
        for (path, _) in self.list_files("", true)? {
            if path.rsplit('/').next().unwrap_or("").starts_with(TMP_PREFIX) {
                self.delete_rel(&path)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_remote_and_a_path() {
        let s = RcloneStore::new("rclone:gdrive:backups/vault/").unwrap();
        assert_eq!(s.target, "gdrive:backups/vault");
        let s = RcloneStore::new("rclone:b2:").unwrap();
        assert_eq!(s.target, "b2:");
        assert!(RcloneStore::new("rclone:nocolon").is_err());
        assert!(RcloneStore::new("rclone:x:a/../b").is_err());
        assert!(RcloneStore::new("rclone:x:a]b").is_err());
    }
}
