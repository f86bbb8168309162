//! `raw-frame`: a hand-built Ethernet frame sent through a packet socket, as a container holding
//! CAP_NET_RAW can send one, past its own IP stack: any source and destination, any MAC.

use crate::{Failure, Outcome};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How long `raw-frame ... tcp` waits for the answer to its SYN.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(1500);
const SOURCE_PORT: u16 = 40123;
const PAYLOAD: &[u8] = b"berth raw frame\n";

/// `raw-frame IFACE DST_MAC SRC_MAC SRC_IP DST_IP udp|tcp PORT`: sends one IPv4 frame on IFACE,
/// a UDP datagram or a TCP SYN to DST_IP:PORT, and prints `sent`; for tcp it then waits 1.5 s for
/// a SYN-ACK to it and prints `answered` or `no answer`.
pub fn raw_frame(args: &[String]) -> Outcome {
    let [iface, dst_mac, src_mac, src_ip, dst_ip, protocol, port] = args else {
        return Err(Failure::Usage);
    };
    let dst_mac = parse_mac(dst_mac).ok_or(Failure::Usage)?;
    let src_mac = parse_mac(src_mac).ok_or(Failure::Usage)?;
    let src_ip: Ipv4Addr = src_ip.parse().map_err(|_| Failure::Usage)?;
    let dst_ip: Ipv4Addr = dst_ip.parse().map_err(|_| Failure::Usage)?;
    let port: u16 = port.parse().map_err(|_| Failure::Usage)?;
    let tcp = match protocol.as_str() {
        "udp" => false,
        "tcp" => true,
        _ => return Err(Failure::Usage),
    };
    let segment = match tcp {
        true => tcp_syn(src_ip, dst_ip, port),
        false => udp(src_ip, dst_ip, port),
    };
    let packet = ipv4(src_ip, dst_ip, if tcp { 6 } else { 17 }, &segment);
    let mut frame = Vec::with_capacity(14 + packet.len());
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    frame.extend_from_slice(&packet);

    let socket = PacketSocket::open(iface)?;
    socket.send(&frame, &dst_mac)?;
    println!("sent");
    if tcp {
        let answered = socket.wait_for(ANSWER_TIMEOUT, |frame| {
            is_syn_ack(frame, dst_ip, src_ip, port)
        })?;
        println!("{}", if answered { "answered" } else { "no answer" });
    }
    Ok(0)
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|part| u8::from_str_radix(part, 16).ok())
        .collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// The Internet checksum of `data`, folded from `start`.
fn checksum(start: u32, data: &[u8]) -> u16 {
    let mut sum = start;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The sum of the pseudo header that UDP and TCP checksums cover.
fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: usize) -> u32 {
    let mut header = Vec::with_capacity(12);
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&dst.octets());
    header.extend_from_slice(&[0, protocol]);
    header.extend_from_slice(&(length as u16).to_be_bytes());
    u32::from(!checksum(0, &header))
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut header = vec![0x45, 0];
    header.extend_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, protocol, 0, 0]);
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&dst.octets());
    let sum = checksum(0, &header);
    header[10..12].copy_from_slice(&sum.to_be_bytes());
    header.extend_from_slice(payload);
    header
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let length = 8 + PAYLOAD.len();
    let mut segment = Vec::with_capacity(length);
    segment.extend_from_slice(&SOURCE_PORT.to_be_bytes());
    segment.extend_from_slice(&port.to_be_bytes());
    segment.extend_from_slice(&(length as u16).to_be_bytes());
    segment.extend_from_slice(&[0, 0]);
    segment.extend_from_slice(PAYLOAD);
    let sum = checksum(pseudo_header(src, dst, 17, length), &segment);
    segment[6..8].copy_from_slice(&sum.to_be_bytes());
    segment
}

fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut segment = Vec::with_capacity(20);
    segment.extend_from_slice(&SOURCE_PORT.to_be_bytes());
    segment.extend_from_slice(&port.to_be_bytes());
    segment.extend_from_slice(&0x0bad_cafe_u32.to_be_bytes()); // sequence number
    segment.extend_from_slice(&[0, 0, 0, 0]); // acknowledgement number
    segment.extend_from_slice(&[0x50, 0x02]); // 5 words of header, SYN
    segment.extend_from_slice(&64240u16.to_be_bytes()); // window
    segment.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let sum = checksum(pseudo_header(src, dst, 6, segment.len()), &segment);
    segment[16..18].copy_from_slice(&sum.to_be_bytes());
    segment
}

