//! Damaged table files, through the `understudy` program as an operator
//! would meet them: a bank cluster runs transfers (its acknowledgements
//! kept), then one data file is damaged at a time — cut to nothing, cut at
//! a page boundary, cut inside a page, zeroed in the middle, swapped with
//! the other table's file, deleted, replaced by another cluster's file of
//! the same id — and a node started on it and `bank-check` must each end in
//! an error naming the file, never in a start or a check that passes with
//! acknowledged transfers gone. After each case the file is put back, and
//! the bank then checks whole: the refusals changed nothing.
//!
//! The bug it guards: a table file cut at a page boundary was read as
//! empty pages past its end, so every transfer journalled there vanished
//! without an error, and a node still started normally.

use std::path::{Path, PathBuf};
use std::process::Output;

mod support;

use support::{coordinator, run, text};

const PAGE: u64 = 4096;

/// The damage each case does to `file` (the transfers journal or the
/// accounts table), given the other table's file `other` and a file of the
/// same id from another cluster `foreign`.
fn damage(case: &str, file: &Path, other: &Path, foreign: &Path) {
    let len = std::fs::metadata(file).unwrap().len();
    let cut = |to: u64| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .unwrap()
            .set_len(to)
            .unwrap()
    };
    match case {
        "cut to nothing" => cut(0),
        "cut at a page boundary" => cut((len / PAGE / 2) * PAGE),
        "cut inside the last page" => cut(len - 100),
        "zeroed bucket pages" => {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
            // Every bucket page after the header: whichever a read hits.
            let zeros = vec![0u8; (len - PAGE) as usize];
            f.write_all_at(&zeros, PAGE).unwrap();
        }
        "swapped with the other table" => {
            let tmp = file.with_extension("swap");
            std::fs::rename(file, &tmp).unwrap();
            std::fs::rename(other, file).unwrap();
            std::fs::rename(&tmp, other).unwrap();
        }
        "deleted" => std::fs::remove_file(file).unwrap(),
        "replaced by another cluster's" => {
            std::fs::copy(foreign, file).unwrap();
        }
        other => panic!("no case {other}"),
    }
}

#[test]
fn every_damaged_table_file_is_refused_naming_it_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let d = dir.to_str().unwrap();
    assert!(run(&["cluster-init", "--dir", d, "--nodes", "1,2"]).status.success());
    let _coordinator = coordinator(d);
    let work = run(&[
        "node",
        "--cluster",
        d,
        "--id",
        "1",
        "--bank-init",
        "--workload",
        "bank",
        "--duration-secs",
        "2",
    ]);
    assert!(work.status.success(), "{}", text(&work));
    let acks = tmp.path().join("acks");
    std::fs::write(&acks, &work.stdout).unwrap();
    let acked = String::from_utf8_lossy(&work.stdout)
        .lines()
        .filter(|l| l.starts_with("ACK "))
        .count();
    assert!(acked > 0, "the workload acknowledged nothing");
    let check = || {
        run(&[
            "bank-check",
            "--cluster",
            d,
            "--id",
            "2",
            "--acks",
            acks.to_str().unwrap(),
        ])
    };
    let whole = check();
    assert!(whole.status.success(), "{}", text(&whole));

    // A file of the same id from another cluster.
    let other_cluster = tmp.path().join("other");
    let o = other_cluster.to_str().unwrap();
    assert!(run(&["cluster-init", "--dir", o, "--nodes", "1"]).status.success());
    let foreign_coordinator = coordinator(o);
    let made = run(&[
        "node",
        "--cluster",
        o,
        "--id",
        "1",
        "--bank-init",
        "--duration-secs",
        "0",
    ]);
    assert!(made.status.success(), "{}", text(&made));
    drop(foreign_coordinator);

    let data = dir.join("data");
    // t-1: the accounts, t-2: the journal of transfers.
    let tables: [(PathBuf, PathBuf); 2] = [
        (data.join("t-1.tbl"), data.join("t-2.tbl")),
        (data.join("t-2.tbl"), data.join("t-1.tbl")),
    ];
    let cases = [
        "cut to nothing",
        "cut at a page boundary",
        "cut inside the last page",
        "zeroed bucket pages",
        "swapped with the other table",
        "deleted",
        "replaced by another cluster's",
    ];
    for (file, other) in &tables {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let foreign = other_cluster.join("data").join(&name);
        for case in cases {
            let saved = (std::fs::read(file).unwrap(), std::fs::read(other).unwrap());
            damage(case, file, other, &foreign);
            // Named: the damaged file, or for a swap either of the two.
            let names_it = |o: &Output| {
                let err = String::from_utf8_lossy(&o.stderr);
                err.contains(&name) || (case.starts_with("swapped") && err.contains(".tbl"))
            };
            let checked = check();
            assert!(
                !checked.status.success() && names_it(&checked),
                "{name}, {case}: bank-check must fail naming the file\n{}",
                text(&checked)
            );
            if case != "zeroed bucket pages" {
                // Refused at open, before serving anything. (Zeroed pages
                // inside a file of the right length and identity are found
                // when read, as above.)
                let started = run(&["node", "--cluster", d, "--id", "1", "--duration-secs", "0"]);
                assert!(
                    !started.status.success() && names_it(&started),
                    "{name}, {case}: a node must not start\n{}",
                    text(&started)
                );
            }
            std::fs::write(file, &saved.0).unwrap();
            std::fs::write(other, &saved.1).unwrap();
            let again = check();
            assert!(
                again.status.success(),
                "{name}, after {case}, put back: {}",
                text(&again)
            );
        }
    }
}
