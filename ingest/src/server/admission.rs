//! How many connections are open, in all and per client IP; a connection over either cap
//! is refused at once, before it costs a task or a buffer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The caps, and the count of open connections by peer address.
#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener holds its maximum number of connections.
    Total,
    /// This peer address holds its maximum number of connections.
    PerIp,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
        }
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Ticket {
    inner: Arc<Inner>,
    /// `None` for a trusted proxy, which is not counted per address.
    ip: Option<IpAddr>,
}

impl Admission {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Admission {
            inner: Arc::new(Inner {
                max_total,
                max_per_ip,
                open: Mutex::default(),
            }),
        }
    }

    /// Admits a connection from `ip` if both caps allow. `per_ip` is false for trusted
    /// proxies: every client behind them shares their address, so only the total bounds
    /// them (and the rate limits, per forwarded client, still apply to their requests).
    pub fn admit(&self, ip: IpAddr, per_ip: bool) -> Result<Ticket, Refusal> {
        let mut open = self.inner.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.inner.max_total {
            return Err(Refusal::Total);
        }
        let ip = per_ip.then_some(ip);
        if let Some(ip) = ip {
            let count = open.by_ip.entry(ip).or_default();
            if *count >= self.inner.max_per_ip {
                return Err(Refusal::PerIp);
            }
            *count += 1;
        }
        open.total += 1;
        Ok(Ticket {
            inner: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.inner.open.lock().unwrap_or_else(PoisonError::into_inner).total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.inner.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total -= 1;
        if let Some(ip) = self.ip
            && let Some(count) = open.by_ip.get_mut(&ip)
        {
            *count -= 1;
            if *count == 0 {
                // Forget the address: the map holds only addresses with open connections.
                open.by_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn each_address_has_its_cap_and_all_share_the_total() {
        let admission = Admission::new(3, 2);
        let a1 = admission.admit(ip(1), true).unwrap();
        let _a2 = admission.admit(ip(1), true).unwrap();
        assert_eq!(admission.admit(ip(1), true).unwrap_err(), Refusal::PerIp);
        let _b1 = admission.admit(ip(2), true).unwrap();
        assert_eq!(admission.admit(ip(3), true).unwrap_err(), Refusal::Total);
        drop(a1);
        assert_eq!(admission.open(), 2);
        let _a3 = admission.admit(ip(1), true).unwrap();
    }

    #[test]
    fn a_trusted_proxy_is_bounded_by_the_total_only() {
        let admission = Admission::new(3, 1);
        let tickets: Vec<_> = (0..3).map(|_| admission.admit(ip(9), false).unwrap()).collect();
        assert_eq!(admission.admit(ip(9), false).unwrap_err(), Refusal::Total);
        drop(tickets);
        assert_eq!(admission.open(), 0);
    }

    #[test]
    fn closed_connections_leave_no_trace() {
        let admission = Admission::new(10, 10);
        for last in 0..5 {
            drop(admission.admit(ip(last), true).unwrap());
        }
        assert!(admission.inner.open.lock().unwrap().by_ip.is_empty());
    }
}
