//! The catalog: which tables exist, by name.
//!
//! `data/catalog` is rewritten whole on every change (under a temporary name,
//! synced, renamed, directory synced), while the writer holds the catalog
//! lock (resource `(0, 0)` in X mode) at the coordinator, so nodes never
//! race on it.
//!
//! ## Format (version 1, little-endian)
//! magic `UNDSTCAT` (8), version u32, next file id u32, table count u32,
//! CRC32C u32 of the 20 bytes before it and of everything after it; then per table: file id u32, bucket
//! count u32, name length u16, name (UTF-8, at most [`MAX_NAME`] bytes).

use std::path::{Path, PathBuf};

use wal::io::{Io, IoError, IoFile, OpKind};

use crate::error::{Error, Result};

pub const MAX_NAME: usize = 200;
const MAGIC: [u8; 8] = *b"UNDSTCAT";
const VERSION: u32 = 1;

/// One table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub file_id: u32,
    pub buckets: u32,
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

    fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for t in &self.tables {
            body.extend_from_slice(&t.file_id.to_le_bytes());
            body.extend_from_slice(&t.buckets.to_le_bytes());
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

    fn decode(b: &[u8]) -> std::result::Result<Catalog, &'static str> {
        if b.len() < 24 || b[..8] != MAGIC {
            return Err("not a catalog");
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        if u32_at(8) != VERSION {
            return Err("unsupported version");
        }
        let body = &b[24..];
        if crc32c::crc32c_append(crc32c::crc32c(&b[..20]), body) != u32_at(20) {
            return Err("checksum mismatch");
        }
        let mut tables = Vec::new();
        let mut at = 0usize;
        for _ in 0..u32_at(16) {
            if at + 10 > body.len() {
                return Err("truncated entry");
            }
            let file_id = u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
            let buckets = u32::from_le_bytes(body[at + 4..at + 8].try_into().expect("4 bytes"));
            let len = u16::from_le_bytes([body[at + 8], body[at + 9]]) as usize;
            at += 10;
            let name = body.get(at..at + len).ok_or("truncated name")?;
            let name = std::str::from_utf8(name).map_err(|_| "name is not UTF-8")?;
            tables.push(TableInfo {
                name: name.to_string(),
                file_id,
                buckets,
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

    /// Reads the catalog; an absent file is an empty catalog.
    pub fn load(io: &Io, data_dir: &Path) -> Result<Catalog> {
        let path = catalog_path(data_dir);
        if !path.exists() {
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
                    buckets: 64,
                },
                TableInfo {
                    name: "ünïcode".into(),
                    file_id: 8,
                    buckets: 1,
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
}
