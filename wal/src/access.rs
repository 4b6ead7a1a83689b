//! Who may open a log for writing: the node it belongs to, admitted by
//! the coordinator, or the counterpart the coordinator registered to
//! recover it — and nobody else.
//!
//! The coordinator signs its word with the cluster's key: an
//! [`AccessProof`] is HMAC-SHA256(key, `UQLOGACC` ‖ log's node ‖ role ‖
//! holder ‖ incarnation ‖ token), integers little-endian. A writer opens a
//! log with a [`LogAccess`] (`LogConfig::access`); the open checks it under
//! the directory lock, before it reads a record:
//! - the key must be the log's: the first owner's open recorded the key's
//!   fingerprint (HMAC-SHA256(key, `UQLOGKEY`)) in the directory's `ACCESS`
//!   file, so a proof signed with a key of one's own opens nothing;
//! - the proof must check with the key, for this log's node;
//! - an owner's proof must name the node itself as holder, a counterpart's
//!   another node;
//! - its incarnation must be no older than the log's last owner's (kept in
//!   the directory's `ACCESS` file): a proof from a life of the node that a
//!   later one replaced opens nothing.
//!
//! An owner's open records its incarnation and the key's fingerprint in
//! `ACCESS` (written whole under a temporary name, synced, renamed, the
//! directory synced: on the node's own open, never on a recovery's path). A
//! log whose directory holds `ACCESS` is a cluster's log: an open without a
//! [`LogAccess`] is refused, so no tool reaches it around the coordinator.
//! Logs that never had one (a standalone log, the tests of this crate) open
//! without; a counterpart's proof for such a log is checked against the key
//! it comes with only.
//!
//! What this guards against is a process without the coordinator's word —
//! a stray tool, a second would-be counterpart, an old incarnation — not a
//! process that holds the key: whoever can read the cluster secret can
//! sign, as it can join the cluster. A live node's log is guarded besides
//! by its directory lock (see [`crate::writer`]): a second writer is
//! [`WalError::Locked`] whatever its proof. Reading ([`crate::LogReader`])
//! takes neither: it changes nothing.
//!
//! This file owns the proof's format, its check and the `ACCESS` file. It
//! must never let a writer in on a proof it did not check.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Result, WalError};
use crate::io::{Io, IoError, IoFile, OpKind};

type HmacSha256 = Hmac<Sha256>;

const DOMAIN: &[u8; 8] = b"UQLOGACC";
const KEY_DOMAIN: &[u8; 8] = b"UQLOGKEY";
const ACCESS_FILE: &str = "ACCESS";
/// `ACCESS`: magic `UQAC` (4), version u32 (1), owner incarnation u64, the
/// key's fingerprint (32), CRC32C of bytes 0..48 u32; 52 bytes.
const ACCESS_MAGIC: [u8; 4] = *b"UQAC";
const ACCESS_VERSION: u32 = 1;
const ACCESS_LEN: usize = 52;

/// The key proofs are signed and checked with (the cluster's secret).
#[derive(Clone)]
pub struct AccessKey(Vec<u8>);

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessKey(..)")
    }
}

/// Whose right a proof gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// The node the log belongs to, in one incarnation.
    Owner = 1,
    /// The counterpart registered to recover the node's failed incarnation.
    Counterpart = 2,
}

/// The coordinator's word that `holder` may open node's log as `role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessProof {
    /// Whose right it is.
    pub role: Role,
    /// The node that opens the log: the log's node for an owner, the
    /// counterpart for a recovery.
    pub holder: u32,
    /// The log's node's incarnation: the one admitted (owner) or the one
    /// that failed (counterpart).
    pub incarnation: u64,
    /// The counterpart's grant token; 0 for an owner.
    pub token: u64,
    /// The signature.
    pub mac: [u8; 32],
}

/// What a writer shows to open a log: the key and its proof.
#[derive(Clone, Debug)]
pub struct LogAccess {
    /// The key the proof is checked with.
    pub key: AccessKey,
    /// The coordinator's word.
    pub proof: AccessProof,
}

