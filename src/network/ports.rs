//! Which ports already have a listener in the calling thread's network namespace, read from
//! `/proc/thread-self/net/{tcp,tcp6,udp,udp6}`.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use super::{NetworkError, Protocol};

/// The TCP state number of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// The local ports held in this namespace: listening TCP sockets, and UDP sockets bound in any
/// state (a bound UDP socket keeps others off its port just as a listener does).
pub fn held_ports(protocol: Protocol) -> Result<HashSet<u16>, NetworkError> {
    let mut held = HashSet::new();
    let (names, only_state) = match protocol {
        Protocol::Tcp => (["tcp", "tcp6"], Some(TCP_LISTEN)),
        Protocol::Udp => (["udp", "udp6"], None),
    };
    for name in names {
        // thread-self, not self: /proc/self/net shows the main thread's namespace
        let path = PathBuf::from("/proc/thread-self/net").join(name);
        match fs::read_to_string(&path) {
            Ok(text) => held.extend(parse_table(&text, only_state)),
            // a kernel without IPv6 has no tcp6 or udp6
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(NetworkError::Read { path, source }),
        }
    }
    Ok(held)
}

/// The local ports of a `/proc/net/{tcp,udp}[6]` table, of sockets in `only_state` if given.
fn parse_table(text: &str, only_state: Option<&str>) -> HashSet<u16> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if only_state.is_some_and(|wanted| wanted != state) {
                return None;
            }
            let (_, port) = local.rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
";
    const UDP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  5: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3 2 0 0
";

    #[test]
    fn tcp_counts_only_listeners() {
        assert_eq!(parse_table(TCP, Some(TCP_LISTEN)), HashSet::from([3000]));
    }

    #[test]
    fn udp_counts_every_bound_socket() {
        assert_eq!(parse_table(UDP6, None), HashSet::from([53]));
    }

    #[test]
    fn sees_a_listener_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(held_ports(Protocol::Tcp).unwrap().contains(&port));
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        assert!(held_ports(Protocol::Udp).unwrap().contains(&port));
    }
}
