//! Where a secret comes from, the same for `vaultctl` and `vaultfs`: exactly one of
//! `<prefix>PASSPHRASE`, `<prefix>PASSPHRASE_FILE`, `<prefix>KEY` (64 hex characters) or
//! `<prefix>KEY_FILE` (prefix `VAULT_`, or `VAULT_NEW_` for a new key slot), else a prompt on
//! the terminal. Never from a command-line argument. The text stays in zeroized memory until
//! it becomes a [`Secret`].

use super::Secret;
use crate::error::{Error, Result};
use std::io::IsTerminal;
use zeroize::Zeroizing;

/// A secret as given, before it is parsed: its kind, its text, and where it came from.
pub struct SecretText {
    key: bool,
    text: Zeroizing<String>,
    from: String,
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretText({}, from {}, <redacted>)", self.kind(), self.from)
    }
}

impl SecretText {
    /// `passphrase` or `key`.
    pub fn kind(&self) -> &'static str {
        if self.key {
            "key"
        } else {
            "passphrase"
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The secret handed on as `kind` and text (vaultfs passes it to its daemon on a pipe).
    pub fn from_parts(kind: &str, text: String, from: &str) -> Result<SecretText> {
        let key = match kind {
            "key" => true,
            "passphrase" => false,
            k => return Err(Error::invalid(format!("unknown kind of secret {k:?}"))),
        };
        Ok(SecretText { key, text: Zeroizing::new(text), from: from.to_string() })
    }

    pub fn to_secret(&self) -> Result<Secret> {
        if self.key {
            Secret::raw_key_from_hex(&self.text).map_err(|e| e.context(&self.from))
        } else {
            Secret::passphrase(self.text.to_string())
        }
    }
}

/// The secret given by the environment, if any: an error when several are set or a file
/// cannot be read.
pub fn from_env(prefix: &str) -> Result<Option<SecretText>> {
    let var = |n: &str| std::env::var(format!("{prefix}{n}")).ok().filter(|v| !v.is_empty());
    let set: Vec<&str> =
        ["PASSPHRASE", "PASSPHRASE_FILE", "KEY", "KEY_FILE"].into_iter().filter(|n| var(n).is_some()).collect();
    if set.len() > 1 {
        return Err(Error::invalid(format!(
            "several secrets are set ({}); set only one",
            set.iter().map(|n| format!("{prefix}{n}")).collect::<Vec<_>>().join(", ")
        )));
    }
    let Some(name) = set.first().copied() else { return Ok(None) };
    let value = Zeroizing::new(var(name).unwrap_or_default());
    let text = if name.ends_with("_FILE") {
        let s = Zeroizing::new(
            std::fs::read_to_string(value.as_str())
                .map_err(|e| Error::io(format!("reading secret file {}", *value), e))?,
        );
        Zeroizing::new(s.strip_suffix('\n').map(|s| s.strip_suffix('\r').unwrap_or(s)).unwrap_or(&s).to_string())
    } else {
        value
    };
    Ok(Some(SecretText { key: name.starts_with("KEY"), text, from: format!("{prefix}{name}") }))
}

/// The secret from the environment, else asked on the terminal (twice when `confirm`); an
/// error when neither is possible.
pub fn read(prefix: &str, confirm: bool) -> Result<SecretText> {
    if let Some(s) = from_env(prefix)? {
        return Ok(s);
    }
    if !std::io::stderr().is_terminal() {
        return Err(Error::invalid(format!(
            "no secret given: set {prefix}PASSPHRASE, {prefix}PASSPHRASE_FILE, {prefix}KEY or {prefix}KEY_FILE \
             (or run on a terminal to be asked)"
        )));
    }
    let what = if prefix.contains("NEW") { "new passphrase" } else { "passphrase" };
    let prompt = |p: String| rpassword::prompt_password(p).map_err(|e| Error::io("reading the passphrase", e));
    let p = Zeroizing::new(prompt(format!("{what}: "))?);
    if confirm && *Zeroizing::new(prompt(format!("repeat {what}: "))?) != *p {
        return Err(Error::invalid("the passphrases do not match"));
    }
    Ok(SecretText { key: false, text: p, from: "the prompt".into() })
}
