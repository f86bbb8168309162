//! The root filesystem: the spec's mounts as mountinfo shows them inside, rootfsPropagation,
//! the read-only root, --no-pivot, /dev (default devices, linux.devices, symlinks), masked and
//! read-only paths, hostname and domainname, and linux.sysctl with its refusal for the host's
//! namespaces.

use runtime_tests::{
    drop_namespace, join_namespace, mount_at, need_root, parse_mountinfo, read, Env, HostTmpfs,
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
                  /bin/helper write /tmp/x x";
    let bundle = env.bundle(&id, &["sh", "-c", script], |c| {
        let masked = c["linux"]["maskedPaths"].as_array_mut().unwrap();
        masked.push("/etc/hostname".into());
        masked.push("/home".into());
        masked.push("/does/not/exist".into());
        let readonly = c["linux"]["readonlyPaths"].as_array_mut().unwrap();
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
    let (masked, writes) = out.split_once("---\n").unwrap();
    assert_eq!(masked, "", "masked paths show content");
    assert_eq!(writes, "EROFS\nEROFS\nok\n");
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