impl AccessKey {
    /// The key `bytes` (the cluster secret's bytes).
    pub fn new(bytes: impl Into<Vec<u8>>) -> AccessKey {
        AccessKey(bytes.into())
    }

    fn mac(&self, node: u32, role: Role, holder: u32, incarnation: u64, token: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(DOMAIN);
        mac.update(&node.to_le_bytes());
        mac.update(&[role as u8]);
        mac.update(&holder.to_le_bytes());
        mac.update(&incarnation.to_le_bytes());
        mac.update(&token.to_le_bytes());
        mac
    }

    /// Signs `holder`'s right to open `node`'s log as `role` (what the
    /// coordinator does on admission and on registration).
    pub fn sign(&self, node: u32, role: Role, holder: u32, incarnation: u64, token: u64) -> AccessProof {
        AccessProof {
            role,
            holder,
            incarnation,
            token,
            mac: self
                .mac(node, role, holder, incarnation, token)
                .finalize()
                .into_bytes()
                .into(),
        }
    }

    /// The key's fingerprint, as a log records it: telling keys apart
    /// without keeping one.
    fn fingerprint(&self) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(KEY_DOMAIN);
        mac.finalize().into_bytes().into()
    }

    /// Whether `proof` is this key's word about `node`'s log.
    pub fn verify(&self, node: u32, proof: &AccessProof) -> bool {
        self.mac(node, proof.role, proof.holder, proof.incarnation, proof.token)
            .verify_slice(&proof.mac)
            .is_ok()
    }
}

fn access_path(dir: &Path) -> PathBuf {
    dir.join(ACCESS_FILE)
}

/// The log's last owner's incarnation and its key's fingerprint, if the
/// directory is a cluster's log.
fn last_owner(dir: &Path) -> Result<Option<(u64, [u8; 32])>> {
    let path = access_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IoError::new(OpKind::Read, &path, None, e).into()),
    };
    let bad = |reason: &str| WalError::AccessDenied {
        dir: dir.to_path_buf(),
        reason: format!("its ACCESS file is damaged ({reason})"),
    };
    if bytes.len() != ACCESS_LEN || bytes[..4] != ACCESS_MAGIC {
        return Err(bad("length or magic"));
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    if u32_at(4) != ACCESS_VERSION {
        return Err(bad("version"));
    }
    if crc32c::crc32c(&bytes[..48]) != u32_at(48) {
        return Err(bad("checksum"));
    }
    let incarnation = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    Ok(Some((incarnation, bytes[16..48].try_into().expect("32 bytes"))))
}

/// Records `incarnation` as the log's last owner, and `key` as its key,
/// durably.
fn record_owner(io: &Io, dir: &Path, incarnation: u64, key: &AccessKey) -> Result<()> {
    let mut bytes = Vec::with_capacity(ACCESS_LEN);
    bytes.extend_from_slice(&ACCESS_MAGIC);
    bytes.extend_from_slice(&ACCESS_VERSION.to_le_bytes());
    bytes.extend_from_slice(&incarnation.to_le_bytes());
    bytes.extend_from_slice(&key.fingerprint());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("ACCESS.tmp");
    let file = IoFile::open(&tmp, true, true)?;
    io.write_durable(&file, &bytes, 0)?;
    drop(file);
    std::fs::rename(&tmp, access_path(dir)).map_err(|e| IoError::new(OpKind::Write, &tmp, None, e))?;
    io.sync_dir(dir)?;
    Ok(())
}

