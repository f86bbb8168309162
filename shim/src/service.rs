//! The shim's own subcommands, as containerd runs them: `start` (daemonise, or join the shim
//! that already serves the pod, and print the ttrpc address) and `delete` (clean up after a
//! shim that died); and the Task service the daemon serves.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::api::DeleteResponse;
use containerd_shim::monitor::{monitor_subscribe, Topic};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::{read_options, timestamp, write_address};
use containerd_shim::{Config, Error, ExitSignal, Flags, Shim, StartOpts};

use crate::helper::{self, Call};
use crate::task::{state_root, Tasks};

/// Containers carrying one of these annotations share a shim per value, as the runc shim
/// groups a Kubernetes pod's containers by the CRI's sandbox id.
const GROUP_LABELS: [&str; 2] = [
    "io.containerd.berth.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

pub struct Service {
    exit: Arc<ExitSignal>,
    id: String,
    namespace: String,
    bundle: String,
}

/// The group a bundle's container joins: its group annotation, or its own id.
fn grouping(bundle: &Path, id: &str) -> String {
    let config: serde_json::Value = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    GROUP_LABELS
        .iter()
        .find_map(|label| config["annotations"][label].as_str())
        .filter(|value| !value.is_empty())
        .unwrap_or(id)
        .to_string()
}

impl Shim for Service {
    type T = Tasks;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Service {
            exit: Arc::new(ExitSignal::default()),
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            bundle: args.bundle.clone(),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let group = grouping(Path::new("."), &opts.id);
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &group);
        // The pod's shim is up already: this container joins it.
        let path = address.trim_start_matches("unix://");
        if UnixStream::connect(path).is_ok() {
            write_address(&address)?;
            return Ok(address);
        }
        let (_, address) = containerd_shim::spawn(opts, &group, Vec::new())?;
        write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = match self.bundle.as_str() {
            "" => std::env::current_dir().map_err(|e| Error::Other(e.to_string()))?,
            b => PathBuf::from(b),
        };
        let root = read_options(&bundle)
            .ok()
            .filter(|o| !o.root.is_empty())
            .map(|o| PathBuf::from(o.root));
        let root = state_root(&self.namespace, root.as_deref());
        let pid = std::fs::read_to_string(bundle.join("init.pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0);
        let rootfs = bundle.join("rootfs");
        let call = Call::Delete {
            root: &root,
            id: &self.id,
            force: true,
            rootfs: Some(rootfs),
        };
        if let Err(f) = helper::run(call, [None, None, None], &bundle.join("log.json")) {
            log::warn!("cleaning up container {:?}: {}", self.id, f.message);
        }
        Ok(DeleteResponse {
            pid,
            // The shim died: its processes were killed (SIGKILL), as the runc shim reports.
            exit_status: 137,
            exited_at: Some(timestamp()?).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    /// The crate's publisher goes unused: berth's shim sends events without protobuf's
    /// reflection (see `events`).
    fn create_task_service(&self, _publisher: RemotePublisher) -> Tasks {
        let exits = monitor_subscribe(Topic::Pid).expect("subscribe to the reaper's exits");
        Tasks::new(&self.namespace, self.exit.clone(), exits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_containers_share_a_group() {
        let dir = std::env::temp_dir().join(format!("berth-shim-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(grouping(&dir, "web"), "web");
        std::fs::write(
            dir.join("config.json"),
            r#"{"annotations": {"io.kubernetes.cri.sandbox-id": "pod1"}}"#,
        )
        .unwrap();
        assert_eq!(grouping(&dir, "web"), "pod1");
        std::fs::write(dir.join("config.json"), r#"{"annotations": {}}"#).unwrap();
        assert_eq!(grouping(&dir, "web"), "web");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
