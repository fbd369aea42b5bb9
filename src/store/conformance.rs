//! The conformance suite every [`Store`] backend must pass.

use super::{ObjKind, Store};
use crate::ErrorKind;

pub fn run(s: &dyn Store) {
    let name = "00aa11bb22cc33dd44ee55ff66778899aabbccddeeff00112233445566778899";
    assert_eq!(s.get(ObjKind::Pack, name).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(s.size(ObjKind::Pack, name).unwrap_err().kind(), ErrorKind::NotFound);
    assert!(s.list(ObjKind::Pack).unwrap().is_empty());

    s.put(ObjKind::Pack, name, b"hello world").unwrap();
    assert_eq!(s.get(ObjKind::Pack, name).unwrap(), b"hello world");
    assert_eq!(s.get_range(ObjKind::Pack, name, 6, 5).unwrap(), b"world");
    assert_eq!(s.get_range(ObjKind::Pack, name, 8, 10).unwrap_err().kind(), ErrorKind::Corrupt);
    // Into a reused buffer, longer and then shorter than the range.
    let mut buf = vec![9u8; 64];
    s.get_range_into(ObjKind::Pack, name, 0, 5, &mut buf).unwrap();
    assert_eq!(buf, b"hello");
    s.get_range_into(ObjKind::Pack, name, 4, 7, &mut buf).unwrap();
    assert_eq!(buf, b"o world");
    assert_eq!(s.get_range_into(ObjKind::Pack, name, 8, 10, &mut buf).unwrap_err().kind(), ErrorKind::Corrupt);
    assert_eq!(s.size(ObjKind::Pack, name).unwrap(), 11);
    assert_eq!(s.list(ObjKind::Pack).unwrap(), vec![(name.to_string(), 11)]);
    // Kinds are separate namespaces.
    assert!(s.list(ObjKind::Index).unwrap().is_empty());
    assert_eq!(s.get(ObjKind::Index, name).unwrap_err().kind(), ErrorKind::NotFound);

    // Replacing is atomic and visible.
    s.put(ObjKind::Pack, name, b"HELLO").unwrap();
    assert_eq!(s.get(ObjKind::Pack, name).unwrap(), b"HELLO");
    assert_eq!(s.get_range(ObjKind::Pack, name, 1, 3).unwrap(), b"ELL");

    s.put(ObjKind::Config, "config", b"cfg").unwrap();
    assert_eq!(s.list(ObjKind::Config).unwrap(), vec![("config".to_string(), 3)]);
    for k in [ObjKind::Key, ObjKind::Index, ObjKind::Snapshot, ObjKind::Log] {
        s.put(k, "abc123", &[k as u8; 3]).unwrap();
        assert_eq!(s.get(k, "abc123").unwrap(), vec![k as u8; 3]);
        assert_eq!(s.list(k).unwrap().len(), 1);
    }

    s.delete(ObjKind::Pack, name).unwrap();
    s.delete(ObjKind::Pack, name).unwrap();
    assert_eq!(s.get(ObjKind::Pack, name).unwrap_err().kind(), ErrorKind::NotFound);
    assert!(s.list(ObjKind::Pack).unwrap().is_empty());

    // Packs fan out into packs/xx/; a listing sees all of them and nothing else.
    let names = ["0a11", "0a22", "b0b0", "ffee"];
    for n in names {
        s.put(ObjKind::Pack, n, n.as_bytes()).unwrap();
    }
    let mut listed = s.list(ObjKind::Pack).unwrap();
    listed.sort();
    assert_eq!(listed, names.iter().map(|n| (n.to_string(), 4)).collect::<Vec<_>>());
    for n in names {
        s.delete(ObjKind::Pack, n).unwrap();
    }
    assert!(s.list(ObjKind::Pack).unwrap().is_empty());
    assert_eq!(s.remove_temporaries().unwrap(), 0);

    let big = vec![7u8; 3 << 20];
    s.put(ObjKind::Pack, "ff00", &big).unwrap();
    assert_eq!(s.get(ObjKind::Pack, "ff00").unwrap().len(), big.len());
    assert_eq!(s.get_range(ObjKind::Pack, "ff00", (3 << 20) - 4, 4).unwrap(), vec![7u8; 4]);

    // An object whose bytes are also in a local file (sync from a local vault).
    let dir =
        std::env::temp_dir().join(format!("vault-conformance-{}-{:x}", std::process::id(), rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ee11");
    std::fs::write(&file, b"from a file").unwrap();
    s.put_file(ObjKind::Pack, "ee11", b"from a file", &file).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(s.get(ObjKind::Pack, "ee11").unwrap(), b"from a file");
    assert_eq!(s.size(ObjKind::Pack, "ee11").unwrap(), 11);
    s.delete(ObjKind::Pack, "ee11").unwrap();

    // Sync bookkeeping kinds live apart from the vault's objects.
    s.put(ObjKind::Lock, "0123abcd", b"{}").unwrap();
    s.put(ObjKind::Manifest, "00000000000000000001-abcd", b"m").unwrap();
    assert_eq!(s.list(ObjKind::Lock).unwrap(), vec![("0123abcd".to_string(), 2)]);
    assert_eq!(s.list(ObjKind::Manifest).unwrap(), vec![("00000000000000000001-abcd".to_string(), 1)]);
    assert!(s.list(ObjKind::Config).unwrap().iter().all(|(n, _)| n == "config"));
    s.delete(ObjKind::Lock, "0123abcd").unwrap();
    s.delete(ObjKind::Manifest, "00000000000000000001-abcd").unwrap();
    assert!(s.list(ObjKind::Lock).unwrap().is_empty());
}

/// Listing more objects than one page of a paginated API holds (S3 pages hold 1000).
pub fn run_many(s: &dyn Store, n: usize) {
    let names: Vec<String> = (0..n).map(|i| format!("{:064x}", i * 7919)).collect();
    std::thread::scope(|t| {
        for part in names.chunks(n.div_ceil(8).max(1)) {
            t.spawn(move || {
                for name in part {
                    s.put(ObjKind::Index, name, b"x").unwrap();
                }
            });
        }
    });
    let mut listed: Vec<String> = s.list(ObjKind::Index).unwrap().into_iter().map(|(n, _)| n).collect();
    listed.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(listed, want);
    for name in &names {
        s.delete(ObjKind::Index, name).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_conforms() {
        run(&crate::store::memory::MemoryStore::new());
    }

    #[test]
    fn local_store_conforms() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::store::local::LocalStore::new(d.path());
        run(&s);
        assert!(!d.path().join("packs/ff/.tmp").exists());
    }

    #[test]
    fn local_store_refuses_escaping_names() {
        let d = tempfile::tempdir().unwrap();
        let s = crate::store::local::LocalStore::new(d.path());
        assert_eq!(s.put(ObjKind::Index, "../x", b"").unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
