//! The global options and what every command needs from them: the store the vault lives
//! in (a directory, or a remote copy by URL or by the name of a remote of VAULT_REPO), the
//! secret, the opened vault. Writers are refused a remote URL here, before any key is asked
//! for; the engine refuses to write any offsite copy (`Vault::begin_write`).

use anyhow::{anyhow, bail, Context};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vault::commands::remote;
use vault::crypto::{source, Secret};
use vault::repo::{OpenOptions, Vault};
use vault::store::location::Location;
use vault::store::{local::LocalStore, Store};

/// What a command does to the vault it names.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// Creates it (`init`): the location is taken as given.
    Create,
    Write,
    Read,
}

pub struct Ctx {
    pub repo: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub lock_wait: Option<u64>,
    pub as_of: Option<String>,
    /// No progress bar.
    pub quiet: bool,
    pub access: Access,
}

impl Ctx {
    /// How long to wait for another writer (`--lock-wait`, default 30 s).
    pub fn wait(&self) -> Duration {
        self.wait_or(30)
    }

    pub fn wait_or(&self, default_secs: u64) -> Duration {
        Duration::from_secs(self.lock_wait.unwrap_or(default_secs))
    }

    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.clone().or_else(vault::repo::default_cache_dir)
    }

    fn writes(&self) -> bool {
        self.access != Access::Read
    }

    /// `--repo NAME`, when NAME is a remote of the vault given by VAULT_REPO: that remote's URL,
    /// read from the vault, so that the command works on the remote's copy alone (opening it
    /// needs only the key). Anything else, and the location given to `init`, is returned as it is.
    fn remote_by_name(&self, repo: &str) -> anyhow::Result<String> {
        let home = home_of_remote_name(repo).filter(|_| self.access != Access::Create);
        let Some(home) = home else { return Ok(repo.to_string()) };
        let v = Vault::open(
            remote::open_store(&home)?,
            &read_secret("VAULT_", false)?,
            &OpenOptions { cache_dir: self.cache_dir(), ..Default::default() },
        )
        .with_context(|| {
            format!("--repo {repo}: opening the vault {home} (VAULT_REPO) to look up its remote {repo:?}")
        })?;
        Ok(remote::find(&v, repo)
            .with_context(|| format!("--repo {repo}: not a directory or URL, nor a remote of {home}"))?
            .url)
    }

    pub fn open_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        let repo = self.repo.as_deref().ok_or_else(|| anyhow!("no vault given: use --repo DIR or set VAULT_REPO"))?;
        let repo = &self.remote_by_name(repo)?;
        let path = match Location::parse(repo)? {
            Location::Remote(url) => {
                if let Some(t) = &self.as_of {
                    let at = remote::parse_moment(t).with_context(|| format!("--as-of {t}"))?;
                    return Ok(remote::open_for_reading_as_of(&url, self.cache_dir().as_deref(), Some((at, t)))?);
                }
                if self.writes() {
                    bail!(
                        "{url} is a remote copy: it is written only by `vaultctl sync` from the vault it copies \
                         (run this command on that vault; a remote URL can be read: snapshots, ls, cat, restore, check, drill)"
                    );
                }
                return Ok(remote::open_for_reading(&url, self.cache_dir().as_deref())?);
            }
            Location::Local(path) => path,
        };
        if self.as_of.is_some() {
            bail!("--as-of reads the object versions of an s3:// copy; {repo} is not one");
        }
        // An offsite copy on a local disk opens like a vault; the engine refuses to write it.
        Ok(Arc::new(LocalStore::new(&path)))
    }

    pub fn open(&self) -> anyhow::Result<Vault> {
        let store = self.open_store()?;
        let secret = read_secret("VAULT_", false)?;
        let v = Vault::open(store, &secret, &OpenOptions { cache_dir: self.cache_dir(), ..Default::default() })?;
        warn_of_damage(&v);
        Ok(v)
    }

    /// The vault that names the remote given by `--repo NAME` (see [`home_of_remote_name`]).
    pub fn home_of_remote(&self) -> Option<String> {
        self.repo.as_deref().and_then(home_of_remote_name)
    }

    /// Opens the vault at `url` (the home of a remote) with the same secret.
    ///
    /// (Damage is named by [`Ctx::open`] of the vault the command works on.)
    pub fn open_url(&self, url: &str) -> anyhow::Result<Vault> {
        let s = remote::open_store(url)?;
        Ok(Vault::open(
            s,
            &read_secret("VAULT_", false)?,
            &OpenOptions { cache_dir: self.cache_dir(), ..Default::default() },
        )?)
    }
}

/// When `repo` is not a path or URL but may name a remote of the vault given by VAULT_REPO
/// (letters, digits, '-', '_'; no such file here), the URL of that vault.
fn home_of_remote_name(repo: &str) -> Option<String> {
    let is_name = !repo.is_empty()
        && repo.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !std::path::Path::new(repo).exists();
    let home = std::env::var("VAULT_REPO").ok().filter(|h| is_name && !h.is_empty() && h != repo)?;
    if home.contains("://") || home.starts_with("rclone:") {
        return Some(home);
    }
    Some(format!("file://{}", std::path::absolute(&home).ok()?.display()))
}

/// The secret from `<prefix>PASSPHRASE[_FILE]`, `<prefix>KEY[_FILE]` or a prompt
/// (vault::crypto::source, shared with vaultfs).
pub fn read_secret(prefix: &str, confirm: bool) -> anyhow::Result<Secret> {
    Ok(source::read(prefix, confirm)?.to_secret()?)
}

/// Names on standard error what of the vault's metadata cannot be read, and what still works:
/// reads go on without it (docs/OPERATIONS.md, "Damage").
fn warn_of_damage(v: &Vault) {
    for (_, e) in v.damaged_index_files() {
        eprintln!(
            "vaultctl: warning: {e}; what only it names reads as missing until `vaultctl rebuild-index` \
             (which indexes the packs again from their own headers)"
        );
    }
    if let Ok((_, damaged)) = v.readable_snapshots() {
        for (id, e) in damaged {
            eprintln!(
                "vaultctl: warning: snapshots/{} cannot be read ({e}); the other snapshots are read without it (if \
                 it was a period's newest revision, the one before it is shown). Restore the file from an offsite \
                 copy: writes refuse to go on until then",
                id.to_hex()
            );
        }
    }
}
