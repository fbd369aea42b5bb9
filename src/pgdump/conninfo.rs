//! A `postgresql://` connection URI, split into what may be shown or put on a command line and
//! the password.
//!
//! libpq's URI form: `postgresql://[user[:password]@][host][:port][,host[:port]...][/dbname]
//! [?key=value&...]` (also `postgres://`). The password (from the user part or a `password`
//! parameter) is kept apart and given to `psql` and `pg_restore` only through `PGPASSWORD` in
//! their environment, never in their arguments (which every user of the machine can read in the
//! process list). Reports name the server by its host list only. The database part is replaced
//! by the database each command needs.

use crate::error::{Error, Result};
use std::fmt;
use zeroize::Zeroizing;

pub struct ConnInfo {
    /// The user part without the password, still percent-encoded.
    user: String,
    /// The host list as written (`host:port,host2`), percent-encoded.
    hosts: String,
    /// The database named in the URI, decoded.
    dbname: Option<String>,
    /// Query parameters other than `dbname` and `password`, as written.
    params: Vec<String>,
    password: Option<Zeroizing<String>>,
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("user", &self.user)
            .field("hosts", &self.hosts)
            .field("dbname", &self.dbname)
            .field("params", &self.params)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent-decoding (invalid escapes are an error, as in libpq).
pub fn decode(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(h), Some(l)) = (b.get(i + 1).and_then(|&x| hex(x)), b.get(i + 2).and_then(|&x| hex(x))) else {
                return Err(Error::invalid("--pg-uri: invalid percent-encoded token"));
            };
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid("--pg-uri: percent-encoded bytes are not UTF-8"))
}

/// Percent-encoding of everything but unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ConnInfo {
    pub fn parse(uri: &str) -> Result<ConnInfo> {
        let rest = uri.strip_prefix("postgresql://").or_else(|| uri.strip_prefix("postgres://")).ok_or_else(|| {
            Error::invalid("--pg-uri must be a postgresql:// URI (postgresql://user@host:5432/postgres)")
        })?;
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match before_query.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (before_query, None),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, mut password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((name, pw)) => (name.to_string(), Some(Zeroizing::new(decode(pw)?))),
                None => (u.to_string(), None),
            },
            None => (String::new(), None),
        };
        let mut dbname = match path {
            Some(p) if !p.is_empty() => Some(decode(p)?),
            _ => None,
        };
        let mut params = Vec::new();
        for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                Error::invalid(format!("--pg-uri: parameter {:?} has no value", kv.split('=').next().unwrap_or("")))
            })?;
            match decode(k)?.as_str() {
                "password" => password = Some(Zeroizing::new(decode(v)?)),
                "dbname" => dbname = Some(decode(v)?),
                _ => params.push(kv.to_string()),
            }
        }
        Ok(ConnInfo { user, hosts: hosts.to_string(), dbname, params, password })
    }

    /// The server for reports: its host list, or the local socket.
    pub fn server(&self) -> String {
        let hosts = decode(&self.hosts).unwrap_or_else(|_| self.hosts.clone());
        let host_param =
            self.params.iter().find_map(|kv| kv.strip_prefix("host=")).map(|h| decode(h).unwrap_or_default());
        match (hosts.is_empty(), host_param) {
            (false, _) => hosts,
            (true, Some(h)) => h,
            (true, None) => "the local socket".into(),
        }
    }

    /// The database the URI names, where the drill connects to create and drop its scratch
    /// database (`postgres` when the URI names none).
    pub fn maintenance_db(&self) -> &str {
        self.dbname.as_deref().unwrap_or("postgres")
    }

    /// A URI for database `db`, without the password (safe for a command line).
    pub fn uri_for(&self, db: &str) -> String {
        let mut s = String::from("postgresql://");
        if !self.user.is_empty() {
            s.push_str(&self.user);
            s.push('@');
        }
        s.push_str(&self.hosts);
        s.push('/');
        s.push_str(&encode(db));
        if !self.params.is_empty() {
            s.push('?');
            s.push_str(&self.params.join("&"));
        }
        s
    }

    /// Environment for psql and pg_restore: the password, a connection timeout unless the URI
    /// sets one, an application name, and no psqlrc.
    pub fn env(&self, timeout_s: u64) -> Vec<(&'static str, String)> {
        let mut env = vec![("PGAPPNAME", "vaultctl drill".to_string()), ("PSQLRC", "/dev/null".to_string())];
        if !self.params.iter().any(|kv| kv.starts_with("connect_timeout=")) {
            env.push(("PGCONNECT_TIMEOUT", timeout_s.max(2).to_string()));
        }
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD", p.to_string()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_split_off_and_the_database_replaced() {
        let c = ConnInfo::parse("postgresql://app:s%40cret@db1:5432,db2/prod?sslmode=require&password=other").unwrap();
        assert_eq!(c.server(), "db1:5432,db2");
        assert_eq!(c.maintenance_db(), "prod");
        let u = c.uri_for("scratch db");
        assert_eq!(u, "postgresql://app@db1:5432,db2/scratch%20db?sslmode=require");
        assert!(!u.contains("cret") && !u.contains("other"));
        let env = c.env(10);
        assert!(env.contains(&("PGPASSWORD", "other".to_string())), "{env:?}");
        assert!(!format!("{c:?}").contains("other"));
        let c = ConnInfo::parse("postgres://u:pw@h").unwrap();
        assert!(c.env(10).contains(&("PGPASSWORD", "pw".to_string())));
        assert_eq!(c.maintenance_db(), "postgres");
        let c = ConnInfo::parse("postgresql:///?host=%2Fvar%2Frun%2Fpostgresql&connect_timeout=3").unwrap();
        assert_eq!(c.server(), "/var/run/postgresql");
        assert!(c.env(10).iter().all(|(k, _)| *k != "PGCONNECT_TIMEOUT"));
        assert!(ConnInfo::parse("host=x dbname=y").is_err());
        assert!(ConnInfo::parse("postgresql://h/%zz").is_err());
    }
}
