//! The client's address behind trusted reverse proxies, read so that a client cannot
//! choose it.
//!
//! A proxy appends the address it received the request from to the right end of
//! `X-Forwarded-For` (or of `Forwarded`); everything left of that was sent by the client
//! or by proxies we do not know, and may be forged. So the list is read from the right:
//! entries naming trusted proxies are skipped, and the first other entry is the client.
//! Proxies write entries in several forms (`198.51.100.8`, `198.51.100.8:4711`,
//! `[2001:db8::7]:443`, `unknown`, obfuscated `_hidden`): an entry that is not a usable
//! address ends the walk, and the request counts as the trusted hop that wrote it, never
//! as an entry further left, which the client could have written.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// Which header the trusted proxies write. Only one is read: a header the proxies do not
/// write passes through them untouched, so it is whatever the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// Who is behind the connection.
#[derive(Debug, Clone)]
pub struct ClientAddress {
    trusted_proxies: Vec<IpAddr>,
    header: ForwardedHeader,
}

impl ClientAddress {
    pub fn new(trusted_proxies: &[IpAddr], header: ForwardedHeader) -> Self {
        ClientAddress {
            trusted_proxies: trusted_proxies.iter().map(|ip| ip.to_canonical()).collect(),
            header,
        }
    }

    /// Whether `ip` is one of the trusted proxies. IPv4-mapped IPv6 addresses (a
    /// dual-stack listener's view of IPv4 peers) are read as the IPv4 addresses they are.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.contains(&ip.to_canonical())
    }

    /// The client's address: the peer itself unless it is a trusted proxy; then the
    /// nearest untrusted entry of the forwarding header, or the trusted hop whose entry
    /// to its left is not a usable address.
    pub fn of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut hop = peer.to_canonical();
        if !self.is_trusted(hop) {
            return hop;
        }
        let values: Vec<&str> = headers
            .get_all(self.header.name())
            .iter()
            .map(|value| value.to_str().unwrap_or("\u{0}"))
            .collect();
        // Several header lines are one list, in order (RFC 9110, section 5.3).
        for entry in values.iter().rev().flat_map(|value| value.rsplit(',')) {
            let address = match self.header {
                ForwardedHeader::XForwardedFor => node_address(entry),
                ForwardedHeader::Forwarded => forwarded_for(entry).and_then(node_address),
            };
            match address {
                Some(ip) if self.is_trusted(ip) => hop = ip,
                Some(ip) => return ip,
                None => return hop,
            }
        }
        hop
    }
}

/// An address as proxies write a node: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`, possibly quoted; `None` for `unknown`, an
/// obfuscated identifier (`_hidden`) or anything else.
fn node_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let entry = entry
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(entry);
    if let Ok(ip) = IpAddr::from_str(entry) {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = SocketAddr::from_str(entry) {
        return Some(socket.ip().to_canonical());
    }
    let bracketed = entry.strip_prefix('[')?.split_once(']')?;
    match bracketed {
        (ip, "") => IpAddr::from_str(ip).ok(),
        (ip, port) if port.strip_prefix(':').is_some_and(valid_port) => IpAddr::from_str(ip).ok(),
        _ => None,
    }
    .map(|ip| ip.to_canonical())
}

/// RFC 7239 allows obfuscated ports (`_abc`) as well as numbers.
fn valid_port(port: &str) -> bool {
    port.parse::<u16>().is_ok() || port.starts_with('_')
}

