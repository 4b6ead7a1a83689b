//! The file outbox behind a probe, for the kill -9 tests of scopes and of
//! peer recovery: it remembers every call the engine makes to the agent
//! (so a test can say which work a recovery made final or undid, which the
//! outbox's directories alone cannot: publishing a file a failed scope
//! already removed finds nothing and says nothing), and in a child process
//! it can stop before a chosen call, print where it stopped and wait for
//! the parent's SIGKILL.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use understudy::{AgentError, Agents, FileOutbox, NodeOptions, RecoveryAgent, Work};

use crate::common::OUTBOX;

/// Which of the agent's two calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Commit,
    Undo,
}

/// Where a child's probe stops: before its `n`-th call (0-based) of kind
/// `call`, printing `AT <label>`.
#[derive(Clone, Debug)]
pub struct Stop {
    pub call: Call,
    pub n: u32,
    pub label: String,
}

/// See the module docs.
pub struct Probe {
    inner: FileOutbox,
    stop: Option<Stop>,
    commits: AtomicU32,
    undos: AtomicU32,
    calls: Mutex<Vec<(Call, String)>>,
}

/// The name a file outbox work identifier publishes under: the bytes after
/// the version, the 16-byte tag and the length (the outbox's work
/// identifier format, version 1).
fn name_of(work: &Work<'_>) -> String {
    String::from_utf8_lossy(&work.id[18..]).into_owned()
}

/// Prints `AT <label>` for the parent, which kills the child on that line.
pub fn announce(label: &str) {
    println!("AT {label}");
    std::io::stdout().flush().unwrap();
}

/// Waits for the kill. Bounded: the parent kills the child within seconds
/// of its announcement; a child left over ends here.
pub fn hang() -> ! {
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(3)
}

impl Probe {
    fn arrive(&self, call: Call, work: &Work<'_>) {
        let counter = match call {
            Call::Commit => &self.commits,
            Call::Undo => &self.undos,
        };
        let n = counter.fetch_add(1, Ordering::SeqCst);
        if let Some(stop) = self.stop.as_ref().filter(|s| s.call == call && s.n == n) {
            announce(&stop.label);
            hang();
        }
        self.calls.lock().unwrap().push((call, name_of(work)));
    }

    /// Every call made so far, oldest first, as (call, file name).
    pub fn calls(&self) -> Vec<(Call, String)> {
        self.calls.lock().unwrap().clone()
    }

    /// The names of the files of the calls of kind `call`, sorted.
    pub fn names(&self, call: Call) -> Vec<String> {
        let mut names: Vec<String> = self
            .calls()
            .into_iter()
            .filter(|(c, _)| *c == call)
            .map(|(_, n)| n)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

impl RecoveryAgent for Probe {
    fn commit(&self, work: &Work<'_>) -> Result<(), AgentError> {
        self.arrive(Call::Commit, work);
        self.inner.commit(work)
    }
    fn undo(&self, work: &Work<'_>) -> Result<(), AgentError> {
        self.arrive(Call::Undo, work);
        self.inner.undo(work)
    }
}

/// Options for a node of the cluster in `dir` that registers the file
/// outbox on `dir/outbox`, behind a probe stopping at `stop`, as resource
/// [`OUTBOX`]; with the outbox and the probe.
pub fn probed_opts(dir: &Path, opts: NodeOptions, stop: Option<Stop>) -> (NodeOptions, FileOutbox, Arc<Probe>) {
    let outbox = FileOutbox::open(OUTBOX, &dir.join("outbox")).unwrap();
    let probe = Arc::new(Probe {
        inner: outbox.clone(),
        stop,
        commits: AtomicU32::new(0),
        undos: AtomicU32::new(0),
        calls: Mutex::new(Vec::new()),
    });
    let agents = Agents::new().with(OUTBOX, probe.clone()).unwrap();
    (NodeOptions { agents, ..opts }, outbox, probe)
}
