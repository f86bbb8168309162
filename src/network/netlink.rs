//! A small synchronous rtnetlink client: one socket per network namespace, each request sent
//! and answered (acknowledged, or dumped to the end) before the next.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};
use serde::{Deserialize, Serialize};

/// Errors of the netlink client; each names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot {action}: {source}")]
    Kernel { action: String, source: io::Error },
    #[error("cannot {action}: undecodable netlink answer: {reason}")]
    Decode { action: String, reason: String },
    #[error("cannot enter network namespace {path}: {source}")]
    Setns { path: PathBuf, source: io::Error },
}

impl NetlinkError {
    /// The errno the kernel answered with, if it was the kernel that refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The index of link `name` in the calling thread's network namespace, if there is one. Unlike
/// a GETLINK, which first makes the kernel apply the link's pending carrier change (for a link
/// that lost its carrier, such as a veth just made up with its peer still down or a bridge whose
/// last port left, that waits for an expedited RCU grace period), this only looks the name up.
pub fn index_of(name: &str) -> Result<Option<u32>, NetlinkError> {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return Ok(None);
    };
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index != 0 {
        return Ok(Some(index));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENODEV) => Ok(None),
        _ => Err(NetlinkError::Kernel {
            action: format!("look up link {name}"),
            source: error,
        }),
    }
}

/// An rtnetlink socket bound to the network namespace it was made in.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

/// An address of an interface, as `linux.netDevices` carries it from one namespace to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceAddress {
    /// The interface's own address (IFA_LOCAL, or IFA_ADDRESS where there is no local one).
    pub address: IpAddr,
    pub prefix_len: u8,
    /// The other end of a point-to-point link, where IFA_ADDRESS differs from IFA_LOCAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<Ipv4Addr>,
}

