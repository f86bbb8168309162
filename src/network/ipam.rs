//! Address management: the `Ipv4Net` type and the choice of a free address in a subnet.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 network such as `172.17.0.0/16`: a network address with its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Net {
    /// A network from its address and prefix length; `None` when the prefix is over 32 or the
    /// address has host bits set.
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Net> {
        let net = Ipv4Net {
            network,
            prefix_len,
        };
        (prefix_len <= 32 && u32::from(network) & !net.mask() == 0).then_some(net)
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }

    /// The first host address, which berth gives the bridge as the containers' gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(1))
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == u32::from(self.network)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or("expected ADDRESS/PREFIX, e.g. 172.17.0.0/16")?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IPv4 address"))?;
        let prefix_len: u8 = prefix
            .parse()
            .ok()
            .filter(|len| *len <= 32)
            .ok_or_else(|| format!("{prefix:?} is not a prefix length from 0 to 32"))?;
        Ipv4Net::new(address, prefix_len).ok_or_else(|| {
            format!("{address} has host bits set for prefix /{prefix_len}; use the network address")
        })
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Which end of the subnet to allocate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the gateway up, as Docker does on its own bridge.
    Up,
    /// From the top down, to stay clear of a running Docker's addresses on its `docker0`.
    Down,
}

/// The first free host address of `subnet` in `direction`, never the network, broadcast or
/// gateway address, nor one in `taken`.
pub fn pick_address(
    subnet: Ipv4Net,
    taken: &HashSet<Ipv4Addr>,
    direction: Direction,
) -> Option<Ipv4Addr> {
    // a /31 or /32 has no room for a gateway and a container beside network and broadcast
    if subnet.prefix_len() > 30 {
        return None;
    }
    let first = u32::from(subnet.gateway()) + 1;
    let last = u32::from(subnet.broadcast()) - 1;
    let is_free = |n: &u32| !taken.contains(&Ipv4Addr::from(*n));
    let found = match direction {
        Direction::Up => (first..=last).find(is_free),
        Direction::Down => (first..=last).rev().find(is_free),
    };
    found.map(Ipv4Addr::from)
}

/// A container's MAC address: `02:42` and the four bytes of its IPv4 address.
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x42, a, b, c, d]
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_a_network() {
        let subnet = net("172.17.0.0/16");
        assert_eq!(subnet.to_string(), "172.17.0.0/16");
        assert_eq!(subnet.gateway(), Ipv4Addr::new(172, 17, 0, 1));
        assert_eq!(subnet.broadcast(), Ipv4Addr::new(172, 17, 255, 255));
        assert!(subnet.contains(Ipv4Addr::new(172, 17, 3, 4)));
        assert!(!subnet.contains(Ipv4Addr::new(172, 18, 0, 1)));
    }

    #[test]
    fn refuses_bad_networks_naming_the_problem() {
        assert!("172.17.0.1/16"
            .parse::<Ipv4Net>()
            .unwrap_err()
            .contains("host bits"));
        assert!("172.17.0.0/33"
            .parse::<Ipv4Net>()
            .unwrap_err()
            .contains("\"33\""));
        assert!("172.17.0.0"
            .parse::<Ipv4Net>()
            .unwrap_err()
            .contains("ADDRESS/PREFIX"));
        assert!("300.1.1.0/24"
            .parse::<Ipv4Net>()
            .unwrap_err()
            .contains("\"300.1.1.0\""));
    }

    #[test]
    fn serialises_as_its_text() {
        let subnet = net("10.88.0.0/24");
        let json = serde_json::to_string(&subnet).unwrap();
        assert_eq!(json, "\"10.88.0.0/24\"");
        assert_eq!(serde_json::from_str::<Ipv4Net>(&json).unwrap(), subnet);
    }

    #[test]
    fn picks_upwards_skipping_gateway_and_taken() {
        let subnet = net("172.17.0.0/16");
        let mut taken = HashSet::new();
        assert_eq!(
            pick_address(subnet, &taken, Direction::Up),
            Some(Ipv4Addr::new(172, 17, 0, 2))
        );
        taken.insert(Ipv4Addr::new(172, 17, 0, 2));
        taken.insert(Ipv4Addr::new(172, 17, 0, 3));
        assert_eq!(
            pick_address(subnet, &taken, Direction::Up),
            Some(Ipv4Addr::new(172, 17, 0, 4))
        );
    }

    #[test]
    fn picks_downwards_below_broadcast() {
        let subnet = net("172.17.0.0/16");
        let mut taken = HashSet::new();
        assert_eq!(
            pick_address(subnet, &taken, Direction::Down),
            Some(Ipv4Addr::new(172, 17, 255, 254))
        );
        taken.insert(Ipv4Addr::new(172, 17, 255, 254));
        assert_eq!(
            pick_address(subnet, &taken, Direction::Down),
            Some(Ipv4Addr::new(172, 17, 255, 253))
        );
    }

    #[test]
    fn reports_exhaustion() {
        // a /30 has exactly one address beside the gateway
        let subnet = net("10.0.0.0/30");
        let mut taken = HashSet::new();
        assert_eq!(
            pick_address(subnet, &taken, Direction::Up),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        taken.insert(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(pick_address(subnet, &taken, Direction::Up), None);
        assert_eq!(
            pick_address(net("10.0.0.0/31"), &taken, Direction::Up),
            None
        );
        assert_eq!(
            pick_address(net("10.0.0.0/32"), &taken, Direction::Down),
            None
        );
    }

    #[test]
    fn mac_follows_docker_27() {
        let mac = mac_for(Ipv4Addr::new(172, 17, 0, 2));
        assert_eq!(format_mac(&mac), "02:42:ac:11:00:02");
    }
}
