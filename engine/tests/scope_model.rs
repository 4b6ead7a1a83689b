//! Property test: random trees of nested scopes — on the transaction's
//! thread or on threads of their own — each of which may fail by an error
//! or a panic, holding row changes, reads and outbox files, in transactions
//! that commit or roll back. The database and the outbox are checked
//! against a model after every transaction: a failed scope's rows and
//! files are gone, the rest commit, and reads inside see the model.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use understudy::{Error, FileOutbox, Node, Transaction};

const KEYS: u8 = 12;
const NAMES: u8 = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fail {
    No,
    Error,
    Panic,
}

#[derive(Clone, Debug)]
enum Step {
    Put {
        key: u8,
        value: u8,
    },
    Delete {
        key: u8,
    },
    Get {
        key: u8,
    },
    /// A file through the outbox; names repeat, so later ones replace.
    File {
        name: u8,
        content: u8,
    },
    Scope {
        on_thread: bool,
        fail: Fail,
        body: Vec<Step>,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let leaf = prop_oneof![
        4 => (0..KEYS, any::<u8>()).prop_map(|(key, value)| Step::Put { key, value }),
        1 => (0..KEYS).prop_map(|key| Step::Delete { key }),
        2 => (0..KEYS).prop_map(|key| Step::Get { key }),
        3 => (0..NAMES, any::<u8>()).prop_map(|(name, content)| Step::File { name, content }),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        (
            any::<bool>(),
            prop_oneof![3 => Just(Fail::No), 1 => Just(Fail::Error), 1 => Just(Fail::Panic)],
            proptest::collection::vec(inner, 0..6),
        )
            .prop_map(|(on_thread, fail, body)| Step::Scope { on_thread, fail, body })
    })
}

fn key(k: u8) -> Vec<u8> {
    format!("key-{k:02}").into_bytes()
}

fn file(n: u8) -> String {
    format!("file-{n}")
}

/// What one transaction has done so far, as the model sees it.
#[derive(Clone, Default)]
struct Pending {
    /// Row writes over the committed state; `None` deletes.
    rows: BTreeMap<u8, Option<u8>>,
    /// Files written, in order (published in this order at commit).
    files: Vec<(u8, u8)>,
}

#[derive(Default)]
struct Model {
    rows: BTreeMap<u8, u8>,
    published: BTreeMap<u8, u8>,
}

impl Model {
    fn visible(&self, p: &Pending, k: u8) -> Option<u8> {
        match p.rows.get(&k) {
            Some(v) => *v,
            None => self.rows.get(&k).copied(),
        }
    }
}

/// Runs `steps` in `t`, keeping `p` in step with them.
fn run(
    t: &mut Transaction,
    outbox: &FileOutbox,
    model: &Model,
    p: &mut Pending,
    steps: &[Step],
) -> understudy::Result<()> {
    for s in steps {
        match s {
            Step::Put { key: k, value } => {
                t.put("t", &key(*k), &[*value])?;
                p.rows.insert(*k, Some(*value));
            }
            Step::Delete { key: k } => {
                let found = t.delete("t", &key(*k))?;
                assert_eq!(found, model.visible(p, *k).is_some(), "delete of {k}");
                p.rows.insert(*k, None);
            }
            Step::Get { key: k } => {
                let got = t.get("t", &key(*k))?;
                assert_eq!(got, model.visible(p, *k).map(|v| vec![v]), "read of {k}");
            }
            Step::File { name, content } => {
                outbox.put(t, &file(*name), &[*content])?;
                p.files.push((*name, *content));
            }
            Step::Scope { on_thread, fail, body } => {
                let before = p.clone();
                let work = |t: &mut Transaction| {
                    run(t, outbox, model, p, body)?;
                    match fail {
                        Fail::No => Ok(()),
                        Fail::Error => Err(Error::NoSuchTable("injected failure".into())),
                        Fail::Panic => panic!("injected panic"),
                    }
                };
                let r = if *on_thread {
                    t.scope_on_thread(work)
                } else {
                    t.scope(work)
                };
                match (r, fail) {
                    (Ok(()), Fail::No) => {}
                    (Err(Error::NoSuchTable(_)), Fail::Error) | (Err(Error::ScopePanicked { .. }), Fail::Panic) => {
                        *p = before;
                    }
                    // A failure inside failed this scope: only its own
                    // injected failure may reach here.
                    (r, fail) => panic!("scope failing {fail:?} returned {r:?}"),
                }
            }
        }
    }
    Ok(())
}

fn check(node: &Node, outbox: &FileOutbox, model: &Model) {
    let mut t = node.begin().unwrap();
    for k in 0..KEYS {
        assert_eq!(
            t.get("t", &key(k)).unwrap(),
            model.rows.get(&k).map(|v| vec![*v]),
            "row {k}"
        );
    }
    t.rollback().unwrap();
    let published: Vec<String> = model.published.keys().map(|n| file(*n)).collect();
    assert_eq!(outbox.published().unwrap(), published);
    for (n, content) in &model.published {
        let on_disk = std::fs::read(outbox.dir().join(file(*n))).unwrap();
        assert_eq!(on_disk, [*content], "{}", file(*n));
    }
    assert!(outbox.aside().unwrap().is_empty(), "files left aside");
}

/// Injected panics are expected by the thousand; any other is reported
/// as usual.
fn quiet_injected_panics() {
    let usual = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info.payload().downcast_ref::<&str>() == Some(&"injected panic");
        if !injected {
            usual(info);
        }
    }));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_scope_trees_with_random_failures_match_the_model(
        txns in proptest::collection::vec((proptest::collection::vec(step(), 1..8), any::<bool>()), 1..5)
    ) {
        static QUIET: std::sync::Once = std::sync::Once::new();
        QUIET.call_once(quiet_injected_panics);
        let dir = tempfile::tempdir().unwrap();
        let (node, outbox) = common::outbox_cluster(dir.path());
        let mut model = Model::default();
        for (steps, commit) in &txns {
            let mut t = node.begin().unwrap();
            let mut p = Pending::default();
            run(&mut t, &outbox, &model, &mut p, steps).unwrap();
            if *commit {
                t.commit().unwrap();
                for (k, v) in p.rows {
                    match v {
                        Some(v) => model.rows.insert(k, v),
                        None => model.rows.remove(&k),
                    };
                }
                for (n, c) in p.files {
                    model.published.insert(n, c);
                }
            } else {
                t.rollback().unwrap();
            }
            check(&node, &outbox, &model);
        }
    }
}
