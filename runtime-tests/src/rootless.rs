//! Ordinary users for the rootless tests: made with useradd for one test and removed after it,
//! with berth run as them through setpriv.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use crate::{berth_bin, read, rootfs, run_to_files, Background, Env, NetNs, Run, COUNTER};

/// An ordinary user made for one test (`useradd`, removed with `userdel` when dropped, with
/// every process it still has, ended by pid), with the range of subordinate ids useradd gives
/// it in `/etc/subuid` and `/etc/subgid`. berth runs as this user through `setpriv`, with a
/// `$XDG_RUNTIME_DIR` of its own, from a folder the user owns that holds berth and the root
/// filesystem, linked there so the user reaches them whatever the mode of the checkout's folders.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The user's folder (mode 0700) in the test's scratch folder: bundles go here.
    pub home: PathBuf,
    /// Its `$XDG_RUNTIME_DIR`; berth's default `--root` is `berth` inside.
    pub runtime_dir: PathBuf,
    /// berth, where the user can run it.
    pub berth: PathBuf,
    /// The test root filesystem, where the user can reach it (owned by root, read-only).
    pub rootfs: PathBuf,
    /// A cgroup2 folder the user's commands start in (moved there as root, before setpriv):
    /// one delegated to the user, as a login under systemd starts in one.
    pub cgroup: Option<PathBuf>,
}

/// The subordinate ranges `/etc/subuid` (or `/etc/subgid`) gives `name`: (first, count).
pub fn subordinate_ranges(file: &str, name: &str) -> Vec<(u64, u64)> {
    read(Path::new(file))
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == name).then_some(())?;
            Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
        })
        .collect()
}

