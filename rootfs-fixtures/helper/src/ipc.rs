//! Subcommands for System V IPC: a message queue one process writes and another reads, to show
//! whether two containers share an IPC namespace (the containers of a Kubernetes pod do).

use crate::{Failure, Outcome};
use std::mem;

/// The longest TEXT a message carries.
const MAX_TEXT: usize = 256;

/// A System V message as msgsnd(2) and msgrcv(2) take it: a type, then the bytes.
#[repr(C)]
struct Message {
    mtype: libc::c_long,
    mtext: [u8; MAX_TEXT],
}

fn parse_key(key: &str) -> Result<libc::key_t, Failure> {
    key.parse()
        .ok()
        .filter(|&key| key != libc::IPC_PRIVATE)
        .ok_or(Failure::Usage)
}

/// `msgq-send KEY TEXT`: puts TEXT on the queue KEY (made if missing, mode 0600), prints `sent`.
pub fn send(args: &[String]) -> Outcome {
    let [key, text] = args else {
        return Err(Failure::Usage);
    };
    let key = parse_key(key)?;
    if text.len() > MAX_TEXT {
        return Err(Failure::Usage);
    }
    // SAFETY: msgget takes plain integers.
    let queue = unsafe { libc::msgget(key, libc::IPC_CREAT | 0o600) };
    if queue < 0 {
        return Err(Failure::last_os(format!("msgget {key}")));
    }
    let mut message = Message {
        mtype: 1,
        mtext: [0; MAX_TEXT],
    };
    message.mtext[..text.len()].copy_from_slice(text.as_bytes());
    // SAFETY: `message` is a valid msgbuf-shaped value of at least text.len() bytes of text.
    let sent = unsafe {
        libc::msgsnd(
            queue,
            (&message as *const Message).cast(),
            text.len(),
            libc::IPC_NOWAIT,
        )
    };
    if sent < 0 {
        return Err(Failure::last_os(format!("msgsnd {key}")));
    }
    println!("sent");
    Ok(0)
}

/// `msgq-recv KEY`: takes the first message off the queue KEY without waiting and prints it. A
/// queue that does not exist in this IPC namespace is ENOENT, an empty one ENOMSG.
pub fn receive(args: &[String]) -> Outcome {
    let [key] = args else {
        return Err(Failure::Usage);
    };
    let key = parse_key(key)?;
    // SAFETY: msgget takes plain integers.
    let queue = unsafe { libc::msgget(key, 0) };
    if queue < 0 {
        return Err(Failure::last_os(format!("msgget {key}")));
    }
    // SAFETY: Message is plain data; all zeroes is a valid value.
    let mut message: Message = unsafe { mem::zeroed() };
    // SAFETY: `message` has room for MAX_TEXT bytes of text after its type.
    let received = unsafe {
        libc::msgrcv(
            queue,
            (&mut message as *mut Message).cast(),
            MAX_TEXT,
            0,
            libc::IPC_NOWAIT,
        )
    };
    if received < 0 {
        return Err(Failure::last_os(format!("msgrcv {key}")));
    }
    // received is at most MAX_TEXT: msgrcv never writes more than it was given room for.
    println!(
        "{}",
        String::from_utf8_lossy(&message.mtext[..received as usize])
    );
    Ok(0)
}
