//! The root filesystem: the spec's mounts as mountinfo shows them inside, rootfsPropagation,
//! the read-only root, --no-pivot, /dev (default devices, linux.devices, symlinks), masked and
//! read-only paths, hostname and domainname, and linux.sysctl with its refusal for the host's
//! namespaces.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use runtime_tests::{
    drop_namespace, join_namespace, mount_at, need_root, parse_mountinfo, parse_namespaces, read,
    Env, HostTmpfs,
};
use serde_json::{json, Value};

fn add_mount(config: &mut Value, mount: Value) {
    config["mounts"].as_array_mut().unwrap().push(mount);
}

/// A tmpfs at /run, so mount points for the test's own mounts are made there and not in the
/// shared root filesystem.
fn tmpfs_at_run(config: &mut Value) {
    add_mount(
        config,
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs"}),
    );
}

#[test]
fn a_bind_source_inside_the_root_filesystem_may_come_from_an_earlier_mount() {
    need_root!();
    let env = Env::new("rootfs-bind-order");
    let source = env.scratch.join("source");
    std::fs::create_dir_all(source.join("sub")).unwrap();
    std::fs::write(source.join("sub/file"), "from the earlier mount\n").unwrap();
    let id = env.id("order");
    // ROOTFS/run/first/sub exists only once the first bind is in place: mounts are made in
    // their order, and the second finds its source then (runc's mounts.bats builds a tree so).
    let inside = runtime_tests::rootfs().join("run/first/sub");
    assert!(!inside.exists());
    let bundle = env.bundle(&id, &["cat", "/run/second/file"], |c| {
        tmpfs_at_run(c);
        add_mount(
            c,
            json!({"destination": "/run/first", "type": "bind", "source": source,
                   "options": ["bind"]}),
        );
        add_mount(
            c,
            json!({"destination": "/run/second", "type": "bind", "source": inside,
                   "options": ["bind"]}),
        );
    });
    let run = env.run(&bundle, &id);
    assert_eq!(run.stdout, "from the earlier mount\n", "{}", run.stderr);
    env.assert_gone(&id);
}

#[test]
fn a_tmpfs_without_a_mode_keeps_the_mode_of_the_folder_it_covers() {
    need_root!();
    let env = Env::new("rootfs-tmpfs-mode");
    let id = env.id("mode");
    // As runc: the image's 0755 /run and 1777 /tmp, and 0700 /root stay so (tmpfs alone would
    // make each 1777); a mode= given wins.
    let bundle = env.bundle(
        &id,
        &["stat", "-c", "%a", "/run", "/tmp", "/root", "/home"],
        |c| {
            for (destination, options) in [
                ("/run", json!([])),
                ("/tmp", json!(["nosuid"])),
                ("/root", json!(["nodev"])),
                ("/home", json!(["mode=0710"])),
            ] {
                add_mount(
                    c,
                    json!({"destination": destination, "type": "tmpfs", "source": "tmpfs",
                       "options": options}),
                );
            }
        },
    );
    let run = env.run(&bundle, &id);
    assert_eq!(run.stdout, "755\n1777\n700\n710\n", "{}", run.stderr);
    env.assert_gone(&id);
}

