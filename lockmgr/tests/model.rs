//! The lock table against a reference model, under random sequences of
//! requests (new and conversions), releases, cancels, node failures,
//! retained-lock releases and reclaims from a few owners on a few resources.
//!
//! The model is written for clarity, not speed: one list of waiters in
//! arrival order, and a grant step that loops until nothing more can be
//! granted. After every step the test checks that the table and the model
//! agree (outcomes, holders, queues, grants reported, retained locks), and
//! checks directly on the table that granted locks are pairwise compatible,
//! that no waiter could be granted, and that no new request was granted
//! while a request queued before it still waits.
#![cfg(not(loom))]

use std::collections::{BTreeMap, BTreeSet};

use lockmgr::{
    HolderId, LockError, LockMode, LockTable, NodeId, Owner, RequestOutcome, ResourceId, RetainedLock, Ticket,
    WaitPolicy, Woken,
};
use proptest::prelude::*;

const MAX_WAITERS: usize = 3;
const NODES: u32 = 3;
const TXNS: u64 = 2;
const RESOURCES: u64 = 3;

fn resource(index: u64) -> ResourceId {
    ResourceId::new(7, index)
}

fn universe() -> impl Iterator<Item = ResourceId> {
    (0..RESOURCES).map(resource)
}

/// Requests granted by a call: ticket and the mode now held.
type Grants = Vec<(Ticket, LockMode)>;

#[derive(Clone, Debug)]
struct MWaiter {
    owner: Owner,
    mode: LockMode,
    conversion: bool,
    /// Asked to wait for live holders only.
    live_only: bool,
    /// Arrival order; a wait that becomes a conversion gets a new one.
    seq: u64,
    ticket: Ticket,
}

#[derive(Clone, Debug, Default)]
struct MRes {
    holders: BTreeMap<HolderId, LockMode>,
    waiters: Vec<MWaiter>,
}

impl MRes {
    /// Waiters in grant priority: conversions first, each kind by arrival.
    fn ordered(&self) -> Vec<MWaiter> {
        let mut ordered = self.waiters.clone();
        ordered.sort_by_key(|waiter| (!waiter.conversion, waiter.seq));
        ordered
    }

    fn others_compatible(&self, me: HolderId, mode: LockMode) -> bool {
        self.holders
            .iter()
            .all(|(holder, held)| *holder == me || held.compatible(mode))
    }

    /// Grants until nothing more can be: a conversion whenever it fits the
    /// holders; a new request only when it is the first waiter of all.
    fn settle(&mut self) -> Grants {
        let mut woken = Vec::new();
        'again: loop {
            for (position, waiter) in self.ordered().into_iter().enumerate() {
                let me = HolderId::Owner(waiter.owner);
                let may = waiter.conversion || position == 0;
                if may && self.others_compatible(me, waiter.mode) {
                    self.holders.insert(me, waiter.mode);
                    self.waiters.retain(|w| w.ticket != waiter.ticket);
                    woken.push((waiter.ticket, waiter.mode));
                    continue 'again;
                }
            }
            return woken;
        }
    }
}

#[derive(Default)]
struct Model {
    resources: BTreeMap<ResourceId, MRes>,
    failed: BTreeSet<NodeId>,
    seq: u64,
}

enum MOutcome {
    Granted(LockMode),
    Queued,
}

impl Model {
    fn res(&mut self, r: ResourceId) -> &mut MRes {
        self.resources.entry(r).or_default()
    }

