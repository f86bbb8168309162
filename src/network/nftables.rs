//! A small synchronous nf_tables client over `NETLINK_NETFILTER` (netlink-packet-netfilter's
//! message types on a netlink-sys socket): a batch of changes sent in one transaction, which the
//! kernel applies whole or not at all, and the few look-ups berth makes. Beside it, builders for
//! the expressions berth's rules are made of, in the words `nft --debug=netlink` prints them.

use std::io;

use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    Bitwise, ChainAttribute, ChainMessage, Cmp, DataAttribute, ExpressionAttribute, Expressions,
    Immediate, ListAttribute, Lookup, Meta, MetaKey, NfTablesMessage, Operator, Payload, Register,
    TableAttribute, TableMessage, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

/// The nfnetlink subsystem of nf_tables, which a batch names in its first message.
const NFNL_SUBSYS_NFTABLES: u16 = 10;

pub use netlink_packet_netfilter::NetfilterProtoFamily as Family;

/// Errors of the nf_tables client; each names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot open a netfilter netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("cannot {action}: {source}")]
    Kernel { action: String, source: io::Error },
    #[error("cannot {action}: undecodable netlink answer: {reason}")]
    Decode { action: String, reason: String },
}

impl NftError {
    /// The errno the kernel answered with, if it was the kernel that refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// A netfilter netlink socket in the calling thread's network namespace.
pub struct Nft {
    socket: Socket,
    sequence: u32,
}

/// One change of a batch: the message, the family it is for, and its netlink flags
/// (`NLM_F_CREATE`, `NLM_F_EXCL`…; request and acknowledgement are added).
pub type Change = (Family, NfTablesMessage, u16);

impl Nft {
    pub fn open() -> Result<Nft, NftError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NftError::Socket)?;
        socket.bind_auto().map_err(NftError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NftError::Socket)?;
        Ok(Nft {
            socket,
            sequence: 0,
        })
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn packet(&mut self, inner: NetfilterMessage, flags: u16) -> (u32, Vec<u8>) {
        let sequence = self.next_sequence();
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(inner));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        (sequence, bytes)
    }

    /// Applies `changes` in one transaction: all of them, or (on the first refusal, which is
    /// the error returned) none.
    pub fn batch(
        &mut self,
        changes: Vec<Change>,
        action: &dyn Fn() -> String,
    ) -> Result<(), NftError> {
        let control = |message| {
            NetfilterMessage::new(
                NetfilterHeader::new(Family::Unspec, 0, NFNL_SUBSYS_NFTABLES),
                message,
            )
        };
        let (_, mut bytes) = self.packet(control(ControlMessage::BatchBegin), 0);
        let mut waiting = Vec::new();
        for (family, message, flags) in changes {
            let message = NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), message);
            let (sequence, packet) = self.packet(message, flags | NLM_F_ACK);
            waiting.push(sequence);
            bytes.extend(packet);
        }
        let (_, end) = self.packet(control(ControlMessage::BatchEnd), 0);
        bytes.extend(end);
        self.send(&bytes, action)?;
        // every change is acknowledged or refused, also after a refusal (the kernel goes on
        // checking the rest to report every error, then applies none)
        let mut first_error = None;
        while !waiting.is_empty() {
            for (sequence, answer) in self.receive(action)? {
                let Some(position) = waiting.iter().position(|s| *s == sequence) else {
                    continue;
                };
                waiting.swap_remove(position);
                if let Answer::Error(source) = answer {
                    first_error.get_or_insert((sequence, source));
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some((_, source)) => Err(NftError::Kernel {
                action: action(),
                source,
            }),
        }
    }

    /// Sends one request and collects the messages of its answer (a dump's, up to its end).
    pub fn request(
        &mut self,
        family: Family,
        message: NfTablesMessage,
        flags: u16,
        action: &dyn Fn() -> String,
    ) -> Result<Vec<NfTablesMessage>, NftError> {
        let message = NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), message);
        let dump = flags & netlink_packet_core::NLM_F_DUMP != 0;
        let (sequence, bytes) = self.packet(message, flags | if dump { 0 } else { NLM_F_ACK });
        self.send(&bytes, action)?;
        let mut found = Vec::new();
        loop {
            for (answered, answer) in self.receive(action)? {
                if answered != sequence {
                    continue;
                }
                match answer {
                    Answer::Message(message) => found.push(message),
                    Answer::Done => return Ok(found),
                    Answer::Error(source) => {
                        return Err(NftError::Kernel {
                            action: action(),
                            source,
                        })
                    }
                }
            }
        }
    }

    fn send(&mut self, bytes: &[u8], action: &dyn Fn() -> String) -> Result<(), NftError> {
        self.socket
            .send(bytes, 0)
            .map(drop)
            .map_err(|source| NftError::Kernel {
                action: action(),
                source,
            })
    }

    /// The answers in the next datagram, by sequence number.
    fn receive(&mut self, action: &dyn Fn() -> String) -> Result<Vec<(u32, Answer)>, NftError> {
        let decode = |reason: String| NftError::Decode {
            action: action(),
            reason,
        };
        let (datagram, _) = self
            .socket
            .recv_from_full()
            .map_err(|source| NftError::Kernel {
                action: action(),
                source,
            })?;
        let mut answers = Vec::new();
        let mut offset = 0;
        while offset < datagram.len() {
            let reply = NetlinkMessage::<NetfilterMessage>::deserialize(&datagram[offset..])
                .map_err(|e| decode(e.to_string()))?;
            let length = reply.header.length as usize;
            if length == 0 {
                return Err(decode("a message of length 0".to_string()));
            }
            offset += length.next_multiple_of(4);
            let sequence = reply.header.sequence_number;
            let answer = match reply.payload {
                NetlinkPayload::Done(_) => Answer::Done,
                NetlinkPayload::Error(error) => match error.code {
                    Some(_) => Answer::Error(error.to_io()),
                    None => Answer::Done,
                },
                NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner: netlink_packet_netfilter::NetfilterMessageInner::NfTables(message),
                    ..
                }) => Answer::Message(message),
                _ => continue,
            };
            answers.push((sequence, answer));
        }
        Ok(answers)
    }

    /// Whether table `name` of `family` exists.
    pub fn table_exists(&mut self, family: Family, name: &str) -> Result<bool, NftError> {
        let message = NfTablesMessage::GetTable(TableMessage {
            attributes: vec![TableAttribute::Name(name.to_string())],
        });
        match self.request(family, message, 0, &|| {
            format!("look up nftables table {name}")
        }) {
            Ok(_) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The policy of base chain `chain` in table `table` ([`DROP`] or [`ACCEPT`]), if there is
    /// such a chain.
    pub fn chain_policy(
        &mut self,
        family: Family,
        table: &str,
        chain: &str,
    ) -> Result<Option<u32>, NftError> {
        let message = NfTablesMessage::GetChain(ChainMessage {
            attributes: vec![
                ChainAttribute::Table(table.to_string()),
                ChainAttribute::Name(chain.to_string()),
            ],
        });
        let answer = self.request(family, message, 0, &|| {
            format!("look up nftables chain {table} {chain}")
        });
        let messages = match answer {
            Ok(messages) => messages,
            Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(messages.into_iter().find_map(|message| match message {
            NfTablesMessage::NewChain(chain) => {
                chain.attributes.into_iter().find_map(|a| match a {
                    ChainAttribute::Policy(policy) => Some(policy),
                    _ => None,
                })
            }
            _ => None,
        }))
    }
}

enum Answer {
    Message(NfTablesMessage),
    Done,
    Error(io::Error),
}

/// `NF_DROP` and `NF_ACCEPT`, the verdicts of `include/uapi/linux/netfilter.h`.
pub const DROP: u32 = 0;
pub const ACCEPT: u32 = 1;

/// Where a payload expression reads from (`enum nft_payload_bases`).
#[derive(Clone, Copy)]
pub enum Base {
    Link = 0,
    Network = 1,
    Transport = 2,
}

/// The expressions of one rule.
pub type Expr = ListAttribute<ExpressionAttribute>;

/// `meta load KEY => reg`.
pub fn meta(key: MetaKey, register: Register) -> Expr {
    Expressions::Meta(vec![Meta::Key(key), Meta::DestinationRegister(register)]).into()
}

/// `payload load LEN @ BASE + OFFSET => reg`.
pub fn payload(base: Base, offset: u32, len: u32, register: Register) -> Expr {
    Expressions::Payload(vec![
        Payload::DestinationRegister(register),
        Payload::Base(base as u32),
        Payload::Offset(offset),
        Payload::Len(len),
    ])
    .into()
}

/// `cmp OP reg VALUE`.
pub fn cmp(op: Operator, register: Register, value: &[u8]) -> Expr {
    Expressions::Cmp(vec![
        Cmp::SourceRegister(register),
        Cmp::Op(op),
        Cmp::Data(DataAttribute::Value(value.to_vec())),
    ])
    .into()
}

/// `bitwise reg = (reg & MASK) ^ 0`.
pub fn and(register: Register, mask: &[u8]) -> Expr {
    Expressions::Bitwise(vec![
        Bitwise::SourceRegister(register),
        Bitwise::DestinationRegister(register),
        Bitwise::Length(mask.len() as u32),
        Bitwise::Mask(DataAttribute::Value(mask.to_vec())),
        Bitwise::Xor(DataAttribute::Value(vec![0; mask.len()])),
    ])
    .into()
}

/// `lookup reg set SET` (`!=` when `inverted`), or with `into`, the map's value into a register.
pub fn lookup(set: &str, register: Register, into: Option<Register>, inverted: bool) -> Expr {
    let mut attributes = vec![
        Lookup::Set(set.to_string()),
        Lookup::SourceRegister(register),
    ];
    if let Some(into) = into {
        attributes.push(Lookup::DestinationRegister(into));
    }
    if inverted {
        // NFT_LOOKUP_F_INV
        attributes.push(Lookup::Flags(1));
    }
    Expressions::Lookup(attributes).into()
}

/// `immediate reg 0 VERDICT`: accept or drop.
pub fn verdict(code: u32) -> Expr {
    Expressions::Immediate(vec![
        Immediate::DestinationRegister(Register::Verdict),
        Immediate::Data(DataAttribute::Verdict(vec![VerdictAttribute::Code(
            Verdict::Other(code),
        )])),
    ])
    .into()
}

/// An expression the crate has no type for, from its name and attributes (kind, big-endian u32).
fn other(name: &str, attributes: &[(u16, u32)]) -> Expr {
    Expressions::Other {
        expression_type: name.to_string(),
        attributes: attributes
            .iter()
            .map(|(kind, value)| DefaultNla::new(*kind, value.to_be_bytes().to_vec()))
            .collect(),
    }
    .into()
}

/// `fib daddr type => reg`: the route type of the destination address (`RTN_LOCAL` is 2).
pub fn fib_daddr_type(register: Register) -> Expr {
    // NFTA_FIB_DREG, NFTA_FIB_RESULT = NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_FLAGS = NFTA_FIB_F_DADDR
    other("fib", &[(1, register.into()), (2, 3), (3, 2)])
}

/// `ct load status => reg`.
pub fn ct_status(register: Register) -> Expr {
    // NFTA_CT_DREG, NFTA_CT_KEY = NFT_CT_STATUS
    other("ct", &[(1, register.into()), (2, 2)])
}

/// `nat dnat ip addr_min reg proto_min reg`.
pub fn dnat(address: Register, port: Register) -> Expr {
    // NFTA_NAT_TYPE = NFT_NAT_DNAT, NFTA_NAT_FAMILY = NFPROTO_IPV4, NFTA_NAT_REG_ADDR_MIN,
    // NFTA_NAT_REG_PROTO_MIN
    other(
        "nat",
        &[(1, 1), (2, 2), (3, address.into()), (5, port.into())],
    )
}

/// `masq`.
pub fn masquerade() -> Expr {
    other("masq", &[])
}

/// An interface name as nf_tables compares it: 16 bytes, padded with zeros.
pub fn ifname(name: &str) -> Vec<u8> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.resize(16, 0);
    bytes
}

/// The concatenation of `fields` as a set key: each field padded to a multiple of 4 bytes.
pub fn concat(fields: &[&[u8]]) -> Vec<u8> {
    let mut key = Vec::new();
    for field in fields {
        key.extend_from_slice(field);
        key.resize(key.len().next_multiple_of(4), 0);
    }
    key
}