#[test]
fn bind_mounts_take_their_options() {
    need_root!();
    let env = Env::new("rootfs-bind");
    // The source holds a file and a mount of its own, which only rbind carries along.
    let source = env.scratch.join("source");
    std::fs::create_dir_all(source.join("sub")).unwrap();
    std::fs::write(source.join("top"), "top\n").unwrap();
    let sub = HostTmpfs::new(&source.join("sub"));
    std::fs::write(sub.path.join("inner"), "inner\n").unwrap();

    let id = env.id("bind");
    let bundle = env.bundle(
        &id,
        &[
            "sh",
            "-c",
            "/bin/helper mounts; echo ---; cat /run/ro/top /run/ro/sub/inner; \
             ls /run/plain/sub; /bin/helper write /run/ro/new x; /bin/helper write /run/plain/new x",
        ],
        |c| {
            tmpfs_at_run(c);
            add_mount(
                c,
                json!({"destination": "/run/ro", "type": "bind", "source": source,
                       "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}),
            );
            add_mount(
                c,
                json!({"destination": "/run/plain", "type": "bind", "source": source,
                       "options": ["bind"]}),
            );
        },
    );
    let out = env.run(&bundle, &id).ok().to_string();
    let (mountinfo, rest) = out.split_once("---\n").unwrap();
    let ro = mount_at(mountinfo, "/run/ro");
    for option in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(ro.has_option(option), "{option} missing: {ro:?}");
    }
    // The mount's root is the source folder, relative to the filesystem it lives on.
    assert!(source.to_str().unwrap().ends_with(&ro.root), "{ro:?}");
    // Without options, the bind mount has the flags of the host mount the source lives on.
    let plain = mount_at(mountinfo, "/run/plain");
    let host = parse_mountinfo(&read(std::path::Path::new("/proc/self/mountinfo")))
        .into_iter()
        .filter(|m| source.starts_with(&m.point))
        .max_by_key(|m| m.point.len())
        .unwrap();
    assert_eq!(plain.options, host.options, "{plain:?} against {host:?}");
    assert!(plain.has_option("rw"), "{plain:?}");
    // rbind brought the source's own mount; bind left an empty folder in its place.
    assert!(parse_mountinfo(mountinfo)
        .iter()
        .any(|m| m.point == "/run/ro/sub"));
    assert!(!parse_mountinfo(mountinfo)
        .iter()
        .any(|m| m.point == "/run/plain/sub"));
    // The files through the read-only mount, nothing under the plain one's sub, and writes.
    assert_eq!(rest, "top\ninner\nEROFS\nok\n");
    assert_eq!(
        read(&source.join("new")),
        "x",
        "the rw bind mount writes through"
    );
    env.assert_gone(&id);
}

/// A host folder holding a mount of its own: fields drop in order, the submount first.
struct TmpfsTree {
    sub: HostTmpfs,
    top: HostTmpfs,
}

/// A tmpfs at `path` with the mount options `options`, with another one at `path/sub` with the
/// same options. Unmounted when dropped.
fn tmpfs_tree(path: &Path, options: &str) -> TmpfsTree {
    let top = HostTmpfs::new(path);
    std::fs::write(path.join("top"), "top\n").unwrap();
    std::fs::create_dir(path.join("sub")).unwrap();
    let sub = HostTmpfs::new(&path.join("sub"));
    for mount in [&sub.path, &top.path] {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(mount)
            .status()
            .unwrap();
        assert!(status.success(), "remount {} {options}", mount.display());
    }
    TmpfsTree { sub, top }
}

/// Docker's and Kubernetes' recursive read-only mounts (`rbind`, `rro`) and every other
/// recursive option: each holds on the bind and on the mount below it, as the container's own
/// mountinfo shows, and a write under the submount of a `rro` bind fails.
#[test]
fn recursive_options_reach_the_mounts_below_a_bind() {
    need_root!();
    let env = Env::new("rootfs-recursive");
    // Three host folders, each with a submount: with default flags, with every flag a
    // recursive option can clear, and with strictatime.
    let plain = tmpfs_tree(&env.scratch.join("plain"), "rw");
    let flagged = tmpfs_tree(
        &env.scratch.join("flagged"),
        "ro,nosuid,nodev,noexec,nodiratime,noatime,nosymfollow",
    );
    let strict = tmpfs_tree(&env.scratch.join("strict"), "strictatime");
    let all = [
        "ro",
        "nosuid",
        "nodev",
        "noexec",
        "nodiratime",
        "noatime",
        "nosymfollow",
    ];
    // (destination, source, options, shown on both mounts, not shown on either)
    type Case<'a> = (
        &'a str,
        &'a Path,
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        (
            "set",
            &plain.top.path,
            &[
                "rro",
                "rnosuid",
                "rnodev",
                "rnoexec",
                "rnodiratime",
                "rnoatime",
                "rnosymfollow",
            ],
            &all,
            &["rw", "relatime"],
        ),
        (
            "strict",
            &plain.top.path,
            &["rstrictatime"],
            &["rw"],
            &["relatime", "noatime"],
        ),
        (
            "cleared",
            &flagged.top.path,
            &[
                "rrw",
                "rsuid",
                "rdev",
                "rexec",
                "rdiratime",
                "rrelatime",
                "rsymfollow",
            ],
            &["rw", "relatime"],
            &all,
        ),
        (
            "atime",
            &flagged.top.path,
            &["ratime"],
            &["ro", "relatime"],
            &["noatime"],
        ),
        (
            "norelatime",
            &strict.top.path,
            &["rnorelatime"],
            &["relatime"],
            &[],
        ),
        (
            "nostrictatime",
            &strict.top.path,
            &["rnostrictatime"],
            &["relatime"],
            &[],
        ),
    ];
    let id = env.id("recursive");
    let script = "/bin/helper mounts; echo ---; /bin/helper write /run/set/top x; \
                  /bin/helper write /run/set/sub/new x; /bin/helper write /run/strict/sub/new x";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        tmpfs_at_run(c);
        for (name, source, options, _, _) in cases {
            let mut options: Vec<&str> = options.to_vec();
            options.insert(0, "rbind");
            add_mount(
                c,
                json!({"destination": format!("/run/{name}"), "type": "bind",
                       "source": source, "options": options}),
            );
        }
    });
    let out = env.run(&bundle, &id).ok().to_string();
    let (mountinfo, writes) = out.split_once("---\n").unwrap();
    for (name, _, options, shown, absent) in cases {
        for point in [format!("/run/{name}"), format!("/run/{name}/sub")] {
            let mount = mount_at(mountinfo, &point);
            for option in *shown {
                assert!(
                    mount.has_option(option),
                    "{options:?}: {option} missing: {mount:?}"
                );
            }
            for option in *absent {
                assert!(
                    !mount.has_option(option),
                    "{options:?}: {option} shown: {mount:?}"
                );
            }
        }
    }
    // Read-only down to the submount; the plain source's submount stays writable elsewhere.
    assert_eq!(writes, "EROFS\nEROFS\nok\n");
    assert_eq!(read(&plain.sub.path.join("new")), "x");
    env.assert_gone(&id);
}