    fn request(
        &mut self,
        owner: Owner,
        r: ResourceId,
        mode: LockMode,
        policy: WaitPolicy,
    ) -> Result<MOutcome, LockError> {
        if self.failed.contains(&owner.node) {
            return Err(LockError::NodeFailed { node: owner.node });
        }
        let st = self.res(r);
        if let Some(waiter) = st.waiters.iter().find(|w| w.owner == owner) {
            return Err(LockError::AlreadyWaiting { ticket: waiter.ticket });
        }
        let me = HolderId::Owner(owner);
        let held = st.holders.get(&me).copied();
        let target = held.map_or(mode, |h| h.supremum(mode));
        if held == Some(target) {
            return Ok(MOutcome::Granted(target));
        }
        if (held.is_some() || st.waiters.is_empty()) && st.others_compatible(me, target) {
            st.holders.insert(me, target);
            return Ok(MOutcome::Granted(target));
        }
        if policy != WaitPolicy::Wait {
            // Which retained node is named is the table's choice: the test
            // accepts any retained blocker (see `same_error`).
            let retained = st.holders.iter().find_map(|(holder, held)| match holder {
                HolderId::Retained(node) if !held.compatible(target) => Some(*node),
                _ => None,
            });
            match (retained, policy) {
                (Some(node), _) => return Err(LockError::Retained { node, resource: r }),
                (None, WaitPolicy::NoWait) => return Err(LockError::Conflict { resource: r }),
                (None, _) => {}
            }
        }
        if st.waiters.len() >= MAX_WAITERS {
            return Err(LockError::QueueFull {
                resource: r,
                limit: MAX_WAITERS,
            });
        }
        Ok(MOutcome::Queued)
    }

    fn enqueue(&mut self, owner: Owner, r: ResourceId, mode: LockMode, live_only: bool, ticket: Ticket) {
        self.seq += 1;
        let seq = self.seq;
        let st = self.res(r);
        let me = HolderId::Owner(owner);
        let held = st.holders.get(&me).copied();
        let target = held.map_or(mode, |h| h.supremum(mode));
        st.waiters.push(MWaiter {
            owner,
            mode: target,
            conversion: held.is_some(),
            live_only,
            seq,
            ticket,
        });
    }

    fn release(&mut self, owner: Owner, r: ResourceId) -> Result<Grants, LockError> {
        let st = self.res(r);
        let had = st.holders.remove(&HolderId::Owner(owner)).is_some();
        let before = st.waiters.len();
        st.waiters.retain(|w| w.owner != owner);
        if !had && before == st.waiters.len() {
            return Err(LockError::NotHeld { owner, resource: r });
        }
        Ok(st.settle())
    }

    fn release_all(&mut self, owner: Owner) -> Grants {
        universe()
            .filter_map(|r| self.release(owner, r).ok())
            .flatten()
            .collect()
    }

    fn cancel(&mut self, ticket: Ticket) -> Option<Grants> {
        let st = self.res(ticket.resource());
        let at = st.waiters.iter().position(|w| w.ticket == ticket)?;
        st.waiters.remove(at);
        Some(st.settle())
    }

    /// Returns the grants, the node's own cancelled waits, and the waits for
    /// live holders only that a retained lock now blocks.
    fn node_failed(&mut self, node: NodeId) -> (Grants, BTreeSet<Ticket>, BTreeSet<Ticket>) {
        self.failed.insert(node);
        let (mut woken, mut cancelled, mut refused) = (Vec::new(), BTreeSet::new(), BTreeSet::new());
        for st in self.resources.values_mut() {
            st.waiters.retain(|w| {
                let keep = w.owner.node != node;
                if !keep {
                    cancelled.insert(w.ticket);
                }
                keep
            });
            let mut retained = st.holders.get(&HolderId::Retained(node)).copied();
            st.holders.retain(|holder, mode| match holder {
                HolderId::Owner(owner) if owner.node == node => {
                    if mode.is_write() {
                        retained = Some(retained.map_or(*mode, |r| r.supremum(*mode)));
                    }
                    false
                }
                _ => true,
            });
            if let Some(mode) = retained {
                st.holders.insert(HolderId::Retained(node), mode);
                st.waiters.retain(|w| {
                    let keep = !w.live_only || mode.compatible(w.mode);
                    if !keep {
                        refused.insert(w.ticket);
                    }
                    keep
                });
            }
            woken.extend(st.settle());
        }
        (woken, cancelled, refused)
    }

