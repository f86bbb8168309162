//! The Task service containerd talks to: each call is a thin layer over berth's `container`
//! functions (create, start, exec and delete through the helper, see `helper`; state, kill,
//! pause, resume, ps, update and stats in-process), plus what only a shim does: the streams,
//! the exit statuses of the processes it reaps, and the events containerd follows.
//!
//! Exit statuses: the shim is a subreaper; containerd-shim's reaper thread reaps every child and
//! hands each (pid, status) to `Exits::run`, which marks the process that had the pid exited,
//! once, and publishes TaskExit. A pid no process has yet (an exec'd program that exits before
//! the helper's reply reached the shim) is held while a create or start is under way, and
//! claimed when its process is recorded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use berth::container::exec::ExecProcess;
use berth::container::{self, CreateOptions, ExecOptions};
use berth::state::{Root, Status};
use containerd_shim::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    Options, PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest,
    ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest,
    StatsResponse, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::monitor::{ExitEvent, Subject, Subscription};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::oci::ProcessDetails;
use containerd_shim::protos::ttrpc::{self, Code, TtrpcContext};
use containerd_shim::protos::types::task::{ProcessInfo, Status as TaskStatus};
use containerd_shim::{ExitSignal, Task};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::events::{timestamp, Event, Outgoing};
use crate::helper::{self, Call, Failure};
use crate::mounts::Mount;
use crate::stdio::{self, Io, Paths};

/// Where berth keeps its containers' state for a namespace unless the runtime options name a
/// root (as the runc shim uses /run/containerd/runc/NAMESPACE).
pub const ROOT_BASE: &str = "/run/containerd/berth";

/// How long Delete waits for a terminal's last output to be copied, as the runc shim.
const IO_DRAIN: Duration = Duration::from_secs(2);

type Result<T> = ttrpc::Result<T>;

fn error(code: Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}

impl From<Failure> for ttrpc::Error {
    fn from(f: Failure) -> Self {
        error(f.code, f.message)
    }
}

fn library(err: container::ContainerError) -> ttrpc::Error {
    helper::failure(err).into()
}

/// Where a process is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Created,
    /// Start is under way: an exit is held until TaskStart has gone out, so containerd sees
    /// TaskStart before TaskExit, and the process is Running before it is Exited.
    Starting,
    Running,
    Exited {
        status: i32,
        at: SystemTime,
    },
}

struct Process {
    pid: i32,
    stage: Stage,
    io: Io,
    /// An exec'd process's spec, until Start runs it.
    spec: Option<Box<oci_spec::runtime::Process>>,
}

impl Process {
    fn exited(&self) -> Option<(i32, SystemTime)> {
        match self.stage {
            Stage::Exited { status, at } => Some((status, at)),
            _ => None,
        }
    }
}

struct Container {
    bundle: PathBuf,
    root: Root,
    init: Process,
    execs: HashMap<String, Process>,
    /// The root filesystem the shim mounted from containerd's list, to unmount at delete.
    rootfs: Option<PathBuf>,
    /// Whether the init has a pid namespace of its own: otherwise its exit leaves the others
    /// running, and the shim kills them, as the runc shim does.
    own_pid_namespace: bool,
}

impl Container {
    fn process(&self, exec_id: &str) -> Result<&Process> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs.get(exec_id).ok_or_else(|| {
            error(
                Code::NOT_FOUND,
                format!("process {exec_id:?} does not exist"),
            )
        })
    }

    fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs.get_mut(exec_id).ok_or_else(|| {
            error(
                Code::NOT_FOUND,
                format!("process {exec_id:?} does not exist"),
            )
        })
    }
}

#[derive(Default)]
struct Table {
    containers: HashMap<String, Container>,
    /// Creates and starts under way: while there are any, exits of unknown pids are held.
    starting: usize,
    unclaimed: Vec<(i32, i32, SystemTime)>,
}

struct Shared {
    namespace: String,
    table: Mutex<Table>,
    exited: Condvar,
    events: Mutex<mpsc::Sender<Outgoing>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an event; events go out in the order they are queued.
    fn publish<E: Event>(&self, event: E) {
        let _ = self.events.lock().unwrap().send(Outgoing::new(&event));
    }