/// `tmpcopyup` (podman asks for it on its tmpfs mounts): the tmpfs starts with a copy of what
/// the image held there, files, folders and symlinks with their modes and owners, and writes go
/// to the tmpfs only.
#[test]
fn tmpcopyup_fills_a_tmpfs_with_what_the_image_held() {
    need_root!();
    let env = Env::new("rootfs-copyup");
    let id = env.id("copyup");
    let script = "/bin/helper mounts; echo ---; readlink /bin/cat; /bin/helper stat /bin/busybox; \
                  /bin/helper stat /home/berth; /bin/helper ls /home; /bin/helper write /bin/new x; \
                  /bin/helper write /home/new x";
    let bundle = env.bundle(&id, &["/bin/sh", "-c", script], |c| {
        for dir in ["/bin", "/home"] {
            add_mount(
                c,
                json!({"destination": dir, "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "tmpcopyup"]}),
            );
        }
    });
    let out = env.run(&bundle, &id).ok().to_string();
    let (mountinfo, rest) = out.split_once("---\n").unwrap();
    for point in ["/bin", "/home"] {
        assert_eq!(mount_at(mountinfo, point).fstype, "tmpfs");
    }
    // The program ran from the copy: busybox, its symlinks, and the helper came along.
    assert_eq!(
        rest,
        "/bin/busybox\n\
         type=file mode=0755 uid=0 gid=0\n\
         type=directory mode=0755 uid=1000 gid=1000\n\
         berth\n\
         ok\n\
         ok\n"
    );
    let image = runtime_tests::rootfs();
    assert!(!image.join("bin/new").exists() && !image.join("home/new").exists());
    env.assert_gone(&id);
}

/// Unmounts (lazily) what is mounted at its path when dropped, also when the test fails.
struct Unmounted(std::path::PathBuf);

impl Drop for Unmounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The mounts of the test's own process (berth's mount namespace) at or below `dir`, and its
/// `/`, as mountinfo lines without their ids.
fn host_mounts_at(dir: &Path) -> Vec<String> {
    let text = read(Path::new("/proc/self/mountinfo"));
    parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.point == "/" || Path::new(&m.point).starts_with(dir))
        .map(|m| {
            format!(
                "{} {} {:?} {:?} {}",
                m.point, m.root, m.options, m.tags, m.fstype
            )
        })
        .collect()
}

/// A config without a mount namespace runs in berth's: the runtime-spec says a namespace not
/// listed is the runtime's. berth gives its root filesystem a mount of its own there, makes the
/// container's mounts below it (the host sees them), chroots into it (pivot_root would move the
/// host's root), `exec` lands there too; and `delete` leaves no mount behind and the host's
/// `/` as it was (runc makes `/` a slave and leaves every mount).
#[test]
fn without_a_mount_namespace_the_container_runs_in_berths_and_leaves_no_mount() {
    need_root!();
    let env = Env::new("rootfs-host-mntns");
    // A root filesystem path of this test's own, a read-only bind of the shared image (undone on
    // drop), so what berth mounts in the host's namespace is below the test's folder.
    let rootfs = env.scratch.join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    let bind = std::process::Command::new("mount")
        .args(["--bind", "-o", "ro"])
        .arg(runtime_tests::rootfs())
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(bind.success());
    let image = Unmounted(rootfs.clone());
    let before = host_mounts_at(&env.scratch);
    // A create that fails half-way (the init cannot mount a tmpfs) leaves nothing either.
    let id = env.id("host-mntns-bad");
    let bundle = env.bundle(&id, &["/bin/true"], |c| {
        c["root"]["path"] = rootfs.to_str().unwrap().into();
        drop_namespace(c, "mount");
        tmpfs_at_run(c);
        add_mount(
            c,
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                   "options": ["size=much"]}),
        );
    });
    let err = env
        .berth(&["create", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert!(
        err.contains("cannot mount tmpfs on /tmp: fsconfig: EINVAL"),
        "{err}"
    );
    env.assert_gone(&id);
    assert_eq!(host_mounts_at(&env.scratch), before, "left on the host");
    let id = env.id("host-mntns");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        c["root"]["path"] = rootfs.to_str().unwrap().into();
        drop_namespace(c, "mount");
    });
    env.create(&bundle, &id, &[]);
    // The container's mounts are the host's, below its root filesystem.
    let created = host_mounts_at(&env.scratch);
    for point in ["/proc", "/dev", "/dev/pts", "/sys"] {
        let point = format!("{}{point}", rootfs.display());
        assert!(
            created.iter().any(|m| m.starts_with(&format!("{point} "))),
            "{point} is not mounted on the host: {created:#?}"
        );
    }
    env.berth(&["start", &id]).ok();
    let look = "/bin/helper ns; echo ---; cat /etc/hostname; /bin/helper mounts";
    let out = env.berth(&["exec", &id, "sh", "-c", look]).ok().to_string();
    let (ns, rest) = out.split_once("---\n").unwrap();
    assert_eq!(
        parse_namespaces(ns)["mnt"],
        runtime_tests::namespaces_of("self")["mnt"],
        "not berth's mount namespace"
    );
    // The image's hostname file, and mountinfo as seen from the container's root.
    let (hostname, mountinfo) = rest.split_once('\n').unwrap();
    assert_eq!(
        hostname,
        read(&runtime_tests::rootfs().join("etc/hostname")).trim()
    );
    assert!(mount_at(mountinfo, "/").has_option("ro"), "{mountinfo}");
    assert_eq!(mount_at(mountinfo, "/proc").fstype, "proc");
    env.berth(&["kill", &id, "KILL"]).ok();
    env.wait_for_status(&id, "stopped");
    env.berth(&["delete", &id]).ok();
    env.assert_gone(&id);
    assert_eq!(host_mounts_at(&env.scratch), before, "left on the host");
    // In a user namespace nothing could be mounted in the host's mount namespace.
    let userns = |c: &mut Value| {
        drop_namespace(c, "mount");
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    };
    refused(
        &env,
        "userns",
        &[],
        userns,
        "linux.namespaces has a user namespace but no mount namespace: berth could mount \
         nothing for the container in the host's",
    );
    drop(image);
}

