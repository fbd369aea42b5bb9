//! A vault in an S3-compatible object store: `s3://bucket/prefix`.
//!
//! Objects live at `<prefix>/<ObjKind::path(name)>`, the same layout as a local vault, so a
//! bucket can be copied to disk and opened as a directory. One S3 PUT is atomic (readers see
//! the old object or the new one) and durable when acknowledged, which is the store contract;
//! there are no temporaries to clean up.
//!
//! Configuration comes only from the environment, as AWS tools read it: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION` (default
//! us-east-1), `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL` for other S3-compatible services (then
//! path-style requests). Plain http is refused unless the endpoint is on loopback or
//! `AWS_ALLOW_HTTP=true`. `AWS_CA_BUNDLE` names extra root certificates for https. Credentials
//! are never stored in the vault.
//!
//! The client is async; this store owns a small tokio runtime and blocks on it in each call,
//! so callers stay synchronous. Transient failures are retried with backoff by the client.

use super::{local::check_name, ObjKind, Store};
use crate::error::{Error, ErrorKind, Result};
use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use std::future::Future;
use std::time::Duration;

pub struct S3Store {
    url: String,
    bucket: String,
    prefix: String,
    pub(super) client: AmazonS3,
    pub(super) rt: tokio::runtime::Runtime,
    /// For the requests object_store does not make (object versions, Object Lock):
    /// `s3_versions.rs`.
    pub(super) raw: super::s3_versions::RawClient,
}

/// The `AWS_*` variables the client is configured from.
struct Vars(Vec<(String, String)>);

impl Vars {
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).filter(|v| !v.trim().is_empty())
    }
    /// Where the client connects (first set wins).
    fn endpoint(&self) -> Option<String> {
        ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|k| self.get(k))
            .map(|v| v.trim().trim_end_matches('/').to_string())
    }
    fn is_true(&self, k: &str) -> bool {
        self.get(k).map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes")).unwrap_or(false)
    }
}

/// True for `http://127.0.0.1:9000`, `http://localhost`, `http://[::1]:80`.
fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else { return false };
    let host_port = rest.split('/').next().unwrap_or("");
    let host = if let Some(h) = host_port.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// Splits `s3://bucket/some/prefix` into the bucket and the prefix (no slashes at the ends).
