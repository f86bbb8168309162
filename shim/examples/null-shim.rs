//! null-shim: a containerd shim v2 that runs no container and answers every call at once. It
//! measures the floor of `ctr run --rm IMAGE ID true` that no shim can go below: containerd's
//! and ctr's own work (the snapshot, the metadata, the bundle, starting a shim process, the
//! calls), plus the one thing every shim must do for them, mounting the root filesystem
//! containerd hands over and unmounting it at delete. `scripts/bench-shim` runs it beside
//! berth's shim and the runc shim (as runtime `io.containerd.null.v2`, this binary installed as
//! `containerd-shim-null-v2`).
//!
//! Create answers with the shim's own pid; Wait answers at once with exit status 0, Start and
//! Delete likewise; nothing is published. Not a runtime: a yardstick.

#[path = "../src/mounts.rs"]
mod mounts;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::api::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse, DeleteRequest,
    DeleteResponse, Empty, ShutdownRequest, StartRequest, StartResponse, StateRequest,
    StateResponse, WaitRequest, WaitResponse,
};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::ttrpc::{self, TtrpcContext};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::{timestamp, write_address};
use containerd_shim::{Config, ExitSignal, Flags, Shim, StartOpts, Task};

struct Null {
    exit: Arc<ExitSignal>,
}

struct Tasks {
    exit: Arc<ExitSignal>,
}

impl Shim for Null {
    type T = Tasks;

    fn new(_runtime_id: &str, _args: &Flags, _config: &mut Config) -> Self {
        Null {
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let id = opts.id.clone();
        let (_, address) = containerd_shim::spawn(opts, &id, Vec::new())?;
        write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        if let Ok(bundle) = std::env::current_dir() {
            mounts::unmount_all(&bundle.join("rootfs"));
        }
        Ok(DeleteResponse::default())
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, _publisher: RemotePublisher) -> Tasks {
        Tasks {
            exit: self.exit.clone(),
        }
    }
}

fn rootfs(bundle: &str) -> PathBuf {
    Path::new(bundle).join("rootfs")
}

impl Task for Tasks {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let list: Vec<mounts::Mount> = req.rootfs.iter().map(mounts::Mount::from).collect();
        mounts::mount_all(&list, &rootfs(&req.bundle))
            .map_err(|e| ttrpc::Error::RpcStatus(ttrpc::get_status(ttrpc::Code::INTERNAL, e)))?;
        Ok(CreateTaskResponse {
            pid: std::process::id(),
            ..Default::default()
        })
    }

    fn start(&self, _ctx: &TtrpcContext, _req: StartRequest) -> ttrpc::Result<StartResponse> {
        Ok(StartResponse {
            pid: std::process::id(),
            ..Default::default()
        })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        Ok(StateResponse {
            id: req.id,
            pid: std::process::id(),
            ..Default::default()
        })
    }

    fn wait(&self, _ctx: &TtrpcContext, _req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        Ok(WaitResponse {
            exit_status: 0,
            exited_at: MessageField::some(timestamp().unwrap_or_default()),
            ..Default::default()
        })
    }

    fn delete(&self, _ctx: &TtrpcContext, _req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        if let Ok(bundle) = std::env::current_dir() {
            mounts::unmount_all(&bundle.join("rootfs"));
        }
        Ok(DeleteResponse {
            pid: std::process::id(),
            exited_at: MessageField::some(timestamp().unwrap_or_default()),
            ..Default::default()
        })
    }

    fn connect(&self, _ctx: &TtrpcContext, _req: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: std::process::id(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        self.exit.signal();
        Ok(Empty::new())
    }
}

fn main() {
    containerd_shim::run::<Null>("io.containerd.null.v2", None);
}