/// `major:minor` of the filesystem `path` lives on, as mountinfo shows it.
fn device_of(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).unwrap().dev();
    format!("{}:{}", libc::major(dev), libc::minor(dev))
}

/// Swaps the entries `a` and `b` of `dir` (renameat2 RENAME_EXCHANGE) until `stop` is set, as
/// an attacker who can write into the root filesystem would; returns how many swaps it made.
fn swap_until(dir: &Path, a: &str, b: &str, stop: &AtomicBool) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = |name: &str| std::ffi::CString::new(dir.join(name).as_os_str().as_bytes()).unwrap();
    let (a, b) = (c(a), c(b));
    let mut swaps = 0;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: two NUL-terminated paths that outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                a.as_ptr(),
                libc::AT_FDCWD,
                b.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
        swaps += 1;
    }
    swaps
}

/// CVE-2021-30465's setting: someone who can write into the root filesystem while berth mounts
/// (another container with it as a volume) swaps a read-only bind's destination with a symlink
/// to a mount made before it (`/tmp`), over and over (renameat2 RENAME_EXCHANGE), during a few
/// hundred creates (BERTH_SWAP_RUNS, default 300). When a bind was made on one descriptor and
/// given its flags through another opened by path, the swap could send the flags to the other
/// mount in between and leave the host folder writable: main at 1603dd7 did so 10 times in 300,
/// each written through from the container. No create may do that. (A symlink to `/` gives the
/// same writable outcomes, but half the creates then fail on the root itself.)
#[test]
fn a_read_only_bind_stays_read_only_while_its_destination_is_swapped() {
    need_root!();
    let env = Env::new("rootfs-swap");
    let secret = HostTmpfs::new(&env.scratch.join("secret"));
    std::fs::write(secret.path.join("data"), "host\n").unwrap();
    // The root filesystem the attacker writes into: the program (never started), the
    // destination, and the symlink swapped in for it.
    let rootfs = HostTmpfs::new(&env.scratch.join("rootfs"));
    std::fs::create_dir(rootfs.path.join("bin")).unwrap();
    std::fs::write(rootfs.path.join("bin/true"), "").unwrap();
    std::fs::set_permissions(
        rootfs.path.join("bin/true"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir(rootfs.path.join("ro")).unwrap();
    std::os::unix::fs::symlink("/tmp", rootfs.path.join("link")).unwrap();
    let secret_dev = device_of(&secret.path);
    let id = env.id("swap");
    let bundle = env.bundle(&id, &["/bin/true"], |c| {
        c["root"]["path"] = rootfs.path.to_str().unwrap().into();
        add_mount(
            c,
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
        );
        add_mount(
            c,
            json!({"destination": "/ro", "type": "bind", "source": secret.path,
                   "options": ["rbind", "ro"]}),
        );
    });
    let runs: usize = std::env::var("BERTH_SWAP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let (mut created, mut refused, mut writable, mut written) = (0, Vec::new(), Vec::new(), 0);
    let stop = AtomicBool::new(false);
    let swaps = std::thread::scope(|scope| {
        let racer = scope.spawn(|| swap_until(&rootfs.path, "ro", "link", &stop));
        for run in 0..runs {
            let create = env.berth(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
            if create.code != 0 {
                refused.push(create.stderr.trim().to_string());
                env.assert_gone(&id);
                continue;
            }
            created += 1;
            let pid = env.pid(&id);
            let mountinfo = read(Path::new(&format!("/proc/{pid}/mountinfo")));
            for mount in parse_mountinfo(&mountinfo) {
                if mount.device != secret_dev || !mount.has_option("rw") {
                    continue;
                }
                // Writable as mountinfo says? Write through the container's own view.
                let probe = format!("/proc/{pid}/root{}/written-{run}", mount.point);
                written += usize::from(std::fs::write(&probe, "x").is_ok());
                writable.push(format!("run {run}: {} {:?}", mount.point, mount.options));
            }
            env.berth(&["delete", "--force", &id]).ok();
            env.assert_gone(&id);
        }
        stop.store(true, Ordering::Relaxed);
        racer.join().unwrap()
    });
    eprintln!(
        "{runs} creates, {swaps} swaps: {created} created, {} refused, {} writable mounts of the \
         read-only source, {written} written through",
        refused.len(),
        writable.len()
    );
    let mut kinds = refused.clone();
    kinds.sort();
    kinds.dedup();
    eprintln!("refusals: {kinds:#?}");
    assert!(created > 0, "no create succeeded: {refused:?}");
    assert!(
        swaps > runs as u64,
        "the swapping hardly ran: {swaps} swaps"
    );
    assert!(writable.is_empty(), "writable: {writable:#?}");
    assert_eq!(written, 0);
}

#[test]
fn filesystems_are_mounted_with_their_options() {
    need_root!();
    let env = Env::new("rootfs-fs");
    let id = env.id("fs");
    let bundle = env.bundle(
        &id,
        &[
            "sh",
            "-c",
            "/bin/helper mounts; echo ---; exec /bin/helper stat /run/small",
        ],
        |c| {
            tmpfs_at_run(c);
            add_mount(
                c,
                json!({"destination": "/run/small", "type": "tmpfs", "source": "tmpfs",
                       "options": ["size=1m", "mode=700", "uid=5", "nosuid", "noatime"]}),
            );
        },
    );
    let out = env.run(&bundle, &id).ok().to_string();
    let (mountinfo, stat) = out.split_once("---\n").unwrap();
    // berth spec's default mounts.
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        ("/proc", "proc", &[], &[]),
        ("/dev", "tmpfs", &["nosuid"], &["mode=755", "size=65536k"]),
        (
            "/dev/pts",
            "devpts",
            &["nosuid", "noexec"],
            &["gid=5", "mode=620", "ptmxmode=666"],
        ),
        (
            "/dev/shm",
            "tmpfs",
            &["nosuid", "nodev", "noexec"],
            &["size=65536k"],
        ),
        ("/dev/mqueue", "mqueue", &["nosuid", "nodev", "noexec"], &[]),
        ("/sys", "sysfs", &["ro", "nosuid", "nodev", "noexec"], &[]),
        (
            "/run/small",
            "tmpfs",
            &["nosuid", "noatime"],
            &["size=1024k", "mode=700", "uid=5"],
        ),
    ];
    for (point, fstype, options, fs_options) in cases {
        let mount = mount_at(mountinfo, point);
        assert_eq!(&mount.fstype, fstype, "{mount:?}");
        for option in *options {
            assert!(
                mount.has_option(option),
                "{point}: {option} missing: {mount:?}"
            );
        }
        for option in *fs_options {
            assert!(
                mount.has_fs_option(option),
                "{point}: {option} missing: {mount:?}"
            );
        }
    }
    assert_eq!(stat, "type=directory mode=0700 uid=5 gid=0\n");
}

/// An overlay of many layers, as engines give for images: a `lowerdir` list longer than the
/// 255 bytes fsconfig takes in one value (one layer's name holds an escaped colon). Every
/// layer shows through, the first listed on top.
#[test]
fn an_overlay_of_many_layers_shows_each_layer() {
    need_root!();
    let env = Env::new("rootfs-overlay");
    let id = env.id("overlay");
    let mut layers = Vec::new();
    for n in 0..12 {
        let name = if n == 5 {
            "a-layer-with-a-long-name:and-a-colon".to_string()
        } else {
            format!("a-layer-with-a-long-name-number-{n:02}")
        };
        let dir = env.scratch.join("layers").join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("layer-{n:02}")), "").unwrap();
        std::fs::write(dir.join("shared"), format!("{n:02}\n")).unwrap();
        layers.push(dir.to_str().unwrap().replace(':', "\\:"));
    }
    let lowerdir = layers.join(":");
    assert!(lowerdir.len() > 255, "{}", lowerdir.len());
    let bundle = env.bundle(
        &id,
        &["sh", "-c", "cat /run/layers/shared; ls /run/layers"],
        |c| {
            tmpfs_at_run(c);
            add_mount(
                c,
                json!({"destination": "/run/layers", "type": "overlay", "source": "overlay",
                       "options": [format!("lowerdir={lowerdir}")]}),
            );
        },
    );
    let out = env.run(&bundle, &id).ok().to_string();
    let mut expected = vec!["00".to_string()];
    expected.extend((0..12).map(|n| format!("layer-{n:02}")));
    expected.push("shared".into());
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
    env.assert_root_empty();
}

/// The cgroup mounts under /sys/fs/cgroup in mountinfo text.
fn cgroup_mounts(mountinfo: &str) -> Vec<runtime_tests::Mount> {
    parse_mountinfo(mountinfo)
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect()
}

#[test]
fn the_cgroup_mount_shows_the_containers_own_cgroups() {
    need_root!();
    let env = Env::new("rootfs-cgroup");
    // In a cgroup namespace the hierarchies are mounted fresh: their root is the container's.
    let id = env.id("cgns");
    let bundle = env.bundle(&id, &["/bin/helper", "mounts"], |_| {});
    let out = env.run(&bundle, &id).ok().to_string();
    let mounts = cgroup_mounts(&out);
    assert!(!mounts.is_empty(), "no cgroup mount:\n{out}");
    for mount in &mounts {
        assert!(mount.point.starts_with("/sys/fs/cgroup"), "{mount:?}");
        assert_eq!(mount.root, "/", "{mount:?}");
        assert!(mount.has_option("ro"), "{mount:?}");
    }
    // Without one, the container's own folders are bound from the host, read-only as asked.
    let id = env.id("host-cgns");
    let bundle = env.bundle(&id, &["/bin/helper", "mounts"], |c| {
        drop_namespace(c, "cgroup")
    });
    let out = env.run(&bundle, &id).ok().to_string();
    let mounts = cgroup_mounts(&out);
    assert!(!mounts.is_empty(), "no cgroup mount:\n{out}");
    for mount in &mounts {
        assert_eq!(mount.root, env.cgroup_folder(&id), "{mount:?}");
        assert!(mount.has_option("ro"), "{mount:?}");
    }
    env.assert_gone(&id);
}

#[test]
fn rootfs_propagation_sets_the_roots_propagation() {
    need_root!();
    let env = Env::new("rootfs-propagation");
    for (mode, expected) in [
        ("shared", Some("shared:")),
        ("private", None),
        ("unbindable", Some("unbindable")),
    ] {
        let id = env.id(mode);
        let bundle = env.bundle(&id, &["/bin/helper", "mounts"], |c| {
            c["linux"]["rootfsPropagation"] = mode.into();
        });
        let out = env.run(&bundle, &id).ok().to_string();
        let root = mount_at(&out, "/");
        match expected {
            Some(tag) => assert!(
                root.tags.iter().any(|t| t.starts_with(tag)),
                "{mode}: {root:?}"
            ),
            None => assert!(root.tags.is_empty(), "{mode}: {root:?}"),
        }
    }
    // Left out, the root is not shared with the host: no mount made inside reaches it.
    let id = env.id("default");
    let bundle = env.bundle(&id, &["/bin/helper", "mounts"], |_| {});
    let out = env.run(&bundle, &id).ok().to_string();
    let root = mount_at(&out, "/");
    assert!(
        !root.tags.iter().any(|t| t.starts_with("shared:")),
        "{root:?}"
    );
}

#[test]
fn the_root_is_read_only_when_asked() {
    need_root!();
    let env = Env::new("rootfs-ro");
    let look = [
        "sh",
        "-c",
        "/bin/helper mounts; echo ---; /bin/helper write /etc/new x; /bin/helper write /tmp/new x; true",
    ];
    let id = env.id("ro");
    let bundle = env.bundle(&id, &look, |_| {});
    let out = env.run(&bundle, &id).ok().to_string();
    let (mountinfo, writes) = out.split_once("---\n").unwrap();
    assert!(mount_at(mountinfo, "/").has_option("ro"));
    assert_eq!(writes, "EROFS\nEROFS\n");

    // Writable, with a tmpfs on /tmp so nothing is written into the shared root filesystem.
    let id = env.id("rw");
    let look = [
        "sh",
        "-c",
        "/bin/helper mounts; echo ---; /bin/helper write /tmp/new x",
    ];
    let bundle = env.bundle(&id, &look, |c| {
        c["root"]["readonly"] = false.into();
        add_mount(
            c,
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
        );
    });
    let out = env.run(&bundle, &id).ok().to_string();
    let (mountinfo, writes) = out.split_once("---\n").unwrap();
    assert!(mount_at(mountinfo, "/").has_option("rw"));
    assert_eq!(writes, "ok\n");
}

#[test]
fn no_pivot_runs_in_the_root_filesystem() {
    need_root!();
    let env = Env::new("rootfs-no-pivot");
    let id = env.id("no-pivot");
    let bundle = env.bundle(
        &id,
        &[
            "sh",
            "-c",
            "cat /etc/hostname; /bin/helper write /new x; /bin/helper cat /proc/self/comm; exit 4",
        ],
        |_| {},
    );
    let run = env.berth(&[
        "run",
        "--no-pivot",
        "--bundle",
        bundle.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    // The image's /etc/hostname, a read-only root, and a working /proc.
    assert_eq!(run.stdout, "berth\nEROFS\nhelper\n");
    env.assert_gone(&id);
}

#[test]
fn no_pivot_leaves_no_complete_proc_to_mount_a_new_one_from() {
    need_root!();
    let env = Env::new("rootfs-no-pivot-proc");
    let id = env.id("proc");
    // Root of a user namespace of its own may mount a procfs only where its mount namespace
    // already has a complete one: the host's, left below the chroot, must be gone (as runc's
    // no_pivot.bats checks), or the new procfs would show what the masked paths hide.
    let script =
        "unshare -mrpf sh -c 'mount -t proc none /proc 2>&- && echo mounted || echo refused'";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        for set in ["bounding", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SETFCAP"));
        }
    });
    let run = env.berth(&[
        "run",
        "--no-pivot",
        "--bundle",
        bundle.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(run.stdout, "refused\n", "{}", run.stderr);
    // The same with pivot_root, which leaves nothing of the host.
    let run = env.run(&bundle, &id);
    assert_eq!(run.stdout, "refused\n", "{}", run.stderr);
    env.assert_gone(&id);
}

#[test]
fn a_read_only_dev_gets_its_devices_and_mounts_first() {
    need_root!();
    let env = Env::new("rootfs-dev-ro");
    let id = env.id("dev-ro");
    // runc's mounts.bats ("ro /dev mount"): the devices and the mount points of /dev/pts,
    // /dev/shm and /dev/mqueue are made in /dev, which turns read-only after them.
    let script = "grep '^tmpfs /dev ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1; \
                  grep -c ' /dev/pts ' /proc/mounts; echo x > /dev/null && echo null ok; \
                  /bin/helper write /dev/new x";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        for mount in c["mounts"].as_array_mut().unwrap() {
            if mount["destination"] == "/dev" {
                mount["options"].as_array_mut().unwrap().push("ro".into());
            }
        }
    });
    let run = env.run(&bundle, &id);
    assert_eq!(run.stdout, "ro\n1\nnull ok\nEROFS\n", "{}", run.stderr);
    env.assert_gone(&id);
}

#[test]
fn dev_has_the_default_devices_and_symlinks() {
    need_root!();
    let env = Env::new("rootfs-dev");
    let id = env.id("dev");
    let script = "for d in null zero full random urandom tty; do /bin/helper stat /dev/$d; done; \
                  for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; \
                  /bin/helper write /dev/null x; /bin/helper write /dev/full x; \
                  head -c 3 /dev/zero | od -An -tx1";
    let bundle = env.bundle(&id, &["sh", "-c", script], |_| {});
    let out = env.run(&bundle, &id).ok().to_string();
    let expected = "\
type=char mode=0666 uid=0 gid=0 rdev=1:3
type=char mode=0666 uid=0 gid=0 rdev=1:5
type=char mode=0666 uid=0 gid=0 rdev=1:7
type=char mode=0666 uid=0 gid=0 rdev=1:8
type=char mode=0666 uid=0 gid=0 rdev=1:9
type=char mode=0666 uid=0 gid=0 rdev=5:0
/proc/self/fd
/proc/self/fd/0
/proc/self/fd/1
/proc/self/fd/2
pts/ptmx
ok
ENOSPC
 00 00 00
";
    assert_eq!(out, expected);
}

#[test]
fn linux_devices_are_made_with_their_owner_and_mode() {
    need_root!();
    let env = Env::new("rootfs-devices");
    let id = env.id("devices");
    let bundle = env.bundle(
        &id,
        &[
            "sh",
            "-c",
            "/bin/helper stat /dev/mine; /bin/helper stat /dev/disks/loop; /bin/helper stat /dev/null",
        ],
        |c| {
            c["linux"]["devices"] = json!([
                {"path": "/dev/mine", "type": "c", "major": 1, "minor": 7,
                 "fileMode": 0o640, "uid": 7, "gid": 8},
                {"path": "/dev/disks/loop", "type": "b", "major": 7, "minor": 0},
                {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600}
            ]);
        },
    );
    let out = env.run(&bundle, &id).ok().to_string();
    assert_eq!(
        out,
        "type=char mode=0640 uid=7 gid=8 rdev=1:7\n\
         type=block mode=0666 uid=0 gid=0 rdev=7:0\n\
         type=char mode=0600 uid=0 gid=0 rdev=1:3\n"
    );
}

#[test]
fn masked_paths_are_empty_and_readonly_paths_refuse_writes() {
    need_root!();
    let env = Env::new("rootfs-masked");
    let id = env.id("masked");
    let script = "/bin/helper cat /proc/keys; /bin/helper ls /sys/firmware; \
                  /bin/helper cat /etc/hostname; /bin/helper ls /home; echo ---; \
                  /bin/helper write /proc/sys/kernel/hostname x; /bin/helper write /run/x x; \
                  /bin/helper write /tmp/x x; echo ---; grep -c ' /home ' /proc/self/mountinfo; \
                  grep -c ' /run ' /proc/self/mountinfo";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        let masked = c["linux"]["maskedPaths"].as_array_mut().unwrap();
        masked.push("/etc/hostname".into());
        masked.push("/home".into());
        masked.push("/does/not/exist".into());
        // A path given twice is masked once (one mount), and made read-only once.
        masked.push("/home".into());
        let readonly = c["linux"]["readonlyPaths"].as_array_mut().unwrap();
        readonly.push("/run".into());
        readonly.push("/run".into());
        tmpfs_at_run(c);
        add_mount(
            c,
            json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
        );
    });
    // The host has what the container must not see.
    assert!(std::fs::read_dir("/sys/firmware").unwrap().next().is_some());
    let out = env.run(&bundle, &id).ok().to_string();
    // A masked file reads empty, a masked folder lists nothing; a missing path is skipped.
    let (masked, rest) = out.split_once("---\n").unwrap();
    assert_eq!(masked, "", "masked paths show content");
    let (writes, mounts) = rest.split_once("---\n").unwrap();
    assert_eq!(writes, "EROFS\nEROFS\nok\n");
    // /home: one masking mount; /run: its tmpfs and one read-only bind over it.
    assert_eq!(mounts, "1\n2\n");
}