pub fn parse_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| Error::invalid(format!("{url:?} is not an S3 URL (s3://bucket/prefix)")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(Error::invalid(format!(
            "{url:?}: {bucket:?} is not a valid bucket name (3-63 lowercase letters, digits, '-' or '.')"
        )));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|c| c == "." || c == "..") || prefix.contains("//") {
        return Err(Error::invalid(format!("{url:?}: the prefix must not contain '.', '..' or empty parts")));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

impl S3Store {
    /// Builds a client for `s3://bucket/prefix` from the environment; no request is sent.
    pub fn new(url: &str) -> Result<S3Store> {
        Self::with_vars(url, std::env::vars())
    }

    /// Like `new`, configured from the given `AWS_*` variables instead of the environment.
    pub fn with_vars(url: &str, vars: impl IntoIterator<Item = (String, String)>) -> Result<S3Store> {
        let vars = Vars(vars.into_iter().filter(|(k, _)| k.starts_with("AWS_")).collect());
        let (bucket, prefix) = parse_url(url)?;
        let endpoint = vars.endpoint();
        let mut options =
            ClientOptions::new().with_connect_timeout(Duration::from_secs(15)).with_timeout(Duration::from_secs(300));
        let https = match &endpoint {
            Some(e) if e.starts_with("http://") => {
                if !is_loopback_http(e) && !vars.is_true("AWS_ALLOW_HTTP") {
                    return Err(Error::invalid(format!(
                        "{url}: refusing plain http to {e} (credentials and data would cross the network \
                         unencrypted); use https, or set AWS_ALLOW_HTTP=true if the network is trusted"
                    )));
                }
                options = options.with_allow_http(true);
                false
            }
            Some(e) if !e.starts_with("https://") => {
                return Err(Error::invalid(format!("{url}: the endpoint {e:?} must start with https:// or http://")))
            }
            _ => true,
        };
        if https {
            if let Some(bundle) = vars.get("AWS_CA_BUNDLE") {
                let path = std::path::PathBuf::from(bundle);
                let pem = std::fs::read(&path)
                    .map_err(|e| Error::io(format!("AWS_CA_BUNDLE={} (certificates for {url})", path.display()), e))?;
                let certs = object_store::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Error::invalid(format!("AWS_CA_BUNDLE={}: not a PEM certificate bundle: {e}", path.display()))
                })?;
                for c in certs {
                    options = options.with_root_certificate(c);
                }
            }
        }
        let region =
            ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|k| vars.get(k)).unwrap_or("us-east-1").to_string();
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                base: 2.0,
            },
            max_retries: 8,
            retry_timeout: Duration::from_secs(120),
        };
        let raw = super::s3_versions::RawClient::new(&options, &region)
            .map_err(|e| Error::invalid(format!("{url}: S3 client configuration: {e}")))?;
        let mut b = AmazonS3Builder::new();
        for (k, v) in &vars.0 {
            if let Ok(key) = k.to_ascii_lowercase().parse() {
                b = b.with_config(key, v);
            }
        }
        let mut b = b.with_bucket_name(&bucket).with_region(region).with_client_options(options).with_retry(retry);
        if let Some(e) = &endpoint {
            b = b.with_endpoint(e);
            if vars.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST").is_none() {
                b = b.with_virtual_hosted_style_request(false);
            }
        }
        let client = b.build().map_err(|e| Error::invalid(format!("{url}: S3 client configuration: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vault-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the S3 client runtime", e))?;
        Ok(S3Store {
            url: format!("s3://{bucket}{}{prefix}", if prefix.is_empty() { "" } else { "/" }),
            bucket,
            prefix,
            client,
            rt,
            raw,
        })
    }

    /// Builds the client and checks that the bucket is reachable (one listing request), so
    /// that a missing bucket or bad credentials are reported clearly up front.
    pub fn open(url: &str) -> Result<S3Store> {
        S3Store::new(url)?.checked()
    }

    /// Checks that the bucket is reachable (see `open`).
    pub fn checked(self) -> Result<S3Store> {
        let s = self;
        let prefix = s.key_prefix();
        s.block(async { s.client.list_with_delimiter(prefix.as_ref()).await }).map_err(|e| {
            let text = error_chain(&e);
            if text.contains("NoSuchBucket") || matches!(e, object_store::Error::NotFound { .. }) {
                Error::not_found(format!(
                    "{}: the bucket {:?} does not exist (create it first, e.g. with the provider's console or `aws s3 mb s3://{}`)",
                    s.url, s.bucket, s.bucket
                ))
            } else {
                s.map_err(e, "")
            }
        })?;
        Ok(s)
    }

    /// Runs a future to completion on the store's runtime, also when called from inside
    /// another runtime (then on a scoped helper thread).
    pub(super) fn block<F: Future + Send>(&self, f: F) -> F::Output
    where
        F::Output: Send,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| self.rt.block_on(f)).join().unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        } else {
            self.rt.block_on(f)
        }
    }

    pub(super) fn key_prefix(&self) -> Option<ObjPath> {
        (!self.prefix.is_empty()).then(|| ObjPath::from(self.prefix.as_str()))
    }

    fn rel(&self, rel: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(rel)
        } else {
            ObjPath::from(format!("{}/{rel}", self.prefix))
        }
    }

    pub(super) fn key(&self, kind: ObjKind, name: &str) -> Result<ObjPath> {
        check_name(kind, name)?;
        Ok(self.rel(&kind.path(name)))
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn map_err(&self, e: object_store::Error, rel: &str) -> Error {
        let at = if rel.is_empty() { self.url.clone() } else { format!("{}/{rel}", self.url) };
        match e {
            object_store::Error::NotFound { .. } => Error::not_found(format!("{at}: no such object")),
            e => Error::new(ErrorKind::Io, format!("{at}: {}", error_chain(&e))),
        }
    }
}

/// The error and its sources, joined: the client's top-level message alone often hides the
/// reason (connection refused, certificate unknown, access denied).
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

impl Store for S3Store {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn put(&self, kind: ObjKind, name: &str, data: &[u8]) -> Result<()> {
        let key = self.key(kind, name)?;
        let payload = PutPayload::from(data.to_vec());
        self.block(self.client.put(&key, payload)).map_err(|e| self.map_err(e, &kind.path(name)))?;
        Ok(())
    }

