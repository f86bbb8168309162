//! Subcommands for network tests: a server that answers every client with one line, and a client.

use crate::{Failure, Outcome};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

/// The line `listen` sends when no TEXT is given.
const GREETING: &str = "hello from berth-helper";

/// How long `connect` waits to connect and then for each read.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `listen tcp|udp PORT [TEXT]`: binds 0.0.0.0:PORT, prints `listening`, then answers each TCP
/// client (or each UDP datagram) with TEXT and a newline, until killed.
pub fn listen(args: &[String]) -> Outcome {
    let (protocol, port, text) = match args {
        [protocol, port] => (protocol, port, GREETING),
        [protocol, port, text] => (protocol, port, text.as_str()),
        _ => return Err(Failure::Usage),
    };
    let port: u16 = port.parse().map_err(|_| Failure::Usage)?;
    let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let line = format!("{text}\n");
    match protocol.as_str() {
        "tcp" => serve_tcp(address, &line),
        "udp" => serve_udp(address, &line),
        _ => Err(Failure::Usage),
    }
}

fn serve_tcp(address: SocketAddr, line: &str) -> Outcome {
    let listener =
        TcpListener::bind(address).map_err(|error| Failure::io(format!("tcp {address}"), error))?;
    println!("listening");
    loop {
        let (mut client, _) = listener
            .accept()
            .map_err(|error| Failure::io(format!("accept on tcp {address}"), error))?;
        // A client that hangs up early is no reason to stop serving the next one (std sends with
        // MSG_NOSIGNAL, so this cannot raise SIGPIPE either).
        let _ = client.write_all(line.as_bytes());
    }
}

fn serve_udp(address: SocketAddr, line: &str) -> Outcome {
    let socket =
        UdpSocket::bind(address).map_err(|error| Failure::io(format!("udp {address}"), error))?;
    println!("listening");
    let mut datagram = [0u8; 2048];
    loop {
        let (_, sender) = socket
            .recv_from(&mut datagram)
            .map_err(|error| Failure::io(format!("receive on udp {address}"), error))?;
        let _ = socket.send_to(line.as_bytes(), sender);
    }
}

/// `connect HOST PORT`: connects over TCP and prints everything the server sends until it closes
/// the connection. HOST is an IP address: a static binary cannot use glibc's name services.
pub fn connect(args: &[String]) -> Outcome {
    let [host, port] = args else {
        return Err(Failure::Usage);
    };
    let host: IpAddr = host.parse().map_err(|_| Failure::Usage)?;
    let port: u16 = port.parse().map_err(|_| Failure::Usage)?;
    let address = SocketAddr::new(host, port);
    let failure = |error| Failure::io(format!("tcp {address}"), error);
    let mut server = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).map_err(failure)?;
    server
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(failure)?;
    let mut received = Vec::new();
    server.read_to_end(&mut received).map_err(failure)?;
    io::stdout()
        .write_all(&received)
        .map_err(|error| Failure::io("stdout", error))?;
    Ok(0)
}