    fn release_retained(&mut self, node: NodeId) -> Grants {
        let mut woken = Vec::new();
        for st in self.resources.values_mut() {
            if st.holders.remove(&HolderId::Retained(node)).is_some() {
                woken.extend(st.settle());
            }
        }
        woken
    }

    fn reclaim(&mut self, node: NodeId, owner: Owner) -> Result<(Vec<(ResourceId, LockMode)>, Grants), LockError> {
        if owner.node != node {
            return Err(LockError::ForeignReclaim { node, owner });
        }
        if self.failed.contains(&node) {
            return Err(LockError::NodeFailed { node });
        }
        let (mut reclaimed, mut woken) = (Vec::new(), Vec::new());
        for (r, st) in &mut self.resources {
            let Some(mode) = st.holders.remove(&HolderId::Retained(node)) else {
                continue;
            };
            reclaimed.push((*r, mode));
            let me = HolderId::Owner(owner);
            let held = st.holders.get(&me).map_or(mode, |h| h.supremum(mode));
            st.holders.insert(me, held);
            if let Some(waiter) = st.waiters.iter_mut().find(|w| w.owner == owner) {
                if !waiter.conversion {
                    self.seq += 1;
                    waiter.seq = self.seq;
                    waiter.conversion = true;
                }
                waiter.mode = waiter.mode.supremum(held);
            }
            woken.extend(st.settle());
        }
        Ok((reclaimed, woken))
    }

