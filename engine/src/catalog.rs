//! The catalog: which tables exist, by name.
//!
//! `data/catalog` is rewritten whole on every change (under a temporary name,
//! synced, renamed, directory synced), while the writer holds the catalog
//! lock (resource `(0, 0)` in X mode) at the coordinator, so nodes never
//! race on it.
//!
//! ## Format (version 3, little-endian)
//! magic `UNDSTCAT` (8), version u32, next file id u32, table count u32,
//! CRC32C u32 of the 20 bytes before it and of everything after it; then
//! per table: file id u32, kind u16 (1 hash, 2 ordered), reserved u16
//! (zero), bucket count u32 (0 for an ordered table), identity u64, name
//! length u16, name (UTF-8, at most [`MAX_NAME`] bytes). Version 2 (still
//! read) has no kind and holds hash tables only; version 1 has no identity
//! either, and its tables read as identity 0, which nothing is checked
//! against.
//!
//! The identity is a random non-zero number given to a table file when it
//! is created and written in its header page too (`crate::table`), so a
//! file that is not the one the catalog means — another table's, another
//! cluster's, one made by a later create of the same id — is told apart
//! (`crate::datafile`).
//!
//! The cluster's creation writes an empty catalog. A catalog missing while
//! table files exist is damage, not an empty catalog: reading it as empty
//! would lose every table silently.

use std::path::{Path, PathBuf};

use wal::io::{Io, IoError, IoFile, OpKind};

use crate::error::{Error, Result};

pub const MAX_NAME: usize = 200;

/// The catalog's lock resource: X to change the catalog, S to read it as a
/// whole with no table created or dropped meanwhile.
pub const CATALOG_RESOURCE: lockmgr::ResourceId = lockmgr::ResourceId::new(0, 0);
const MAGIC: [u8; 8] = *b"UNDSTCAT";
const VERSION: u32 = 3;
/// The version before table kinds, still read.
const VERSION_2: u32 = 2;
/// The first version, without identities, still read.
const VERSION_1: u32 = 1;

/// How a table's rows are organised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    /// Hashed into buckets (`crate::table`).
    Hash,
    /// A B+tree in key order (`crate::btree`).
    Ordered,
}

/// One table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub file_id: u32,
    pub kind: TableKind,
    /// A hash table's bucket count; 0 for an ordered table.
    pub buckets: u32,
    /// The table file's identity, also in its header page; 0 for a table
    /// listed by a version 1 catalog (not checked).
    pub uid: u64,
}

impl TableInfo {
    /// Bytes a table file must have at least: its header page and buckets
    /// (an ordered table's root), written when it was created.
    pub fn min_len(&self, page_size: usize) -> u64 {
        let pages = match self.kind {
            TableKind::Hash => 1 + u64::from(self.buckets),
            TableKind::Ordered => 2,
        };
        pages * page_size as u64
    }
}

/// A fresh table file identity: random and never 0.
pub fn new_uid() -> u64 {
    rand::random::<u64>().max(1)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    pub next_file_id: u32,
    pub tables: Vec<TableInfo>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            next_file_id: 1,
            tables: Vec::new(),
        }
    }
}

pub fn catalog_path(data_dir: &Path) -> PathBuf {
    data_dir.join("catalog")
}

