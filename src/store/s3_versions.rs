//! Object versions and Object Lock on S3: the requests `object_store` does not make.
//!
//! `object_store` reads a given version (`GetOptions::version`) but cannot set Object Lock
//! headers on a PUT, change a retention date, list versions or delete one version. Those
//! requests are built here and signed with `object_store`'s own SigV4 signer
//! (`AwsAuthorizer`, header signing with the payload hash) and the store's credentials, and
//! sent through an HTTP client made from the same `ClientOptions` (timeouts, extra root
//! certificates, plain http on loopback only), so they behave like the store's other
//! requests. Transient failures (connection errors, 5xx, 429) are retried with backoff.
//!
//! Requests: GetObjectLockConfiguration (`GET /?object-lock`), PutObject with
//! `x-amz-object-lock-mode` and `x-amz-object-lock-retain-until-date`, PutObjectRetention
//! (`PUT /key?retention&versionId=`), HeadObject of a version (its retention headers),
//! ListObjectVersions (`GET /?versions&prefix=`, paginated), DeleteObject of a version. Every
//! request with a body carries `Content-MD5`, which S3 requires for Object Lock requests.

use super::s3::{error_chain, S3Store};
use super::{LockMode, ObjKind, ObjVersion, Retention, Versioned};
use crate::error::{Error, ErrorKind, Result};
use object_store::aws::AwsAuthorizer;
use object_store::client::{HttpClient, HttpConnector, HttpRequest, HttpRequestBody, ReqwestConnector};
use object_store::signer::{HeaderName, HeaderValue, Method, Signer};
use object_store::{ClientOptions, GetOptions, ObjectStore};
use std::sync::OnceLock;
use std::time::Duration;

/// The signed-request client of one `S3Store`.
pub struct RawClient {
    http: HttpClient,
    region: String,
    /// `https://bucket.s3.region.amazonaws.com` or `http://endpoint/bucket`, as object_store
    /// addresses the bucket (found once, from a presigned URL).
    bucket_url: OnceLock<String>,
}

impl RawClient {
    pub fn new(options: &ClientOptions, region: &str) -> std::result::Result<RawClient, String> {
        let http = ReqwestConnector::default().connect(options).map_err(|e| e.to_string())?;
        Ok(RawClient { http, region: region.to_string(), bucket_url: OnceLock::new() })
    }
}

/// An answer: status, the headers we read, body.
struct Answer {
    status: u16,
    version_id: Option<String>,
    lock_mode: Option<String>,
    lock_until: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        let t = String::from_utf8_lossy(&self.body);
        // The S3 error code and message, when the body is an S3 error document.
        let pick = |tag: &str| t.split(&format!("<{tag}>")).nth(1).and_then(|r| r.split(&format!("</{tag}>")).next());
        match (pick("Code"), pick("Message")) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.to_string(),
            _ => t.trim().chars().take(200).collect(),
        }
    }
}

/// Percent-encodes one path segment or query value (RFC 3986 unreserved characters stay).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn iso8601(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.with_timezone(&chrono::Utc))
}

