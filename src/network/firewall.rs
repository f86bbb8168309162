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
//! A second table of the same name in the bridge family, `bridge berth-BRIDGE`, holds the
//! anti-spoofing of berth's veths: a frame from a container's veth must carry the container's
//! own MAC, and its own IPv4 address (in IPv4 and in ARP); anything else from it is dropped,
//! whether bound for the host or for another container on the bridge. The veths are named in
//! three sets by interface index, which the kernel never hands out twice (until it wraps at
//! 2^31), so the elements of a veth that is gone match nothing: they are left at `delete`,
//! since any nf_tables deletion costs an RCU grace period (see `bridge`), and are swept once
//! [`SWEEP_AT`] of them have gathered.
//!
//! Every change is one nf_tables transaction, which the kernel applies whole or not at all: a
//! berth killed half-way leaves the tables as they were before the change or after it, never
//! between.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DataAttribute, Hook, HookNumber, InetHookNumber, ListAttribute,
    MetaKey, NfTablesMessage, Operator, Register, RuleAttribute, RuleMessage, SetAttribute,
    SetElementAttribute, SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute,
    TableMessage,
};

use super::nftables::{self as nft, Base, Change, Expr, Family, Nft, NftError};
use serde::{Deserialize, Serialize};

use super::{Ipv4Net, PortMapping, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("the host's FORWARD policy drops, and no {program} is in PATH, /usr/sbin or /sbin to open it for the bridge")]
    NoIptables { program: &'static str },
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// The iptables whose FORWARD chain drops by policy, where berth lets its bridge through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Iptables {
    /// iptables-nft: its `ip filter` table is an nftables table.
    Nft,
    /// iptables-legacy (x_tables), which nftables cannot see.
    Legacy,
}

impl Iptables {
    fn programs(self) -> [&'static str; 2] {
        match self {
            Iptables::Nft => ["iptables-nft", "iptables"],
            Iptables::Legacy => ["iptables-legacy", "iptables"],
        }
    }
}

/// Which iptables, if any, drops forwarded packets by policy: `iptables -P FORWARD DROP`, as
/// Docker sets and many hardened hosts have. iptables-nft's chain is looked at over netlink;
/// iptables-legacy's only when its filter table is loaded, by running it.
///
/// berth cannot let its bridge through with a rule of its own table: the kernel runs every
/// base chain at a hook, and a packet accepted by one is still dropped by another's policy
/// (tried: an accept in a forward chain of `ip berth-docker0`, at priority 0 and at -300,
/// leaves both directions blocked). So, as Docker does, berth adds its accept rules to the
/// FORWARD chain that drops.
pub fn forward_drops() -> Result<Option<Iptables>, FirewallError> {
    let policy = Nft::open()?.chain_policy(Family::IPv4, "filter", "FORWARD")?;
    if policy == Some(nft::DROP) {
        return Ok(Some(Iptables::Nft));
    }
    // this thread's namespace, not the process's first thread's
    let tables = std::fs::read_to_string("/proc/thread-self/net/ip_tables_names");
    if tables.is_ok_and(|names| names.lines().any(|name| name == "filter")) {
        let rules = iptables(Iptables::Legacy, &["-w", "-S", "FORWARD"])?;
        if rules.lines().any(|line| line == "-P FORWARD DROP") {
            return Ok(Some(Iptables::Legacy));
        }
    }
    Ok(None)
}

/// The accept rules for a bridge in the FORWARD chain, as iptables takes them: whatever its
/// containers send (out, to each other, the answers to connections in), and what comes to
/// them as the answer to their connections or to a published port (a DNAT'd connection).
fn forward_rules(bridge: &str) -> [Vec<String>; 2] {
    let comment = format!("berth {bridge}");
    let rule = |parts: &[&str]| -> Vec<String> {
        let mut rule: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
        rule.extend(["-m", "comment", "--comment", &comment, "-j", "ACCEPT"].map(String::from));
        rule
    };
    [
        rule(&["FORWARD", "-i", bridge]),
        rule(&[
            "FORWARD",
            "-o",
            bridge,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED,DNAT",
        ]),
    ]
}

/// Puts the bridge's accept rules at the head of the FORWARD chain of `flavour`.
pub fn open_forwarding(flavour: Iptables, bridge: &str) -> Result<(), FirewallError> {
    for rule in forward_rules(bridge) {
        let mut args = vec!["-w", "-I"];
        args.extend(rule.iter().map(String::as_str));
        iptables(flavour, &args)?;
    }
    Ok(())
}

