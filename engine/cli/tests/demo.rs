//! The cluster demo through the program, shortened (`--seconds 1`): it
//! kills node 1, a survivor recovers it, and every check passes — the
//! bank's total, the acknowledged transfers, and the outbox: every
//! published receipt belongs to a committed transfer, each of node 1's
//! acknowledged transfers has its receipt, nothing is left aside.

use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_understudy");

#[test]
fn the_demo_recovers_node_1_and_its_checks_pass() {
    let out = Command::new(EXE)
        .args(["demo", "--seconds", "1"])
        .output()
        .expect("run understudy demo");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    for line in [
        "node 1 killed with SIGKILL",
        "recovered node 1; timeline:",
        "receipts of node 1's in-flight transfers finished by the recovery",
        "outbox: ",
        "none left aside",
        "check passed: total balance",
    ] {
        assert!(said.contains(line), "missing {line:?} in:\n{said}");
    }
}
