//! Lock errors name the table and key of the call that wanted the lock,
//! for a wait that timed out and for a deadlock's victim, so an
//! application can tell which of its rows collided.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use understudy::{Error, LockSite, NodeOptions};

fn db(dir: &std::path::Path) -> understudy::Node {
    understudy::open_with(
        dir,
        NodeOptions {
            lock_wait: Duration::from_millis(200),
            ..NodeOptions::default()
        },
    )
    .unwrap()
}

fn site(table: &str, key: &[u8]) -> LockSite {
    LockSite {
        table: table.into(),
        key: Some(key.to_vec()),
    }
}

#[test]
fn a_lock_wait_that_times_out_names_the_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    db.create_ordered_table("accounts").unwrap();
    db.create_table("hashed", 4).unwrap();
    for table in ["accounts", "hashed"] {
        let mut holder = db.begin().unwrap();
        holder.put(table, b"alice", b"100").unwrap();
        let mut waiter = db.begin().unwrap();
        let e = waiter.get(table, b"alice").unwrap_err();
        assert!(matches!(e, Error::LockTimeout { .. }), "{e}");
        assert_eq!(e.lock_site(), Some(&site(table, b"alice")), "{e}");
        let text = e.to_string();
        assert!(text.contains(&format!("table \"{table}\", key \"alice\"")), "{text}");
        assert!(e.is_retryable());
        waiter.rollback().unwrap();
        // A binary key is shown as hex.
        holder.put(table, &[0, 159, 255], b"x").unwrap();
        let mut waiter = db.begin().unwrap();
        let e = waiter.get_for_update(table, &[0, 159, 255]).unwrap_err();
        assert!(e.to_string().contains("key 0x009fff"), "{e}");
        waiter.rollback().unwrap();
        holder.rollback().unwrap();
    }
    // A range scan names the table.
    let mut holder = db.begin().unwrap();
    holder.put("accounts", b"bob", b"5").unwrap();
    let mut scanner = db.begin().unwrap();
    let e = scanner
        .iter("accounts")
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .unwrap_err();
    assert_eq!(
        e.lock_site(),
        Some(&LockSite {
            table: "accounts".into(),
            key: None
        }),
        "{e}"
    );
    scanner.rollback().unwrap();
    holder.rollback().unwrap();
}

#[test]
fn a_deadlock_victim_is_told_the_table_and_key_it_was_waiting_for() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(dir.path());
    db.create_ordered_table("t").unwrap();
    // Enough rows that "a" and "z" lie on different leaves.
    db.run(|t| {
        for i in 0..2000u32 {
            t.put("t", format!("k{i:05}").as_bytes(), &[7; 64])?;
        }
        Ok(())
    })
    .unwrap();
    let db = Arc::new(db);
    let both = Arc::new(Barrier::new(2));
    let run = |first: &'static [u8], second: &'static [u8]| {
        let (db, both) = (db.clone(), both.clone());
        std::thread::spawn(move || {
            let mut t = db.begin().unwrap();
            t.put("t", first, b"1").unwrap();
            both.wait();
            let r = t.put("t", second, b"2");
            match &r {
                Ok(()) => t.commit().unwrap(),
                Err(_) => t.rollback().unwrap(),
            }
            r
        })
    };
    let one = run(b"k00000", b"k01999");
    let two = run(b"k01999", b"k00000");
    let results = [one.join().unwrap(), two.join().unwrap()];
    let victims: Vec<&Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(!victims.is_empty(), "one of two crossing transactions must fail");
    for e in victims {
        assert!(e.is_retryable(), "{e}");
        let at = e.lock_site().unwrap_or_else(|| panic!("no site: {e}"));
        assert_eq!(at.table, "t");
        assert!([&b"k00000"[..], b"k01999"].contains(&at.key.as_deref().unwrap()), "{e}");
    }
}
