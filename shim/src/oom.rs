//! Watching containers for the OOM killer, to publish TaskOOM: on a v1 memory controller an
//! eventfd registered for `memory.oom_control` (as the runc shim does), on cgroup v2 an inotify
//! watch of `memory.events`. Either way the event counts only when the cgroup's `oom_kill`
//! figure has grown, so the eventfd's wake-up when a cgroup is removed is not taken for one. One
//! thread waits for all of a shim's containers, started with the first.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use berth::cgroups::CgroupConfig;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// What the watcher calls with a container's id when the OOM killer has struck in it.
pub type Notify = Box<dyn Fn(&str) + Send + Sync>;

struct Watched {
    id: String,
    /// The file whose `oom_kill` line counts the kills.
    counter: PathBuf,
    kills: u64,
    /// The v1 eventfd (the v2 watch is on the shared inotify descriptor).
    _eventfd: Option<OwnedFd>,
}

pub struct Watcher {
    epoll: Epoll,
    inotify: Inotify,
    watched: Mutex<HashMap<Key, Watched>>,
    notify: Notify,
}

/// How a watched cgroup is found when it wakes the watcher: by its eventfd (v1, also the epoll
/// token), or by its inotify watch (v2).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Key {
    Event(u64),
    Watch(WatchDescriptor),
}

/// The epoll token of the inotify descriptor itself.
const INOTIFY: u64 = u64::MAX;

static WATCHER: OnceLock<Arc<Watcher>> = OnceLock::new();

/// The shim's watcher, started on first use.
pub fn watcher(notify: impl FnOnce() -> Notify) -> std::io::Result<Arc<Watcher>> {
    if let Some(w) = WATCHER.get() {
        return Ok(w.clone());
    }
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
    epoll.add(
        inotify.as_fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, INOTIFY),
    )?;
    let watcher = Arc::new(Watcher {
        epoll,
        inotify,
        watched: Mutex::new(HashMap::new()),
        notify: notify(),
    });
    let w = WATCHER.get_or_init(|| watcher).clone();
    let run = w.clone();
    std::thread::Builder::new()
        .name("oom".into())
        .stack_size(64 * 1024)
        .spawn(move || run.run())?;
    Ok(w)
}

/// The watcher, if one was started.
pub fn existing() -> Option<Arc<Watcher>> {
    WATCHER.get().cloned()
}

fn oom_kills(counter: &Path) -> u64 {
    std::fs::read_to_string(counter)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

impl Watcher {
    /// Watches the container with this cgroup; a cgroup without a memory controller is not
    /// watched (there is no OOM killer of its own).
    pub fn add(&self, id: &str, cgroup: &CgroupConfig) -> std::io::Result<()> {
        if let Some(dir) = cgroup.v1_dir("memory") {
            let control = std::fs::File::open(dir.join("memory.oom_control"))?;
            // SAFETY: eventfd returns a new descriptor or -1.
            let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            if raw < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: just made, ours.
            let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
            std::fs::write(
                dir.join("cgroup.event_control"),
                format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd()),
            )?;
            let token = eventfd.as_raw_fd() as u64;
            let counter = dir.join("memory.oom_control");
            self.epoll
                .add(eventfd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))?;
            self.watched.lock().unwrap().insert(
                Key::Event(token),
                Watched {
                    id: id.to_string(),
                    kills: oom_kills(&counter),
                    counter,
                    _eventfd: Some(eventfd),
                },
            );
            return Ok(());
        }
        let Some(dir) = cgroup.unified_dir() else {
            return Ok(());
        };
        let counter = dir.join("memory.events");
        if !counter.exists() {
            return Ok(());
        }
        let wd = self.inotify.add_watch(&counter, AddWatchFlags::IN_MODIFY)?;
        self.watched.lock().unwrap().insert(
            Key::Watch(wd),
            Watched {
                id: id.to_string(),
                kills: oom_kills(&counter),
                counter,
                _eventfd: None,
            },
        );
        Ok(())
    }

    /// Stops watching a container (at delete).
    pub fn remove(&self, id: &str) {
        let mut watched = self.watched.lock().unwrap();
        let keys: Vec<Key> = watched
            .iter()
            .filter(|(_, w)| w.id == id)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(w) = watched.remove(&key) {
                match key {
                    Key::Event(_) => {
                        if let Some(fd) = &w._eventfd {
                            let _ = self.epoll.delete(fd.as_fd());
                        }
                    }
                    Key::Watch(wd) => {
                        let _ = self.inotify.rm_watch(wd);
                    }
                }
            }
        }
    }

    /// Whether the OOM killer struck in the container since the last look: its init just
    /// exited, and TaskOOM goes out before TaskExit, as containerd's clients expect (Docker sets
    /// OOMKilled from it). The kill is then not reported again by the watcher's thread.
    pub fn struck(&self, id: &str) -> bool {
        let mut watched = self.watched.lock().unwrap();
        let mut struck = false;
        for w in watched.values_mut().filter(|w| w.id == id) {
            let kills = oom_kills(&w.counter);
            if kills > w.kills {
                w.kills = kills;
                struck = true;
            }
        }
        struck
    }

    fn run(&self) {
        let mut events = [EpollEvent::empty(); 16];
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::NONE) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            };
            let mut tokens = Vec::new();
            for event in &events[..n] {
                match event.data() {
                    INOTIFY => {
                        for e in self.inotify.read_events().unwrap_or_default() {
                            tokens.push(Key::Watch(e.wd));
                        }
                    }
                    token => {
                        let mut value = [0u8; 8];
                        // SAFETY: an 8-byte read from the eventfd the token names.
                        unsafe {
                            libc::read(token as i32, value.as_mut_ptr().cast(), 8);
                        }
                        tokens.push(Key::Event(token));
                    }
                }
            }
            // Published under the lock, so `struck` at an init's exit sees either the kill
            // counted and published, or not counted yet.
            let mut watched = self.watched.lock().unwrap();
            for token in tokens {
                if let Some(w) = watched.get_mut(&token) {
                    let kills = oom_kills(&w.counter);
                    if kills > w.kills {
                        w.kills = kills;
                        (self.notify)(&w.id);
                    }
                }
            }
        }
    }
}
