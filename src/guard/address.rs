//! Client addresses: the allowlist's ranges, and the address as the protocols give it.

use std::net::IpAddr;

/// An address range of the allowlist: `ADDR` or `ADDR/BITS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    bits: u8,
}

impl Network {
    /// Parses `127.0.0.1`, `10.0.0.0/8`, `::1`, `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (addr, bits) = match text.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: not an IP address or ADDRESS/BITS"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{text:?}: prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Network { addr, bits })
    }

    /// True when `addr` is in the range (an IPv4 address and its
    /// IPv4-mapped IPv6 form are the same address).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let (net, net_bits) = as_v6(self.addr, self.bits);
        let (addr, _) = as_v6(addr, 0);
        let mask = match net_bits {
            0 => 0,
            bits => u128::MAX << (128 - u32::from(bits)),
        };
        net & mask == addr & mask
    }
}

/// `addr` as 128 bits (IPv4 mapped into `::ffff:0:0/96`) and `bits` as the
/// prefix length in that space.
fn as_v6(addr: IpAddr, bits: u8) -> (u128, u8) {
    match addr {
        IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), bits.saturating_add(96)),
        IpAddr::V6(v6) => (u128::from(v6), bits),
    }
}

/// The client address as the protocols give it (`1.2.3.4;5678`,
/// `[::1]:5678`, `::1`), reduced to the IP; `None` when it is not one.
pub fn client_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    // saslauthd's `ADDR;PORT`.
    if let Some((addr, _)) = text.rsplit_once(';') {
        if let Ok(ip) = addr.parse() {
            return Some(ip);
        }
    }
    // `[v6]:port` and `v4:port`.
    if let Ok(sock) = text.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_client_addresses() {
        let n = Network::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("host").is_err());
        assert_eq!(client_ip("192.0.2.1;1234"), "192.0.2.1".parse().ok());
        assert_eq!(client_ip("[::1]:5000"), "::1".parse().ok());
        assert_eq!(client_ip("2001:db8::5"), "2001:db8::5".parse().ok());
        assert_eq!(client_ip("nonsense"), None);
    }
}