/// Takes the bridge's accept rules out of the FORWARD chain again; rules already gone are fine.
pub fn close_forwarding(flavour: Iptables, bridge: &str) -> Result<(), FirewallError> {
    for rule in forward_rules(bridge) {
        let mut args = vec!["-w", "-D"];
        args.extend(rule.iter().map(String::as_str));
        match iptables(flavour, &args) {
            Ok(_) => {}
            // "Bad rule (does a matching rule exist in that chain?)"
            Err(FirewallError::Failed { status, .. }) if status.code() == Some(1) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Runs iptables of `flavour` with `args`; returns what it printed.
fn iptables(flavour: Iptables, args: &[&str]) -> Result<String, FirewallError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let program = flavour
        .programs()
        .iter()
        .flat_map(|name| {
            std::env::split_paths(&path)
                .chain(["/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
                .map(move |dir| dir.join(name))
        })
        .find(|candidate| candidate.is_file())
        .ok_or(FirewallError::NoIptables {
            program: flavour.programs()[0],
        })?;
    let command = format!("{} {}", program.display(), args.join(" "));
    let output = std::process::Command::new(&program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| FirewallError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(FirewallError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
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

/// Makes the bridge's tables, each that is missing. Each is one transaction, so a table that
/// exists is whole: when another `--root` made it first (the kernel answers `EEXIST`), it is
/// used as it is.
pub fn setup_bridge(bridge: &str, subnet: Ipv4Net) -> Result<(), FirewallError> {
    let t = table(bridge);
    let mut nft = Nft::open()?;
    for (family, changes) in [
        (Family::IPv4, nat_table(bridge, subnet)),
        (Family::Bridge, spoofing_table(bridge)),
    ] {
        let mut batch = vec![(family, new_table(&t), NLM_F_CREATE | NLM_F_EXCL)];
        batch.extend(changes);
        match nft.batch(batch, &|| {
            format!("make nftables table {} {t}", family_name(family))
        }) {
            Err(e) if e.errno() == Some(libc::EEXIST) => {}
            other => other?,
        }
    }
    Ok(())
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Bridge => "bridge",
        _ => "ip",
    }
}

/// Removes both of the bridge's tables, with everything published through them; tables already
/// gone are fine. One transaction: adding a table that exists changes nothing, so adding each
/// before deleting it makes the deletion succeed either way.
pub fn teardown_bridge(bridge: &str) -> Result<(), FirewallError> {
    let t = table(bridge);
    let mut changes = Vec::new();
    for family in [Family::IPv4, Family::Bridge] {
        changes.push((family, new_table(&t), NLM_F_CREATE));
        changes.push((family, delete_table(&t), 0));
    }
    Nft::open()?.batch(changes, &|| {
        format!("remove nftables tables ip and bridge {t}")
    })?;
    Ok(())
}

/// Whether both of the bridge's tables exist.
pub fn exists(bridge: &str) -> Result<bool, FirewallError> {
    let mut nft = Nft::open()?;
    Ok(nft.table_exists(Family::IPv4, &table(bridge))?
        && nft.table_exists(Family::Bridge, &table(bridge))?)
}

/// How many gone veths' elements may gather before [`sweep`] removes them.
pub const SWEEP_AT: usize = 64;

/// Lets the veth with interface index `veth` send only from `mac` and `address`. Called before
/// the container's `eth0` is up, so that its first frame is checked.
pub fn admit(
    bridge: &str,
    veth: u32,
    mac: [u8; 6],
    address: Ipv4Addr,
) -> Result<(), FirewallError> {
    let t = table(bridge);
    let index = veth.to_ne_bytes();
    let changes = [
        (VETHS, nft::concat(&[&index])),
        (MACS, nft::concat(&[&index, &mac])),
        (IPS, nft::concat(&[&index, &address.octets()])),
    ]
    .into_iter()
    .map(|(set, key)| {
        (
            Family::Bridge,
            elements(&t, set, vec![key], true),
            NLM_F_CREATE,
        )
    })
    .collect();
    Nft::open()?.batch(changes, &|| {
        format!("admit veth {veth} in nftables table bridge {t}")
    })?;
    Ok(())
}

/// Removes the elements of veths that are gone (whose index is not in `live`), once there are
/// [`SWEEP_AT`] of them; returns how many there were.
pub fn sweep(bridge: &str, live: &HashSet<u32>) -> Result<usize, FirewallError> {
    let t = table(bridge);
    let mut nft = Nft::open()?;
    let gone = |key: &Vec<u8>| {
        let index = u32::from_ne_bytes(key[..4].try_into().expect("4 bytes"));
        !live.contains(&index)
    };
    let stale: Vec<Vec<u8>> = set_keys(&mut nft, &t, VETHS)?
        .into_iter()
        .filter(gone)
        .collect();
    if stale.len() < SWEEP_AT {
        return Ok(stale.len());
    }
    let mut changes = vec![(Family::Bridge, elements(&t, VETHS, stale.clone(), false), 0)];
    for set in [MACS, IPS] {
        let keys: Vec<Vec<u8>> = set_keys(&mut nft, &t, set)?
            .into_iter()
            .filter(gone)
            .collect();
        if !keys.is_empty() {
            changes.push((Family::Bridge, elements(&t, set, keys, false), 0));
        }
    }
    nft.batch(changes, &|| {
        format!("sweep gone veths from nftables table bridge {t}")
    })?;
    Ok(stale.len())
}

/// The interface indexes of the veths admitted to the bridge, by any `--root` (the elements of
/// gone veths among them until they are swept); none when the table is gone.
pub fn admitted(bridge: &str) -> Result<HashSet<u32>, FirewallError> {
    let keys = match set_keys(&mut Nft::open()?, &table(bridge), VETHS) {
        Ok(keys) => keys,
        Err(FirewallError::Nft(e)) if e.errno() == Some(libc::ENOENT) => return Ok(HashSet::new()),
        Err(e) => return Err(e),
    };
    Ok(keys
        .iter()
        .filter_map(|key| Some(u32::from_ne_bytes(key.get(..4)?.try_into().ok()?)))
        .collect())
}

/// The keys of set `set` in the bridge family's table `table`.
fn set_keys(nft: &mut Nft, table: &str, set: &str) -> Result<Vec<Vec<u8>>, FirewallError> {
    let message = NfTablesMessage::GetSetElement(SetElementMessage {
        attributes: vec![
            SetElementList::Table(table.to_string()),
            SetElementList::Set(set.to_string()),
        ],
    });
    let messages = nft.request(Family::Bridge, message, NLM_F_DUMP, &|| {
        format!("list set {set} of nftables table bridge {table}")
    })?;
    let mut keys = Vec::new();
    for message in messages {
        let NfTablesMessage::NewSetElement(list) = message else {
            continue;
        };
        for attribute in list.attributes {
            let SetElementList::Elements(elements) = attribute else {
                continue;
            };
            for element in elements {
                let ListAttribute::Element(attributes) = element else {
                    continue;
                };
                for attribute in attributes {
                    if let SetElementAttribute::Key(DataAttribute::Value(key)) = attribute {
                        keys.push(key);
                    }
                }
            }
        }
    }
    Ok(keys)
}

/// Elements of set `set` with `keys`, to add (`add`) or delete.
fn elements(table: &str, set: &str, keys: Vec<Vec<u8>>, add: bool) -> NfTablesMessage {
    let list = SetElementMessage {
        attributes: vec![
            SetElementList::Table(table.to_string()),
            SetElementList::Set(set.to_string()),
            SetElementList::Elements(
                keys.into_iter()
                    .map(|key| {
                        ListAttribute::Element(vec![SetElementAttribute::Key(
                            DataAttribute::Value(key),
                        )])
                    })
                    .collect(),
            ),
        ],
    };
    match add {
        true => NfTablesMessage::NewSetElement(list),
        false => NfTablesMessage::DeleteSetElement(list),
    }
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

fn delete_table(name: &str) -> NfTablesMessage {
    NfTablesMessage::DeleteTable(TableMessage {
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
/// chain input { type filter hook input priority filter
///     iifname BRIDGE ip daddr 127.0.0.0/8 ct status & dnat != dnat drop }
/// ```
///
/// The input chain closes what `route_localnet` opens (the class of kube-proxy's
/// CVE-2020-8558): with it on, the host takes packets to 127.0.0.0/8 that arrive on the bridge,
/// so a container able to write raw frames (CAP_NET_RAW, in Docker's default set) could reach
/// the host's loopback-only services through the gateway's MAC. Only the answers of the host's
/// own connections to published ports may arrive there, and those belong to a DNAT'd
/// connection; kube-proxy drops the same way, in its KUBE-FIREWALL chain.
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
        base_chain(ip, &t, "input", "filter", InetHookNumber::LocalIn, 0),
        rule(ip, &t, "input", loopback_from_the_bridge(bridge)),
    ]
}

/// The sets of berth's veths, by interface index.
const VETHS: &str = "veths";
const MACS: &str = "macs";
const IPS: &str = "ips";
const TYPE_ETHERADDR: u32 = 9;
const TYPE_IFINDEX: u32 = 20;

fn set(table: &str, name: &str, id: u32, types: &[u32], key_len: u32) -> Change {
    let message = NfTablesMessage::NewSet(SetMessage {
        attributes: vec![
            SetAttribute::Table(table.to_string()),
            SetAttribute::Name(name.to_string()),
            SetAttribute::KeyType(concat_type(types)),
            SetAttribute::KeyLen(key_len),
            SetAttribute::Id(id),
        ],
    });
    (Family::Bridge, message, NLM_F_CREATE)
}

/// The anti-spoofing table, as nft would write it:
/// ```text
/// set veths { type iface_index }
/// set macs { type iface_index . ether_addr }
/// set ips { type iface_index . ipv4_addr }
/// chain prerouting { type filter hook prerouting priority -300
///     iif != @veths accept
///     iif . ether saddr != @macs drop
///     meta protocol ip iif . ip saddr @ips accept
///     meta protocol arp iif . arp saddr ether @macs iif . arp saddr ip @ips accept
///     drop }
/// ```
/// Frames from a veth of berth's must be IPv4 or ARP from the container's own MAC and address;
/// everything else from it (another address, another MAC, IPv6, VLAN tags) is dropped. Frames
/// from any other port of the bridge pass untouched.
fn spoofing_table(bridge: &str) -> Vec<Change> {
    let t = table(bridge);
    let b = Family::Bridge;
    let iif = || nft::meta(MetaKey::Iif, Register::Reg1);
    let field =
        |base: Base, offset: u32, len: u32| nft::payload(base, offset, len, Register::Reg32_01);
    let protocol = |ethertype: u16| {
        vec![
            nft::meta(MetaKey::EtherTypeProtocol, Register::Reg1),
            nft::cmp(Operator::Equal, Register::Reg1, &ethertype.to_be_bytes()),
        ]
    };
    let mut ipv4 = protocol(0x0800);
    ipv4.extend([
        iif(),
        field(Base::Network, 12, 4),
        nft::lookup(IPS, Register::Reg1, None, false),
        nft::verdict(nft::ACCEPT),
    ]);
    let mut arp = protocol(0x0806);
    arp.extend([
        iif(),
        field(Base::Network, 8, 6),
        nft::lookup(MACS, Register::Reg1, None, false),
        iif(),
        field(Base::Network, 14, 4),
        nft::lookup(IPS, Register::Reg1, None, false),
        nft::verdict(nft::ACCEPT),
    ]);
    let chain = NfTablesMessage::NewChain(ChainMessage {
        attributes: vec![
            ChainAttribute::Table(t.clone()),
            ChainAttribute::Name("prerouting".to_string()),
            ChainAttribute::Hook(vec![
                Hook::Number(HookNumber::Inet(InetHookNumber::PreRouting)),
                Hook::Priority(-300i32 as u32),
            ]),
            ChainAttribute::Policy(nft::ACCEPT),
            ChainAttribute::Type("filter".to_string()),
        ],
    });
    let not_veth = vec![
        iif(),
        nft::lookup(VETHS, Register::Reg1, None, true),
        nft::verdict(nft::ACCEPT),
    ];
    let not_own_mac = vec![
        iif(),
        field(Base::Link, 6, 6),
        nft::lookup(MACS, Register::Reg1, None, true),
        nft::verdict(nft::DROP),
    ];
    vec![
        set(&t, VETHS, 1, &[TYPE_IFINDEX], 4),
        set(&t, MACS, 2, &[TYPE_IFINDEX, TYPE_ETHERADDR], 12),
        set(&t, IPS, 3, &[TYPE_IFINDEX, TYPE_IPADDR], 8),
        (b, chain, NLM_F_CREATE),
        rule(b, &t, "prerouting", not_veth),
        rule(b, &t, "prerouting", not_own_mac),
        rule(b, &t, "prerouting", ipv4),
        rule(b, &t, "prerouting", arp),
        rule(b, &t, "prerouting", vec![nft::verdict(nft::DROP)]),
    ]
}

/// `iifname BRIDGE ip daddr 127.0.0.0/8 ct status & dnat != dnat drop`.
fn loopback_from_the_bridge(bridge: &str) -> Vec<Expr> {
    vec![
        nft::meta(MetaKey::Iifname, Register::Reg1),
        nft::cmp(Operator::Equal, Register::Reg1, &nft::ifname(bridge)),
        nft::payload(Base::Network, 16, 1, Register::Reg1),
        nft::cmp(Operator::Equal, Register::Reg1, &[127]),
        nft::ct_status(Register::Reg1),
        // IPS_DST_NAT
        nft::and(Register::Reg1, &0x20u32.to_ne_bytes()),
        nft::cmp(Operator::NotEqual, Register::Reg1, &0x20u32.to_ne_bytes()),
        nft::verdict(nft::DROP),
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
    fn the_table_has_one_map_four_chains_and_six_rules() {
        let changes = nat_table("docker0", "172.17.0.0/16".parse().unwrap());
        let count = |f: fn(&NfTablesMessage) -> bool| changes.iter().filter(|c| f(&c.1)).count();
        assert_eq!(count(|m| matches!(m, NfTablesMessage::NewSet(_))), 1);
        assert_eq!(count(|m| matches!(m, NfTablesMessage::NewChain(_))), 4);
        assert_eq!(count(|m| matches!(m, NfTablesMessage::NewRule(_))), 6);
    }
}
