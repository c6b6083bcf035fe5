//! Owns the choice of IO driver (io_uring or epoll) and the construction of one monoio runtime
//! per worker thread.
//!
//! io_uring is set up with `IORING_SETUP_COOP_TASKRUN` by default: with monoio 0.2.4's default
//! setup the uring driver measured ~25% slower than epoll on this fleet's kernels, and with
//! cooperative task running it was level with nginx. When the kernel refuses io_uring (seccomp,
//! `kernel.io_uring_disabled`, old kernel) the worker falls back to the legacy epoll driver; it
//! never panics because io_uring is missing.

use std::{fmt, future::Future, io, str::FromStr, time::Duration};

use monoio::{time::TimeDriver, FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};

/// Submission queue entries per worker ring; monoio's own default.
pub const URING_ENTRIES_DEFAULT: u32 = 1024;

/// The runtime type every worker runs: io_uring or epoll, both with timers enabled.
pub type WorkerRuntime = FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

/// Which driver a worker should try to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverKind {
    /// io_uring when the kernel allows it, else epoll.
    #[default]
    Auto,
    /// io_uring; still falls back to epoll (with a warning) rather than failing to start.
    Uring,
    /// epoll only.
    Epoll,
}

impl FromStr for DriverKind {
    type Err = ParseDriverError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "uring" | "io_uring" | "iouring" => Ok(Self::Uring),
            "epoll" | "legacy" => Ok(Self::Epoll),
            _ => Err(ParseDriverError),
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Uring => "uring",
            Self::Epoll => "epoll",
        })
    }
}

/// A driver name other than `auto`, `uring` or `epoll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseDriverError;

impl fmt::Display for ParseDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("driver must be one of: auto, uring, epoll")
    }
}

impl std::error::Error for ParseDriverError {}

/// The driver a worker actually got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveDriver {
    /// io_uring with the cooperative-taskrun setup flag.
    UringCoop,
    /// io_uring with the kernel's default setup (the flag was refused).
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

impl ActiveDriver {
    /// Short stable name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UringCoop => "uring_coop",
            Self::Uring => "uring",
            Self::Epoll => "epoll",
        }
    }
}

impl fmt::Display for ActiveDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds a runtime for the calling thread. The env var `MONOIO_FORCE_LEGACY_DRIVER=1` turns
/// `Auto` and `Uring` into epoll, so a whole test binary can be rerun on the legacy driver.
pub fn build_runtime(kind: DriverKind, entries: u32) -> io::Result<(WorkerRuntime, ActiveDriver)> {
    if kind != DriverKind::Epoll {
        if monoio::utils::detect_uring() {
            let mut coop = io_uring::IoUring::builder();
            coop.setup_coop_taskrun();
            let attempt = RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(entries)
                .uring_builder(coop)
                .enable_timer()
                .build();
            match attempt {
                Ok(rt) => return Ok((rt.into(), ActiveDriver::UringCoop)),
                Err(error) => {
                    tracing::warn!(%error, "io_uring refused COOP_TASKRUN, retrying plain")
                }
            }
            match RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(entries)
                .enable_timer()
                .build()
            {
                Ok(rt) => return Ok((rt.into(), ActiveDriver::Uring)),
                Err(error) => tracing::warn!(%error, "io_uring setup failed, using epoll"),
            }
        } else if kind == DriverKind::Uring {
            tracing::warn!("io_uring requested but unavailable, using epoll");
        }
    }
    let rt = RuntimeBuilder::<LegacyDriver>::new()
        .with_entries(entries)
        .enable_timer()
        .build()?;
    Ok((rt.into(), ActiveDriver::Epoll))
}

/// Runs `fut` to completion on a fresh runtime of the given kind on the calling thread. For
/// tests, tools and the DSP simulator's one-off tasks; workers use [`crate::Server`].
pub fn block_on<F: Future>(kind: DriverKind, fut: F) -> io::Result<(F::Output, ActiveDriver)> {
    let (mut rt, active) = build_runtime(kind, URING_ENTRIES_DEFAULT)?;
    Ok((rt.block_on(fut), active))
}

/// The driver named by `RTB_IO_DRIVER` (`auto|uring|epoll`), `Auto` when unset or invalid.
/// Test binaries use it so CI can run them on each driver.
pub fn driver_from_env() -> DriverKind {
    match std::env::var("RTB_IO_DRIVER") {
        Ok(v) => v.parse().unwrap_or_default(),
        Err(_) => DriverKind::Auto,
    }
}

/// Monoio's timer wheel ticks in milliseconds; deadlines are honoured to this granularity.
pub const TIMER_GRANULARITY: Duration = Duration::from_millis(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_driver_names() {
        assert_eq!("auto".parse::<DriverKind>(), Ok(DriverKind::Auto));
        assert_eq!("URING".parse::<DriverKind>(), Ok(DriverKind::Uring));
        assert_eq!("epoll".parse::<DriverKind>(), Ok(DriverKind::Epoll));
        assert!("kqueue".parse::<DriverKind>().is_err());
    }

    #[test]
    fn epoll_always_builds() {
        let ((), active) = block_on(DriverKind::Epoll, async {}).unwrap();
        assert_eq!(active, ActiveDriver::Epoll);
    }

    #[test]
    fn auto_builds_something() {
        let ((), active) = block_on(DriverKind::Auto, async {
            monoio::time::sleep(Duration::from_millis(1)).await;
        })
        .unwrap();
        tracing::info!(driver = %active, "auto driver");
    }
}