/// The `for=` parameter of one `Forwarded` element; `None` when it has none (an element
/// without `for` says nothing of the client, so it cannot be skipped over).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then_some(value.trim())
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const PROXY: &str = "10.0.0.2";
    const PEER_PROXY: &str = "10.0.0.1";

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn client(header: ForwardedHeader, peer: &str, lines: &[&str]) -> IpAddr {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(header.name(), HeaderValue::from_str(line).unwrap());
        }
        ClientAddress::new(&[ip(PEER_PROXY), ip(PROXY)], header).of(ip(peer), &headers)
    }

    fn xff(lines: &[&str]) -> IpAddr {
        client(ForwardedHeader::XForwardedFor, PEER_PROXY, lines)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        assert_eq!(
            client(ForwardedHeader::XForwardedFor, "203.0.113.9", &["198.51.100.1"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_nearest_untrusted_entry_is_the_client() {
        assert_eq!(xff(&["198.51.100.66, 198.51.100.8"]), ip("198.51.100.8"));
        assert_eq!(xff(&["198.51.100.66, 198.51.100.8, 10.0.0.2"]), ip("198.51.100.8"));
        assert_eq!(xff(&["198.51.100.66", "198.51.100.8"]), ip("198.51.100.8"));
        assert_eq!(xff(&[]), ip(PEER_PROXY));
        assert_eq!(xff(&["10.0.0.2"]), ip(PROXY));
    }

    #[test]
    fn entries_with_ports_and_brackets_are_addresses() {
        assert_eq!(xff(&["198.51.100.66, 198.51.100.8:4711"]), ip("198.51.100.8"));
        assert_eq!(xff(&["198.51.100.66, [2001:db8::7]:443"]), ip("2001:db8::7"));
        assert_eq!(xff(&["198.51.100.66, [2001:db8::7]"]), ip("2001:db8::7"));
        assert_eq!(xff(&["198.51.100.66, 2001:db8::7"]), ip("2001:db8::7"));
        assert_eq!(xff(&["198.51.100.66, ::ffff:198.51.100.8"]), ip("198.51.100.8"));
    }

    #[test]
    fn an_unusable_entry_counts_as_the_proxy_that_wrote_it_never_as_one_further_left() {
        for forged in ["unknown", "_hidden", "garbage", "[2001:db8::7]:x", ""] {
            assert_eq!(
                xff(&[&format!("198.51.100.66, {forged}")]),
                ip(PEER_PROXY),
                "{forged:?}"
            );
            assert_eq!(
                xff(&[&format!("198.51.100.66, {forged}, 10.0.0.2")]),
                ip(PROXY),
                "{forged:?} behind a second proxy"
            );
        }
    }

    #[test]
    fn forwarded_elements_are_read_from_the_right() {
        let forwarded = |lines: &[&str]| client(ForwardedHeader::Forwarded, PEER_PROXY, lines);
        assert_eq!(
            forwarded(&["for=198.51.100.66, for=198.51.100.8;proto=https;by=10.0.0.1"]),
            ip("198.51.100.8")
        );
        assert_eq!(
            forwarded(&[r#"for=198.51.100.66, for="[2001:db8:cafe::17]:4711""#]),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(forwarded(&["For=198.51.100.66, FOR=10.0.0.2"]), ip("198.51.100.66"));
        assert_eq!(forwarded(&["for=198.51.100.66, for=unknown"]), ip(PEER_PROXY));
        assert_eq!(forwarded(&["for=198.51.100.66, for=_gazonk"]), ip(PEER_PROXY));
        assert_eq!(forwarded(&["for=198.51.100.66, proto=https"]), ip(PEER_PROXY));
    }

    #[test]
    fn the_other_header_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert("forwarded", HeaderValue::from_static("for=198.51.100.66"));
        let xff_only = ClientAddress::new(&[ip(PEER_PROXY)], ForwardedHeader::XForwardedFor);
        assert_eq!(xff_only.of(ip(PEER_PROXY), &headers), ip(PEER_PROXY));
    }

    #[test]
    fn ipv4_mapped_addresses_are_read_as_ipv4() {
        let trusted = ClientAddress::new(&[ip("::ffff:10.0.0.1")], ForwardedHeader::XForwardedFor);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.8"));
        assert_eq!(trusted.of(ip("10.0.0.1"), &headers), ip("198.51.100.8"));
        assert_eq!(trusted.of(ip("::ffff:10.0.0.1"), &headers), ip("198.51.100.8"));
        assert_eq!(
            ClientAddress::new(&[], ForwardedHeader::XForwardedFor).of(ip("::ffff:203.0.113.9"), &headers),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_header_that_is_not_text_counts_as_the_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"198.51.100.8, \xff").unwrap(),
        );
        let trusted = ClientAddress::new(&[ip(PEER_PROXY)], ForwardedHeader::XForwardedFor);
        assert_eq!(trusted.of(ip(PEER_PROXY), &headers), ip(PEER_PROXY));
    }
}