#[test]
fn hostname_and_domainname_are_the_containers() {
    need_root!();
    let env = Env::new("rootfs-uts");
    let id = env.id("uts");
    let bundle = env.bundle(&id, &["/bin/helper", "hostname"], |c| {
        c["hostname"] = "inside".into();
        c["domainname"] = "example.test".into();
    });
    let host = read(std::path::Path::new("/proc/sys/kernel/hostname"));
    let out = env.run(&bundle, &id).ok().to_string();
    assert_eq!(out, "hostname=inside\ndomainname=example.test\n");
    assert_eq!(
        read(std::path::Path::new("/proc/sys/kernel/hostname")),
        host
    );
}

#[test]
fn sysctls_are_set_in_the_containers_namespaces() {
    need_root!();
    let env = Env::new("rootfs-sysctl");
    let id = env.id("sysctl");
    let forward = std::path::Path::new("/proc/sys/net/ipv4/ip_forward");
    let shmmax = std::path::Path::new("/proc/sys/kernel/shmmax");
    let (host_forward, host_shmmax) = (read(forward), read(shmmax));
    let bundle = env.bundle(
        &id,
        &[
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
            "/proc/sys/kernel/shmmax",
        ],
        |c| {
            let flipped = if host_forward.trim() == "1" { "0" } else { "1" };
            c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": flipped, "kernel.shmmax": "4242"});
        },
    );
    let out = env.run(&bundle, &id).ok().to_string();
    let flipped = if host_forward.trim() == "1" { "0" } else { "1" };
    assert_eq!(out, format!("{flipped}\n4242\n"));
    assert_eq!(read(forward), host_forward, "the host's ip_forward changed");
    assert_eq!(read(shmmax), host_shmmax, "the host's shmmax changed");
}

