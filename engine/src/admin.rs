//! Tools for operators, tests and benchmarks: what the `understudy` program
//! and the test suites need beyond the embedding API.
//!
//! Nothing here is needed to embed the engine. These pieces expose how the
//! engine lays out its files and talks to its coordinator, so a program that
//! uses them is tied to this version's internals.

pub use crate::btree::check::TreeSummary;
pub use crate::datafile::table_path;
pub use crate::fence::mark_host;
pub use crate::recovery::{find_in_flight, InFlight, InFlightTxn, Intent};
pub use crate::table::bucket_page;
pub use crate::timeline::monotonic_ns;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::page::{Kind, Page};

/// The node's client of the lock manager: its raw lock requests, the
/// coordinator's member list (`status`), the locks a failed node retains
/// (`retained`). Every lock a node's transactions hold was taken through
/// it; a request made here is outside any transaction's bookkeeping.
pub fn lock_client(node: &Node) -> LockClient {
    LockClient(node.inner())
}

/// The lock manager client of a node's current incarnation
/// ([`lock_client`]); derefs to [`lockmgr::Client`].
pub struct LockClient(std::sync::Arc<crate::node::state::NodeState>);

impl std::ops::Deref for LockClient {
    type Target = lockmgr::Client;

    fn deref(&self) -> &lockmgr::Client {
        &self.0.client
    }
}

/// What [`check_table_file`] found in a whole table file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableFileSummary {
    /// Pages in the file.
    pub pages: u64,
    /// Of those, pages never written.
    pub unwritten: u64,
    /// Rows (key and value pairs) on the pages.
    pub rows: u64,
}

/// Reads `image` as the whole of table file `file_id` with pages of
/// `page_size` bytes, checking every page and the table header as a node
/// would before trusting them: the first page or table header that is
/// wrong is the error. For operators verifying a copy of a data file, and
/// for the fuzz target over whole data files.
pub fn check_table_file(image: &[u8], page_size: usize, file_id: u32) -> Result<TableFileSummary> {
    let path = std::path::Path::new("<image>");
    if !crate::cluster::PAGE_SIZES.contains(&page_size) {
        return Err(Error::UnsupportedPageSize {
            page_size,
            supported: &crate::cluster::PAGE_SIZES,
        });
    }
    let corrupt = |page: u64, detail: &str| Error::CorruptPage {
        file: path.to_path_buf(),
        page,
        detail: detail.into(),
    };
    let mut summary = TableFileSummary::default();
    for (no, bytes) in image.chunks(page_size).enumerate() {
        let no = no as u64;
        // A tail shorter than a page reads as the page with zeros after it.
        let mut buf = bytes.to_vec();
        buf.resize(page_size, 0);
        let page = Page::from_disk(buf, path, file_id, no)?;
        summary.pages += 1;
        match page.kind() {
            Kind::Unwritten => summary.unwritten += 1,
            Kind::TableHeader => {
                // A hash table's header, or an ordered table's.
                crate::table::Header::read(&page)
                    .map(drop)
                    .or_else(|_| crate::meta::Meta::read(&page).map(drop))
                    .map_err(|d| corrupt(no, d))?;
            }
            Kind::Bucket | Kind::Overflow => summary.rows += page.items().count() as u64,
            Kind::Leaf | Kind::Branch => {
                let node = crate::btree::node::Node::parse(page.bytes()).map_err(|d| corrupt(no, d))?;
                if node.is_leaf() {
                    summary.rows += node.count() as u64;
                }
            }
            // Checked whole by their checksum; their lists are checked
            // where they are read.
            Kind::ValueDir | Kind::ValueData | Kind::FreeTrunk => {}
        }
    }
    Ok(summary)
}

/// Checks every invariant of ordered table `table` (see
/// [`TreeSummary`]), in a transaction of its own that reads the whole tree
/// under S locks, large values included when `values`; the first thing
/// wrong is the error.
pub fn check_ordered_table(node: &Node, table: &str, values: bool) -> Result<TreeSummary> {
    let mut txn = node.begin()?;
    let summary = txn.check_tree(table, values);
    txn.rollback()?;
    summary
}

/// Decodes `image` as one B+tree node page (the fuzz target's way into the
/// decoder): its item count, or what is wrong with it.
pub fn decode_node(image: &[u8]) -> std::result::Result<usize, &'static str> {
    let node = crate::btree::node::Node::parse(image)?;
    // Every accessor of a decoded node stays in bounds.
    for i in 0..node.count() {
        let _ = (node.key(i), node.item(i));
        if node.is_leaf() {
            let _ = node.value(i);
        } else {
            let _ = node.child(i + 1);
        }
    }
    let _ = (node.search(b"m"), node.live(), node.room(), node.next(), node.level());
    if !node.is_leaf() {
        // Routing stays within the children, for any key.
        for probe in [&b""[..], b"m", b"\xff\xff"] {
            assert!(node.route(probe) <= node.count(), "a route past the last child");
            assert!(node.route_below(probe) <= node.count(), "a route past the last child");
        }
    }
    Ok(node.count())
}

/// Reads `bytes` as a catalog file: the tables it lists, by name, with
/// their file ids, or what is wrong with it.
pub fn check_catalog(bytes: &[u8]) -> std::result::Result<Vec<(String, u32)>, &'static str> {
    let catalog = crate::catalog::Catalog::decode(bytes)?;
    Ok(catalog.tables.into_iter().map(|t| (t.name, t.file_id)).collect())
}
