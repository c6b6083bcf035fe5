//! Owns child processes under test: started with stdout piped, waited for until they print the
//! lines that say where they listen (`listening on ADDR`), stopped with SIGTERM within a bound,
//! and killed and reaped on drop whatever happens to the test.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// How long a process may take to print its address lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running child process; killed and reaped on drop.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    /// What the process is, for messages.
    pub name: String,
}

impl Process {
    /// Starts `cmd` (its stdout piped; stderr as the caller set it) and waits up to
    /// [`START_TIMEOUT`] for a line starting with each of `prefixes`; returns the rest of each
    /// such line, in the order of `prefixes`. The process is killed when that fails.
    pub fn start(
        mut cmd: Command,
        name: &str,
        prefixes: &[&str],
    ) -> Result<(Process, Vec<String>), String> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut process = Process {
            child: Some(child),
            name: name.to_string(),
        };
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut found: Vec<Option<String>> = vec![None; prefixes.len()];
        let give_up = Instant::now() + START_TIMEOUT;
        while found.iter().any(Option::is_none) {
            let left = give_up.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                process.kill();
                return Err(format!(
                    "{name} did not print {prefixes:?} within {START_TIMEOUT:?}"
                ));
            };
            if let Some(i) = prefixes.iter().position(|p| line.starts_with(p)) {
                found[i] = Some(line[prefixes[i].len()..].trim().to_string());
            }
        }
        Ok((process, found.into_iter().flatten().collect()))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it is still running.
    pub fn is_alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends SIGTERM and waits up to `within` for the exit; `None` when it did not exit in time
    /// (it is then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            return None;
        };
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet (so the pid
        // cannot have been reused); no memory is passed.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let give_up = Instant::now() + within;
        while Instant::now() < give_up {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.kill();
        None
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
