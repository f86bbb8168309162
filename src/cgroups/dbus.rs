//! A small synchronous D-Bus client: enough to call systemd's manager over a unix socket (its
//! private socket `/run/systemd/private`, or the system bus). Messages are marshalled by hand
//! in little-endian order; only the types berth sends and receives are supported.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    #[error("cannot talk to D-Bus at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("D-Bus at {path} refused berth: {reply}")]
    Auth { path: String, reply: String },
    #[error("D-Bus at {path} sent a message berth cannot read: {reason}")]
    Malformed { path: String, reason: String },
    #[error("{name}: {message}")]
    Remote { name: String, message: String },
}

/// A value in a message body.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    U64(u64),
    Str(String),
    ObjectPath(String),
    /// An array of u32 (`au`).
    U32s(Vec<u32>),
    /// A property list (`a(sv)`).
    Properties(Vec<(String, Value)>),
    /// An empty auxiliary-unit list (`a(sa(sv))`), as StartTransientUnit takes.
    NoAuxUnits,
}

impl Value {
    fn signature(&self) -> &'static str {
        match self {
            Value::Bool(_) => "b",
            Value::U64(_) => "t",
            Value::Str(_) => "s",
            Value::ObjectPath(_) => "o",
            Value::U32s(_) => "au",
            Value::Properties(_) => "a(sv)",
            Value::NoAuxUnits => "a(sa(sv))",
        }
    }
}