impl Catalog {
    pub fn find(&self, name: &str) -> Option<&TableInfo> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The table whose file id is `file_id`.
    pub fn find_file(&self, file_id: u32) -> Option<&TableInfo> {
        self.tables.iter().find(|t| t.file_id == file_id)
    }

    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for t in &self.tables {
            body.extend_from_slice(&t.file_id.to_le_bytes());
            let kind: u16 = match t.kind {
                TableKind::Hash => 1,
                TableKind::Ordered => 2,
            };
            body.extend_from_slice(&kind.to_le_bytes());
            body.extend_from_slice(&0u16.to_le_bytes());
            body.extend_from_slice(&t.buckets.to_le_bytes());
            body.extend_from_slice(&t.uid.to_le_bytes());
            body.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
            body.extend_from_slice(t.name.as_bytes());
        }
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.next_file_id.to_le_bytes());
        out.extend_from_slice(&(self.tables.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub(crate) fn decode(b: &[u8]) -> std::result::Result<Catalog, &'static str> {
        if b.len() < 24 || b[..8] != MAGIC {
            return Err("not a catalog");
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let version = u32_at(8);
        if ![VERSION, VERSION_2, VERSION_1].contains(&version) {
            return Err("unsupported version");
        }
        // Bytes of an entry before its name, and where its bucket count is.
        let (fixed, buckets_at) = match version {
            VERSION_1 => (10, 4),
            VERSION_2 => (18, 4),
            _ => (22, 8),
        };
        let body = &b[24..];
        if crc32c::crc32c_append(crc32c::crc32c(&b[..20]), body) != u32_at(20) {
            return Err("checksum mismatch");
        }
        let mut tables = Vec::new();
        let mut at = 0usize;
        for _ in 0..u32_at(16) {
            if at + fixed > body.len() {
                return Err("truncated entry");
            }
            let file_id = u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
            let buckets = u32::from_le_bytes(body[at + buckets_at..at + buckets_at + 4].try_into().expect("4 bytes"));
            let uid = match version {
                VERSION_1 => 0,
                _ => u64::from_le_bytes(
                    body[at + buckets_at + 4..at + buckets_at + 12]
                        .try_into()
                        .expect("8 bytes"),
                ),
            };
            let kind = match version {
                VERSION => match (u16::from_le_bytes([body[at + 4], body[at + 5]]), &body[at + 6..at + 8]) {
                    (1, [0, 0]) if buckets > 0 => TableKind::Hash,
                    (2, [0, 0]) if buckets == 0 => TableKind::Ordered,
                    _ => return Err("unknown table kind"),
                },
                _ => TableKind::Hash,
            };
            let len = u16::from_le_bytes([body[at + fixed - 2], body[at + fixed - 1]]) as usize;
            at += fixed;
            let name = body.get(at..at + len).ok_or("truncated name")?;
            let name = std::str::from_utf8(name).map_err(|_| "name is not UTF-8")?;
            tables.push(TableInfo {
                name: name.to_string(),
                file_id,
                kind,
                buckets,
                uid,
            });
            at += len;
        }
        if at != body.len() {
            return Err("bytes after the last entry");
        }
        Ok(Catalog {
            next_file_id: u32_at(12),
            tables,
        })
    }

    /// Reads the catalog. An absent file is an empty catalog only while no
    /// table file exists (a cluster made before the creation wrote one);
    /// otherwise it is [`Error::CorruptFile`].
    pub fn load(io: &Io, data_dir: &Path) -> Result<Catalog> {
        let path = catalog_path(data_dir);
        if !path.exists() {
            if let Some(orphan) = any_table_file(data_dir)? {
                return Err(Error::CorruptFile {
                    file: path,
                    detail: format!(
                        "missing, yet table file {} exists: the tables' catalog was lost",
                        orphan.display()
                    ),
                });
            }
            return Ok(Catalog::default());
        }
        let file = IoFile::open(&path, false, false)?;
        let len = file.len()?;
        if len > 64 << 20 {
            return Err(Error::CorruptFile {
                file: path,
                detail: "implausibly large".into(),
            });
        }
        let mut buf = vec![0u8; len as usize];
        io.read_exact_at(&file, &mut buf, 0)?;
        Catalog::decode(&buf).map_err(|d| Error::CorruptFile {
            file: path,
            detail: d.into(),
        })
    }

    /// Replaces the catalog durably.
    pub fn store(&self, io: &Io, data_dir: &Path) -> Result<()> {
        let tmp = data_dir.join("catalog.tmp");
        let file = IoFile::from_std(
            std::fs::File::create(&tmp).map_err(|e| IoError::new(OpKind::Open, &tmp, None, e))?,
            &tmp,
        );
        io.write_durable(&file, &self.encode(), 0)?;
        std::fs::rename(&tmp, catalog_path(data_dir)).map_err(|e| IoError::new(OpKind::Write, &tmp, None, e))?;
        io.sync_dir(data_dir)?;
        Ok(())
    }
}

/// A table file in `data_dir`, if there is any.
fn any_table_file(data_dir: &Path) -> Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IoError::new(OpKind::Read, data_dir, None, e).into()),
    };
    for entry in entries {
        let entry = entry.map_err(|e| IoError::new(OpKind::Read, data_dir, None, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("t-") && name.ends_with(".tbl") {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let c = Catalog {
            next_file_id: 9,
            tables: vec![
                TableInfo {
                    name: "accounts".into(),
                    file_id: 3,
                    kind: TableKind::Hash,
                    buckets: 64,
                    uid: 0x1234_5678_9abc_def0,
                },
                TableInfo {
                    name: "ünïcode".into(),
                    file_id: 8,
                    kind: TableKind::Ordered,
                    buckets: 0,
                    uid: 7,
                },
            ],
        };
        let b = c.encode();
        assert_eq!(Catalog::decode(&b).unwrap(), c);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x41;
            assert!(Catalog::decode(&d).is_err(), "byte {i}");
        }
        assert!(Catalog::decode(&b[..b.len() - 1]).is_err());
    }

    /// A version 1 catalog (no identities) is still read, its tables with
    /// identity 0.
    #[test]
    fn reads_version_1() {
        let mut body = Vec::new();
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(&64u32.to_le_bytes());
        body.extend_from_slice(&4u16.to_le_bytes());
        body.extend_from_slice(b"bank");
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&VERSION_1.to_le_bytes());
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b), &body);
        b.extend_from_slice(&crc.to_le_bytes());
        b.extend_from_slice(&body);
        let c = Catalog::decode(&b).unwrap();
        assert_eq!(c.next_file_id, 4);
        assert_eq!(
            c.tables,
            [TableInfo {
                name: "bank".into(),
                file_id: 3,
                kind: TableKind::Hash,
                buckets: 64,
                uid: 0
            }]
        );
    }
}
