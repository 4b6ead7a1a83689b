//! Round trips of every message through frames, and damaged frames.

use proptest::prelude::*;
use zerocopy::little_endian::{U32, U64};
use zerocopy::IntoBytes;

use super::*;
use crate::ids::ResourceId;
use crate::mode::LockMode;

fn mode() -> impl Strategy<Value = LockMode> {
    prop::sample::select(LockMode::ALL.to_vec())
}

fn resource() -> impl Strategy<Value = ResourceId> {
    (any::<u32>(), any::<u64>()).prop_map(|(s, i)| ResourceId::new(s, i))
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (any::<u32>(), 1u8..5, any::<u64>(), any::<u32>(), any::<bool>()).prop_map(
            |(node, p, incarnation, pid, launches_restarts)| Msg::Hello {
                node,
                purpose: [Purpose::Join, Purpose::Rejoin, Purpose::Restart, Purpose::Operator][p as usize - 1],
                incarnation,
                pid,
                launches_restarts,
            }
        ),
        any::<[u8; 32]>().prop_map(|mac| Msg::AuthProof { mac }),
        Just(Msg::Heartbeat),
        (any::<u64>(), resource(), mode(), any::<u32>(), any::<bool>()).prop_map(
            |(txn, resource, mode, wait_ms, live_only)| Msg::Lock {
                txn,
                resource,
                mode,
                wait_ms,
                live_only
            }
        ),
        (any::<u64>(), resource()).prop_map(|(txn, resource)| Msg::Release { txn, resource }),
        any::<u64>().prop_map(|txn| Msg::ReleaseAll { txn }),
        any::<u32>().prop_map(|failed| Msg::RegisterCounterpart { failed }),
        (
            any::<u32>(),
            any::<u64>(),
            any::<bool>(),
            prop::collection::vec((resource(), any::<u128>()), 0..8)
        )
            .prop_map(|(failed, token, r, values)| Msg::UnregisterCounterpart {
                failed,
                token,
                outcome: if r { Outcome::Recovered } else { Outcome::Abandoned },
                values
            }),
        any::<u32>().prop_map(|node| Msg::RequestRestart { node }),
        Just(Msg::Status),
        any::<u32>().prop_map(|node| Msg::ListRetained { node }),
        prop::collection::vec((any::<u64>(), resource(), mode()), 0..20).prop_map(|v| Msg::Reassert {
            locks: v
                .into_iter()
                .map(|(txn, resource, mode)| HeldLock { txn, resource, mode })
                .collect()
        }),
        Just(Msg::RestartFinished),
        Just(Msg::Leave),
        any::<[u8; 32]>().prop_map(|nonce| Msg::Challenge { nonce }),
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<[u8; 32]>()).prop_map(
            |(incarnation, lease_ms, heartbeat_ms, log_proof)| Msg::Welcome {
                incarnation,
                lease_ms,
                heartbeat_ms,
                log_proof,
            }
        ),
        Just(Msg::Ok),
        (mode(), prop::option::of(any::<u128>())).prop_map(|(mode, value)| Msg::Granted { mode, value }),
        prop::collection::vec((resource(), any::<u128>()), 0..8).prop_map(|values| Msg::Publish { values }),
        (any::<u32>(), resource(), ".{0,40}").prop_map(|(node, resource, message)| Msg::Error {
            code: ErrorCode::Retained,
            node,
            resource,
            message
        }),
        (
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            any::<[u8; 32]>()
        )
            .prop_map(|(failed, incarnation, token, blind, log_proof)| Msg::CounterpartGrant {
                failed,
                incarnation,
                token,
                blind,
                log_proof,
            }),
        (
            any::<u32>(),
            any::<u64>(),
            prop::collection::vec((resource(), mode()), 0..20)
        )
            .prop_map(|(failed, token, locks)| Msg::RebuildRetained { failed, token, locks }),
        (any::<u32>(), any::<u32>()).prop_map(|(failed, by)| Msg::AskRecovery { failed, by }),
        prop::collection::vec(
            (
                any::<u32>(),
                any::<bool>(),
                any::<u64>(),
                0u8..4,
                any::<u32>(),
                any::<u32>()
            ),
            0..10
        )
        .prop_map(|v| Msg::StatusReply {
            members: v
                .into_iter()
                .map(
                    |(node, live, incarnation, recovery, counterpart, retained_locks)| MemberInfo {
                        node,
                        live,
                        incarnation,
                        recovery,
                        counterpart,
                        retained_locks
                    }
                )
                .collect()
        }),
        prop::collection::vec((resource(), mode()), 0..10).prop_map(|locks| Msg::RetainedList { locks }),
        (any::<u32>(), any::<u64>()).prop_map(|(node, incarnation)| Msg::Event {
            kind: EventKind::NodeFailed,
            node,
            incarnation
        }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(id in any::<u64>(), m in msg()) {
        let bytes = encode(id, &m);
        let (got_id, got, used) = decode_frame(&bytes).unwrap().unwrap();
        prop_assert_eq!(got_id, id);
        prop_assert_eq!(got, m.clone());
        prop_assert_eq!(used, bytes.len());
        // Through a stream too.
        let mut cursor = std::io::Cursor::new(bytes.clone());
        let (sid, sm) = read_frame(&mut cursor).unwrap().unwrap();
        prop_assert_eq!(sid, id);
        prop_assert_eq!(sm, m);
    }

    #[test]
    fn truncated_or_damaged_frames_are_refused(m in msg(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
        let bytes = encode(7, &m);
        let n = cut.index(bytes.len());
        prop_assert!(decode_frame(&bytes[..n]).map(|f| f.is_none()).unwrap_or(true));
        let mut damaged = bytes.clone();
        let i = flip.index(damaged.len() * 8);
        damaged[i / 8] ^= 1 << (i % 8);
        if let Ok(Some((_, got, _))) = decode_frame(&damaged) {
            prop_assert!(false, "damaged frame accepted as {got:?}");
        }
    }
}

#[test]
fn a_lying_list_count_allocates_nothing() {
    let mut payload = Vec::new();
    payload.extend_from_slice(&u32::MAX.to_le_bytes());
    let h = FrameHeader {
        magic: MAGIC,
        version: VERSION,
        msg_type: 0x0C,
        payload_len: U32::new(payload.len() as u32),
        request_id: U64::new(1),
        crc: U32::new(0),
    };
    let mut h2 = h;
    h2.crc = U32::new(crc32c::crc32c_append(crc32c::crc32c(&h.as_bytes()[..16]), &payload));
    assert!(matches!(decode(&h2, &payload), Err(WireError::Malformed(_))));
}
