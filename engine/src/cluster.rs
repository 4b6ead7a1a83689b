//! The cluster directory: the shared disk every node of a cluster opens.
//!
//! ```text
//! <cluster>/cluster.conf   node ids, coordinator address, page size, secret file
//! <cluster>/secret         the cluster secret (created with the cluster, mode 0600)
//! <cluster>/data/          the catalog and the table files
//! <cluster>/logs/<node>/   each node's private write-ahead log
//! <cluster>/coordinator/   the coordinator's durable record
//! ```
//!
//! `cluster.conf` is `key = value` lines (`#` starts a comment):
//! `nodes = 1,2,3`, `coordinator = unix:/path/to.sock` (a relative path is
//! relative to the cluster directory; or `tcp:HOST:PORT`;
//! several, comma-separated, where standby coordinators on other hosts
//! listen elsewhere: nodes go to the first, and follow a takeover to the
//! others),
//! `page_size = 4096`, `secret_file = secret` (relative to the directory).
//!
//! The directories a cluster creates (`data/`, `logs/`, `coordinator/`, and
//! the cluster directory itself when it did not exist) are mode 0700, so
//! only the cluster's owner reads them.

use std::path::{Path, PathBuf};

use lockmgr::{Endpoint, Secret};

use crate::error::{Error, Result};

/// Page sizes a cluster may use.
pub const PAGE_SIZES: [usize; 3] = [4096, 8192, 16384];

/// A parsed cluster configuration.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The cluster directory.
    pub dir: PathBuf,
    /// The ids of the nodes that may join.
    pub nodes: Vec<u32>,
    /// Where the coordinator listens.
    pub coordinator: Endpoint,
    /// Where else a coordinator of the cluster may listen (standbys on
    /// other hosts, elected on etcd): `coordinator = A, B, ...` in
    /// `cluster.conf` lists them after the first. A node rejoining after its
    /// coordinator's end tries each in turn.
    pub also: Vec<Endpoint>,
    /// Bytes per page of every table file.
    pub page_size: usize,
    /// The file holding the secret nodes authenticate with.
    pub secret_file: PathBuf,
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("cluster.conf")
}

fn bad(dir: &Path, detail: impl Into<String>) -> Error {
    Error::CorruptFile {
        file: config_path(dir),
        detail: detail.into(),
    }
}

impl Cluster {
    /// Creates a cluster directory: config, a fresh random secret, `data/`,
    /// `logs/`, `coordinator/`. Refuses a directory that already holds one.
    pub fn create(dir: &Path, nodes: &[u32], coordinator: Endpoint, page_size: usize) -> Result<Cluster> {
        let distinct: std::collections::BTreeSet<u32> = nodes.iter().copied().collect();
        if nodes.is_empty() || nodes.contains(&0) || distinct.len() != nodes.len() {
            return Err(Error::InvalidNodeIds { ids: nodes.to_vec() });
        }
        if !PAGE_SIZES.contains(&page_size) {
            return Err(Error::UnsupportedPageSize {
                page_size,
                supported: &PAGE_SIZES,
            });
        }
        if config_path(dir).exists() {
            return Err(Error::ClusterExists { dir: dir.to_path_buf() });
        }
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io_err = |p: &Path, e| wal::io::IoError::new(wal::io::OpKind::Write, p, None, e);
        // Only the cluster's owner reads its data, logs and secret: every
        // directory created here is 0700, the secret 0600.
        for sub in ["data", "logs", "coordinator"] {
            let p = dir.join(sub);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(|e| io_err(&p, e))?;
        }
        let secret: [u8; 32] = rand::random();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let secret_path = dir.join("secret");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret_path)
            .and_then(|mut f| f.write_all(hex.as_bytes()))
            .map_err(|e| io_err(&secret_path, e))?;
        let ids: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        let text = format!(
            "# Understudy cluster\nnodes = {}\ncoordinator = {coordinator}\npage_size = {page_size}\nsecret_file = secret\n",
            ids.join(",")
        );
        std::fs::write(config_path(dir), text).map_err(|e| io_err(&config_path(dir), e))?;
        // An empty catalog from the start: a catalog missing later, once
        // tables exist, is then told apart from one never written.
        crate::catalog::Catalog::default().store(&wal::io::Io::fallback(), &dir.join("data"))?;
        Cluster::open(dir)
    }

    /// Reads `cluster.conf`.
    pub fn open(dir: &Path) -> Result<Cluster> {
        let path = config_path(dir);
        let text =
            std::fs::read_to_string(&path).map_err(|e| wal::io::IoError::new(wal::io::OpKind::Read, &path, None, e))?;
        let (mut nodes, mut coordinator, mut page_size, mut secret_file) = (None, None, 4096, None);
        let mut also = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad(dir, format!("line {}: expected key = value", i + 1)))?;
            let v = v.trim();
            match k.trim() {
                "nodes" => {
                    let ids: std::result::Result<Vec<u32>, _> = v.split(',').map(|s| s.trim().parse()).collect();
                    nodes = Some(ids.map_err(|e| bad(dir, format!("nodes: {e}")))?);
                }
                "coordinator" => {
                    // A relative socket path is the directory's: it moves
                    // with it.
                    let mut eps = v.split(',').map(|ep| match ep.trim().parse::<Endpoint>() {
                        Ok(Endpoint::Unix(p)) if p.is_relative() => Ok(Endpoint::Unix(dir.join(p))),
                        Ok(ep) => Ok(ep),
                        Err(e) => Err(bad(dir, e)),
                    });
                    coordinator = eps.next().transpose()?;
                    also = eps.collect::<Result<Vec<_>>>()?;
                }
                "page_size" => page_size = v.parse().map_err(|e| bad(dir, format!("page_size: {e}")))?,
                "secret_file" => secret_file = Some(dir.join(v)),
                other => return Err(bad(dir, format!("unknown key {other:?}"))),
            }
        }
        if !PAGE_SIZES.contains(&page_size) {
            return Err(bad(dir, format!("page_size must be one of {PAGE_SIZES:?}")));
        }
        Ok(Cluster {
            dir: dir.to_path_buf(),
            nodes: nodes.ok_or_else(|| bad(dir, "missing nodes"))?,
            coordinator: coordinator.ok_or_else(|| bad(dir, "missing coordinator"))?,
            also,
            page_size,
            secret_file: secret_file.ok_or_else(|| bad(dir, "missing secret_file"))?,
        })
    }

    /// Reads the cluster secret.
    pub fn secret(&self) -> Result<Secret> {
        Secret::from_file(&self.secret_file).map_err(|e| Error::CorruptFile {
            file: self.secret_file.clone(),
            detail: e.to_string(),
        })
    }

    /// `data/`: the catalog and the table files.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `logs/<node>/`: node `node`'s private log.
    pub fn log_dir(&self, node: u32) -> PathBuf {
        self.dir.join("logs").join(node.to_string())
    }

    /// `coordinator/`: the coordinator's durable record.
    pub fn coordinator_dir(&self) -> PathBuf {
        self.dir.join("coordinator")
    }
}
