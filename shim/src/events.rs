//! The events the shim sends containerd, as the runc shim publishes them: each a message of
//! containerd's `events` protocol, forwarded in an Envelope over containerd's ttrpc socket, in
//! the order they were queued. The messages are put in an Any by name: protobuf's reflection
//! (descriptors built at first use) would cost every shim a few hundred KiB of heap.

use std::sync::mpsc::Receiver;
use std::time::SystemTime;

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim::events_ttrpc::EventsClient;
use containerd_shim::protos::ttrpc;

/// An event's topic and protobuf type.
pub trait Event: Message {
    const TOPIC: &'static str;
    const TYPE: &'static str;
}

macro_rules! events {
    ($($event:ident $topic:literal,)*) => {$(
        impl Event for $event {
            const TOPIC: &'static str = $topic;
            const TYPE: &'static str = concat!("containerd.events.", stringify!($event));
        }
    )*};
}

events! {
    TaskCreate "/tasks/create",
    TaskStart "/tasks/start",
    TaskExit "/tasks/exit",
    TaskExecAdded "/tasks/exec-added",
    TaskExecStarted "/tasks/exec-started",
    TaskPaused "/tasks/paused",
    TaskResumed "/tasks/resumed",
    TaskOOM "/tasks/oom",
    TaskDelete "/tasks/delete",
}

/// One event, encoded: its topic, and its message as an Any.
pub struct Outgoing {
    topic: &'static str,
    event: Any,
}

impl Outgoing {
    pub fn new<E: Event>(event: &E) -> Outgoing {
        Outgoing {
            topic: E::TOPIC,
            event: any(E::TYPE, event),
        }
    }
}

/// A message in an Any, by its protobuf type's full name (how containerd names types).
pub fn any(type_name: &str, message: &impl Message) -> Any {
    Any {
        type_url: type_name.to_string(),
        value: message.write_to_bytes().expect("a message encodes"),
        ..Default::default()
    }
}

pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
        ..Default::default()
    }
}

fn connect(address: &str) -> Option<EventsClient> {
    let fd = containerd_shim::util::connect(address).ok()?;
    ttrpc::Client::new(fd).ok().map(EventsClient::new)
}

/// Sends the events to containerd in order; a send that fails (containerd restarted) is tried
/// once more on a new connection.
pub fn forward(address: &str, namespace: &str, rx: Receiver<Outgoing>) {
    let mut client = connect(address);
    for Outgoing { topic, event } in rx {
        let request = ForwardRequest {
            envelope: MessageField::some(Envelope {
                timestamp: MessageField::some(timestamp(SystemTime::now())),
                namespace: namespace.to_string(),
                topic: topic.to_string(),
                event: MessageField::some(event),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ctx = || ttrpc::context::with_timeout(5_000_000_000);
        if let Some(Ok(_)) = client.as_ref().map(|c| c.forward(ctx(), &request)) {
            continue;
        }
        client = connect(address);
        if let Some(Err(e)) = client.as_ref().map(|c| c.forward(ctx(), &request)) {
            log::warn!("cannot publish {topic}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::protobuf::MessageFull;

    fn named_as_protobuf_names_it<E: Event + MessageFull>() {
        assert_eq!(E::TYPE, E::descriptor().full_name());
    }

    #[test]
    fn events_carry_their_protobuf_type_names() {
        named_as_protobuf_names_it::<TaskCreate>();
        named_as_protobuf_names_it::<TaskStart>();
        named_as_protobuf_names_it::<TaskExit>();
        named_as_protobuf_names_it::<TaskExecAdded>();
        named_as_protobuf_names_it::<TaskExecStarted>();
        named_as_protobuf_names_it::<TaskPaused>();
        named_as_protobuf_names_it::<TaskResumed>();
        named_as_protobuf_names_it::<TaskOOM>();
        named_as_protobuf_names_it::<TaskDelete>();
        use containerd_shim::protos::cgroups::metrics::Metrics as V1;
        use containerd_shim::protos::cgroups_v2::metrics::Metrics as V2;
        use containerd_shim::protos::shim::oci::ProcessDetails;
        assert_eq!(
            V1::descriptor().full_name(),
            "io.containerd.cgroups.v1.Metrics"
        );
        assert_eq!(
            V2::descriptor().full_name(),
            "io.containerd.cgroups.v2.Metrics"
        );
        assert_eq!(
            ProcessDetails::descriptor().full_name(),
            "containerd.runc.v1.ProcessDetails"
        );
    }
}