/// A link as berth needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    /// The index of the bridge it is attached to.
    pub controller: Option<u32>,
    /// Its kind (`veth`, `macvlan`, `ifb` …); none for a physical interface.
    pub kind: Option<String>,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// A socket in the network namespace `netns` (opened from `path`): the thread enters it,
    /// makes the socket, which stays bound to that namespace, and returns home.
    pub fn open_in(netns: &File, path: &Path) -> Result<Netlink, NetlinkError> {
        let home_path = Path::new("/proc/thread-self/ns/net");
        let home = File::open(home_path).map_err(|source| NetlinkError::Setns {
            path: home_path.to_path_buf(),
            source,
        })?;
        setns(netns, CloneFlags::CLONE_NEWNET).map_err(|errno| NetlinkError::Setns {
            path: path.to_path_buf(),
            source: errno.into(),
        })?;
        let opened = Netlink::open();
        setns(&home, CloneFlags::CLONE_NEWNET).map_err(|errno| NetlinkError::Setns {
            path: home_path.to_path_buf(),
            source: errno.into(),
        })?;
        opened
    }

    /// Sends one request and collects the messages of the answer, up to its acknowledgement
    /// or, for a dump, its end.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        action: &dyn Fn() -> String,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let kernel = |source: io::Error| NetlinkError::Kernel {
            action: action(),
            source,
        };
        let decode = |reason: String| NetlinkError::Decode {
            action: action(),
            reason,
        };
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        // a dump ends with NLMSG_DONE; anything else asks for an acknowledgement
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0).map_err(kernel)?;

        let mut answers = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full().map_err(kernel)?;
            let mut offset = 0;
            while offset < datagram.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[offset..])
                    .map_err(|e| decode(e.to_string()))?;
                let length = reply.header.length as usize;
                if length == 0 {
                    return Err(decode("a message of length 0".to_string()));
                }
                offset += length.next_multiple_of(4);
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(error) if error.code.is_some() => {
                        return Err(kernel(error.to_io()))
                    }
                    NetlinkPayload::Error(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// The link called `name`, if there is one.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        let answer = self.request(RouteNetlinkMessage::GetLink(message), 0, &|| {
            format!("look up link {name}")
        });
        match answer {
            Ok(messages) => Ok(messages.into_iter().find_map(link_of)),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let messages = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            &|| "list links".to_string(),
        )?;
        Ok(messages.into_iter().filter_map(link_of).collect())
    }

    /// Makes a bridge, up, with a fixed MAC so that it never takes the lowest MAC of its ports.
    pub fn create_bridge(
        &mut self,
        name: &str,
        mtu: u32,
        mac: [u8; 6],
    ) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("create bridge {name}"),
        )
        .map(drop)
    }

    /// Makes a veth pair in one request: `host_name` here, up and attached to the bridge
    /// `bridge_index`, and its peer born (down) inside `peer_netns` as `peer_name` with
    /// `peer_mac`.
    pub fn create_veth(
        &mut self,
        host_name: &str,
        bridge_index: u32,
        mtu: u32,
        peer_name: &str,
        peer_mac: [u8; 6],
        peer_netns: &File,
    ) -> Result<(), NetlinkError> {
        use std::os::fd::AsRawFd;
        // the peer cannot be set up here: the kernel opens it before the pair is linked and
        // answers ENOTCONN, so it is set up from inside its namespace afterwards
        // one queue each way, said outright: left to the kernel, it makes one per CPU and
        // then cuts them to one, waiting for an expedited RCU grace period for each end
        let mut peer = LinkMessage::default();
        peer.attributes = vec![
            LinkAttribute::IfName(peer_name.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::NumTxQueues(1),
            LinkAttribute::NumRxQueues(1),
            LinkAttribute::Address(peer_mac.to_vec()),
            LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
        ];
        let mut host = LinkMessage::default();
        host.header.flags = LinkFlags::Up;
        host.header.change_mask = LinkFlags::Up;
        host.attributes = vec![
            LinkAttribute::IfName(host_name.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::NumTxQueues(1),
            LinkAttribute::NumRxQueues(1),
            LinkAttribute::Controller(bridge_index),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
            ]),
        ];
        self.request(
            RouteNetlinkMessage::NewLink(host),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("create veth pair {host_name} / {peer_name}"),
        )
        .map(drop)
    }

    pub fn set_up(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.set_state(index, name, true)
    }

    pub fn set_down(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.set_state(index, name, false)
    }

    fn set_state(&mut self, index: u32, name: &str, up: bool) -> Result<(), NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        if up {
            message.header.flags = LinkFlags::Up;
        }
        message.header.change_mask = LinkFlags::Up;
        let state = if up { "up" } else { "down" };
        self.request(RouteNetlinkMessage::SetLink(message), 0, &|| {
            format!("set link {name} {state}")
        })
        .map(drop)
    }

    /// The link with index `index`, if there is one.
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>, NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        let answer = self.request(RouteNetlinkMessage::GetLink(message), 0, &|| {
            format!("look up link number {index}")
        });
        match answer {
            Ok(messages) => Ok(messages.into_iter().find_map(link_of)),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Moves link `index` (called `name` here) into the network namespace `netns`, named
    /// `new_name` there, in one request: the kernel renames it on the way, so its name never
    /// clashes on either side. `new_name` may be a template such as `eth%d`.
    pub fn move_link(
        &mut self,
        index: u32,
        name: &str,
        new_name: &str,
        netns: &File,
    ) -> Result<(), NetlinkError> {
        use std::os::fd::AsRawFd;
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes = vec![
            LinkAttribute::IfName(new_name.to_string()),
            LinkAttribute::NetNsFd(netns.as_raw_fd()),
        ];
        self.request(RouteNetlinkMessage::SetLink(message), 0, &|| {
            format!("move link {name} to another network namespace as {new_name}")
        })
        .map(drop)
    }

    /// Deletes the link `name`; `false` when there was none.
    pub fn delete_link(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(message), 0, &|| {
            format!("delete link {name}")
        }) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The IPv4 addresses (with prefix lengths) on link `index`.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        let messages = self.request(
            RouteNetlinkMessage::GetAddress(message),
            NLM_F_DUMP,
            &|| "list addresses".to_string(),
        )?;
        let mut found = Vec::new();
        for message in messages {
            let RouteNetlinkMessage::NewAddress(address) = message else {
                continue;
            };
            if address.header.index != index {
                continue;
            }
            for attribute in &address.attributes {
                if let AddressAttribute::Local(std::net::IpAddr::V4(ip)) = attribute {
                    found.push((*ip, address.header.prefix_len));
                }
            }
        }
        Ok(found)
    }

    /// The permanent addresses of global scope on link `index`, of every family: what belongs
    /// to the interface itself, not what the kernel or a DHCP lease made for where it is (the
    /// rule of runtime-spec's `linux.netDevices`).
    pub fn permanent_addresses(
        &mut self,
        index: u32,
    ) -> Result<Vec<InterfaceAddress>, NetlinkError> {
        let messages = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            &|| "list addresses".to_string(),
        )?;
        let mut found = Vec::new();
        for message in messages {
            let RouteNetlinkMessage::NewAddress(message) = message else {
                continue;
            };
            let header = &message.header;
            if header.index != index || header.scope != AddressScope::Universe {
                continue;
            }
            // IFA_FLAGS, where the kernel sends it, holds all the flags; the header only 8
            let mut permanent = header.flags.contains(AddressHeaderFlags::Permanent);
            let (mut local, mut address, mut broadcast) = (None, None, None);
            for attribute in &message.attributes {
                match attribute {
                    AddressAttribute::Flags(flags) => {
                        permanent = flags.contains(AddressFlags::Permanent)
                    }
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    AddressAttribute::Broadcast(ip) => broadcast = Some(*ip),
                    _ => {}
                }
            }
            let Some(own) = local.or(address) else {
                continue;
            };
            if permanent {
                found.push(InterfaceAddress {
                    address: own,
                    prefix_len: header.prefix_len,
                    peer: address.filter(|peer| *peer != own),
                    broadcast,
                });
            }
        }
        Ok(found)
    }

    /// Adds `address` to link `index` (called `name`), permanent and of global scope.
    pub fn add_interface_address(
        &mut self,
        index: u32,
        name: &str,
        address: &InterfaceAddress,
    ) -> Result<(), NetlinkError> {
        let mut message = AddressMessage::default();
        message.header.family = match address.address {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        message.header.prefix_len = address.prefix_len;
        message.header.index = index;
        message.header.scope = AddressScope::Universe;
        message.attributes = vec![
            AddressAttribute::Local(address.address),
            AddressAttribute::Address(address.peer.unwrap_or(address.address)),
        ];
        if let Some(broadcast) = address.broadcast {
            message
                .attributes
                .push(AddressAttribute::Broadcast(broadcast));
        }
        let shown = format!("{}/{}", address.address, address.prefix_len);
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("add address {shown} to {name}"),
        )
        .map(drop)
    }

    fn address_message(index: u32, address: Ipv4Addr, prefix_len: u8) -> AddressMessage {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix_len;
        message.header.index = index;
        message.header.scope = AddressScope::Universe;
        message.attributes = vec![
            AddressAttribute::Local(address.into()),
            AddressAttribute::Address(address.into()),
        ];
        if prefix_len < 31 {
            let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let broadcast = Ipv4Addr::from(u32::from(address) | host_bits);
            message
                .attributes
                .push(AddressAttribute::Broadcast(broadcast));
        }
        message
    }

    pub fn add_address(
        &mut self,
        index: u32,
        name: &str,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let message = Self::address_message(index, address, prefix_len);
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("add address {address}/{prefix_len} to {name}"),
        )
        .map(drop)
    }

    /// Removes an address; `false` when it was not there.
    pub fn delete_address(
        &mut self,
        index: u32,
        name: &str,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<bool, NetlinkError> {
        let message = Self::address_message(index, address, prefix_len);
        match self.request(RouteNetlinkMessage::DelAddress(message), 0, &|| {
            format!("delete address {address}/{prefix_len} from {name}")
        }) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The IPv4 neighbours (ARP entries) seen on link `index`.
    pub fn neighbours(&mut self, index: u32) -> Result<Vec<Ipv4Addr>, NetlinkError> {
        self.neighbours_of(index, false)
    }

    /// The IPv4 neighbours on link `index` whose entries are permanent: the addresses berths
    /// claimed (see [`Netlink::claim_neighbour`]), not those the kernel learnt from traffic.
    pub fn claimed_neighbours(&mut self, index: u32) -> Result<Vec<Ipv4Addr>, NetlinkError> {
        self.neighbours_of(index, true)
    }

    /// The IPv4 neighbours on link `index`, only the permanent ones if `permanent_only`.
    fn neighbours_of(
        &mut self,
        index: u32,
        permanent_only: bool,
    ) -> Result<Vec<Ipv4Addr>, NetlinkError> {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Inet;
        let messages = self.request(
            RouteNetlinkMessage::GetNeighbour(message),
            NLM_F_DUMP,
            &|| "list neighbours".to_string(),
        )?;
        let mut found = Vec::new();
        for message in messages {
            let RouteNetlinkMessage::NewNeighbour(neighbour) = message else {
                continue;
            };
            if neighbour.header.ifindex != index
                || (permanent_only && neighbour.header.state != NeighbourState::Permanent)
            {
                continue;
            }
            for attribute in &neighbour.attributes {
                if let NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) = attribute {
                    found.push(*ip);
                }
            }
        }
        Ok(found)
    }

    fn neighbour_message(index: u32, address: Ipv4Addr, mac: Option<[u8; 6]>) -> NeighbourMessage {
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.ifindex = index;
        message.header.state = NeighbourState::Permanent;
        message
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                address,
            )));
        if let Some(mac) = mac {
            message
                .attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        message
    }

    /// Adds a permanent neighbour (ARP) entry for `address` at `mac` on link `index`, failing
    /// with `EEXIST` when the address has an entry already: a claim on the address that every
    /// berth sharing this network namespace sees.
    pub fn claim_neighbour(
        &mut self,
        index: u32,
        name: &str,
        address: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<(), NetlinkError> {
        let message = Self::neighbour_message(index, address, Some(mac));
        self.request(
            RouteNetlinkMessage::NewNeighbour(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("add neighbour {address} on {name}"),
        )
        .map(drop)
    }

    /// Removes the neighbour entry of `address` on link `index`; `false` when there was none.
    pub fn delete_neighbour(
        &mut self,
        index: u32,
        name: &str,
        address: Ipv4Addr,
    ) -> Result<bool, NetlinkError> {
        let message = Self::neighbour_message(index, address, None);
        match self.request(RouteNetlinkMessage::DelNeighbour(message), 0, &|| {
            format!("delete neighbour {address} on {name}")
        }) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds the default route via `gateway` out of link `index`.
    pub fn add_default_route(
        &mut self,
        index: u32,
        name: &str,
        gateway: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(index),
        ];
        self.request(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &|| format!("add default route via {gateway} on {name}"),
        )
        .map(drop)
    }
}

fn link_of(message: RouteNetlinkMessage) -> Option<Link> {
    let RouteNetlinkMessage::NewLink(link) = message else {
        return None;
    };
    let mut name = String::new();
    let mut controller = None;
    let mut kind = None;
    for attribute in link.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = n,
            LinkAttribute::Controller(index) => controller = Some(index),
            LinkAttribute::LinkInfo(infos) => {
                kind = infos.into_iter().find_map(|info| match info {
                    LinkInfo::Kind(kind) => Some(kind.to_string()),
                    _ => None,
                })
            }
            _ => {}
        }
    }
    Some(Link {
        index: link.header.index,
        name,
        up: link.header.flags.contains(LinkFlags::Up),
        controller,
        kind,
    })
}