    fn retained(&self, node: NodeId) -> Vec<(ResourceId, LockMode)> {
        self.resources
            .iter()
            .filter_map(|(r, st)| st.holders.get(&HolderId::Retained(node)).map(|m| (*r, *m)))
            .collect()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Request {
        node: u32,
        txn: u64,
        res: u64,
        mode: LockMode,
        policy: WaitPolicy,
    },
    Release {
        node: u32,
        txn: u64,
        res: u64,
    },
    ReleaseAll {
        node: u32,
        txn: u64,
    },
    Cancel {
        pick: usize,
    },
    NodeFailed {
        node: u32,
    },
    NodeJoined {
        node: u32,
    },
    ReleaseRetained {
        node: u32,
    },
    Reclaim {
        node: u32,
        owner_node: u32,
        txn: u64,
    },
}

fn mode() -> impl Strategy<Value = LockMode> {
    prop::sample::select(LockMode::ALL.to_vec())
}

fn policy() -> impl Strategy<Value = WaitPolicy> {
    prop_oneof![
        3 => Just(WaitPolicy::NoWait),
        4 => Just(WaitPolicy::Wait),
        3 => Just(WaitPolicy::WaitForLive),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let node = 1..=NODES;
    let txn = 1..=TXNS;
    let res = 0..RESOURCES;
    prop_oneof![
        12 => (node.clone(), txn.clone(), res.clone(), mode(), policy())
            .prop_map(|(node, txn, res, mode, policy)| Op::Request { node, txn, res, mode, policy }),
        3 => (node.clone(), txn.clone(), res).prop_map(|(node, txn, res)| Op::Release { node, txn, res }),
        3 => (node.clone(), txn.clone()).prop_map(|(node, txn)| Op::ReleaseAll { node, txn }),
        3 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => node.clone().prop_map(|node| Op::NodeFailed { node }),
        2 => node.clone().prop_map(|node| Op::NodeJoined { node }),
        1 => node.clone().prop_map(|node| Op::ReleaseRetained { node }),
        1 => (node.clone(), node, txn).prop_map(|(node, owner_node, txn)| Op::Reclaim { node, owner_node, txn }),
    ]
}

fn sorted(woken: &[Woken]) -> Grants {
    let mut out: Vec<_> = woken.iter().map(|w| (w.ticket, w.held)).collect();
    out.sort();
    out
}

fn sorted_model(mut woken: Grants) -> Grants {
    woken.sort();
    woken
}

/// Errors agree, except that a `Retained` refusal may name any failed node
/// whose retained lock is in the way.
fn same_error(table: &LockError, model: &LockError, st: &MRes) -> bool {
    match (table, model) {
        (LockError::Retained { node, resource }, LockError::Retained { resource: expected, .. }) => {
            resource == expected && st.holders.contains_key(&HolderId::Retained(*node))
        }
        _ => table == model,
    }
}

fn queue_of(table: &LockTable, r: ResourceId) -> Vec<Ticket> {
    table
        .snapshot(r)
        .map(|s| s.waiters.iter().map(|w| w.ticket).collect())
        .unwrap_or_default()
}

/// The FIFO property: a new request granted by a call was, before the call,
/// behind nothing that still waits after it. `reclaimer` is exempt: taking
/// back its node's retained locks made it a holder, and its wait a conversion.
fn check_fifo(
    before: &BTreeMap<ResourceId, Vec<(Ticket, bool)>>,
    table: &LockTable,
    woken: &[Woken],
    reclaimer: Option<Owner>,
) {
    for w in woken.iter().filter(|w| Some(w.ticket.owner()) != reclaimer) {
        let r = w.ticket.resource();
        let queue = before.get(&r).cloned().unwrap_or_default();
        let Some(at) = queue.iter().position(|(t, _)| *t == w.ticket) else {
            continue;
        };
        if queue.get(at).is_some_and(|(_, conversion)| *conversion) {
            continue;
        }
        let still = queue_of(table, r);
        for (ahead, _) in &queue[..at] {
            assert!(
                !still.contains(ahead),
                "{} granted while {} (ahead of it) still waits",
                w.ticket,
                ahead
            );
        }
    }
}

fn check_table(table: &LockTable, model: &Model) {
    table.check_invariants().expect("table invariants");
    for r in universe() {
        let snapshot = table.snapshot(r).unwrap_or_default();
        let st = model.resources.get(&r).cloned().unwrap_or_default();
        let holders: BTreeMap<HolderId, LockMode> = snapshot.holders.iter().map(|h| (h.holder, h.mode)).collect();
        assert_eq!(holders.len(), snapshot.holders.len(), "one entry per holder on {r}");
        assert_eq!(holders, st.holders, "holders of {r}");
        let waiters: Vec<_> = snapshot
            .waiters
            .iter()
            .map(|w| (w.ticket, w.mode, w.conversion))
            .collect();
        let expected: Vec<_> = st.ordered().iter().map(|w| (w.ticket, w.mode, w.conversion)).collect();
        assert_eq!(waiters, expected, "queue of {r}");
        // Directly on the table: compatibility of granted locks...
        for (i, a) in snapshot.holders.iter().enumerate() {
            for b in &snapshot.holders[i + 1..] {
                assert!(a.mode.compatible(b.mode), "{r}: {a:?} and {b:?} both granted");
            }
        }
        // ...and no waiter that could be granted.
        let fits = |owner: Owner, mode: LockMode| {
            snapshot
                .holders
                .iter()
                .all(|h| h.holder == HolderId::Owner(owner) || h.mode.compatible(mode))
        };
        let conversions_wait = snapshot.waiters.iter().any(|w| w.conversion);
        for (i, w) in snapshot.waiters.iter().enumerate() {
            let could = if w.conversion {
                true
            } else {
                i == 0 && !conversions_wait
            };
            assert!(
                !(could && fits(w.ticket.owner(), w.mode)),
                "{r}: {w:?} could be granted"
            );
        }
    }
    for node in 1..=NODES {
        assert_eq!(
            table.retained(node),
            model.retained(node),
            "retained locks of node {node}"
        );
        assert_eq!(table.is_failed(node), model.failed.contains(&node));
        for txn in 1..=TXNS {
            let owner = Owner::new(node, txn);
            let expected: Vec<_> = model
                .resources
                .iter()
                .filter_map(|(r, st)| st.holders.get(&HolderId::Owner(owner)).map(|m| (*r, *m)))
                .collect();
            assert_eq!(table.locks_of(owner), expected, "locks of {owner}");
        }
    }
    check_deadlock(table);
}

/// `find_deadlock` reports a cycle exactly when the wait-for graph has one,
/// and the cycle it reports is made of real edges.
fn check_deadlock(table: &LockTable) {
    let edges = table.wait_for_edges();
    let pairs: BTreeSet<(Owner, Owner)> = edges.iter().map(|e| (e.waiter, e.holder)).collect();
    let vertices: BTreeSet<Owner> = pairs.iter().flat_map(|(a, b)| [*a, *b]).collect();
    // Transitive closure, by brute force on a handful of owners.
    let mut reach = pairs.clone();
    loop {
        let more: Vec<_> = reach
            .iter()
            .flat_map(|(a, b)| reach.iter().filter(move |(c, _)| c == b).map(move |(_, d)| (*a, *d)))
            .filter(|pair| !reach.contains(pair))
            .collect();
        if more.is_empty() {
            break;
        }
        reach.extend(more);
    }
    let has_cycle = vertices.iter().any(|v| reach.contains(&(*v, *v)));
    match table.find_deadlock() {
        None => assert!(!has_cycle, "a cycle exists in {pairs:?} but none was found"),
        Some(deadlock) => {
            assert!(has_cycle);
            let n = deadlock.cycle.len();
            assert!(n >= 2);
            for (i, owner) in deadlock.cycle.iter().enumerate() {
                let next = deadlock.cycle[(i + 1) % n];
                assert!(pairs.contains(&(*owner, next)), "{owner} -> {next} is not an edge");
            }
            let youngest = deadlock.cycle.iter().max_by_key(|o| (o.txn, o.node)).copied();
            assert_eq!(Some(deadlock.victim), youngest);
            assert!(!deadlock.victim_tickets.is_empty());
            assert!(deadlock.victim_tickets.iter().all(|t| t.owner() == deadlock.victim));
        }
    }
}

fn run(ops: Vec<Op>) {
    let table = LockTable::with_max_waiters(MAX_WAITERS);
    let mut model = Model::default();
    let mut issued: Vec<Ticket> = Vec::new();
    for op in ops {
        let before: BTreeMap<ResourceId, Vec<(Ticket, bool)>> = universe()
            .map(|r| {
                let queue = table
                    .snapshot(r)
                    .map(|s| s.waiters.iter().map(|w| (w.ticket, w.conversion)).collect());
                (r, queue.unwrap_or_default())
            })
            .collect();
        let mut woken: Vec<Woken> = Vec::new();
        let reclaimer = match op {
            Op::Reclaim { owner_node, txn, .. } => Some(Owner::new(owner_node, txn)),
            _ => None,
        };
        match op {
            Op::Request {
                node,
                txn,
                res,
                mode,
                policy,
            } => {
                let (owner, r) = (Owner::new(node, txn), resource(res));
                let was_holder = table
                    .snapshot(r)
                    .is_some_and(|s| s.holders.iter().any(|h| h.holder == HolderId::Owner(owner)));
                let expected = model.request(owner, r, mode, policy);
                let got = table.request(owner, r, mode, policy);
                match (got, expected) {
                    (Ok(RequestOutcome::Granted { held }), Ok(MOutcome::Granted(expected))) => {
                        assert_eq!(held, expected);
                        if !was_holder {
                            assert!(before[&r].is_empty(), "new request granted past a queue");
                        }
                    }
                    (Ok(RequestOutcome::Queued(ticket)), Ok(MOutcome::Queued)) => {
                        assert_eq!((ticket.owner(), ticket.resource()), (owner, r));
                        assert!(!issued.contains(&ticket), "ticket numbers are unique");
                        model.enqueue(owner, r, mode, policy == WaitPolicy::WaitForLive, ticket);
                        issued.push(ticket);
                    }
                    (Err(got), Err(expected)) => {
                        let st = model.resources.get(&r).cloned().unwrap_or_default();
                        assert!(same_error(&got, &expected, &st), "table {got:?}, model {expected:?}");
                    }
                    (got, expected) => panic!(
                        "request {owner} {r} {mode} {policy:?}: table {got:?}, model {}",
                        match expected {
                            Ok(MOutcome::Granted(m)) => format!("granted {m}"),
                            Ok(MOutcome::Queued) => "queued".into(),
                            Err(e) => format!("{e:?}"),
                        }
                    ),
                }
            }
            Op::Release { node, txn, res } => {
                let (owner, r) = (Owner::new(node, txn), resource(res));
                let expected = model.release(owner, r);
                let got = table.release(owner, r);
                match (got, expected) {
                    (Ok(got), Ok(expected)) => {
                        assert_eq!(sorted(&got), sorted_model(expected));
                        woken = got;
                    }
                    (got, expected) => assert_eq!(got.map(|_| ()), expected.map(|_| ())),
                }
            }
            Op::ReleaseAll { node, txn } => {
                let owner = Owner::new(node, txn);
                let expected = model.release_all(owner);
                woken = table.release_all(owner);
                assert_eq!(sorted(&woken), sorted_model(expected));
            }
            Op::Cancel { .. } if issued.is_empty() => {}
            Op::Cancel { pick } => {
                let ticket = issued[pick % issued.len()];
                let expected = model.cancel(ticket);
                let got = table.cancel(ticket);
                assert_eq!(got.was_waiting, expected.is_some(), "cancel {ticket}");
                assert_eq!(sorted(&got.woken), sorted_model(expected.unwrap_or_default()));
                woken = got.woken;
            }
            Op::NodeFailed { node } => {
                let (expected_woken, expected_cancelled, expected_refused) = model.node_failed(node);
                let report = table.node_failed(node);
                assert_eq!(sorted(&report.woken), sorted_model(expected_woken));
                assert_eq!(
                    report.cancelled.iter().copied().collect::<BTreeSet<_>>(),
                    expected_cancelled
                );
                assert_eq!(
                    report.refused.iter().copied().collect::<BTreeSet<_>>(),
                    expected_refused
                );
                assert_eq!(report.retained, model.retained(node));
                woken = report.woken;
            }
            Op::NodeJoined { node } => {
                model.failed.remove(&node);
                table.node_joined(node);
            }
            Op::ReleaseRetained { node } => {
                let expected = model.release_retained(node);
                woken = table.release_retained(node);
                assert_eq!(sorted(&woken), sorted_model(expected));
            }
            Op::Reclaim { node, owner_node, txn } => {
                let owner = Owner::new(owner_node, txn);
                let expected = model.reclaim(node, owner);
                match (table.reclaim_retained(node, owner), expected) {
                    (Ok(report), Ok((reclaimed, expected_woken))) => {
                        assert_eq!(report.reclaimed, reclaimed);
                        assert_eq!(sorted(&report.woken), sorted_model(expected_woken));
                        woken = report.woken;
                    }
                    (got, expected) => assert_eq!(got.map(|_| ()), expected.map(|_| ())),
                }
            }
        }
        check_fifo(&before, &table, &woken, reclaimer);
        check_table(&table, &model);
    }
    // A coordinator restart restores exactly the retained locks.
    let exported = table.export_retained();
    let restored = LockTable::from_retained(exported.clone(), MAX_WAITERS).expect("a table's own export is consistent");
    assert_eq!(restored.export_retained(), exported);
    let nodes: BTreeSet<NodeId> = exported.iter().map(|lock: &RetainedLock| lock.node).collect();
    for node in nodes {
        assert!(restored.is_failed(node));
    }
    restored.check_invariants().expect("restored table invariants");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
