//! A vault on any rclone remote: `rclone:REMOTE:path` (Google Drive, SFTP, B2, S3, a local
//! directory...), through the `rclone` binary.
//!
//! Each operation runs one `rclone` process (about 50-100 ms). That is small next to moving a
//! pack of megabytes, and reads of a remote vault go through the pack cache, so a pack is
//! fetched once; a long-running `rclone rcd` would save the start-up but adds a listening
//! server, its credentials and its lifetime to manage.
//!
//! Atomicity: several backends (local, sftp, ftp, smb) write an upload in place, so a reader
//! could see a prefix. `put` therefore uploads to `.tmp-<random>` in the target directory and
//! then `rclone moveto`s it over the final name (a rename on file systems, a server-side copy
//! on object stores). Listings skip `.tmp-*`; `remove_temporaries` deletes leftovers of a
//! killed upload.
//!
//! Environment: rclone reads its remotes from its config file or `RCLONE_CONFIG_<NAME>_*`
//! variables, as the user set them up. Debian's rclone 1.60 refuses its S3 backend while
//! `AWS_CA_BUNDLE` is set, so the variable is removed from rclone's environment and, when it
//! names a readable file, passed as `--ca-cert` instead: the user's choice of CA still holds.

use super::{local::check_name, ObjKind, Store};
use crate::error::{Error, ErrorKind, Result};
use rand::RngCore;
use std::io::Write;
use std::process::{Command, Output, Stdio};

const TMP_PREFIX: &str = ".tmp-";

pub struct RcloneStore {
    url: String,
    /// `REMOTE:path` without a trailing slash.
    target: String,
    binary: String,
    /// Extra environment for rclone (tests configure remotes this way).
    env: Vec<(String, String)>,
}

/// rclone's exit codes for "directory not found" and "file not found".
const EXIT_DIR_NOT_FOUND: i32 = 3;
const EXIT_FILE_NOT_FOUND: i32 = 4;

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
        let binary = std::env::var("VAULT_RCLONE").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "rclone".into());
        Ok(RcloneStore { url: url.to_string(), target: format!("{remote}:{path}"), binary, env: Vec::new() })
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

    /// Checks that rclone runs.
    pub fn checked(self) -> Result<RcloneStore> {
        let s = self;
        let out = s.run(&["version"], None)?;
        if !out.status.success() {
            return Err(s.failure("rclone version", &out));
        }
        Ok(s)
    }

    fn remote_path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.target.clone()
        } else if self.target.ends_with(':') {
            format!("{}{rel}", self.target)
        } else {
            format!("{}/{rel}", self.target)
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        let bundle = match self.env.iter().rev().find(|(k, _)| k == "AWS_CA_BUNDLE") {
            Some((_, v)) => Some(std::ffi::OsString::from(v)),
            None => std::env::var_os("AWS_CA_BUNDLE"),
        };
        c.envs(self.env.iter().filter(|(k, _)| k != "AWS_CA_BUNDLE").map(|(k, v)| (k, v)));
        c.env_remove("AWS_CA_BUNDLE");
        if let Some(bundle) = bundle.filter(|v| !v.is_empty()) {
            if std::fs::File::open(&bundle).is_ok() {
                c.arg("--ca-cert").arg(bundle);
            }
        }
        // A killed vault process takes its rclone uploads with it.
        // SAFETY: prctl in the child before exec; no memory is shared or allocated.
        unsafe {
            use std::os::unix::process::CommandExt;
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        c.args(["--quiet", "--retries", "1", "--low-level-retries", "10"]);
        c
    }

    fn run(&self, args: &[&str], input: Option<&[u8]>) -> Result<Output> {
        let mut c = self.command();
        c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = c.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found(format!(
                    "{}: the `{}` program is not installed (apt-get install rclone)",
                    self.url, self.binary
                ))
            } else {
                Error::io(format!("{}: starting {}", self.url, self.binary), e)
            }
        })?;
        if let Some(data) = input {
            let mut stdin = child.stdin.take().ok_or_else(|| Error::new(ErrorKind::Io, "rclone: no stdin"))?;
            // Feed stdin from a helper thread so that a full stdout or stderr pipe cannot
            // deadlock the two processes.
            return std::thread::scope(|s| {
                let writer = s.spawn(move || stdin.write_all(data));
                let out = child.wait_with_output().map_err(|e| Error::io(format!("{}: rclone", self.url), e))?;
                match writer.join() {
                    Ok(Err(e)) if out.status.success() => Err(Error::io(format!("{}: writing to rclone", self.url), e)),
                    _ => Ok(out),
                }
            });
        }
        child.wait_with_output().map_err(|e| Error::io(format!("{}: rclone", self.url), e))
    }

    fn failure(&self, what: &str, out: &Output) -> Error {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let msg: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = msg.iter().rev().take(3).rev().copied().collect::<Vec<_>>().join("; ");
        Error::new(ErrorKind::Io, format!("{}: {what} failed ({}): {tail}", self.url, out.status))
    }

    fn not_found(out: &Output) -> bool {
        let code = out.status.code();
        code == Some(EXIT_DIR_NOT_FOUND) || code == Some(EXIT_FILE_NOT_FOUND) || {
            let e = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
            e.contains("not found") || e.contains("doesn't exist")
        }
    }

    /// Files below `rel` (recursively when `recursive`): (path relative to `rel`, size).
    fn lsjson(&self, rel: &str, recursive: bool) -> Result<Vec<(String, u64)>> {
        let p = self.remote_path(rel);
        let mut args = vec!["lsjson", "--files-only", "--no-mimetype", "--no-modtime"];
        if recursive {
            args.push("-R");
        }
        args.push(&p);
        let out = self.run(&args, None)?;
        if !out.status.success() {
            if Self::not_found(&out) {
                return Ok(Vec::new());
            }
            return Err(self.failure(&format!("listing {p}"), &out));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::new(ErrorKind::Io, format!("{}: unreadable listing of {p}: {e}", self.url)))?;
        let items = v.as_array().cloned().unwrap_or_default();
        Ok(items
            .iter()
            .filter(|i| i["IsDir"] != true)
            .filter_map(|i| Some((i["Path"].as_str()?.to_string(), i["Size"].as_u64()?)))
            .collect())
    }
}