    /// Records an exit: the process it belongs to is marked exited (once), its streams closed,
    /// its container's other processes killed if its init shared a pid namespace, and TaskExit
    /// published. Returns whether the pid was known.
    fn record_exit(&self, table: &mut Table, pid: i32, status: i32, at: SystemTime) -> bool {
        for (id, c) in table.containers.iter_mut() {
            let is_init =
                c.init.pid == pid && matches!(c.init.stage, Stage::Created | Stage::Running);
            let process = if is_init {
                Some((String::new(), &mut c.init))
            } else {
                c.execs
                    .iter_mut()
                    .find(|(_, p)| p.pid == pid && p.stage == Stage::Running)
                    .map(|(exec_id, p)| (exec_id.clone(), p))
            };
            let Some((exec_id, process)) = process else {
                continue;
            };
            process.stage = Stage::Exited { status, at };
            process.io.stop_input();
            if is_init && crate::oom::existing().is_some_and(|w| w.struck(id)) {
                self.publish(TaskOOM {
                    container_id: id.clone(),
                    ..Default::default()
                });
            }
            if is_init && !c.own_pid_namespace {
                if let Ok(state) = c.root.read_state(id) {
                    let _ = berth::cgroups::manager(&state.cgroup).kill_all(Signal::SIGKILL);
                }
            }
            self.publish(TaskExit {
                container_id: id.clone(),
                id: if exec_id.is_empty() {
                    id.clone()
                } else {
                    exec_id
                },
                pid: pid as u32,
                exit_status: status as u32,
                exited_at: MessageField::some(timestamp(at)),
                ..Default::default()
            });
            self.exited.notify_all();
            return true;
        }
        false
    }

    /// A process now has `pid`: if its exit came already, it is recorded now.
    fn claim(&self, table: &mut Table, pid: i32) {
        table.starting = table.starting.saturating_sub(1);
        if let Some(i) = table.unclaimed.iter().position(|(p, _, _)| *p == pid) {
            let (pid, status, at) = table.unclaimed.remove(i);
            self.record_exit(table, pid, status, at);
        }
        if table.starting == 0 {
            table.unclaimed.clear();
        }
    }

    /// A create or start failed: it claims nothing.
    fn abandon(&self, table: &mut Table) {
        table.starting = table.starting.saturating_sub(1);
        if table.starting == 0 {
            table.unclaimed.clear();
        }
    }
}

/// The Task service of one shim, for every container it serves.
pub struct Tasks {
    shared: Arc<Shared>,
    exit: Arc<ExitSignal>,
}

impl Tasks {
    pub fn new(namespace: &str, exit: Arc<ExitSignal>, exits: Subscription) -> Tasks {
        let (tx, rx) = mpsc::channel::<Outgoing>();
        let shared = Arc::new(Shared {
            namespace: namespace.to_string(),
            table: Mutex::new(Table::default()),
            exited: Condvar::new(),
            events: Mutex::new(tx),
        });
        let ns = namespace.to_string();
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        std::thread::Builder::new()
            .name("events".into())
            .stack_size(256 * 1024)
            .spawn(move || crate::events::forward(&address, &ns, rx))
            .expect("start the events thread");
        let reaped = shared.clone();
        std::thread::Builder::new()
            .name("exits".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                while let Ok(ExitEvent {
                    subject: Subject::Pid(pid),
                    exit_code,
                }) = exits.rx.recv()
                {
                    let mut table = reaped.lock();
                    let at = SystemTime::now();
                    if !reaped.record_exit(&mut table, pid, exit_code, at) && table.starting > 0 {
                        table.unclaimed.push((pid, exit_code, at));
                    }
                }
            })
            .expect("start the exits thread");
        Tasks { shared, exit }
    }

    fn log_path(bundle: &Path) -> PathBuf {
        bundle.join("log.json")
    }
}

/// The runtime options containerd passes at create (runc's, which berth reads the same way).
struct RuntimeOptions {
    root: Option<PathBuf>,
    systemd_cgroup: bool,
    no_pivot: bool,
    no_new_keyring: bool,
}