/// Whether `frame` is an IPv4 TCP SYN-ACK from `from`:`port` to `to`:[`SOURCE_PORT`].
fn is_syn_ack(frame: &[u8], from: Ipv4Addr, to: Ipv4Addr, port: u16) -> bool {
    let Some(ip) = frame.get(14..) else {
        return false;
    };
    if frame[12..14] != [0x08, 0x00] || ip.len() < 20 || ip[9] != 6 {
        return false;
    }
    let header = usize::from(ip[0] & 0x0f) * 4;
    let Some(tcp) = ip.get(header..header + 20) else {
        return false;
    };
    ip[12..16] == from.octets()
        && ip[16..20] == to.octets()
        && tcp[0..2] == port.to_be_bytes()
        && tcp[2..4] == SOURCE_PORT.to_be_bytes()
        && tcp[13] & 0x12 == 0x12
}

/// An `AF_PACKET` socket bound to one interface, seeing every frame on it.
struct PacketSocket {
    fd: libc::c_int,
    index: libc::c_int,
}

impl PacketSocket {
    fn open(iface: &str) -> Result<PacketSocket, Failure> {
        let name = std::ffi::CString::new(iface).map_err(|_| Failure::Usage)?;
        // SAFETY: if_nametoindex reads a NUL-terminated string we own.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) } as libc::c_int;
        if index == 0 {
            return Err(Failure::last_os(format!("interface {iface}")));
        }
        let all = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
        // SAFETY: socket(2) with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, all) };
        if fd < 0 {
            return Err(Failure::last_os("packet socket"));
        }
        let socket = PacketSocket { fd, index };
        let mut address = socket.address(&[0; 6]);
        address.sll_protocol = all as u16;
        // SAFETY: bind with a sockaddr_ll of the right size that lives across the call.
        let rc = unsafe {
            libc::bind(
                fd,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(Failure::last_os(format!("bind a packet socket to {iface}")));
        }
        Ok(socket)
    }

    fn address(&self, mac: &[u8; 6]) -> libc::sockaddr_ll {
        // SAFETY: sockaddr_ll is plain data, valid when zeroed.
        let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_ifindex = self.index;
        address.sll_halen = 6;
        address.sll_addr[..6].copy_from_slice(mac);
        address
    }

    fn send(&self, frame: &[u8], dst: &[u8; 6]) -> Result<(), Failure> {
        let address = self.address(dst);
        // SAFETY: sendto with a buffer and an address that live across the call.
        let sent = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&address as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(Failure::last_os("send the frame"));
        }
        Ok(())
    }

    /// Reads frames until one satisfies `wanted` (true) or `timeout` passes (false).
    fn wait_for(&self, timeout: Duration, wanted: impl Fn(&[u8]) -> bool) -> Result<bool, Failure> {
        let deadline = Instant::now() + timeout;
        let mut buffer = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let mut poll = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one pollfd we own.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis() as libc::c_int) };
            if ready <= 0 {
                continue;
            }
            // SAFETY: recv into a buffer we own, of the length given.
            let length =
                unsafe { libc::recv(self.fd, buffer.as_mut_ptr().cast(), buffer.len(), 0) };
            if length > 0 && wanted(&buffer[..length as usize]) {
                return Ok(true);
            }
        }
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor this value owns.
        unsafe { libc::close(self.fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let src = Ipv4Addr::new(172, 17, 0, 3);
        let dst = Ipv4Addr::new(127, 0, 0, 1);
        let packet = ipv4(src, dst, 17, &udp(src, dst, 9999));
        assert_eq!(checksum(0, &packet[..20]), 0);
        let segment = &packet[20..];
        assert_eq!(
            checksum(pseudo_header(src, dst, 17, segment.len()), segment),
            0
        );
        let syn = tcp_syn(src, dst, 9999);
        assert_eq!(checksum(pseudo_header(src, dst, 6, syn.len()), &syn), 0);
    }

    #[test]
    fn macs_parse_as_six_bytes() {
        assert_eq!(
            parse_mac("02:42:ac:11:00:02"),
            Some([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("zz:42:ac:11:00:02"), None);
    }
}
