//! Tables created and dropped by one node, seen by another that has the
//! catalog cached from before the change.

mod common;

use understudy::{Error, Node, NodeOptions};

fn put(node: &Node, table: &str, key: &[u8], value: &[u8]) {
    let mut t = node.begin().unwrap();
    t.put(table, key, value).unwrap();
    t.commit().unwrap();
}

fn get(node: &Node, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let mut t = node.begin()?;
    let v = t.get(table, key);
    t.rollback()?;
    v
}

#[test]
fn a_node_sees_the_tables_another_node_created_dropped_and_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _coordinator) = common::cluster_with_coordinator(dir.path(), &[1, 2]);
    let a = Node::open(dir.path(), 1, NodeOptions::default()).unwrap();
    let b = Node::open(dir.path(), 2, NodeOptions::default()).unwrap();

    b.create_table("t", 4).unwrap();
    put(&b, "t", b"k", b"first");
    // Node 1 reads the catalog, and keeps it.
    assert_eq!(get(&a, "t", b"k").unwrap(), Some(b"first".to_vec()));

    // A table node 1 has never seen.
    b.create_table("u", 4).unwrap();
    put(&b, "u", b"k", b"u");
    assert_eq!(get(&a, "u", b"k").unwrap(), Some(b"u".to_vec()));

    // "t" dropped and created again under the same name: a new, empty file.
    b.drop_table("t").unwrap();
    assert!(
        matches!(get(&a, "t", b"k"), Err(Error::NoSuchTable(_))),
        "a dropped table is gone for every node"
    );
    b.create_table("t", 4).unwrap();
    assert_eq!(get(&a, "t", b"k").unwrap(), None, "the old table's rows came back");
    put(&b, "t", b"k", b"second");
    assert_eq!(get(&a, "t", b"k").unwrap(), Some(b"second".to_vec()));

    // And the other way round, with node 2's catalog the stale one.
    a.drop_table("u").unwrap();
    a.create_table("u", 8).unwrap();
    put(&a, "u", b"k", b"again");
    assert_eq!(get(&b, "u", b"k").unwrap(), Some(b"again".to_vec()));
}