impl Store for RcloneStore {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn put(&self, kind: ObjKind, name: &str, data: &[u8]) -> Result<()> {
        check_name(kind, name)?;
        let rel = kind.path(name);
        let dir = rel.rsplit_once('/').map(|(d, _)| format!("{d}/")).unwrap_or_default();
        let mut r = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut r);
        let tmp = self.remote_path(&format!("{dir}{TMP_PREFIX}{}", hex::encode(r)));
        // The data is in memory: let rcat send it as one upload of known size instead of
        // streaming it in parts (multipart uploads cost more requests on object stores).
        let cutoff = (data.len() + 1).to_string();
        let out = self.run(&["rcat", "--streaming-upload-cutoff", &cutoff, &tmp], Some(data))?;
        if !out.status.success() {
            let _ = self.run(&["deletefile", &tmp], None);
            return Err(self.failure(&format!("uploading {rel}"), &out));
        }
        let out = self.run(&["moveto", &tmp, &self.remote_path(&rel)], None)?;
        if !out.status.success() {
            let _ = self.run(&["deletefile", &tmp], None);
            return Err(self.failure(&format!("moving {rel} into place"), &out));
        }
        Ok(())
    }

    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>> {
        check_name(kind, name)?;
        let rel = kind.path(name);
        let out = self.run(&["cat", &self.remote_path(&rel)], None)?;
        if out.status.success() && !out.stdout.is_empty() {
            return Ok(out.stdout);
        }
        // `cat` of a missing object may succeed with nothing (object stores) or fail: ask.
        match self.size(kind, name) {
            Ok(0) if out.status.success() => Ok(Vec::new()),
            Ok(_) if out.status.success() => {
                Err(Error::corrupt(format!("{}/{rel}: read returned nothing for a non-empty object", self.url)))
            }
            Ok(_) => Err(self.failure(&format!("reading {rel}"), &out)),
            Err(e) => Err(e),
        }
    }

    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        check_name(kind, name)?;
        let rel = kind.path(name);
        let (o, n) = (offset.to_string(), len.to_string());
        let out = self.run(&["cat", "--offset", &o, "--count", &n, &self.remote_path(&rel)], None)?;
        if out.status.success() && out.stdout.len() == len as usize {
            return Ok(out.stdout);
        }
        let size = self.size(kind, name)?;
        if size < offset.saturating_add(len as u64) {
            return Err(Error::corrupt(format!(
                "{}/{rel}: truncated (wanted {len} bytes at offset {offset}, size {size})",
                self.url
            )));
        }
        if out.status.success() {
            return Err(Error::new(
                ErrorKind::Io,
                format!("{}/{rel}: short read ({} of {len} bytes at offset {offset})", self.url, out.stdout.len()),
            ));
        }
        Err(self.failure(&format!("reading {rel}"), &out))
    }

    fn list(&self, kind: ObjKind) -> Result<Vec<(String, u64)>> {
        let skip_tmp = |(n, _): &(String, u64)| !n.rsplit('/').next().unwrap_or("").starts_with(TMP_PREFIX);
        if kind == ObjKind::Config {
            return Ok(self
                .lsjson("", false)?
                .into_iter()
                .filter(|(n, _)| super::CONFIG_NAMES.contains(&n.as_str()))
                .collect());
        }
        let mut out = Vec::new();
        for (path, size) in self.lsjson(kind.dir(), true)?.into_iter().filter(skip_tmp) {
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
        let rel = kind.path(name);
        let out = self.run(&["deletefile", &self.remote_path(&rel)], None)?;
        if out.status.success() {
            return Ok(());
        }
        match self.size(kind, name) {
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            _ => Err(self.failure(&format!("deleting {rel}"), &out)),
        }
    }

    fn size(&self, kind: ObjKind, name: &str) -> Result<u64> {
        check_name(kind, name)?;
        let rel = kind.path(name);
        let p = self.remote_path(&rel);
        let out = self.run(&["lsjson", "--stat", "--no-mimetype", "--no-modtime", &p], None)?;
        let missing = || Error::not_found(format!("{}/{rel}: no such object", self.url));
        if !out.status.success() {
            return if Self::not_found(&out) {
                Err(missing())
            } else {
                Err(self.failure(&format!("stat {rel}"), &out))
            };
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| missing())?;
        if v["IsDir"] == true {
            return Err(missing());
        }
        v["Size"].as_u64().ok_or_else(missing)
    }

    fn remove_temporaries(&self) -> Result<usize> {
        let mut n = 0;
        for (path, _) in self.lsjson("", true)? {
            if path.rsplit('/').next().unwrap_or("").starts_with(TMP_PREFIX) {
                let out = self.run(&["deletefile", &self.remote_path(&path)], None)?;
                if out.status.success() {
                    n += 1;
                }
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
        assert_eq!(s.remote_path("config"), "gdrive:backups/vault/config");
        let s = RcloneStore::new("rclone:b2:").unwrap();
        assert_eq!(s.remote_path("packs/ab/abcd"), "b2:packs/ab/abcd");
        assert!(RcloneStore::new("rclone:nocolon").is_err());
        assert!(RcloneStore::new("rclone:x:a/../b").is_err());
    }
}
