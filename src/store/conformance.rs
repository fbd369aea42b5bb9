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

    let big = vec![7u8; 3 << 20];
    s.put(ObjKind::Pack, "ff00", &big).unwrap();
    assert_eq!(s.get(ObjKind::Pack, "ff00").unwrap().len(), big.len());
    assert_eq!(s.get_range(ObjKind::Pack, "ff00", (3 << 20) - 4, 4).unwrap(), vec![7u8; 4]);
}

#[test]
fn memory_store_conforms() {
    run(&super::memory::MemoryStore::new());
}

#[test]
fn local_store_conforms() {
    let d = tempfile::tempdir().unwrap();
    let s = super::local::LocalStore::new(d.path());
    run(&s);
    assert!(!d.path().join("packs/ff/.tmp").exists());
}

#[test]
fn local_store_refuses_escaping_names() {
    let d = tempfile::tempdir().unwrap();
    let s = super::local::LocalStore::new(d.path());
    assert_eq!(s.put(ObjKind::Index, "../x", b"").unwrap_err().kind(), ErrorKind::InvalidInput);
}
