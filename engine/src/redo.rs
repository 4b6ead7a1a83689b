//! Redo for shipping: the after-images of every committed transaction's
//! pages, in commit order, for a standby site to apply (the `replication`
//! crate ships them). Local recovery never reads redo: FORCE at commit
//! means a committed transaction needs none here.
//!
//! A node writes redo only when [`crate::NodeOptions::redo`] is on, and
//! only in a cluster of one node: the commit order of a site is then the
//! node's own commit sequence number, assigned by its commit rounds (one
//! runs at a time, so sequence order is file order, and a transaction that
//! read or overwrote another's pages got its locks after that one's round
//! ended, so it comes later). Ordering the commits of several nodes needs a
//! clock carried in the lock value blocks, which the page stamps fill
//! today; that is not built.
//!
//! ## Where, and when it is durable
//! `<cluster>/redo/<node>/redo.log` ([`redo_path`]), append-only. A commit
//! round writes one record per transaction after the log holds the round's
//! intents and before any page ([`wal::io::Io::write_stages`]: log, then
//! redo, then pages, each synced before the next): a transaction is
//! committed only once its pages carry its stamp, so every committed
//! transaction — in particular every acknowledged one — is in the redo
//! file. The converse fails only for the last round of a node that crashed
//! or stopped: when the node opens again, its writer keeps of that round
//! exactly the transactions whose pages all carry their stamp (the rule
//! recovery decides by, `crate::recovery`), checked after its own restart
//! backed out the others, and cuts the rest off (`redo/writer`). Until the
//! round has ended the records are not reported committed
//! ([`Watermark`]), so nothing ships them.
//!
//! ## Record (integers little-endian)
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4 | magic `URDO` |
//! | 4  | 2 | version ([`VERSION`]) |
//! | 6  | 2 | zero |
//! | 8  | 4 | record length in bytes, header included |
//! | 12 | 4 | CRC32C of bytes 0..12 and of bytes 16.. |
//! | 16 | 8 | commit sequence number (from 1, no gaps) |
//! | 24 | 8 | commit round (records of one round share it) |
//! | 32 | 4 | node id |
//! | 36 | 4 | the node's log identity |
//! | 40 | 8 | the commit intent's LSN (with node and log: the pages' stamp) |
//! | 48 | 4 | page count, at most [`MAX_PAGES`] |
//! | 52 | 4 | page size (4096, 8192 or 16384) |
//! | 56 | … | per page: table file id (4), zero (4), page number (8), the sealed page image |
//!
//! The same bytes are the payload a standby receives and keeps.

mod writer;

use std::path::{Path, PathBuf};

pub use writer::{CommitGate, Watermark};
pub(crate) use writer::{PendingRound, RedoWriter};

/// The first four bytes of every record.
pub const MAGIC: [u8; 4] = *b"URDO";
/// The record format's version.
pub const VERSION: u16 = 1;
/// Bytes of a record's header.
pub const HEADER_LEN: usize = 56;
/// Bytes before each page image.
pub const ENTRY_HEADER_LEN: usize = 16;
/// Most pages one record carries: a transaction's pages are X-locked and
/// held in memory, far fewer in practice.
pub const MAX_PAGES: u32 = 1 << 16;

/// The redo file of node `node` of the cluster in `cluster_dir`.
pub fn redo_path(cluster_dir: &Path, node: u32) -> PathBuf {
    cluster_dir.join("redo").join(node.to_string()).join("redo.log")
}

/// One committed transaction's redo, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedoRecord {
    /// Its place in the site's commit order, from 1.
    pub seq: u64,
    /// The commit round that wrote it.
    pub round: u64,
    /// The node that committed it.
    pub node: u32,
    /// That node's log identity.
    pub log: u32,
    /// Its commit intent's LSN.
    pub intent_lsn: u64,
    /// Bytes per page.
    pub page_size: u32,
    /// Its pages: (table file id, page number, sealed after-image).
    pub pages: Vec<(u32, u64, Vec<u8>)>,
}