/// Asserts that `create` with `flags` refuses the bundle `edit` makes, with `message`, and
/// leaves nothing behind.
#[track_caller]
fn refused(env: &Env, tag: &str, flags: &[&str], edit: impl FnOnce(&mut Value), message: &str) {
    let id = env.id(tag);
    let bundle = env.bundle(&id, &["/bin/true"], edit);
    let mut args = vec!["create", "--bundle", bundle.to_str().unwrap()];
    args.extend_from_slice(flags);
    args.push(&id);
    let err = env.berth(&args).fails().to_string();
    assert_eq!(err.trim(), format!("berth: error: {message}"), "{tag}");
    env.assert_gone(&id);
}

#[test]
fn mount_options_berth_would_drop_are_refused() {
    need_root!();
    let env = Env::new("rootfs-options-refused");
    let source = env.scratch.join("source");
    std::fs::create_dir_all(&source).unwrap();
    let cases = [
        (
            "idmap",
            json!(["rbind", "idmap"]),
            r#"option "idmap": berth does not make id-mapped mounts"#,
        ),
        (
            "data",
            json!(["rbind", "size=1m"]),
            r#"option "size=1m" is not one berth knows, and a bind mount shares its source's filesystem: it takes no filesystem options"#,
        ),
        (
            "sync",
            json!(["rbind", "sync"]),
            r#"option "sync" changes a filesystem, and a bind mount shares its source's filesystem"#,
        ),
    ];
    for (tag, options, reason) in cases {
        let mount = json!({"destination": "/data", "type": "bind", "source": source,
                           "options": options});
        let only = |c: &mut Value| c["mounts"] = json!([mount]);
        refused(
            &env,
            tag,
            &[],
            only,
            &format!("mounts[0] (/data): {reason}"),
        );
    }
    env.assert_root_empty();
}