fn runtime_options(options: Option<&Any>) -> Result<RuntimeOptions> {
    let mut out = RuntimeOptions {
        root: None,
        systemd_cgroup: false,
        no_pivot: false,
        no_new_keyring: false,
    };
    let Some(any) = options else {
        return Ok(out);
    };
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let refuse = |what: &str| {
        Err(error(
            Code::INVALID_ARGUMENT,
            format!("containerd-shim-berth-v2 does not support the runtime option {what}"),
        ))
    };
    match name {
        "containerd.runc.v1.Options" => {
            let o = Options::parse_from_bytes(&any.value).map_err(|e| {
                error(
                    Code::INVALID_ARGUMENT,
                    format!("the runtime options are not runc's Options: {e}"),
                )
            })?;
            if !o.binary_name.is_empty() {
                return refuse("BinaryName (berth runs in the shim itself)");
            }
            if !o.shim_cgroup.is_empty() {
                return refuse("ShimCgroup");
            }
            if !o.criu_image_path.is_empty() || !o.criu_work_path.is_empty() {
                return refuse("CriuImagePath or CriuWorkPath (no checkpoints)");
            }
            // IoUid and IoGid own the runc shim's pipes; berth hands the process open
            // descriptors, whose owner does not matter to it.
            out.root = (!o.root.is_empty()).then(|| PathBuf::from(&o.root));
            out.systemd_cgroup = o.systemd_cgroup;
            out.no_pivot = o.no_pivot_root;
            out.no_new_keyring = o.no_new_keyring;
            Ok(out)
        }
        // What the CRI plugin sends for runtimes it does not know, usually empty.
        "runtimeoptions.v1.Options" if any.value.is_empty() => Ok(out),
        "runtimeoptions.v1.Options" => refuse("ConfigPath or ConfigBody"),
        other => Err(error(
            Code::INVALID_ARGUMENT,
            format!("runtime options of type {other:?} are not runc's Options"),
        )),
    }
}

/// The state root for a namespace, with the runtime options' root if given.
pub fn state_root(namespace: &str, root: Option<&Path>) -> Root {
    Root::new(root.map_or_else(|| Path::new(ROOT_BASE).join(namespace), Path::to_path_buf))
}

/// The file in the bundle where the shim leaves its options for `delete` after a crash.
pub const OPTIONS_FILE: &str = "options.json";

fn status_of(process: &Process, live: impl FnOnce() -> Status) -> TaskStatus {
    match process.stage {
        Stage::Exited { .. } => TaskStatus::STOPPED,
        Stage::Created | Stage::Starting => TaskStatus::CREATED,
        Stage::Running => match live() {
            Status::Paused => TaskStatus::PAUSED,
            Status::Stopped => TaskStatus::STOPPED,
            Status::Created | Status::Creating => TaskStatus::CREATED,
            Status::Running => TaskStatus::RUNNING,
        },
    }
}