fn content_md5(body: &[u8]) -> String {
    use md5::Digest;
    super::base64(&md5::Md5::digest(body))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListVersionsResult {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_version_id_marker: Option<String>,
    #[serde(default, rename = "Version")]
    versions: Vec<XmlVersion>,
    #[serde(default, rename = "DeleteMarker")]
    markers: Vec<XmlVersion>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct XmlVersion {
    key: String,
    version_id: String,
    #[serde(default)]
    is_latest: bool,
    last_modified: String,
    #[serde(default)]
    size: u64,
}

impl S3Store {
    fn bucket_url(&self) -> Result<String> {
        if let Some(u) = self.raw.bucket_url.get() {
            return Ok(u.clone());
        }
        let probe = object_store::path::Path::from("vault-probe");
        let url = self
            .block(self.client.signed_url(Method::GET, &probe, Duration::from_secs(60)))
            .map_err(|e| self.map_err(e, ""))?;
        let mut u = url.to_string();
        if let Some(q) = u.find('?') {
            u.truncate(q);
        }
        let base = u.strip_suffix("/vault-probe").unwrap_or(&u).to_string();
        Ok(self.raw.bucket_url.get_or_init(|| base).clone())
    }

    /// The URL of an object: the store's prefix, then the object's path.
    fn object_url(&self, kind: ObjKind, name: &str) -> Result<String> {
        let key = self.key(kind, name)?;
        let path: Vec<String> = key.parts().map(|p| enc(p.as_ref())).collect();
        Ok(format!("{}/{}", self.bucket_url()?, path.join("/")))
    }

    /// Sends one signed request, retrying transient failures.
    fn send(&self, method: Method, url: &str, headers: &[(&'static str, String)], body: Vec<u8>) -> Result<Answer> {
        let what = format!("{} {}", method, url.split('?').next().unwrap_or(url));
        let fail = |m: String| Error::new(ErrorKind::Io, format!("{}: {what}: {m}", self.describe_url()));
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result: Result<std::result::Result<Answer, String>> = self.block(async {
                let cred = self.client.credentials().get_credential().await.map_err(|e| fail(error_chain(&e)))?;
                // From contiguous bytes, so that the signer hashes the payload.
                let mut req = HttpRequest::new(HttpRequestBody::from(body.clone()));
                *req.method_mut() = method.clone();
                *req.uri_mut() = url.parse().map_err(|e| fail(format!("bad URL: {e}")))?;
                for (k, v) in headers {
                    let v = HeaderValue::from_str(v).map_err(|e| fail(format!("bad header {k}: {e}")))?;
                    req.headers_mut().insert(HeaderName::from_static(k), v);
                }
                AwsAuthorizer::new(&cred, "s3", &self.raw.region)
                    .try_authorize(&mut req, None)
                    .map_err(|e| fail(error_chain(&e)))?;
                let resp = match self.raw.http.execute(req).await {
                    Ok(r) => r,
                    Err(e) => return Ok(Err(error_chain(&e))),
                };
                let status = resp.status().as_u16();
                let header = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(String::from);
                let (version_id, lock_mode, lock_until) = (
                    header("x-amz-version-id"),
                    header("x-amz-object-lock-mode"),
                    header("x-amz-object-lock-retain-until-date"),
                );
                let body = match resp.into_body().bytes().await {
                    Ok(b) => b.to_vec(),
                    Err(e) => return Ok(Err(error_chain(&e))),
                };
                Ok(Ok(Answer { status, version_id, lock_mode, lock_until, body }))
            });
            let transient = match result? {
                Ok(a) if a.status >= 500 || a.status == 429 => format!("{} {}", a.status, a.text()),
                Ok(a) => return Ok(a),
                Err(e) => e,
            };
            if attempt >= 6 {
                return Err(fail(format!("{transient} (after {attempt} attempts)")));
            }
            std::thread::sleep(delay);
            delay = (delay * 3).min(Duration::from_secs(10));
        }
    }

    fn describe_url(&self) -> String {
        super::Store::describe(self)
    }

    fn refused(&self, what: &str, a: &Answer) -> Error {
        let kind = match a.status {
            404 => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{}: {what}: {} {}", self.describe_url(), a.status, a.text()))
    }
}

impl Versioned for S3Store {
    fn lock_enabled(&self) -> Result<bool> {
        let url = format!("{}/?object-lock", self.bucket_url()?);
        let a = self.send(Method::GET, &url, &[], Vec::new())?;
        match a.status {
            200 => Ok(String::from_utf8_lossy(&a.body).contains("<ObjectLockEnabled>Enabled</ObjectLockEnabled>")),
            404 if a.text().contains("NoSuchBucket") => Err(self.refused("reading the Object Lock configuration", &a)),
            404 => Ok(false),
            _ => Err(self.refused("reading the Object Lock configuration", &a)),
        }
    }

    fn list_versions(&self) -> Result<Vec<ObjVersion>> {
        let prefix = if self.prefix().is_empty() { String::new() } else { format!("{}/", self.prefix()) };
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let mut url = format!("{}/?versions&prefix={}", self.bucket_url()?, enc(&prefix));
            if let Some(k) = &key_marker {
                url.push_str(&format!("&key-marker={}", enc(k)));
            }
            if let Some(v) = &version_marker {
                url.push_str(&format!("&version-id-marker={}", enc(v)));
            }
            let a = self.send(Method::GET, &url, &[], Vec::new())?;
            if a.status != 200 {
                return Err(self.refused("listing object versions", &a));
            }
            let text = String::from_utf8_lossy(&a.body);
            let page: ListVersionsResult = quick_xml::de::from_str(&text).map_err(|e| {
                Error::new(ErrorKind::Io, format!("{}: unreadable ListObjectVersions answer: {e}", self.describe_url()))
            })?;
            let items =
                page.versions.into_iter().map(|v| (v, false)).chain(page.markers.into_iter().map(|v| (v, true)));
            for (v, delete_marker) in items {
                let Some(rel) = v.key.strip_prefix(&prefix) else { continue };
                let Some((kind, name)) = super::parse_rel(rel) else { continue };
                let modified_ns = parse_time(&v.last_modified)
                    .and_then(|t| t.timestamp_nanos_opt())
                    .ok_or_else(|| Error::new(ErrorKind::Io, format!("bad LastModified {:?}", v.last_modified)))?;
                out.push(ObjVersion {
                    kind,
                    name,
                    version_id: v.version_id,
                    latest: v.is_latest,
                    delete_marker,
                    modified_ns,
                    size: v.size,
                });
            }
            if !page.is_truncated {
                break;
            }
            if page.next_key_marker.is_none() && page.next_version_id_marker.is_none() {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("{}: a truncated version listing without a marker", self.describe_url()),
                ));
            }
            key_marker = page.next_key_marker;
            version_marker = page.next_version_id_marker;
        }
        out.sort_by(|a, b| (a.kind.code(), &a.name, a.modified_ns).cmp(&(b.kind.code(), &b.name, b.modified_ns)));
        Ok(out)
    }

    fn put_version(&self, kind: ObjKind, name: &str, data: &[u8], retention: Option<Retention>) -> Result<String> {
        let url = self.object_url(kind, name)?;
        let mut headers = vec![("content-md5", content_md5(data))];
        if let Some(r) = retention {
            headers.push(("x-amz-object-lock-mode", r.mode.as_s3().to_string()));
            headers.push(("x-amz-object-lock-retain-until-date", iso8601(r.until)));
        }
        let a = self.send(Method::PUT, &url, &headers, data.to_vec())?;
        if a.status != 200 {
            return Err(self.refused(&format!("uploading {}", kind.path(name)), &a));
        }
        a.version_id.filter(|v| !v.is_empty() && v != "null").ok_or_else(|| {
            Error::invalid(format!(
                "{}: uploading {}: the bucket returned no version id: it is not versioned",
                self.describe_url(),
                kind.path(name)
            ))
        })
    }

    fn get_version(&self, kind: ObjKind, name: &str, version: &str) -> Result<Vec<u8>> {
        let key = self.key(kind, name)?;
        let o = GetOptions { version: Some(version.to_string()), ..Default::default() };
        let r = self.block(async { self.client.get_opts(&key, o).await?.bytes().await });
        r.map(|b| b.to_vec()).map_err(|e| self.map_err(e, &kind.path(name)))
    }

    fn get_version_range(&self, kind: ObjKind, name: &str, version: &str, offset: u64, len: u32) -> Result<Vec<u8>> {
        let key = self.key(kind, name)?;
        let end = offset.saturating_add(len as u64);
        let short = |have: u64| {
            Error::corrupt(format!(
                "{}/{} (version {version}): truncated (wanted {len} bytes at offset {offset}, size {have})",
                self.describe_url(),
                kind.path(name)
            ))
        };
        if len == 0 {
            return Ok(Vec::new());
        }
        let o =
            GetOptions { version: Some(version.to_string()), range: Some((offset..end).into()), ..Default::default() };
        match self.block(async { self.client.get_opts(&key, o).await?.bytes().await }) {
            Ok(b) if b.len() as u64 == len as u64 => Ok(b.to_vec()),
            Ok(b) => Err(short(offset + b.len() as u64)),
            Err(e) => {
                let err = self.map_err(e, &kind.path(name));
                if err.kind() == ErrorKind::NotFound {
                    return Err(err);
                }
                Err(short(0).context(err.to_string()))
            }
        }
    }

    fn retention(&self, kind: ObjKind, name: &str, version: &str) -> Result<Option<Retention>> {
        let url = format!("{}?versionId={}", self.object_url(kind, name)?, enc(version));
        let a = self.send(Method::HEAD, &url, &[], Vec::new())?;
        match a.status {
            200 => {}
            // A delete marker: no retention.
            405 => return Ok(None),
            404 => {
                return Err(Error::not_found(format!(
                    "{}/{}: no version {version}",
                    self.describe_url(),
                    kind.path(name)
                )))
            }
            _ => return Err(self.refused(&format!("reading the retention of {}", kind.path(name)), &a)),
        }
        let mode = match a.lock_mode.as_deref() {
            Some("GOVERNANCE") => LockMode::Governance,
            Some("COMPLIANCE") => LockMode::Compliance,
            _ => return Ok(None),
        };
        let until = a.lock_until.as_deref().and_then(parse_time).map(|t| t.timestamp());
        Ok(until.map(|until| Retention { mode, until }))
    }

    fn set_retention(&self, kind: ObjKind, name: &str, version: &str, r: Retention) -> Result<()> {
        let url = format!("{}?retention&versionId={}", self.object_url(kind, name)?, enc(version));
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            r.mode.as_s3(),
            iso8601(r.until)
        )
        .into_bytes();
        let a = self.send(Method::PUT, &url, &[("content-md5", content_md5(&body))], body)?;
        if a.status != 200 {
            return Err(self.refused(&format!("extending the retention of {}", kind.path(name)), &a));
        }
        Ok(())
    }

    fn delete_version(&self, kind: ObjKind, name: &str, version: &str) -> Result<()> {
        let url = format!("{}?versionId={}", self.object_url(kind, name)?, enc(version));
        let a = self.send(Method::DELETE, &url, &[], Vec::new())?;
        match a.status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.refused(&format!("deleting version {version} of {}", kind.path(name)), &a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time("2026-12-03T07:11:55.000Z").unwrap().timestamp(), 1_796_281_915);
        assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix><IsTruncated>false</IsTruncated><Version><Key>p/config</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest><LastModified>2026-12-03T07:11:55.000Z</LastModified><ETag>"x"</ETag><Size>7</Size></Version><DeleteMarker><Key>p/index/ab</Key><VersionId>m1</VersionId><IsLatest>true</IsLatest><LastModified>2026-12-03T07:11:56.000Z</LastModified></DeleteMarker><Version><Key>p/index/ab</Key><VersionId>v1</VersionId><IsLatest>false</IsLatest><LastModified>2026-12-03T07:11:54.000Z</LastModified><ETag>"y"</ETag><Size>9</Size></Version></ListVersionsResult>"#;
        let r: ListVersionsResult = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(r.versions.len(), 2);
        assert_eq!(r.markers.len(), 1);
        assert_eq!(r.versions[1].key, "p/index/ab");
        assert!(!r.is_truncated);
    }
}