/// Why bytes are not a redo record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedoError {
    /// Fewer bytes than the record needs (a torn tail, or a read short).
    #[error("a redo record needs {need} bytes, {have} are there")]
    Short {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Not a redo record's magic.
    #[error("not a redo record (magic {found:02x?})")]
    Magic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A version this code does not read.
    #[error("redo record version {found}, this build reads {VERSION}")]
    Version {
        /// The version found.
        found: u16,
    },
    /// The length field disagrees with the page count and size, or a
    /// field is out of its bounds.
    #[error("malformed redo record: {0}")]
    Malformed(&'static str),
    /// The checksum does not match the bytes.
    #[error("redo record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum stored.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

fn checksum(record: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&record[..12]), &record[16..])
}

/// The length of the record whose header starts `bytes` (its first
/// [`HEADER_LEN`] bytes), checked against its bounds but not its checksum.
pub fn record_len(header: &[u8]) -> Result<usize, RedoError> {
    if header.len() < HEADER_LEN {
        return Err(RedoError::Short {
            need: HEADER_LEN,
            have: header.len(),
        });
    }
    let magic: [u8; 4] = header[..4].try_into().expect("4 bytes");
    if magic != MAGIC {
        return Err(RedoError::Magic { found: magic });
    }
    let version = u16_at(header, 4);
    if version != VERSION {
        return Err(RedoError::Version { found: version });
    }
    let len = u32_at(header, 8) as usize;
    let count = u32_at(header, 48);
    let page_size = u32_at(header, 52) as usize;
    if !crate::PAGE_SIZES.contains(&page_size) {
        return Err(RedoError::Malformed("page size is not one a cluster uses"));
    }
    if count > MAX_PAGES {
        return Err(RedoError::Malformed("too many pages"));
    }
    let want = HEADER_LEN + count as usize * (ENTRY_HEADER_LEN + page_size);
    if len != want {
        return Err(RedoError::Malformed("length disagrees with the page count and size"));
    }
    Ok(len)
}

/// Decodes the record at the start of `bytes`; returns it and its length.
/// Every field is checked before anything is allocated.
pub fn decode(bytes: &[u8]) -> Result<(RedoRecord, usize), RedoError> {
    let len = record_len(bytes)?;
    if bytes.len() < len {
        return Err(RedoError::Short {
            need: len,
            have: bytes.len(),
        });
    }
    let rec = &bytes[..len];
    let stored = u32_at(rec, 12);
    let computed = checksum(rec);
    if stored != computed {
        return Err(RedoError::Checksum { stored, computed });
    }
    let page_size = u32_at(rec, 52);
    let count = u32_at(rec, 48) as usize;
    let mut pages = Vec::with_capacity(count);
    let mut at = HEADER_LEN;
    for _ in 0..count {
        let file_id = u32_at(rec, at);
        let page_no = u64_at(rec, at + 8);
        at += ENTRY_HEADER_LEN;
        pages.push((file_id, page_no, rec[at..at + page_size as usize].to_vec()));
        at += page_size as usize;
    }
    let seq = u64_at(rec, 16);
    if seq == 0 {
        return Err(RedoError::Malformed("commit sequence number 0"));
    }
    Ok((
        RedoRecord {
            seq,
            round: u64_at(rec, 24),
            node: u32_at(rec, 32),
            log: u32_at(rec, 36),
            intent_lsn: u64_at(rec, 40),
            page_size,
            pages,
        },
        len,
    ))
}

impl RedoRecord {
    /// The record's bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.pages.len() * (ENTRY_HEADER_LEN + self.page_size as usize));
        self.encode_into(&mut out);
        out
    }

    /// Appends the record's bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        assert!(
            self.pages.iter().all(|p| p.2.len() == self.page_size as usize),
            "every page image of a redo record has the record's page size"
        );
        assert!(
            self.pages.len() <= MAX_PAGES as usize,
            "a redo record carries at most MAX_PAGES pages"
        );
        let start = out.len();
        let len = HEADER_LEN + self.pages.len() * (ENTRY_HEADER_LEN + self.page_size as usize);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.round.to_le_bytes());
        out.extend_from_slice(&self.node.to_le_bytes());
        out.extend_from_slice(&self.log.to_le_bytes());
        out.extend_from_slice(&self.intent_lsn.to_le_bytes());
        out.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.page_size.to_le_bytes());
        for (file_id, page_no, image) in &self.pages {
            out.extend_from_slice(&file_id.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&page_no.to_le_bytes());
            out.extend_from_slice(image);
        }
        let crc = checksum(&out[start..]);
        out[start + 12..start + 16].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Reads a redo file record by record from the start, through the I/O
