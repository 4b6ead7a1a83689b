//! Deadlock detection over wait-for edges.
//!
//! Every wait of the cluster passes through the coordinator's lock table, so
//! the table alone can see a cycle that spans nodes. The coordinator takes
//! the edges ([`crate::LockTable::wait_for_edges`]), looks for a cycle, and
//! cancels the victim's waits. The edges are gathered resource by resource,
//! not in one atomic snapshot, so a cycle found is a strong suggestion rather
//! than a proof; cancelling a request that was granted in the meantime is
//! harmless ([`crate::LockTable::cancel`] reports that it was not waiting).

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{Owner, ResourceId, Ticket};

/// `waiter` cannot be granted `ticket` before `holder` lets go of `resource`
/// (or, for a request queued behind another, before `holder`'s own request
/// there is granted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaitEdge {
    /// The owner that waits.
    pub waiter: Owner,
    /// The queued request it waits with.
    pub ticket: Ticket,
    /// The owner it waits for.
    pub holder: Owner,
    /// Where.
    pub resource: ResourceId,
}

/// A cycle of waits and the owner chosen to break it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deadlock {
    /// The owners on the cycle, each waiting for the next and the last for
    /// the first.
    pub cycle: Vec<Owner>,
    /// The youngest owner on the cycle: the largest transaction number, ties
    /// broken by the larger node id. It has done the least work, so aborting
    /// it wastes the least. (Transaction numbers are per node, so "youngest"
    /// is exact only within a node; across nodes it is a deterministic
    /// choice that every coordinator makes the same way.)
    pub victim: Owner,
    /// The victim's queued requests on the cycle's edges: cancelling them
    /// and aborting the victim's transaction breaks the cycle.
    pub victim_tickets: Vec<Ticket>,
}

/// Finds one cycle among `edges`, if there is any, and picks its victim.
/// Deterministic: the same edges give the same answer.
pub fn find_deadlock(edges: &[WaitEdge]) -> Option<Deadlock> {
    let mut graph: BTreeMap<Owner, BTreeSet<Owner>> = BTreeMap::new();
    for edge in edges {
        if edge.waiter != edge.holder {
            graph.entry(edge.waiter).or_default().insert(edge.holder);
        }
    }
    let graph: BTreeMap<Owner, Vec<Owner>> = graph
        .into_iter()
        .map(|(waiter, holders)| (waiter, holders.into_iter().collect()))
        .collect();
    let cycle = find_cycle(&graph)?;
    let victim = *cycle.iter().max_by_key(|owner| (owner.txn, owner.node))?;
    let next = cycle
        .iter()
        .position(|owner| *owner == victim)
        .and_then(|at| cycle.get((at + 1) % cycle.len()).copied())?;
    let victim_tickets: BTreeSet<Ticket> = edges
        .iter()
        .filter(|edge| edge.waiter == victim && edge.holder == next)
        .map(|edge| edge.ticket)
        .collect();
    Some(Deadlock {
        cycle,
        victim,
        victim_tickets: victim_tickets.into_iter().collect(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Colour {
    /// On the current search path.
    Open,
    /// Fully explored: no cycle goes through it.
    Done,
}

/// Iterative depth-first search (no recursion, so a long chain of waits
/// cannot overflow the stack). Returns the vertices of the first cycle met.
fn find_cycle(graph: &BTreeMap<Owner, Vec<Owner>>) -> Option<Vec<Owner>> {
    let no_successors: &[Owner] = &[];
    let successors = |owner: &Owner| graph.get(owner).map_or(no_successors, Vec::as_slice);
    let mut colour: BTreeMap<Owner, Colour> = BTreeMap::new();
    for &start in graph.keys() {
        if colour.contains_key(&start) {
            continue;
        }
        // The search path, each vertex with the index of its next successor.
        let mut path: Vec<(Owner, usize)> = vec![(start, 0)];
        colour.insert(start, Colour::Open);
        while let Some((vertex, next)) = path.last_mut() {
            let Some(&successor) = successors(vertex).get(*next) else {
                colour.insert(*vertex, Colour::Done);
                path.pop();
                continue;
            };
            *next += 1;
            match colour.get(&successor) {
                Some(Colour::Open) => {
                    let from = path.iter().position(|(owner, _)| *owner == successor)?;
                    return Some(path.get(from..)?.iter().map(|(owner, _)| *owner).collect());
                }
                Some(Colour::Done) => {}
                None => {
                    colour.insert(successor, Colour::Open);
                    path.push((successor, 0));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(waiter: Owner, holder: Owner, ticket: u64) -> WaitEdge {
        let resource = ResourceId::new(0, ticket);
        WaitEdge {
            waiter,
            ticket: Ticket::new(ticket, waiter, resource),
            holder,
            resource,
        }
    }

    #[test]
    fn no_edges_no_deadlock() {
        assert_eq!(find_deadlock(&[]), None);
    }

    #[test]
    fn chain_is_not_a_deadlock() {
        let (a, b, c) = (Owner::new(1, 1), Owner::new(2, 2), Owner::new(3, 3));
        assert_eq!(find_deadlock(&[edge(a, b, 1), edge(b, c, 2)]), None);
    }

    #[test]
    fn cross_node_cycle_picks_youngest() {
        let (a, b, c) = (Owner::new(1, 10), Owner::new(2, 30), Owner::new(3, 20));
        let edges = [edge(a, b, 1), edge(b, c, 2), edge(c, a, 3)];
        let found = find_deadlock(&edges).expect("a three-owner cycle");
        assert_eq!(found.cycle.len(), 3);
        assert_eq!(found.victim, b);
        assert_eq!(found.victim_tickets, vec![edges[1].ticket]);
    }

    #[test]
    fn cycle_behind_a_tail_is_found() {
        let (a, b, c, d) = (Owner::new(1, 1), Owner::new(1, 2), Owner::new(2, 3), Owner::new(2, 4));
        let found = find_deadlock(&[edge(a, b, 1), edge(b, c, 2), edge(c, d, 3), edge(d, b, 4)]).expect("b-c-d");
        assert_eq!(found.cycle, vec![b, c, d]);
        assert_eq!(found.victim, d);
    }
}
