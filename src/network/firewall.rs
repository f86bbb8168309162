//! The NAT rules of a bridge: masquerade of its subnet, DNAT of published ports. One nftables
//! table `ip berth-BRIDGE`, programmed over netlink (see `nftables`), never by running `nft`:
//! a `nft` process cost 2 to 4 ms each time, twice for the first and the last container.
//!
//! Published ports reach the container from the host's own addresses through DNAT in
//! prerouting and output. For 127.0.0.1 the bridge gets `route_localnet` and loopback sources
//! leaving through the bridge are masqueraded, as Docker does without its userland proxy:
//! berth has no daemon, and a proxy process per port would be one more thing to outlive
//! `create` and be found and killed at `delete`.
//!
//! Every change is one nf_tables transaction, which the kernel applies whole or not at all: a
//! berth killed half-way leaves the table as it was before the change or after it, never
//! between.

use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, Hook, HookNumber, InetHookNumber, MetaKey, NfTablesMessage,
    Operator, Register, RuleAttribute, RuleMessage, SetAttribute, SetElementAttribute,
    SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute, TableMessage,
};

use super::nftables::{self as nft, Base, Change, Expr, Family, Nft, NftError};
use super::{Ipv4Net, PortMapping, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(transparent)]
    Nft(#[from] NftError),
}

fn table(bridge: &str) -> String {
    format!("berth-{bridge}")
}

/// The map from protocol and host port to container address and port.
const PORTS: &str = "ports";

/// nftables' data type numbers (`enum datatypes` of nft), which `nft list` uses to print
/// elements; a concatenation is its types, 6 bits each.
const TYPE_IPADDR: u32 = 7;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;

fn concat_type(types: &[u32]) -> u32 {
    types.iter().fold(0, |all, t| (all << 6) | t)
}

/// Makes the bridge's table. It is one transaction, so a table that exists is whole: when
/// another `--root` made it first (the kernel answers `EEXIST`), it is used as it is.
pub fn setup_bridge(bridge: &str, subnet: Ipv4Net) -> Result<(), FirewallError> {
    let mut changes = vec![(
        Family::IPv4,
        new_table(&table(bridge)),
        NLM_F_CREATE | NLM_F_EXCL,
    )];
    changes.extend(nat_table(bridge, subnet));
    match Nft::open()?.batch(changes, &|| {
        format!("make nftables table ip {}", table(bridge))
    }) {
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
        other => Ok(other?),
    }
}

/// Whether the bridge's NAT table exists.
pub fn exists(bridge: &str) -> Result<bool, FirewallError> {
    Ok(Nft::open()?.table_exists(Family::IPv4, &table(bridge))?)
}