/// layer; stops at the first record that is incomplete or damaged (a
/// torn tail, the offset where writing resumes).
pub struct RedoReader {
    io: wal::io::Io,
    file: wal::io::IoFile,
    offset: u64,
    len: u64,
}

impl RedoReader {
    /// Opens `path` for reading from byte `offset` (a record's start).
    pub fn open(io: wal::io::Io, path: &Path, offset: u64) -> Result<RedoReader, wal::io::IoError> {
        let file = wal::io::IoFile::open(path, false, false)?;
        let len = file.len()?;
        Ok(RedoReader { io, file, offset, len })
    }

    /// The offset of the next record to read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Moves to the record numbered `seq`, reading headers only; `false`
    /// if the file ends (or its tail is torn) before it. The records
    /// skipped are numbered one after the other, so `seq` is where a record
    /// numbered below it says.
    pub fn skip_to(&mut self, seq: u64) -> Result<bool, wal::io::IoError> {
        let mut header = [0u8; HEADER_LEN];
        loop {
            if self.offset + HEADER_LEN as u64 > self.len {
                self.len = self.file.len()?;
                if self.offset + HEADER_LEN as u64 > self.len {
                    return Ok(false);
                }
            }
            self.io.read_exact_at(&self.file, &mut header, self.offset)?;
            let Ok(len) = record_len(&header) else {
                return Ok(false);
            };
            if u64_at(&header, 16) >= seq {
                return Ok(true);
            }
            self.offset += len as u64;
        }
    }

    /// The next record and its bytes, or `None` where the file ends (or
    /// its tail is torn: `Err` only for I/O). The file's length is asked
    /// again when the last known length is reached, so a reader follows a
    /// file being appended to.
    pub fn next_raw(&mut self) -> Result<Option<(RedoRecord, Vec<u8>)>, wal::io::IoError> {
        if self.offset + HEADER_LEN as u64 > self.len {
            self.len = self.file.len()?;
            if self.offset + HEADER_LEN as u64 > self.len {
                return Ok(None);
            }
        }
        let mut header = vec![0u8; HEADER_LEN];
        self.io.read_exact_at(&self.file, &mut header, self.offset)?;
        let Ok(len) = record_len(&header) else {
            return Ok(None);
        };
        if self.offset + len as u64 > self.len {
            self.len = self.file.len()?;
            if self.offset + len as u64 > self.len {
                return Ok(None);
            }
        }
        let mut bytes = header;
        bytes.resize(len, 0);
        self.io
            .read_exact_at(&self.file, &mut bytes[HEADER_LEN..], self.offset + HEADER_LEN as u64)?;
        match decode(&bytes) {
            Ok((rec, _)) => {
                self.offset += len as u64;
                Ok(Some((rec, bytes)))
            }
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, pages: usize) -> RedoRecord {
        RedoRecord {
            seq,
            round: 7,
            node: 1,
            log: 9,
            intent_lsn: 4242,
            page_size: 4096,
            pages: (0..pages).map(|i| (2, i as u64, vec![i as u8; 4096])).collect(),
        }
    }

    #[test]
    fn a_record_decodes_to_what_was_encoded() {
        let r = record(3, 2);
        let bytes = r.encode();
        assert_eq!(decode(&bytes).unwrap(), (r, bytes.len()));
    }

    #[test]
    fn every_flipped_bit_and_every_cut_is_refused() {
        let bytes = record(1, 1).encode();
        for i in (0..bytes.len()).step_by(97) {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "a flip at {i} went unnoticed");
        }
        for cut in [0, 10, HEADER_LEN, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "a cut at {cut} went unnoticed");
        }
    }
}