    fn get(&self, kind: ObjKind, name: &str) -> Result<Vec<u8>> {
        let key = self.key(kind, name)?;
        let r = self.block(async { self.client.get(&key).await?.bytes().await });
        r.map(|b| b.to_vec()).map_err(|e| self.map_err(e, &kind.path(name)))
    }

    fn get_range(&self, kind: ObjKind, name: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        let key = self.key(kind, name)?;
        let end = offset.saturating_add(len as u64);
        let short = |have: u64| {
            Error::corrupt(format!(
                "{}/{}: truncated (wanted {len} bytes at offset {offset}, size {have})",
                self.url,
                kind.path(name)
            ))
        };
        if len == 0 {
            let size = self.size(kind, name)?;
            return if size < offset { Err(short(size)) } else { Ok(Vec::new()) };
        }
        match self.block(self.client.get_range(&key, offset..end)) {
            Ok(b) if b.len() as u64 == len as u64 => Ok(b.to_vec()),
            Ok(b) => Err(short(offset + b.len() as u64)),
            Err(e) => {
                let err = self.map_err(e, &kind.path(name));
                if err.kind() == ErrorKind::NotFound {
                    return Err(err);
                }
                // A range past the end is refused by the server; say what it means.
                match self.size(kind, name) {
                    Ok(size) if size < end => Err(short(size)),
                    _ => Err(err),
                }
            }
        }
    }

    fn list(&self, kind: ObjKind) -> Result<Vec<(String, u64)>> {
        if kind == ObjKind::Config {
            let prefix = self.key_prefix();
            let r = self.block(self.client.list_with_delimiter(prefix.as_ref())).map_err(|e| self.map_err(e, ""))?;
            return Ok(r
                .objects
                .into_iter()
                .filter_map(|m| m.location.filename().map(|n| (n.to_string(), m.size)))
                .filter(|(n, _)| super::CONFIG_NAMES.contains(&n.as_str()))
                .collect());
        }
        let dir = self.rel(kind.dir());
        let metas: Vec<object_store::ObjectMeta> =
            self.block(self.client.list(Some(&dir)).try_collect()).map_err(|e| self.map_err(e, kind.dir()))?;
        let depth = dir.parts().count();
        let mut out = Vec::new();
        for m in metas {
            let parts: Vec<String> = m.location.parts().skip(depth).map(|p| p.as_ref().to_string()).collect();
            // packs/xx/<name> with xx the first two characters of the name; kinds without a
            // fan-out hold their objects directly.
            let name = match (kind, parts.as_slice()) {
                (ObjKind::Pack, [fan, n]) if n.len() > 2 && n.starts_with(fan.as_str()) => n,
                (ObjKind::Pack, [n]) if n.len() <= 2 => n,
                (k, [n]) if k != ObjKind::Pack => n,
                _ => continue,
            };
            if check_name(kind, name).is_ok() {
                out.push((name.clone(), m.size));
            }
        }
        Ok(out)
    }

    fn delete(&self, kind: ObjKind, name: &str) -> Result<()> {
        let key = self.key(kind, name)?;
        match self.block(self.client.delete(&key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map_err(e, &kind.path(name))),
        }
    }

    fn size(&self, kind: ObjKind, name: &str) -> Result<u64> {
        let key = self.key(kind, name)?;
        self.block(self.client.head(&key)).map(|m| m.size).map_err(|e| self.map_err(e, &kind.path(name)))
    }

    fn versioned(&self) -> Option<&dyn super::Versioned> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        assert_eq!(parse_url("s3://my-bucket").unwrap(), ("my-bucket".into(), "".into()));
        assert_eq!(parse_url("s3://my-bucket/a/b/").unwrap(), ("my-bucket".into(), "a/b".into()));
        assert!(parse_url("s3://My_Bucket/x").is_err());
        assert!(parse_url("s3://bucket/a/../b").is_err());
        assert!(parse_url("file:///x").is_err());
    }

    #[test]
    fn loopback_endpoints_are_recognised() {
        assert!(is_loopback_http("http://127.0.0.1:9000"));
        assert!(is_loopback_http("http://localhost"));
        assert!(is_loopback_http("http://[::1]:80/"));
        assert!(!is_loopback_http("http://10.0.0.1:9000"));
        assert!(!is_loopback_http("http://127.0.0.1.example.com"));
        assert!(!is_loopback_http("https://127.0.0.1"));
    }
}