/// Checks a writer's right to open `node`'s log in `dir` (the directory
/// lock held), and records an owner's incarnation (see the module docs).
pub(crate) fn admit(io: &Io, dir: &Path, node: u32, access: Option<&LogAccess>) -> Result<()> {
    let deny = |reason: String| {
        Err(WalError::AccessDenied {
            dir: dir.to_path_buf(),
            reason,
        })
    };
    let last = last_owner(dir)?;
    let Some(LogAccess { key, proof }) = access else {
        return match last {
            None => Ok(()),
            Some(_) => deny("it is a cluster's log, opened only with the coordinator's word".into()),
        };
    };
    if last.is_some_and(|(_, print)| print != key.fingerprint()) {
        return deny("the proof comes with a key that is not this log's".into());
    }
    if !key.verify(node, proof) {
        return deny(format!("the proof does not check for node {node}'s log"));
    }
    match proof.role {
        Role::Owner if proof.holder != node => {
            return deny(format!("an owner's proof names node {}", proof.holder));
        }
        Role::Counterpart if proof.holder == node => {
            return deny("a node does not recover itself as its counterpart".into());
        }
        _ => {}
    }
    if let Some((last, _)) = last.filter(|&(l, _)| proof.incarnation < l) {
        return deny(format!(
            "the proof is for incarnation {} and the log's last owner was incarnation {last}",
            proof.incarnation
        ));
    }
    if proof.role == Role::Owner && last.map(|(l, _)| l) != Some(proof.incarnation) {
        record_owner(io, dir, proof.incarnation, key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_key_node_role_holder_and_incarnation() {
        let key = AccessKey::new(b"0123456789abcdef".to_vec());
        let p = key.sign(3, Role::Counterpart, 2, 7, 11);
        assert!(key.verify(3, &p));
        assert!(!key.verify(4, &p), "another node's log");
        assert!(!AccessKey::new(b"another key 0123".to_vec()).verify(3, &p));
        for forged in [
            AccessProof { role: Role::Owner, ..p },
            AccessProof { holder: 1, ..p },
            AccessProof { incarnation: 8, ..p },
            AccessProof { token: 12, ..p },
        ] {
            assert!(!key.verify(3, &forged), "{forged:?}");
        }
    }

    #[test]
    fn a_cluster_log_admits_only_a_checked_proof_of_a_current_life() {
        let dir = tempfile::tempdir().unwrap();
        let (d, io) = (dir.path(), Io::fallback());
        let key = AccessKey::new(b"0123456789abcdef".to_vec());
        let access = |proof| LogAccess {
            key: key.clone(),
            proof,
        };
        // A standalone log opens without; the owner's first open makes it a
        // cluster's log.
        admit(&io, d, 3, None).unwrap();
        admit(&io, d, 3, Some(&access(key.sign(3, Role::Owner, 3, 5, 0)))).unwrap();
        assert_eq!(last_owner(d).unwrap(), Some((5, key.fingerprint())));
        let denied = |r: Result<()>| matches!(r, Err(WalError::AccessDenied { .. }));
        assert!(denied(admit(&io, d, 3, None)), "no proof");
        let wrong_key = AccessKey::new(b"fedcba9876543210".to_vec());
        let forged = LogAccess {
            key: wrong_key.clone(),
            proof: wrong_key.sign(3, Role::Counterpart, 2, 5, 1),
        };
        assert!(denied(admit(&io, d, 3, Some(&forged))), "signed with a key of its own");
        assert!(
            denied(admit(&io, d, 3, Some(&access(forged.proof)))),
            "signed with another key"
        );
        assert!(denied(admit(
            &io,
            d,
            3,
            Some(&access(key.sign(3, Role::Owner, 2, 5, 0)))
        )));
        assert!(denied(admit(
            &io,
            d,
            3,
            Some(&access(key.sign(3, Role::Counterpart, 3, 5, 1)))
        )));
        assert!(
            denied(admit(&io, d, 3, Some(&access(key.sign(3, Role::Counterpart, 2, 4, 1))))),
            "a grant for an older life"
        );
        admit(&io, d, 3, Some(&access(key.sign(3, Role::Counterpart, 2, 5, 1)))).unwrap();
        admit(&io, d, 3, Some(&access(key.sign(3, Role::Owner, 3, 6, 0)))).unwrap();
        assert!(denied(admit(
            &io,
            d,
            3,
            Some(&access(key.sign(3, Role::Owner, 3, 5, 0)))
        )));
        std::fs::write(access_path(d), b"damaged").unwrap();
        assert!(denied(admit(&io, d, 3, None)));
    }
}
