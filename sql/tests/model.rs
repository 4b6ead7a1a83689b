//! Random statements against a model: a map of the committed rows and the
//! changes of the open transaction. After every step the table, read in
//! key order and through its index, must be what the model holds.

use std::collections::BTreeMap;

use gluesql_core::prelude::{Glue, Payload, Value};
use understudy_sql::UnderstudyStorage;

/// A small deterministic generator (SplitMix64): the same steps each run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn select(glue: &mut Glue<UnderstudyStorage>, sql: &str) -> Vec<Vec<Value>> {
    match glue.execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).pop() {
        Some(Payload::Select { rows, .. }) => rows,
        other => panic!("{sql}: not a select: {other:?}"),
    }
}

/// A value of about `len` bytes: some rows span most of a page, or
/// several.
fn value(seed: u64, len: usize) -> String {
    format!("{seed}-{}", "x".repeat(len))
}

#[test]
fn random_statements_match_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut g = Glue::new(UnderstudyStorage::open(dir.path()).unwrap());
    g.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, tag TEXT, v TEXT)")
        .unwrap();
    g.execute("CREATE INDEX kv_tag ON kv (tag)").unwrap();

    // MODEL_SEED picks other steps.
    let seed = std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(26);
    let mut rng = Rng(seed);
    // Key -> (tag, value); the tag is what the index holds.
    let mut committed: BTreeMap<i64, (String, String)> = BTreeMap::new();
    let mut open: Option<BTreeMap<i64, (String, String)>> = None;
    for step in 0..1000 {
        let view = open.as_mut().unwrap_or(&mut committed);
        let k = rng.below(200) as i64 - 100;
        let len = [0, 10, 500, 3000, 9000][rng.below(5) as usize];
        let v = value(rng.below(1000), len);
        let tag = format!("t{}", rng.below(4));
        let sql = match rng.below(10) {
            0..=2 if !view.contains_key(&k) => {
                view.insert(k, (tag.clone(), v.clone()));
                format!("INSERT INTO kv VALUES ({k}, '{tag}', '{v}')")
            }
            0..=4 if view.contains_key(&k) => {
                view.insert(k, (tag.clone(), v.clone()));
                format!("UPDATE kv SET tag = '{tag}', v = '{v}' WHERE k = {k}")
            }
            0..=5 => {
                view.remove(&k);
                format!("DELETE FROM kv WHERE k = {k}")
            }
            6 if open.is_none() => {
                open = Some(committed.clone());
                "BEGIN".to_owned()
            }
            7 if open.is_some() => {
                committed = open.take().unwrap();
                "COMMIT".to_owned()
            }
            8 if open.is_some() => {
                open = None;
                "ROLLBACK".to_owned()
            }
            _ => "SELECT 1".to_owned(),
        };
        g.execute(&sql)
            .unwrap_or_else(|e| panic!("seed {seed} step {step}: {}: {e}", &sql[..sql.len().min(80)]));

        let view = open.as_ref().unwrap_or(&committed);
        let want: Vec<Vec<Value>> = view
            .iter()
            .map(|(k, (t, v))| vec![Value::I64(*k), Value::Str(t.clone()), Value::Str(v.clone())])
            .collect();
        assert_eq!(
            select(&mut g, "SELECT k, tag, v FROM kv"),
            want,
            "seed {seed} step {step}: {sql:.80}"
        );
        let probe = format!("t{}", rng.below(4));
        let want: Vec<Vec<Value>> = view
            .iter()
            .filter(|(_, (t, _))| *t == probe)
            .map(|(k, _)| vec![Value::I64(*k)])
            .collect();
        let got = select(&mut g, &format!("SELECT k FROM kv WHERE tag = '{probe}'"));
        assert_eq!(got, want, "seed {seed} step {step}: index probe after {sql:.80}");
    }
}
