//! `rebuild-index`: regenerate the vault's index files from the pack headers alone, for a
//! vault whose index files were lost or damaged.
//!
//! Order: the new index file is written (durably) before the old ones are deleted, so an
//! interruption leaves at worst both, which is harmless.

use crate::crypto::Domain;
use crate::error::Result;
use crate::format::index::{self as index_format, IndexPack};
use crate::id::{IndexId, PackId};
use crate::repo::packer::read_pack_header;
use crate::repo::Vault;
use crate::store::ObjKind;
use rayon::prelude::*;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct RebuildReport {
    pub packs: usize,
    pub blobs: usize,
    /// Packs whose header could not be read (their blobs are not indexed).
    pub unreadable: Vec<String>,
    pub removed_index_files: usize,
}

pub fn rebuild_index(v: &Vault, lock_wait: Duration) -> Result<RebuildReport> {
    let _w = v.begin_write("vaultctl rebuild-index", lock_wait)?;
    let mut r = RebuildReport::default();
    let packs: Vec<PackId> =
        v.store.list(ObjKind::Pack)?.into_iter().filter_map(|(n, _)| PackId::from_hex(&n).ok()).collect();
    let headers: Vec<(PackId, Result<(u64, Vec<crate::format::pack::PackEntry>)>)> =
        packs.par_iter().map(|p| (*p, read_pack_header(&*v.store, &v.sealer, p))).collect();
    let mut out = Vec::new();
    for (pack, h) in headers {
        match h {
            Ok((size, entries)) => {
                r.blobs += entries.len();
                out.push(IndexPack { pack, size, entries });
            }
            Err(e) => r.unreadable.push(format!("pack {}: {e}", pack.short())),
        }
    }
    r.packs = out.len();
    let old: Vec<String> = v.store.list(ObjKind::Index)?.into_iter().map(|(n, _)| n).collect();
    let id = IndexId::random();
    let sealed = v.sealer.seal(Domain::IndexFile, id.as_bytes(), &index_format::encode(&out));
    v.store.put(ObjKind::Index, &id.to_hex(), &sealed)?;
    for n in old {
        v.store.delete(ObjKind::Index, &n)?;
        r.removed_index_files += 1;
    }
    v.index.clear()?;
    v.sync_index()?;
    Ok(r)
}