#[test]
fn sysctls_of_the_hosts_namespaces_are_refused() {
    need_root!();
    let env = Env::new("rootfs-sysctl-host");
    let forward = std::path::Path::new("/proc/sys/net/ipv4/ip_forward");
    let host_forward = read(forward);
    let flipped = if host_forward.trim() == "1" { "0" } else { "1" };
    let net = json!({"net.ipv4.ip_forward": flipped});
    let net_refused =
        "linux.sysctl \"net.ipv4.ip_forward\": would change the host's network namespace";
    let no_netns = |c: &mut Value| {
        drop_namespace(c, "network");
        c["linux"]["sysctl"] = net.clone();
    };
    refused(&env, "no-netns", &[], no_netns, net_refused);
    // `--network host` cannot take the host's namespace where config.json asks for its own, so
    // the sysctl would never reach the host's.
    let with_net = |c: &mut Value| c["linux"]["sysctl"] = net.clone();
    refused(
        &env,
        "host-flag",
        &["--network", "host"],
        with_net,
        "flag --network \"host\" is refused: config.json's linux.namespaces has a network entry \
         without a path, and host mode would put the container in the host's network namespace \
         where config.json asks for one of its own",
    );
    let host_ipc = |c: &mut Value| {
        join_namespace(c, "ipc", "/proc/self/ns/ipc");
        c["linux"]["sysctl"] = json!({"kernel.shmmax": "4242"});
    };
    let ipc_refused = "linux.sysctl \"kernel.shmmax\": would change the host's ipc namespace";
    refused(&env, "host-ipc", &[], host_ipc, ipc_refused);
    let vm = |c: &mut Value| c["linux"]["sysctl"] = json!({"vm.swappiness": "1"});
    refused(
        &env,
        "vm",
        &[],
        vm,
        "linux.sysctl \"vm.swappiness\": is not namespaced",
    );
    env.assert_root_empty();
    assert_eq!(read(forward), host_forward);
}
