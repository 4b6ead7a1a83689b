//! Child processes for Understudy's tests, benchmarks and demos.
//!
//! Every test, benchmark and demo that starts a process of its own (a node,
//! a coordinator, a log appender it kills) holds it in a [`ChildGuard`],
//! which kills it with SIGKILL and reaps it when dropped, on every path out
//! — an error, a failed assertion, a panic — so no run leaves a process
//! behind. Waits are bounded: [`ChildGuard::wait_timeout`] and
//! [`wait_for`] give up after a limit instead of hanging a run.
//!
//! This package owns processes only; it knows nothing of logs, locks or
//! nodes, and depends on nothing.

#![warn(missing_docs)]

use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A child process that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    /// `None` once reaped.
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `cmd` and guards the process.
    pub fn spawn(cmd: &mut Command) -> io::Result<ChildGuard> {
        Ok(ChildGuard::new(cmd.spawn()?))
    }

    /// Guards a process already started.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child: Some(child) }
    }

    /// The process id (also after it was reaped, though the kernel may give
    /// it to another process then).
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process, while it is not reaped: for its pipes.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Takes the process's piped standard output.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// Takes the process's piped standard input.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.as_mut().and_then(|c| c.stdin.take())
    }

    /// Whether the process is still running (not exited, or exited but not
    /// reaped by this guard yet: it is reaped here if it has exited).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) => {
                self.child = None;
                false
            }
            Some(Err(_)) | None => false,
        }
    }

    /// SIGKILL — no handler runs, nothing is flushed, exactly a crash of the
    /// process — then reaps it and returns how it ended. A process that had
    /// already exited is reaped with its own status. Errors if it was
    /// reaped before.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("the child was already reaped"))?;
        // Fails only if the process has already exited; `wait` then
        // reports how.
        let _ = child.kill();
        child.wait()
    }

    /// Waits at most `limit` for the process to exit, polling; `None` if it
    /// is still running then (it is left running, and guarded).
    pub fn wait_timeout(&mut self, limit: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self
                .child
                .as_mut()
                .ok_or_else(|| io::Error::other("the child was already reaped"))?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the process to exit (unbounded: for a process that ends by
    /// itself, such as one whose stdin was closed).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| io::Error::other("the child was already reaped"))?;
        child.wait()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads `out` line by line on a thread of its own until it closes (or a
/// line is not UTF-8), sending each line to the returned channel as it comes;
/// the thread returns every line it read. A receiver that stops listening
/// does not stop the reading.
pub fn read_lines(out: impl Read + Send + 'static) -> (Receiver<String>, JoinHandle<Vec<String>>) {
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    (rx, reader)
}

/// Reads all of `out` (a child's stderr, say) on a thread of its own until
/// it closes; the thread returns what it read, lossily decoded. Reading on a
/// thread keeps a chatty child from blocking on a full pipe meanwhile.
pub fn read_all(mut out: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Polls `done` every `poll` until it holds (`true`) or `limit` has passed
/// (`false`, `done` having been asked one last time at the limit).
pub fn wait_for(limit: Duration, poll: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    #[test]
    fn a_dropped_guard_kills_and_reaps_its_process() {
        let mut g = ChildGuard::spawn(Command::new("sleep").arg("60")).unwrap();
        let pid = g.id().unwrap();
        assert!(g.alive());
        drop(g);
        // Killed and reaped: the process is gone from the process table (a
        // zombie, killed but not reaped, would still be listed).
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn kill_reports_sigkill_and_refuses_a_second_time() {
        use std::os::unix::process::ExitStatusExt;
        let mut g = ChildGuard::spawn(Command::new("sleep").arg("60")).unwrap();
        assert_eq!(g.kill().unwrap().signal(), Some(9));
        assert!(g.kill().is_err());
        assert!(!g.alive());
    }

    #[test]
    fn lines_and_bounded_waits() {
        let mut g = ChildGuard::spawn(Command::new("printf").arg("a\\nb\\n").stdout(Stdio::piped())).unwrap();
        let (rx, reader) = read_lines(g.take_stdout().unwrap());
        assert_eq!(rx.recv().unwrap(), "a");
        assert_eq!(reader.join().unwrap(), ["a", "b"]);
        assert!(g.wait_timeout(Duration::from_secs(10)).unwrap().unwrap().success());

        let mut g = ChildGuard::spawn(Command::new("printf").arg("x\\ny").stdout(Stdio::piped())).unwrap();
        assert_eq!(read_all(g.take_stdout().unwrap()).join().unwrap(), "x\ny");
        assert!(g.wait_timeout(Duration::from_secs(10)).unwrap().unwrap().success());

        let mut s = ChildGuard::spawn(Command::new("sleep").arg("60")).unwrap();
        assert!(s.wait_timeout(Duration::from_millis(20)).unwrap().is_none());
        let mut n = 0;
        assert!(!wait_for(Duration::from_millis(20), Duration::from_millis(5), || {
            n += 1;
            false
        }));
        assert!(n >= 2);
    }
}
