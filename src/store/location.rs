//! Where a vault is, as given on a command line or in VAULT_REPO, the same for `vaultctl` and
//! `vaultfs`: a directory (or `file:///path`), or a remote copy by URL (`s3://bucket/prefix`,
//! `rclone:REMOTE:path`), which only `vaultctl sync` writes.

use crate::error::{Error, Result};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Remote(String),
}

impl Location {
    pub fn parse(s: &str) -> Result<Location> {
        if crate::commands::remote::is_remote_url(s) {
            return Ok(Location::Remote(s.to_string()));
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.contains("://") {
            return Err(Error::invalid(format!(
                "unsupported vault location {s:?} (use a directory, file:///path, s3://bucket/prefix or rclone:REMOTE:path)"
            )));
        }
        Ok(Location::Local(PathBuf::from(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_file_urls_and_remotes() {
        assert_eq!(Location::parse("/srv/vault").unwrap(), Location::Local("/srv/vault".into()));
        assert_eq!(Location::parse("file:///srv/vault").unwrap(), Location::Local("/srv/vault".into()));
        assert_eq!(Location::parse("rel/dir").unwrap(), Location::Local("rel/dir".into()));
        assert_eq!(Location::parse("s3://b/p").unwrap(), Location::Remote("s3://b/p".into()));
        assert_eq!(Location::parse("rclone:gd:v").unwrap(), Location::Remote("rclone:gd:v".into()));
        let e = Location::parse("ftp://host/v").unwrap_err().to_string();
        assert!(e.contains("unsupported vault location"), "{e}");
    }
}