fn status_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestUser {
    /// A user with a range of subordinate ids (65536 of each), for `env`'s test.
    pub fn new(env: &Env) -> TestUser {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("brl-{}-{n}", std::process::id());
        // useradd waits for the files' locks when tests add users side by side
        status_ok(
            Command::new("useradd").args(["-M", "-l", "-s", "/bin/sh", "-U", &name]),
            &format!("useradd {name}"),
        );
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let home = env.scratch.join(format!("home-{name}"));
        let runtime_dir = env.scratch.join(format!("run-{name}"));
        let user = TestUser {
            name,
            uid,
            gid,
            berth: home.join("berth"),
            rootfs: home.join("rootfs"),
            home,
            runtime_dir,
            cgroup: None,
        };
        // Where useradd gives no range (SUB_UID_COUNT 0, or no /etc/subuid), one far from the
        // usual ones.
        if user.subordinate_uids().is_empty() {
            let first = 2_000_000_000 + (uid % 10_000) * 65_536;
            let range = format!("{first}-{}", first + 65_535);
            status_ok(
                Command::new("usermod").args([
                    "--add-subuids",
                    &range,
                    "--add-subgids",
                    &range,
                    &user.name,
                ]),
                "usermod --add-subuids",
            );
        }
        for dir in [&user.home, &user.runtime_dir] {
            std::fs::create_dir_all(dir).unwrap();
            std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
        }
        // The scratch folder is root's; the user passes through it to its own.
        std::fs::set_permissions(
            &env.scratch,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        if std::fs::hard_link(berth_bin(), &user.berth).is_err() {
            std::fs::copy(berth_bin(), &user.berth).unwrap();
        }
        let linked = Command::new("cp")
            .arg("-a")
            .arg("--link")
            .arg(rootfs())
            .arg(&user.rootfs)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if !linked.success() {
            let _ = std::fs::remove_dir_all(&user.rootfs);
            status_ok(
                Command::new("cp").arg("-a").arg(rootfs()).arg(&user.rootfs),
                "copy the root filesystem",
            );
        }
        user
    }

    /// The same user without subordinate ids: only its own uid and gid can be mapped.
    pub fn without_subordinate_ids(env: &Env) -> TestUser {
        let user = TestUser::new(env);
        for (flag, file) in [
            ("--del-subuids", "/etc/subuid"),
            ("--del-subgids", "/etc/subgid"),
        ] {
            for (first, count) in subordinate_ranges(file, &user.name) {
                let range = format!("{first}-{}", first + count - 1);
                status_ok(
                    Command::new("usermod").args([flag, &range, &user.name]),
                    "usermod --del-subuids",
                );
            }
        }
        assert!(user.subordinate_uids().is_empty());
        user
    }

    /// The ranges `/etc/subuid` gives the user.
    pub fn subordinate_uids(&self) -> Vec<(u64, u64)> {
        subordinate_ranges("/etc/subuid", &self.name)
    }

    /// `program` run as the user (setpriv), in its folder, with a login's environment and its
    /// `$XDG_RUNTIME_DIR`; inside `netns` when given (entered as root first).
    pub fn command(&self, netns: Option<&NetNs>, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = match netns {
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", ns.path.display())).arg("--");
                cmd
            }
            None => Command::new("env"),
        };
        if let Some(dir) = &self.cgroup {
            cmd.args(["sh", "-c", "echo $$ >\"$0/cgroup.procs\" && exec \"$@\""])
                .arg(dir);
        }
        cmd.arg("setpriv")
            .args(["--reuid", &self.uid.to_string()])
            .args(["--regid", &self.gid.to_string()])
            .args(["--init-groups", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .current_dir(&self.home);
        cmd
    }

    /// `berth ARGS…` as the user, waiting for it, stdin closed, output through files (as
    /// [`Env::berth`]).
    pub fn berth(&self, env: &Env, args: &[&str]) -> Run {
        run_to_files(
            self.command(env.netns.as_ref(), &self.berth).args(args),
            &env.scratch,
        )
    }

    /// `berth ARGS…` as the user in the background (as [`Env::spawn`]).
    pub fn spawn(&self, env: &Env, args: &[&str]) -> Background {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let stdout = env.scratch.join(format!("bg-out-{n}"));
        let stderr = env.scratch.join(format!("bg-err-{n}"));
        let child = self
            .command(env.netns.as_ref(), &self.berth)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("berth starts");
        Background {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    /// A bundle of the user's from `berth spec --rootless` run as the user, on the root
    /// filesystem, running `args` without a terminal; `edit` changes the config further (the
    /// file stays the user's).
    pub fn bundle(
        &self,
        env: &Env,
        id: &str,
        args: &[&str],
        edit: impl FnOnce(&mut Value),
    ) -> PathBuf {
        let dir = self.home.join(format!("bundle-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(self.uid), Some(self.gid)).unwrap();
        let out = self.berth(
            env,
            &["spec", "--rootless", "--bundle", dir.to_str().unwrap()],
        );
        out.ok();
        let path = dir.join("config.json");
        let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["root"]["path"] = Value::from(self.rootfs.to_str().unwrap());
        config["process"]["terminal"] = Value::from(false);
        config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        edit(&mut config);
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        dir
    }

    /// `berth create --bundle B [EXTRA…] ID` as the user, which must succeed; the container's
    /// output (it keeps berth's stdout and stderr) goes to the file returned, `SCRATCH/ID.out`.
    #[track_caller]
    pub fn create(&self, env: &Env, bundle: &Path, id: &str, extra: &[&str]) -> PathBuf {
        env.create_by(
            self.command(env.netns.as_ref(), &self.berth),
            bundle,
            id,
            extra,
        )
    }

    /// The parsed `berth state ID`, as the user.
    #[track_caller]
    pub fn state(&self, env: &Env, id: &str) -> Value {
        serde_json::from_str(self.berth(env, &["state", id]).ok()).expect("state is JSON")
    }

    /// berth's default `--root` for the user: `$XDG_RUNTIME_DIR/berth`.
    pub fn root(&self) -> PathBuf {
        self.runtime_dir.join("berth")
    }

    /// The containers in the user's default `--root`.
    pub fn containers(&self) -> Vec<String> {
        match std::fs::read_dir(self.root()) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The pids of the processes that run as the user (zombies, which whoever inherited them
    /// has yet to reap, have ended).
    pub fn processes(&self) -> Vec<i32> {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
                (e.metadata().ok()?.uid() == self.uid && !crate::process_gone(pid.into()))
                    .then_some(pid)
            })
            .collect()
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for id in self.containers() {
            let _ = self
                .command(None, &self.berth)
                .args(["delete", "--force", &id])
                .stdin(Stdio::null())
                .output();
        }
        // What is left of the user's processes ends with it: by pid, ours alone.
        for _ in 0..50 {
            let pids = self.processes();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill with a pid and a signal number.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // --force: a zombie of the user's that nobody reaped yet must not keep it
        let _ = Command::new("userdel")
            .args(["--force", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(&self.home);
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}
