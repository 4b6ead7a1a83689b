use proptest::prelude::*;

use super::*;

fn lsn_opt() -> impl Strategy<Value = Option<Lsn>> {
    prop_oneof![Just(None), (0u64..u64::MAX / 16).prop_map(|l| Some(Lsn(l * 8)))]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Every kind, with the agent that may carry it.
fn record() -> impl Strategy<Value = (RecordMeta, RecordBody)> {
    let page = (
        any::<u32>(),
        any::<u64>(),
        any::<u32>(),
        bytes(300),
        proptest::option::of(bytes(300)),
    )
        .prop_map(|(file_id, page_no, offset_in_page, before, after)| {
            RecordBody::Undo(PageUndo {
                file_id,
                page_no,
                offset_in_page,
                before,
                after,
            })
        });
    let checkpoint = proptest::collection::vec((any::<u64>(), any::<u64>()), 0..20).prop_map(|v| {
        RecordBody::Checkpoint(
            v.into_iter()
                .map(|(txn, l)| ActiveTxn { txn, first_lsn: Lsn(l) })
                .collect(),
        )
    });
    let intent = proptest::collection::vec((any::<u32>(), any::<u64>()), 0..20).prop_map(|v| {
        RecordBody::CommitIntent(
            v.into_iter()
                .map(|(file_id, page_no)| PageRef { file_id, page_no })
                .collect(),
        )
    });
    let builtin = prop_oneof![
        Just(RecordBody::Begin),
        page,
        Just(RecordBody::Commit),
        Just(RecordBody::Abort),
        Just(RecordBody::End),
        lsn_opt().prop_map(|undo_next| RecordBody::Compensation { undo_next }),
        checkpoint,
        intent,
    ];
    let meta = || (any::<u64>(), lsn_opt(), any::<u32>());
    prop_oneof![
        (meta(), builtin).prop_map(|((txn, prev_lsn, scope), body)| (
            RecordMeta {
                txn,
                prev_lsn,
                scope,
                agent: PAGE_AGENT
            },
            body
        )),
        (meta(), 1u16.., bytes(500)).prop_map(|((txn, prev_lsn, scope), agent, p)| (
            RecordMeta {
                txn,
                prev_lsn,
                scope,
                agent
            },
            RecordBody::AgentUndo(p)
        )),
    ]
}

proptest! {
    #[test]
    fn every_kind_round_trips((meta, body) in record(), at in 0u64..1 << 40) {
        let lsn = Lsn(at * 8);
        validate(&meta, &body).unwrap();
        let mut out = Vec::new();
        encode_into(&mut out, lsn, &meta, &body);
        prop_assert_eq!(out.len() as u64, encoded_len(&body));
        prop_assert_eq!(out.len() % 8, 0);
        let len = match probe(&out, lsn, out.len() as u64) {
            Probe::Valid { len } => len,
            other => return Err(TestCaseError::fail(format!("not valid: {other:?}"))),
        };
        let (rec, kind) = decode(&out[..len as usize]).unwrap();
        prop_assert_eq!(kind, body.kind());
        prop_assert_eq!(rec, Record { lsn, meta, body });
    }

    #[test]
    fn any_flipped_bit_is_caught((meta, body) in record(), bit in any::<prop::sample::Index>()) {
        let lsn = Lsn(4096);
        let mut out = Vec::new();
        encode_into(&mut out, lsn, &meta, &body);
        let len = out.len();
        let Probe::Valid { len: rec_len } = probe(&out, lsn, len as u64) else { panic!("fresh record invalid") };
        // Flip a bit inside the record proper (padding is not covered).
        let i = bit.index(rec_len as usize * 8);
        out[i / 8] ^= 1 << (i % 8);
        match probe(&out, lsn, len as u64) {
            Probe::Valid { .. } => return Err(TestCaseError::fail("flipped bit went unnoticed")),
            Probe::NeedMore { .. } | Probe::Unwritten | Probe::Damaged(_) | Probe::BadLength(_) => {}
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(600), at in 0u64..64, room in 0u64..2000) {
        let lsn = Lsn(at * 8);
        if let Probe::Valid { len } = probe(&data, lsn, room) {
            let _ = decode(&data[..len as usize]);
        }
        let _ = decode(&data);
    }
}

#[test]
fn zeros_are_unwritten_even_at_lsn_zero() {
    assert_eq!(probe(&[0u8; 64], Lsn(0), 64), Probe::Unwritten);
}

#[test]
fn stale_records_are_not_taken_for_this_position() {
    let mut out = Vec::new();
    encode_into(&mut out, Lsn(800), &RecordMeta::txn(1, None), &RecordBody::Commit);
    assert_eq!(probe(&out, Lsn(800), 100), Probe::Valid { len: 40 });
    assert_eq!(probe(&out, Lsn(808), 100), Probe::Unwritten);
}

#[test]
fn a_length_past_the_segment_is_bad_length() {
    let mut out = Vec::new();
    let body = RecordBody::AgentUndo(vec![7; 100]);
    let meta = RecordMeta {
        agent: 3,
        ..RecordMeta::txn(1, None)
    };
    encode_into(&mut out, Lsn(0), &meta, &body);
    assert!(matches!(
        probe(&out, Lsn(0), 64),
        Probe::BadLength(CorruptionKind::BadLength { len: 140, room: 64 })
    ));
}

#[test]
fn batch_start_flag_keeps_the_record_valid() {
    let mut out = Vec::new();
    encode_into(&mut out, Lsn(16), &RecordMeta::txn(1, None), &RecordBody::Begin);
    assert!(!is_batch_start(&out));
    mark_batch_start(&mut out);
    assert!(is_batch_start(&out));
    assert_eq!(probe(&out, Lsn(16), 64), Probe::Valid { len: 40 });
    assert_eq!(decode(&out).unwrap().0.body, RecordBody::Begin);
}

#[test]
fn agents_must_match_their_payloads() {
    let custom = RecordMeta {
        agent: 9,
        ..RecordMeta::txn(1, None)
    };
    let page = RecordBody::Undo(PageUndo {
        file_id: 0,
        page_no: 0,
        offset_in_page: 0,
        before: vec![],
        after: None,
    });
    assert!(matches!(
        validate(&custom, &page),
        Err(EncodeError::AgentMismatch { .. })
    ));
    assert!(matches!(
        validate(&RecordMeta::txn(1, None), &RecordBody::AgentUndo(vec![1])),
        Err(EncodeError::AgentMismatch { .. })
    ));
    assert!(matches!(
        validate(&custom, &RecordBody::AgentUndo(vec![0; MAX_PAYLOAD + 1])),
        Err(EncodeError::TooLarge { .. })
    ));
}

#[test]
fn agent_work_is_bounded_when_written_and_when_read() {
    let custom = RecordMeta {
        agent: 9,
        ..RecordMeta::txn(1, None)
    };
    validate(&custom, &RecordBody::AgentUndo(vec![0; MAX_AGENT_WORK])).unwrap();
    assert_eq!(
        validate(&custom, &RecordBody::AgentUndo(vec![0; MAX_AGENT_WORK + 1])),
        Err(EncodeError::TooLarge {
            payload: MAX_AGENT_WORK + 1,
            max: MAX_AGENT_WORK
        })
    );
    // A record over the bound with a good checksum (written by no writer of
    // this version) is refused as a bad payload, not handed to an agent.
    let mut out = Vec::new();
    encode_into(
        &mut out,
        Lsn(0),
        &custom,
        &RecordBody::AgentUndo(vec![1; MAX_AGENT_WORK + 8]),
    );
    let Probe::Valid { len } = probe(&out, Lsn(0), out.len() as u64) else {
        panic!("the record's checksum holds")
    };
    assert!(matches!(
        decode(&out[..len as usize]),
        Err(CorruptionKind::BadPayload(_))
    ));
}