impl Task for Tasks {
    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> Result<StateResponse> {
        let table = self.shared.lock();
        let c = container(&table, &req.id)?;
        let p = c.process(&req.exec_id)?;
        let status = status_of(p, || match c.root.read_state(&req.id) {
            Ok(state) => container::status(&state, &c.root.container_dir(&req.id)),
            Err(_) => Status::Stopped,
        });
        let (exit_status, exited_at) = match p.exited() {
            Some((status, at)) => (status as u32, MessageField::some(timestamp(at))),
            None => (0, MessageField::none()),
        };
        Ok(StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle.to_string_lossy().into_owned(),
            pid: p.pid as u32,
            status: status.into(),
            stdin: p.io.paths.stdin.clone(),
            stdout: p.io.paths.stdout.clone(),
            stderr: p.io.paths.stderr.clone(),
            terminal: p.io.paths.terminal,
            exit_status,
            exited_at,
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn create(&self, _ctx: &TtrpcContext, req: CreateTaskRequest) -> Result<CreateTaskResponse> {
        if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
            return Err(error(
                Code::UNIMPLEMENTED,
                "containerd-shim-berth-v2 cannot restore a checkpoint",
            ));
        }
        let options = runtime_options(req.options.as_ref())?;
        let namespace = &self.shared.namespace;
        let root = state_root(namespace, options.root.as_deref());
        let bundle = PathBuf::from(&req.bundle);
        // For `delete` after a crash, which finds the state root here.
        let saved = Options {
            root: root.path.to_string_lossy().into_owned(),
            systemd_cgroup: options.systemd_cgroup,
            ..Default::default()
        };
        containerd_shim::util::write_options(&req.bundle, &saved)
            .map_err(|e| error(Code::INTERNAL, format!("cannot write {OPTIONS_FILE}: {e}")))?;
        let paths = Paths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let (child, mut io) = stdio::prepare(&paths, &req.id, namespace)?;
        let rootfs: Vec<Mount> = req.rootfs.iter().map(Mount::from).collect();
        let opts = CreateOptions {
            id: req.id.clone(),
            bundle: bundle.clone(),
            pid_file: Some(bundle.join("init.pid")),
            no_pivot: options.no_pivot,
            no_new_keyring: options.no_new_keyring,
            systemd_cgroup: options.systemd_cgroup,
            keep_console: req.terminal,
            ..CreateOptions::default()
        };
        {
            let mut table = self.shared.lock();
            if table.containers.contains_key(&req.id) {
                return Err(error(
                    Code::ALREADY_EXISTS,
                    format!("container {:?} already exists", req.id),
                ));
            }
            table.starting += 1;
        }
        let call = Call::Create {
            root: &root,
            opts,
            rootfs: &rootfs,
        };
        let reply = helper::run(call, child.fds(), &Tasks::log_path(&bundle));
        drop(child);
        let mut table = self.shared.lock();
        let reply = match reply {
            Ok(reply) => reply,
            Err(f) => {
                self.shared.abandon(&mut table);
                io.close();
                return Err(f.into());
            }
        };
        if let Some(master) = reply.console {
            if let Err(f) = io.attach_console(master) {
                log::warn!("container {:?}: {}", req.id, f.message);
            }
        }
        let own_pid_namespace = root
            .read_state(&req.id)
            .map(|s| s.own_pid_namespace)
            .unwrap_or(true);
        table.containers.insert(
            req.id.clone(),
            Container {
                bundle,
                root,
                init: Process {
                    pid: reply.pid,
                    stage: Stage::Created,
                    io,
                    spec: None,
                },
                execs: HashMap::new(),
                rootfs: (!rootfs.is_empty()).then(|| PathBuf::from(&req.bundle).join("rootfs")),
                own_pid_namespace,
            },
        );
        self.shared.publish(TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: MessageField::some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            }),
            checkpoint: req.checkpoint.clone(),
            pid: reply.pid as u32,
            ..Default::default()
        });
        self.shared.claim(&mut table, reply.pid);
        drop(table);
        trim();
        Ok(CreateTaskResponse {
            pid: reply.pid as u32,
            ..Default::default()
        })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> Result<StartResponse> {
        let (root, bundle, spec, paths) = {
            let mut table = self.shared.lock();
            let c = container_mut(&mut table, &req.id)?;
            let root = c.root.clone();
            let bundle = c.bundle.clone();
            let p = c.process_mut(&req.exec_id)?;
            if p.stage != Stage::Created {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    format!("cannot start a process that is {:?}", p.stage),
                ));
            }
            let spec = p.spec.take();
            let paths = p.io.paths.clone();
            p.stage = Stage::Starting;
            table.starting += 1;
            (root, bundle, spec, paths)
        };
        let log = Tasks::log_path(&bundle);
        let result = if req.exec_id.is_empty() {
            helper::run(
                Call::Start {
                    root: &root,
                    id: &req.id,
                },
                [None, None, None],
                &log,
            )
            .map(|_| None)
        } else {
            self.start_exec(&root, &req.id, spec.expect("an exec's spec"), &paths, &log)
                .map(Some)
        };
        let mut table = self.shared.lock();
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(f) => {
                let mut init = None;
                if let Ok(c) = container_mut(&mut table, &req.id) {
                    if let Ok(p) = c.process_mut(&req.exec_id) {
                        if req.exec_id.is_empty() {
                            // The init may have died: its exit, if held, is recorded below.
                            p.stage = Stage::Created;
                            init = Some(p.pid);
                        } else {
                            // An exec that failed to start is gone; containerd deletes it.
                            p.stage = Stage::Exited {
                                status: 255,
                                at: SystemTime::now(),
                            };
                            p.io.close();
                        }
                    }
                }
                match init {
                    Some(pid) => self.shared.claim(&mut table, pid),
                    None => self.shared.abandon(&mut table),
                }
                return Err(f.into());
            }
        };
        let c = container_mut(&mut table, &req.id)?;
        let pid = match outcome {
            None => {
                c.init.stage = Stage::Running;
                c.init.pid
            }
            Some((pid, io)) => {
                let p = c.process_mut(&req.exec_id)?;
                p.pid = pid;
                p.stage = Stage::Running;
                p.io = io;
                pid
            }
        };
        if req.exec_id.is_empty() {
            self.shared.publish(TaskStart {
                container_id: req.id.clone(),
                pid: pid as u32,
                ..Default::default()
            });
            self.watch_oom(&req.id, &c.root);
        } else {
            self.shared.publish(TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid: pid as u32,
                ..Default::default()
            });
        }
        self.shared.claim(&mut table, pid);
        drop(table);
        trim();
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> Result<DeleteResponse> {
        if !req.exec_id.is_empty() {
            let mut table = self.shared.lock();
            let c = container_mut(&mut table, &req.id)?;
            let p = c.process(&req.exec_id)?;
            if matches!(p.stage, Stage::Running | Stage::Starting) {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    format!("cannot delete process {:?}: it is running", req.exec_id),
                ));
            }
            let mut p = c.execs.remove(&req.exec_id).expect("found above");
            drop(table);
            if let Some(done) = p.io.output_done() {
                let _ = done.recv_timeout(IO_DRAIN);
            }
            p.io.close();
            let (status, at) = p.exited().unwrap_or((0, SystemTime::now()));
            return Ok(delete_response(p.pid, status, at));
        }
        let (root, bundle, rootfs, pid) = {
            let mut table = self.shared.lock();
            let c = container_mut(&mut table, &req.id)?;
            if matches!(c.init.stage, Stage::Running | Stage::Starting) {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    format!("cannot delete container {:?}: it is running", req.id),
                ));
            }
            (
                c.root.clone(),
                c.bundle.clone(),
                c.rootfs.clone(),
                c.init.pid,
            )
        };
        // A terminal's last output first, then the container.
        let done = self
            .shared
            .lock()
            .containers
            .get_mut(&req.id)
            .and_then(|c| c.init.io.output_done());
        if let Some(done) = done {
            let _ = done.recv_timeout(IO_DRAIN);
        }
        helper::run(
            Call::Delete {
                root: &root,
                id: &req.id,
                force: false,
                rootfs,
            },
            [None, None, None],
            &Tasks::log_path(&bundle),
        )?;
        if let Some(watcher) = crate::oom::existing() {
            watcher.remove(&req.id);
        }
        let mut table = self.shared.lock();
        // A created container's init was killed by delete: its exit is on its way.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while table
            .containers
            .get(&req.id)
            .is_some_and(|c| c.init.exited().is_none())
            && std::time::Instant::now() < deadline
        {
            table = self
                .shared
                .exited
                .wait_timeout(table, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let mut c = table
            .containers
            .remove(&req.id)
            .ok_or_else(|| error(Code::NOT_FOUND, format!("container {:?} is gone", req.id)))?;
        c.init.io.close();
        for p in c.execs.values_mut() {
            p.io.close();
        }
        let (status, at) = c.init.exited().unwrap_or((137, SystemTime::now()));
        self.shared.publish(TaskDelete {
            container_id: req.id.clone(),
            pid: pid as u32,
            exit_status: status as u32,
            exited_at: MessageField::some(timestamp(at)),
            id: req.id.clone(),
            ..Default::default()
        });
        self.shared.exited.notify_all();
        drop(table);
        trim();
        Ok(delete_response(pid, status, at))
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> Result<PidsResponse> {
        let table = self.shared.lock();
        let c = container(&table, &req.id)?;
        let pids = container::ps::pids(&c.root, &req.id).map_err(library)?;
        let processes = pids
            .into_iter()
            .map(|pid| {
                let exec = c
                    .execs
                    .iter()
                    .find(|(_, p)| p.pid == pid && p.exited().is_none());
                let info = exec.map(|(exec_id, _)| {
                    let details = ProcessDetails {
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    };
                    crate::events::any("containerd.runc.v1.ProcessDetails", &details)
                });
                ProcessInfo {
                    pid: pid as u32,
                    info: info.into(),
                    ..Default::default()
                }
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> Result<Empty> {
        let root = self.root_of(&req.id)?;
        container::pause(&root, &req.id).map_err(library)?;
        self.shared.publish(TaskPaused {
            container_id: req.id.clone(),
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> Result<Empty> {
        let root = self.root_of(&req.id)?;
        container::resume(&root, &req.id).map_err(library)?;
        self.shared.publish(TaskResumed {
            container_id: req.id.clone(),
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, req: CheckpointTaskRequest) -> Result<Empty> {
        Err(error(
            Code::UNIMPLEMENTED,
            format!(
                "cannot checkpoint container {:?}: containerd-shim-berth-v2 does not checkpoint",
                req.id
            ),
        ))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> Result<Empty> {
        let signal = Signal::try_from(req.signal as i32).map_err(|_| {
            error(
                Code::INVALID_ARGUMENT,
                format!("{} is not a signal", req.signal),
            )
        })?;
        let table = self.shared.lock();
        let c = container(&table, &req.id)?;
        let p = c.process(&req.exec_id)?;
        let finished = || error(Code::NOT_FOUND, "process already finished");
        if !req.exec_id.is_empty() {
            return match p.stage {
                Stage::Exited { .. } => Err(finished()),
                Stage::Created | Stage::Starting => Err(error(
                    Code::FAILED_PRECONDITION,
                    format!("process {:?} has not started", req.exec_id),
                )),
                Stage::Running => nix::sys::signal::kill(Pid::from_raw(p.pid), signal)
                    .map(|()| Empty::new())
                    .map_err(|_| finished()),
            };
        }
        if p.exited().is_some() && !req.all {
            return Err(finished());
        }
        let root = c.root.clone();
        drop(table);
        container::kill(&root, &req.id, signal, req.all).map_err(library)?;
        Ok(Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> Result<Empty> {
        let spec: oci_spec::runtime::Process =
            serde_json::from_slice(&req.spec.value).map_err(|e| {
                error(
                    Code::INVALID_ARGUMENT,
                    format!("the exec's spec is not a runtime-spec process: {e}"),
                )
            })?;
        let mut table = self.shared.lock();
        let c = container_mut(&mut table, &req.id)?;
        if c.execs.contains_key(&req.exec_id) || req.exec_id.is_empty() {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("process {:?} already exists", req.exec_id),
            ));
        }
        if c.init.exited().is_some() {
            return Err(error(
                Code::FAILED_PRECONDITION,
                format!("cannot exec in container {:?}: it has stopped", req.id),
            ));
        }
        let io = Io::named(Paths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        });
        c.execs.insert(
            req.exec_id.clone(),
            Process {
                pid: 0,
                stage: Stage::Created,
                io,
                spec: Some(Box::new(spec)),
            },
        );
        self.shared.publish(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        });
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> Result<Empty> {
        let table = self.shared.lock();
        let c = container(&table, &req.id)?;
        c.process(&req.exec_id)?.io.resize(req.width, req.height)?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> Result<Empty> {
        let table = self.shared.lock();
        let c = container(&table, &req.id)?;
        if req.stdin {
            c.process(&req.exec_id)?.io.close_stdin();
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> Result<Empty> {
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_slice(&req.resources.value).map_err(|e| {
                error(
                    Code::INVALID_ARGUMENT,
                    format!("the resources are not runtime-spec LinuxResources: {e}"),
                )
            })?;
        let root = self.root_of(&req.id)?;
        container::update::update(&root, &req.id, &resources).map_err(library)?;
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> Result<WaitResponse> {
        let mut table = self.shared.lock();
        loop {
            let c = container(&table, &req.id)?;
            if let Some((status, at)) = c.process(&req.exec_id)?.exited() {
                return Ok(WaitResponse {
                    exit_status: status as u32,
                    exited_at: MessageField::some(timestamp(at)),
                    ..Default::default()
                });
            }
            table = self
                .shared
                .exited
                .wait(table)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> Result<StatsResponse> {
        let root = self.root_of(&req.id)?;
        let state = root.read_state(&req.id).map_err(|e| library(e.into()))?;
        let stats = berth::cgroups::manager(&state.cgroup)
            .stats()
            .map_err(|e| library(e.into()))?;
        Ok(StatsResponse {
            stats: MessageField::some(crate::metrics::to_any(&stats, state.cgroup.layout)),
            ..Default::default()
        })
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> Result<ConnectResponse> {
        let table = self.shared.lock();
        let pid = table.containers.get(&req.id).map_or(0, |c| c.init.pid);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: pid as u32,
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> Result<Empty> {
        let table = self.shared.lock();
        if table.containers.is_empty() && table.starting == 0 {
            self.exit.signal();
        }
        Ok(Empty::new())
    }
}

impl Tasks {
    fn root_of(&self, id: &str) -> Result<Root> {
        let table = self.shared.lock();
        Ok(container(&table, id)?.root.clone())
    }

    /// Starts an exec'd process through the helper; returns its pid and its streams.
    fn start_exec(
        &self,
        root: &Root,
        id: &str,
        spec: Box<oci_spec::runtime::Process>,
        paths: &Paths,
        log: &Path,
    ) -> std::result::Result<(i32, Io), Failure> {
        let (child, mut io) = stdio::prepare(paths, id, &self.shared.namespace)?;
        let opts = ExecOptions {
            id: id.to_string(),
            process: ExecProcess::Spec(spec),
            tty: false,
            pid_file: None,
            console_socket: None,
            keep_console: true,
            preserve_fds: 0,
            cgroup: None,
            // As runc's exec under the runc shim: a paused container refuses it.
            ignore_paused: false,
        };
        let reply = helper::run(Call::Exec { root, opts }, child.fds(), log);
        drop(child);
        let reply = match reply {
            Ok(reply) => reply,
            Err(f) => {
                io.close();
                return Err(f);
            }
        };
        if let Some(master) = reply.console {
            io.attach_console(master)?;
        }
        Ok((reply.pid, io))
    }

    fn watch_oom(&self, id: &str, root: &Root) {
        let shared = self.shared.clone();
        let watcher = crate::oom::watcher(move || {
            Box::new(move |id: &str| {
                shared.publish(TaskOOM {
                    container_id: id.to_string(),
                    ..Default::default()
                })
            })
        });
        let added = watcher.and_then(|w| {
            let state = root.read_state(id).map_err(std::io::Error::other)?;
            w.add(id, &state.cgroup)
        });
        if let Err(e) = added {
            log::warn!("container {id:?}: cannot watch for the OOM killer: {e}");
        }
    }
}

/// Gives the heap's free memory back to the system after a call that allocated much (a create,
/// start or delete): an idle shim holds as little as it can.
fn trim() {
    // SAFETY: malloc_trim takes the padding to keep and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn container<'a>(table: &'a Table, id: &str) -> Result<&'a Container> {
    table
        .containers
        .get(id)
        .ok_or_else(|| error(Code::NOT_FOUND, format!("container {id:?} does not exist")))
}

fn container_mut<'a>(table: &'a mut Table, id: &str) -> Result<&'a mut Container> {
    table
        .containers
        .get_mut(id)
        .ok_or_else(|| error(Code::NOT_FOUND, format!("container {id:?} does not exist")))
}

fn delete_response(pid: i32, status: i32, at: SystemTime) -> DeleteResponse {
    DeleteResponse {
        pid: pid as u32,
        exit_status: status as u32,
        exited_at: MessageField::some(timestamp(at)),
        ..Default::default()
    }
}
