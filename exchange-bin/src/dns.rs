//! Owns the exchange's DNS as the control thread uses it (the resolver is
//! `rtb_io::dns::control_resolver`: TTL-aware DNS, or getaddrinfo when the system's DNS
//! configuration cannot be read): each lookup counted by result, and the addresses each DSP
//! has, for `/metrics` (`rtb_dns_lookups_total{result}`, `rtb_dsp_addresses{dsp}`).

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use rtb_core::{directory::Resolved, dns::Answer};
use rtb_io::resolve::{LookupError, Resolver};

use rtb_io::metrics_text::{escape_label, header};

/// Lookup results, in the order of the counters.
const RESULTS: [&str; 3] = ["ok", "error", "timeout"];

/// What `/metrics` shows of DNS; written by the control thread only.
#[derive(Debug, Default)]
pub struct DnsStatus {
    lookups: [AtomicU64; RESULTS.len()],
    /// Each DSP's name and address count, as last published to the workers.
    addresses: Mutex<Vec<(String, usize)>>,
}

impl DnsStatus {
    /// Counts one lookup's result.
    fn count(&self, result: &Result<rtb_io::resolve::Answer, LookupError>) {
        let i = match result {
            Ok(_) => 0,
            Err(LookupError::Failed(_)) => 1,
            Err(LookupError::TimedOut) => 2,
        };
        self.lookups[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Records the address count of every DSP in `resolved` (the snapshot just published).
    pub fn published(&self, resolved: &Resolved) {
        let counts = (resolved.dsps.iter())
            .map(|d| (d.entry.name.clone(), d.addrs.len()))
            .collect();
        if let Ok(mut addresses) = self.addresses.lock() {
            *addresses = counts;
        }
    }

    /// `rtb_dns_lookups_total{result}` and `rtb_dsp_addresses{dsp}`.
    pub fn render(&self, out: &mut String) {
        let name = "rtb_dns_lookups_total";
        header(out, name, "counter", "DSP host name lookups by result.");
        for (result, n) in RESULTS.iter().zip(&self.lookups) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {n}");
        }
        let name = "rtb_dsp_addresses";
        header(out, name, "gauge", "Addresses each DSP's host resolved to.");
        let mut label = String::new();
        if let Ok(addresses) = self.addresses.lock() {
            for (dsp, n) in addresses.iter() {
                label.clear();
                escape_label(dsp, &mut label);
                let _ = writeln!(out, "{name}{{dsp=\"{label}\"}} {n}");
            }
        }
    }
}

/// One lookup with `resolver`, counted in `status`, in the directory's terms.
pub fn lookup(
    resolver: &Resolver,
    status: &DnsStatus,
    host: &str,
    port: u16,
) -> Result<Answer, String> {
    let result = resolver(host, port);
    status.count(&result);
    result
        .map(|a| Answer {
            addrs: a.addrs,
            ttl: a.ttl,
        })
        .map_err(|e| e.to_string())
}

/// A status shared by the control thread and the debug port.
pub fn status() -> Arc<DnsStatus> {
    Arc::new(DnsStatus::default())
}
