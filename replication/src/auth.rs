//! Mutual challenge and response with the replication secret, and the
//! database identity both sides must share.
//!
//! Each side proves itself over the other's fresh 32-byte nonce:
//! HMAC-SHA256(secret, "understudy-replication" ‖ role ‖ nonce ‖ database),
//! the role `P` for the primary and `S` for a standby, so a proof one side
//! made is never one the other can replay, nor one for another database.
//! The secret never crosses the wire; the comparison is constant-time.
//! The replication secret is its own file, apart from each site's cluster
//! secret: sites of one group share it and nothing else.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{ReplicationError, Result};

type HmacSha256 = Hmac<Sha256>;

/// Which side proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The primary site.
    Primary,
    /// A standby site.
    Standby,
}

/// The replication group's shared secret (at least 16 bytes).
#[derive(Clone)]
pub struct ReplicationSecret(Vec<u8>);

impl std::fmt::Debug for ReplicationSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicationSecret(..)")
    }
}

impl ReplicationSecret {
    /// The secret `bytes`; refused if shorter than 16 bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<ReplicationSecret> {
        let bytes = bytes.into();
        if bytes.len() < 16 {
            return Err(ReplicationError::Secret {
                path: PathBuf::new(),
                detail: format!("at least 16 bytes, got {}", bytes.len()),
            });
        }
        Ok(ReplicationSecret(bytes))
    }

    /// Reads a secret file; surrounding whitespace is not part of it.
    pub fn from_file(path: &Path) -> Result<ReplicationSecret> {
        let bad = |detail: String| ReplicationError::Secret {
            path: path.to_path_buf(),
            detail,
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let text = bytes.trim_ascii();
        if text.len() < 16 {
            return Err(bad(format!("at least 16 bytes, got {}", text.len())));
        }
        Ok(ReplicationSecret(text.to_vec()))
    }

    fn mac(&self, role: Role, nonce: &[u8; 32], database: &[u8; 16]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"understudy-replication");
        mac.update(match role {
            Role::Primary => b"P",
            Role::Standby => b"S",
        });
        mac.update(nonce);
        mac.update(database);
        mac
    }

    /// `role`'s proof over `nonce` for `database`.
    pub fn prove(&self, role: Role, nonce: &[u8; 32], database: &[u8; 16]) -> [u8; 32] {
        self.mac(role, nonce, database).finalize().into_bytes().into()
    }

    /// Whether `proof` is `role`'s over `nonce` for `database`.
    pub fn verify(&self, role: Role, nonce: &[u8; 32], database: &[u8; 16], proof: &[u8; 32]) -> bool {
        self.mac(role, nonce, database).verify_slice(proof).is_ok()
    }
}

/// A fresh nonce.
pub fn nonce() -> [u8; 32] {
    rand::random()
}

/// The file holding a site's database identity: `<cluster>/replication/database-id`,
/// 32 hex digits. The primary creates it; a standby's copy carries the
/// primary's.
pub fn database_id_path(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("replication").join("database-id")
}

/// Reads the database identity of the site in `cluster_dir`.
pub fn read_database_id(cluster_dir: &Path) -> Result<[u8; 16]> {
    let path = database_id_path(cluster_dir);
    let text = std::fs::read_to_string(&path).map_err(|e| ReplicationError::Corrupt {
        file: path.clone(),
        detail: format!("cannot read the database identity: {e} (is this a replicated site?)"),
    })?;
    parse_id(text.trim()).ok_or_else(|| ReplicationError::Corrupt {
        file: path,
        detail: "not 32 hexadecimal digits".into(),
    })
}

fn parse_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// The identity as the file holds it.
pub fn id_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `id` as the database identity of `cluster_dir`, durably.
pub fn write_database_id(cluster_dir: &Path, id: &[u8; 16]) -> Result<()> {
    let path = database_id_path(cluster_dir);
    crate::durable::write_durably(&path, format!("{}\n", id_hex(id)).as_bytes())
}

/// The database identity of `cluster_dir`, created (random) if it has none.
pub fn database_id_or_create(cluster_dir: &Path) -> Result<[u8; 16]> {
    if database_id_path(cluster_dir).exists() {
        return read_database_id(cluster_dir);
    }
    let id: [u8; 16] = rand::random();
    write_database_id(cluster_dir, &id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_secret_role_nonce_and_database() {
        let s = ReplicationSecret::new(b"0123456789abcdef".to_vec()).unwrap();
        let other = ReplicationSecret::new(b"0123456789abcdeX".to_vec()).unwrap();
        let p = s.prove(Role::Standby, &[1; 32], &[2; 16]);
        assert!(s.verify(Role::Standby, &[1; 32], &[2; 16], &p));
        assert!(!other.verify(Role::Standby, &[1; 32], &[2; 16], &p));
        assert!(!s.verify(Role::Primary, &[1; 32], &[2; 16], &p));
        assert!(!s.verify(Role::Standby, &[9; 32], &[2; 16], &p));
        assert!(!s.verify(Role::Standby, &[1; 32], &[3; 16], &p));
        assert!(ReplicationSecret::new(b"short".to_vec()).is_err());
    }

    #[test]
    fn identities_round_trip_through_hex() {
        let id = [0xab; 16];
        assert_eq!(parse_id(&id_hex(&id)), Some(id));
        assert_eq!(parse_id("xyz"), None);
    }
}
