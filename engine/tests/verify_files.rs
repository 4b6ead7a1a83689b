//! The file checks operators (and the data-file fuzz target) run over
//! whole copies of data files: a table file written by a node checks whole
//! with every row counted, the catalog names its tables, and any byte of
//! either damaged gives an error, never a panic or a silently different
//! answer.

mod common;

use understudy::admin::{check_catalog, check_table_file};
use understudy::{Node, NodeOptions};

#[test]
fn whole_files_check_and_every_damaged_byte_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _coordinator) = common::cluster_with_coordinator(dir.path(), &[1]);
    let node = Node::open(dir.path(), 1, NodeOptions::default()).unwrap();
    node.create_table("t", 4).unwrap();
    for i in 0..200u32 {
        // Values large enough that the buckets overflow into chains.
        node.run(|t| t.put("t", format!("key-{i}").as_bytes(), &[i as u8; 100]))
            .unwrap();
    }
    node.close().unwrap();

    let table = std::fs::read(dir.path().join("data/t-1.tbl")).unwrap();
    let summary = check_table_file(&table, 4096, 1).unwrap();
    assert_eq!(summary.rows, 200);
    assert_eq!(summary.pages as usize, table.len() / 4096);
    assert!(summary.pages > 5, "overflow pages were allocated");
    assert!(check_table_file(&table, 4096, 2).is_err(), "another file id's pages");

    let catalog = std::fs::read(dir.path().join("data/catalog")).unwrap();
    assert_eq!(check_catalog(&catalog).unwrap(), [("t".to_string(), 1)]);

    // One byte of each page's used part damaged, one page at a time (the
    // rest of a page may be free space the checksum still covers).
    for page in 0..summary.pages as usize {
        for at in [0usize, 5, 17, 30, 47, 60, 200] {
            let mut bad = table.clone();
            bad[page * 4096 + at] ^= 0x10;
            assert!(check_table_file(&bad, 4096, 1).is_err(), "page {page} byte {at}");
        }
    }
    for at in 0..catalog.len() {
        let mut bad = catalog.clone();
        bad[at] ^= 0x10;
        assert!(check_catalog(&bad).is_err(), "catalog byte {at}");
    }
}