/// How many ports are published through the bridge's table, by any `--root`.
pub fn published_count(bridge: &str) -> Result<usize, FirewallError> {
    let t = table(bridge);
    let message = NfTablesMessage::GetSetElement(SetElementMessage {
        attributes: vec![
            SetElementList::Table(t.clone()),
            SetElementList::Set(PORTS.to_string()),
        ],
    });
    let answer = Nft::open()?.request(Family::IPv4, message, NLM_F_DUMP, &|| {
        format!("list the ports of nftables table ip {t}")
    });
    let messages = match answer {
        Ok(messages) => messages,
        Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    Ok(messages
        .iter()
        .filter_map(|message| match message {
            NfTablesMessage::NewSetElement(list) => Some(&list.attributes),
            _ => None,
        })
        .flatten()
        .map(|attribute| match attribute {
            SetElementList::Elements(elements) => elements.len(),
            _ => 0,
        })
        .sum())
}

/// DNATs each host port to `address` and the container port.
pub fn publish(
    bridge: &str,
    address: Ipv4Addr,
    ports: &[PortMapping],
) -> Result<(), FirewallError> {
    if ports.is_empty() {
        return Ok(());
    }
    let t = table(bridge);
    let add = port_elements(&t, address, ports, true);
    Nft::open()?.batch(vec![(Family::IPv4, add, NLM_F_CREATE)], &|| {
        format!("publish ports in nftables table ip {t}")
    })?;
    Ok(())
}

/// Removes what [`publish`] made; ports that were never published are fine.
pub fn unpublish(
    bridge: &str,
    address: Ipv4Addr,
    ports: &[PortMapping],
) -> Result<(), FirewallError> {
    if ports.is_empty() {
        return Ok(());
    }
    let t = table(bridge);
    // Adding an element that is already there with the same value is no error, so adding
    // before deleting makes the deletion succeed whether or not the port was published.
    let changes = vec![
        (
            Family::IPv4,
            port_elements(&t, address, ports, true),
            NLM_F_CREATE,
        ),
        (Family::IPv4, port_elements(&t, address, ports, false), 0),
    ];
    Nft::open()?.batch(changes, &|| {
        format!("unpublish ports in nftables table ip {t}")
    })?;
    Ok(())
}

fn new_table(name: &str) -> NfTablesMessage {
    NfTablesMessage::NewTable(TableMessage {
        attributes: vec![TableAttribute::Name(name.to_string())],
    })
}

fn base_chain(
    family: Family,
    table: &str,
    name: &str,
    kind: &str,
    hook: InetHookNumber,
    priority: i32,
) -> Change {
    let message = NfTablesMessage::NewChain(ChainMessage {
        attributes: vec![
            ChainAttribute::Table(table.to_string()),
            ChainAttribute::Name(name.to_string()),
            ChainAttribute::Hook(vec![
                Hook::Number(HookNumber::Inet(hook)),
                Hook::Priority(priority as u32),
            ]),
            ChainAttribute::Policy(nft::ACCEPT),
            ChainAttribute::Type(kind.to_string()),
        ],
    });
    (family, message, NLM_F_CREATE)
}

fn rule(family: Family, table: &str, chain: &str, expressions: Vec<Expr>) -> Change {
    let message = NfTablesMessage::NewRule(RuleMessage {
        attributes: vec![
            RuleAttribute::Table(table.to_string()),
            RuleAttribute::Chain(chain.to_string()),
            RuleAttribute::Expressions(expressions),
        ],
    });
    (family, message, NLM_F_CREATE | NLM_F_APPEND)
}

/// `ip saddr SUBNET`, as a mask and a comparison.
fn source_in(subnet: Ipv4Net) -> Vec<Expr> {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(subnet.prefix_len()))
        .unwrap_or(0);
    vec![
        nft::payload(Base::Network, 12, 4, Register::Reg1),
        nft::and(Register::Reg1, &mask.to_be_bytes()),
        nft::cmp(Operator::Equal, Register::Reg1, &subnet.network().octets()),
    ]
}

/// `oifname [!=] BRIDGE`.
fn out_of(bridge: &str, equal: bool) -> Vec<Expr> {
    let op = if equal {
        Operator::Equal
    } else {
        Operator::NotEqual
    };
    vec![
        nft::meta(MetaKey::Oifname, Register::Reg1),
        nft::cmp(op, Register::Reg1, &nft::ifname(bridge)),
    ]
}