/// A message being written: bytes with alignment counted from the message's start.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn pad(&mut self, align: usize) {
        while self.buf.len() % align != 0 {
            self.buf.push(0);
        }
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.pad(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    fn signature(&mut self, s: &str) {
        self.u8(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// An array: its byte length, padding to the first element, then the elements.
    fn array(&mut self, element_align: usize, elements: impl FnOnce(&mut Writer)) {
        self.pad(4);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.pad(element_align);
        let start = self.buf.len();
        elements(self);
        let len = (self.buf.len() - start) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    fn value(&mut self, value: &Value) {
        match value {
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::U64(n) => self.u64(*n),
            Value::Str(s) | Value::ObjectPath(s) => self.string(s),
            Value::U32s(list) => self.array(4, |w| list.iter().for_each(|n| w.u32(*n))),
            Value::Properties(props) => self.array(8, |w| {
                for (name, value) in props {
                    w.pad(8);
                    w.string(name);
                    w.signature(value.signature());
                    w.value(value);
                }
            }),
            Value::NoAuxUnits => self.array(8, |_| {}),
        }
    }
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

/// One method call, marshalled.
pub fn method_call(
    serial: u32,
    destination: Option<&str>,
    path: &str,
    interface: &str,
    member: &str,
    args: &[Value],
) -> Vec<u8> {
    let mut body = Writer::default();
    for arg in args {
        body.value(arg);
    }
    let signature: String = args.iter().map(Value::signature).collect();
    let mut w = Writer::default();
    w.u8(b'l');
    w.u8(METHOD_CALL);
    w.u8(0);
    w.u8(1);
    w.u32(body.buf.len() as u32);
    w.u32(serial);
    let field = |w: &mut Writer, code: u8, sig: &str, value: Value| {
        w.pad(8);
        w.u8(code);
        w.signature(sig);
        w.value(&value);
    };
    w.array(8, |w| {
        field(w, 1, "o", Value::ObjectPath(path.into()));
        field(w, 2, "s", Value::Str(interface.into()));
        field(w, 3, "s", Value::Str(member.into()));
        if let Some(destination) = destination {
            field(w, 6, "s", Value::Str(destination.into()));
        }
        if !signature.is_empty() {
            w.pad(8);
            w.u8(8);
            w.signature("g");
            w.signature(&signature);
        }
    });
    w.pad(8);
    // The body's alignment counts from the message's start, which is 8-aligned here.
    w.buf.extend_from_slice(&body.buf);
    w.buf
}

/// A message read back: its type, the serial it answers, an error name, and its body's first
/// string or object path (all berth needs from systemd's replies).
#[derive(Debug, Default, PartialEq)]
pub struct Reply {
    pub kind: u8,
    pub reply_serial: Option<u32>,
    pub error_name: Option<String>,
    pub signature: String,
    pub first_string: Option<String>,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn align(&mut self, n: usize) {
        self.pos = self.pos.div_ceil(n) * n;
    }
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let out = self.buf.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.align(4);
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    }
    fn string(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len + 1)?;
        String::from_utf8(bytes[..len].to_vec()).ok()
    }
    fn signature(&mut self) -> Option<String> {
        let len = self.u8()? as usize;
        let bytes = self.take(len + 1)?;
        String::from_utf8(bytes[..len].to_vec()).ok()
    }
}

/// Parses a whole message (header and body).
pub fn parse(message: &[u8]) -> Option<Reply> {
    let mut r = Reader {
        buf: message,
        pos: 0,
    };
    if r.u8()? != b'l' {
        return None;
    }
    let kind = r.u8()?;
    let _flags = r.u8()?;
    let _version = r.u8()?;
    let body_len = r.u32()? as usize;
    let _serial = r.u32()?;
    let fields_len = r.u32()? as usize;
    let fields_end = r.pos.checked_add(fields_len)?;
    let mut reply = Reply {
        kind,
        ..Default::default()
    };
    while r.pos < fields_end {
        r.align(8);
        let code = r.u8()?;
        let sig = r.signature()?;
        match sig.as_str() {
            "u" => {
                let n = r.u32()?;
                if code == 5 {
                    reply.reply_serial = Some(n);
                }
            }
            "s" | "o" => {
                let s = r.string()?;
                if code == 4 {
                    reply.error_name = Some(s);
                }
            }
            "g" => {
                let s = r.signature()?;
                if code == 8 {
                    reply.signature = s;
                }
            }
            _ => return None,
        }
    }
    r.pos = fields_end;
    r.align(8);
    if r.buf.len() < r.pos + body_len {
        return None;
    }
    if reply.signature.starts_with('s') || reply.signature.starts_with('o') {
        reply.first_string = r.string();
    }
    Some(reply)
}

/// A connection to a D-Bus peer (systemd's private socket) or bus.
pub struct Connection {
    stream: UnixStream,
    path: String,
    serial: u32,
}

impl Connection {
    /// Connects and authenticates as the calling user (SASL EXTERNAL); on a bus, says Hello.
    pub fn open(path: &Path, is_bus: bool) -> Result<Connection, DbusError> {
        let shown = path.display().to_string();
        let io = |source| DbusError::Io {
            path: shown.clone(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(25)))
            .map_err(io)?;
        let mut conn = Connection {
            stream,
            path: shown.clone(),
            serial: 0,
        };
        let uid = nix::unistd::getuid().as_raw().to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        conn.stream
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
            .map_err(io)?;
        let line = conn.read_line()?;
        if !line.starts_with("OK ") {
            return Err(DbusError::Auth {
                path: shown,
                reply: line,
            });
        }
        conn.stream.write_all(b"BEGIN\r\n").map_err(io)?;
        if is_bus {
            conn.call(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                &[],
            )?;
        }
        Ok(conn)
    }

    fn io_error(&self, source: std::io::Error) -> DbusError {
        DbusError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn read_line(&mut self) -> Result<String, DbusError> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            match self.stream.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => line.push(byte[0]),
                Err(e) => return Err(self.io_error(e)),
            }
            if line.len() > 4096 {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }

    /// Calls a method and waits for its reply; returns the reply's first string or object path.
    pub fn call(
        &mut self,
        destination: Option<&str>,
        path: &str,
        interface: &str,
        member: &str,
        args: &[Value],
    ) -> Result<Option<String>, DbusError> {
        self.serial += 1;
        let serial = self.serial;
        let message = method_call(serial, destination, path, interface, member, args);
        self.stream
            .write_all(&message)
            .map_err(|e| self.io_error(e))?;
        loop {
            let raw = self.read_message()?;
            let reply = parse(&raw).ok_or_else(|| DbusError::Malformed {
                path: self.path.clone(),
                reason: format!("{} bytes that do not parse", raw.len()),
            })?;
            // Signals and other traffic on a bus are skipped.
            if reply.reply_serial != Some(serial) {
                continue;
            }
            return match reply.kind {
                METHOD_RETURN => Ok(reply.first_string),
                ERROR => Err(DbusError::Remote {
                    name: reply.error_name.unwrap_or_default(),
                    message: reply.first_string.unwrap_or_default(),
                }),
                other => Err(DbusError::Malformed {
                    path: self.path.clone(),
                    reason: format!("a reply of message type {other}"),
                }),
            };
        }
    }

    /// One whole message: the fixed header says how long the rest is.
    fn read_message(&mut self) -> Result<Vec<u8>, DbusError> {
        let mut head = vec![0u8; 16];
        self.stream
            .read_exact(&mut head)
            .map_err(|e| self.io_error(e))?;
        if head[0] != b'l' {
            return Err(DbusError::Malformed {
                path: self.path.clone(),
                reason: "a big-endian message".into(),
            });
        }
        let body_len = u32::from_le_bytes(head[4..8].try_into().unwrap()) as usize;
        let fields_len = u32::from_le_bytes(head[12..16].try_into().unwrap()) as usize;
        let total = (16 + fields_len).div_ceil(8) * 8 + body_len;
        if total > 64 * 1024 * 1024 {
            return Err(DbusError::Malformed {
                path: self.path.clone(),
                reason: format!("a message of {total} bytes"),
            });
        }
        head.resize(total, 0);
        self.stream
            .read_exact(&mut head[16..])
            .map_err(|e| self.io_error(e))?;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_marshals_as_the_spec_says() {
        let bytes = method_call(
            1,
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
            &[],
        );
        // Fixed header: little-endian, method call, no flags, version 1, empty body, serial 1.
        assert_eq!(&bytes[..12], &[b'l', 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
        let fields_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        assert_eq!(bytes.len(), (16 + fields_len).div_ceil(8) * 8);
        // The first field is the path: code 1, signature "o", then the string.
        assert_eq!(&bytes[16..20], &[1, 1, b'o', 0]);
        assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 21);
        assert_eq!(&bytes[24..45], b"/org/freedesktop/DBus");
        assert_eq!(bytes[45], 0);
    }

    #[test]
    fn a_transient_unit_call_reads_back() {
        let args = [
            Value::Str("berth-web.scope".into()),
            Value::Str("fail".into()),
            Value::Properties(vec![
                ("Delegate".into(), Value::Bool(true)),
                ("PIDs".into(), Value::U32s(vec![42])),
                ("MemoryMax".into(), Value::U64(1 << 25)),
            ]),
            Value::NoAuxUnits,
        ];
        let bytes = method_call(
            7,
            None,
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "StartTransientUnit",
            &args,
        );
        let parsed = parse(&bytes).unwrap();
        assert_eq!(parsed.kind, METHOD_CALL);
        assert_eq!(parsed.signature, "ssa(sv)a(sa(sv))");
        assert_eq!(parsed.first_string.as_deref(), Some("berth-web.scope"));
        // The property array: each (sv) struct starts 8-aligned, the u64 inside its variant too.
        let body = &bytes[bytes.len() - body_len(&bytes)..];
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("Delegate") && text.contains("PIDs") && text.contains("MemoryMax"));
        let memory_max = body.windows(9).position(|w| w == b"MemoryMax").unwrap();
        let value_at = (memory_max + 10 + 3).div_ceil(8) * 8;
        let offset_in_message = bytes.len() - body.len() + value_at;
        assert_eq!(offset_in_message % 8, 0);
        assert_eq!(
            u64::from_le_bytes(body[value_at..value_at + 8].try_into().unwrap()),
            1 << 25
        );
    }

    /// A private dbus-daemon, which checks every message against the specification before it
    /// routes it (and drops a connection that sends a malformed one). Killed by pid on drop.
    struct Daemon {
        child: std::process::Child,
        dir: std::path::PathBuf,
    }

    impl Daemon {
        fn start() -> Option<Daemon> {
            let dir = std::env::temp_dir().join(format!("berth-dbus-{}", std::process::id()));
            std::fs::create_dir_all(&dir).ok()?;
            let config = format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>"#,
                dir.display()
            );
            std::fs::write(dir.join("bus.conf"), config).ok()?;
            let child = std::process::Command::new("dbus-daemon")
                .arg(format!("--config-file={}", dir.join("bus.conf").display()))
                .arg("--nofork")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .ok()?;
            let daemon = Daemon { child, dir };
            let bus = daemon.dir.join("bus");
            // The socket file exists from bind(), before the daemon listens: wait for a connection.
            super::super::wait_until(Duration::from_secs(5), || {
                std::os::unix::net::UnixStream::connect(&bus).is_ok()
            });
            Some(daemon)
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_real_bus_accepts_the_calls_and_answers() {
        let Some(daemon) = Daemon::start() else {
            // Straight to stderr: the harness shows eprintln! only for failing tests.
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIP a_real_bus_accepts_the_calls_and_answers: no dbus-daemon here"
            );
            return;
        };
        let mut conn = Connection::open(&daemon.dir.join("bus"), true).unwrap();
        let owner = conn
            .call(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetNameOwner",
                &[Value::Str("org.freedesktop.DBus".into())],
            )
            .unwrap();
        assert_eq!(owner.as_deref(), Some("org.freedesktop.DBus"));
        // The daemon validates the body against its signature before routing: a malformed
        // StartTransientUnit would cost the connection; a valid one meets "no such service".
        let err = conn
            .call(
                Some("org.freedesktop.systemd1"),
                "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager",
                "StartTransientUnit",
                &[
                    Value::Str("berth-web.scope".into()),
                    Value::Str("fail".into()),
                    Value::Properties(vec![
                        ("Description".into(), Value::Str("berth container".into())),
                        ("Delegate".into(), Value::Bool(true)),
                        ("PIDs".into(), Value::U32s(vec![std::process::id()])),
                        ("MemoryMax".into(), Value::U64(1 << 25)),
                    ]),
                    Value::NoAuxUnits,
                ],
            )
            .unwrap_err();
        match err {
            DbusError::Remote { name, .. } => {
                assert_eq!(name, "org.freedesktop.DBus.Error.ServiceUnknown")
            }
            other => panic!("{other}"),
        }
        // The connection is still good.
        let id = conn
            .call(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "GetId",
                &[],
            )
            .unwrap();
        assert_eq!(id.map(|i| i.len()), Some(32));
    }

    fn body_len(bytes: &[u8]) -> usize {
        u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize
    }

    #[test]
    fn error_replies_carry_name_and_message() {
        let mut w = Writer::default();
        w.u8(b'l');
        w.u8(ERROR);
        w.u8(0);
        w.u8(1);
        let mut body = Writer::default();
        body.string("Unit berth-web.scope already exists.");
        w.u32(body.buf.len() as u32);
        w.u32(9);
        w.array(8, |w| {
            w.pad(8);
            w.u8(4);
            w.signature("s");
            w.string("org.freedesktop.systemd1.UnitExists");
            w.pad(8);
            w.u8(5);
            w.signature("u");
            w.u32(7);
            w.pad(8);
            w.u8(8);
            w.signature("g");
            w.signature("s");
        });
        w.pad(8);
        w.buf.extend_from_slice(&body.buf);
        let reply = parse(&w.buf).unwrap();
        assert_eq!(reply.kind, ERROR);
        assert_eq!(reply.reply_serial, Some(7));
        assert_eq!(
            reply.error_name.as_deref(),
            Some("org.freedesktop.systemd1.UnitExists")
        );
        assert_eq!(
            reply.first_string.as_deref(),
            Some("Unit berth-web.scope already exists.")
        );
    }
}
