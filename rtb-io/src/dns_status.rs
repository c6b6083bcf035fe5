//! Owns what `/metrics` shows of a control thread's name resolution: every lookup of a
//! [`Resolver`] counted by result (`rtb_dns_lookups_total{result}`: ok, error, timeout) and the
//! addresses each name has as last published (`rtb_dsp_addresses{dsp}`). Written by the
//! control thread only, read on scrape.

use std::{
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use crate::{
    metrics_text::{escape_label, header},
    resolve::{Answer, LookupError, Resolver},
};

/// Lookup results, in the order of the counters.
const RESULTS: [&str; 3] = ["ok", "error", "timeout"];

/// Lookup counters and each name's address count.
#[derive(Debug, Default)]
pub struct DnsStatus {
    lookups: [AtomicU64; RESULTS.len()],
    /// Each DSP's name and address count, as last published to the workers.
    addresses: Mutex<Vec<(String, usize)>>,
}

impl DnsStatus {
    /// One lookup with `resolver`, counted by result.
    pub fn lookup(
        &self,
        resolver: &Resolver,
        host: &str,
        port: u16,
    ) -> Result<Answer, LookupError> {
        let result = resolver(host, port);
        let i = match &result {
            Ok(_) => 0,
            Err(LookupError::Failed(_)) => 1,
            Err(LookupError::TimedOut) => 2,
        };
        self.lookups[i].fetch_add(1, Ordering::Relaxed);
        result
    }

    /// Records the address count of every DSP (the snapshot just published).
    pub fn published(&self, counts: impl Iterator<Item = (String, usize)>) {
        if let Ok(mut addresses) = self.addresses.lock() {
            *addresses = counts.collect();
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

/// A status shared by the control thread and the debug port.
pub fn status() -> Arc<DnsStatus> {
    Arc::new(DnsStatus::default())
}

#[cfg(test)]
mod tests {
    use std::{net::SocketAddr, time::Duration};

    use super::*;

    #[test]
    fn counts_lookups_by_result_and_renders_address_counts() {
        let resolver: Resolver = Arc::new(|host, port| match host {
            "ok" => Ok(Answer {
                addrs: vec![SocketAddr::from(([10, 0, 0, 1], port))],
                ttl: Some(Duration::from_secs(5)),
            }),
            "slow" => Err(LookupError::TimedOut),
            _ => Err(LookupError::Failed("nxdomain".into())),
        });
        let status = DnsStatus::default();
        for host in ["ok", "ok", "slow", "nope"] {
            let _ = status.lookup(&resolver, host, 80);
        }
        status.published([("a\"b".to_string(), 2)].into_iter());
        let mut text = String::new();
        status.render(&mut text);
        for line in [
            "rtb_dns_lookups_total{result=\"ok\"} 2\n",
            "rtb_dns_lookups_total{result=\"error\"} 1\n",
            "rtb_dns_lookups_total{result=\"timeout\"} 1\n",
            "# TYPE rtb_dsp_addresses gauge\nrtb_dsp_addresses{dsp=\"a\\\"b\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