/// The table of a bridge: DNAT of published ports for local destinations; masquerade of the
/// subnet out of every other interface; masquerade of loopback sources into the bridge (for
/// 127.0.0.1:PORT); and masquerade of a container's connection to a port published by its own
/// host and DNATed back into the bridge, so the answer returns the way it came (POSTROUTING
/// knows no input interface, and routed traffic from the subnet back out of the bridge is only
/// ever that).
///
/// As nft would write it:
/// ```text
/// map ports { type inet_proto . inet_service : ipv4_addr . inet_service }
/// chain prerouting { type nat hook prerouting priority dstnat
///     fib daddr type local dnat ip to meta l4proto . th dport map @ports }
/// chain output { type nat hook output priority dstnat (the same rule) }
/// chain postrouting { type nat hook postrouting priority srcnat
///     ip saddr SUBNET oifname != BRIDGE masquerade
///     ip saddr 127.0.0.0/8 oifname BRIDGE masquerade
///     ip saddr SUBNET oifname BRIDGE ct status dnat masquerade }
/// ```
fn nat_table(bridge: &str, subnet: Ipv4Net) -> Vec<Change> {
    let t = table(bridge);
    let ip = Family::IPv4;
    let ports = NfTablesMessage::NewSet(SetMessage {
        attributes: vec![
            SetAttribute::Table(t.clone()),
            SetAttribute::Name(PORTS.to_string()),
            SetAttribute::Flags(SetFlags::Map),
            SetAttribute::KeyType(concat_type(&[TYPE_INET_PROTOCOL, TYPE_INET_SERVICE])),
            SetAttribute::KeyLen(8),
            SetAttribute::DataType(concat_type(&[TYPE_IPADDR, TYPE_INET_SERVICE])),
            SetAttribute::DataLen(8),
            SetAttribute::Id(1),
        ],
    });
    let dnat = || {
        vec![
            nft::fib_daddr_type(Register::Reg1),
            // RTN_LOCAL
            nft::cmp(Operator::Equal, Register::Reg1, &2u32.to_ne_bytes()),
            nft::meta(MetaKey::L4Proto, Register::Reg1),
            nft::payload(Base::Transport, 2, 2, Register::Reg32_01),
            nft::lookup(PORTS, Register::Reg1, Some(Register::Reg1), false),
            nft::dnat(Register::Reg1, Register::Reg32_01),
        ]
    };
    let loopback: Ipv4Net = "127.0.0.0/8".parse().expect("a valid network");
    let status_dnat = vec![
        nft::ct_status(Register::Reg1),
        // IPS_DST_NAT
        nft::and(Register::Reg1, &0x20u32.to_ne_bytes()),
        nft::cmp(Operator::NotEqual, Register::Reg1, &0u32.to_ne_bytes()),
    ];
    let masquerade = |matches: Vec<Vec<Expr>>| {
        let mut expressions: Vec<Expr> = matches.into_iter().flatten().collect();
        expressions.push(nft::masquerade());
        rule(ip, &t, "postrouting", expressions)
    };
    vec![
        (ip, ports, NLM_F_CREATE),
        base_chain(
            ip,
            &t,
            "prerouting",
            "nat",
            InetHookNumber::PreRouting,
            -100,
        ),
        base_chain(ip, &t, "output", "nat", InetHookNumber::LocalOut, -100),
        base_chain(
            ip,
            &t,
            "postrouting",
            "nat",
            InetHookNumber::PostRouting,
            100,
        ),
        rule(ip, &t, "prerouting", dnat()),
        rule(ip, &t, "output", dnat()),
        masquerade(vec![source_in(subnet), out_of(bridge, false)]),
        masquerade(vec![source_in(loopback), out_of(bridge, true)]),
        masquerade(vec![source_in(subnet), out_of(bridge, true), status_dnat]),
    ]
}

/// The map elements of `ports`, to add (`with_values`) or delete (keys alone).
fn port_elements(
    table: &str,
    address: Ipv4Addr,
    ports: &[PortMapping],
    with_values: bool,
) -> NfTablesMessage {
    let elements = ports
        .iter()
        .map(|port| {
            let protocol = match port.protocol {
                Protocol::Tcp => libc::IPPROTO_TCP as u8,
                Protocol::Udp => libc::IPPROTO_UDP as u8,
            };
            let key = nft::concat(&[&[protocol], &port.host_port.to_be_bytes()]);
            let mut element = vec![SetElementAttribute::Key(
                netlink_packet_netfilter::nftables::DataAttribute::Value(key),
            )];
            if with_values {
                let value = nft::concat(&[&address.octets(), &port.container_port.to_be_bytes()]);
                element.push(SetElementAttribute::Data(
                    netlink_packet_netfilter::nftables::DataAttribute::Value(value),
                ));
            }
            netlink_packet_netfilter::nftables::ListAttribute::Element(element)
        })
        .collect();
    let list = SetElementMessage {
        attributes: vec![
            SetElementList::Table(table.to_string()),
            SetElementList::Set(PORTS.to_string()),
            SetElementList::Elements(elements),
        ],
    };
    match with_values {
        true => NfTablesMessage::NewSetElement(list),
        false => NfTablesMessage::DeleteSetElement(list),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keys_pad_each_field_to_four_bytes() {
        assert_eq!(
            nft::concat(&[&[6], &8080u16.to_be_bytes()]),
            [6, 0, 0, 0, 0x1f, 0x90, 0, 0]
        );
        assert_eq!(nft::ifname("docker0").len(), 16);
        assert_eq!(
            concat_type(&[TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]),
            (12 << 6) | 13
        );
    }

    #[test]
    fn the_nat_table_has_one_map_three_chains_and_five_rules() {
        let changes = nat_table("docker0", "172.17.0.0/16".parse().unwrap());
        let count = |f: fn(&NfTablesMessage) -> bool| changes.iter().filter(|c| f(&c.1)).count();
        assert_eq!(count(|m| matches!(m, NfTablesMessage::NewSet(_))), 1);
        assert_eq!(count(|m| matches!(m, NfTablesMessage::NewChain(_))), 3);
        assert_eq!(count(|m| matches!(m, NfTablesMessage::NewRule(_))), 5);
    }
}
