//! Authentication by the cluster secret: challenge and response.
//!
//! The coordinator sends a fresh random 32-byte nonce; the node answers
//! HMAC-SHA256(secret, nonce ‖ node id as u32 little-endian). The secret
//! never crosses the wire, a recorded answer is useless for another nonce,
//! and binding the node id stops a proof made for one node from being used
//! for another. The comparison is constant-time (`verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::NodeId;

type HmacSha256 = Hmac<Sha256>;

/// The shared cluster secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a secret cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret file could not be read.
    #[error("cluster secret file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The secret is shorter than 16 bytes (its length, in bytes).
    #[error("the cluster secret must be at least 16 bytes, got {0}")]
    TooShort(usize),
}

impl Secret {
    /// The secret `bytes`, at least 16 of them.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Secret, SecretError> {
        let bytes = bytes.into();
        if bytes.len() < 16 {
            return Err(SecretError::TooShort(bytes.len()));
        }
        Ok(Secret(bytes))
    }

    /// Reads a secret file; surrounding whitespace is not part of it.
    pub fn from_file(path: &std::path::Path) -> Result<Secret, SecretError> {
        let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = bytes.trim_ascii();
        Secret::new(text.to_vec())
    }

    fn mac(&self, nonce: &[u8; 32], node: NodeId) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(nonce);
        mac.update(&node.to_le_bytes());
        mac
    }

    /// The node's answer to `nonce`.
    pub fn prove(&self, nonce: &[u8; 32], node: NodeId) -> [u8; 32] {
        self.mac(nonce, node).finalize().into_bytes().into()
    }

    /// Whether `proof` answers `nonce` for `node`.
    pub fn verify(&self, nonce: &[u8; 32], node: NodeId, proof: &[u8; 32]) -> bool {
        self.mac(nonce, node).verify_slice(proof).is_ok()
    }

    /// The key log-access proofs are signed and checked with
    /// ([`wal::access`]): the coordinator gives each admitted member its
    /// own log's proof and each counterpart the failed node's.
    pub fn log_key(&self) -> wal::AccessKey {
        wal::AccessKey::new(self.0.clone())
    }
}

/// A fresh nonce from the OS's randomness.
pub fn nonce() -> [u8; 32] {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_secret_nonce_and_node() {
        let s = Secret::new(b"0123456789abcdef".to_vec()).unwrap();
        let other = Secret::new(b"0123456789abcdeX".to_vec()).unwrap();
        let n = nonce();
        let p = s.prove(&n, 3);
        assert!(s.verify(&n, 3, &p));
        assert!(!s.verify(&n, 4, &p), "a proof for node 3 is not one for node 4");
        assert!(!s.verify(&nonce(), 3, &p), "a proof does not answer another nonce");
        assert!(!other.verify(&n, 3, &p), "another secret");
        assert!(matches!(Secret::new(b"short".to_vec()), Err(SecretError::TooShort(5))));
    }
}
