//! User namespaces: uidMappings and gidMappings as seen inside and from the host, a new user
//! namespace alone, with namespaces joined by path (the two-stage path of create), and a user
//! namespace joined from another container.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use runtime_tests::{
    join_namespace, mount_at, namespaces_of, need_root, parse_namespaces, read, Env, NetNs,
};
use serde_json::{json, Value};

/// Container 0 is host 100000, for 65536 ids, users and groups alike.
fn map_to_100000(config: &mut Value) {
    let maps = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    config["linux"]["uidMappings"] = maps.clone();
    config["linux"]["gidMappings"] = maps;
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
}

/// A folder of the scratch area that the container's root (host 100000, not root on the host)
/// may write to, mounted read-write at /run: a folder the image has, since that root may not make
/// a mount point in the shared root filesystem.
fn shared_folder(env: &Env, config: &mut Value) -> std::path::PathBuf {
    let dir = env.scratch.join("shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/run", "type": "bind", "source": dir, "options": ["rbind", "rw"]
    }));
    dir
}

#[test]
fn a_new_user_namespace_maps_root_to_100000() {
    need_root!();
    let env = Env::new("userns-new");
    let id = env.id("mapped");
    let mut shared = None;
    let bundle = env.bundle(
        &id,
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; /bin/helper ids; /bin/helper ns; \
             /bin/helper write /run/by-root made; exec /bin/helper pause",
        ],
        |c| {
            map_to_100000(c);
            shared = Some(shared_folder(&env, c));
        },
    );
    let shared = shared.unwrap();
    let out = env.create(&bundle, &id, &[]);
    env.berth(&["start", &id]).ok();
    runtime_tests::wait_until("the container to pause", || read(&out).contains("pausing"));
    let text = read(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "{text}");
    assert_eq!(lines[1], ["0", "100000", "65536"], "{text}");
    assert!(text.contains("uid=0 gid=0 euid=0 egid=0"), "{text}");
    let inside = parse_namespaces(&text);
    assert_ne!(inside["user"], namespaces_of("self")["user"]);

    // From the host, the container's root is 100000: its process and the files it makes.
    let pid = env.pid(&id);
    let proc_dir = std::fs::metadata(format!("/proc/{pid}")).unwrap();
    assert_eq!((proc_dir.uid(), proc_dir.gid()), (100000, 100000));
    let file = std::fs::metadata(shared.join("by-root")).unwrap();
    assert_eq!((file.uid(), file.gid()), (100000, 100000));
    assert_eq!(read(&shared.join("by-root")), "made");
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn a_user_in_a_user_namespace_is_shifted_too() {
    need_root!();
    let env = Env::new("userns-user");
    let id = env.id("user");
    let mut shared = None;
    let bundle = env.bundle(
        &id,
        &[
            "sh",
            "-c",
            "/bin/helper ids; /bin/helper write /run/by-user made",
        ],
        |c| {
            map_to_100000(c);
            shared = Some(shared_folder(&env, c));
            c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5]});
        },
    );
    let out = env.run(&bundle, &id).ok().to_string();
    assert_eq!(out, "uid=1000 gid=1000 euid=1000 egid=1000 groups=5\nok\n");
    let file = std::fs::metadata(shared.unwrap().join("by-user")).unwrap();
    assert_eq!((file.uid(), file.gid()), (101000, 101000));
    env.assert_gone(&id);
}

#[test]
fn a_new_user_namespace_with_a_joined_network_namespace() {
    need_root!();
    let env = Env::new("userns-join");
    let netns = NetNs::new(&env.name);
    let id = env.id("two-stage");
    let path = netns.path.to_str().unwrap();
    let bundle = env.bundle(
        &id,
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map; /bin/helper ids; /bin/helper ns; /bin/helper mounts; \
             exec /bin/helper pid",
        ],
        |c| {
            map_to_100000(c);
            join_namespace(c, "network", path);
        },
    );
    let out = env.run(&bundle, &id).ok().to_string();
    let first: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first, ["0", "100000", "65536"], "{out}");
    assert!(out.contains("uid=0 gid=0 euid=0 egid=0"), "{out}");
    let inside = parse_namespaces(&out);
    let host = namespaces_of("self");
    let inode = std::fs::metadata(&netns.path).unwrap().ino();
    assert_eq!(inside["net"], format!("net:[{inode}]"));
    // The namespaces made new after the join are new, and the program is pid 1 of its own.
    for name in ["user", "pid", "mnt", "uts", "ipc", "cgroup"] {
        assert_ne!(inside[name], host[name], "{name} namespace is the host's");
    }
    assert!(out.ends_with("pid=1 ppid=0\n"), "{out}");
    // Such a user namespace may not mount sysfs for a network namespace it does not own: /sys
    // is the host's, bound, yet with the options asked for, and the cgroup mount still works.
    let sys = mount_at(&out, "/sys");
    for option in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(sys.has_option(option), "{option} missing: {sys:?}");
    }
    let cgroup = mount_at(&out, "/sys/fs/cgroup");
    assert!(cgroup.has_option("ro"), "{cgroup:?}");
    env.assert_gone(&id);

    // The pid berth records is the init's (not the intermediate process's), in the host's terms.
    let id = env.id("pid");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |c| {
        map_to_100000(c);
        join_namespace(c, "network", path);
    });
    env.create(&bundle, &id, &[]);
    let pid = env.pid(&id);
    let theirs = namespaces_of(&pid.to_string());
    assert_eq!(theirs["net"], format!("net:[{inode}]"));
    assert_ne!(theirs["user"], host["user"]);
    let uid_map = read(std::path::Path::new(&format!("/proc/{pid}/uid_map")));
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    env.berth(&["delete", &id]).ok();
    env.assert_gone(&id);
}

#[test]
fn joins_the_user_namespace_of_another_container() {
    need_root!();
    let env = Env::new("userns-other");
    let first = env.id("first");
    let bundle = env.bundle(&first, &["/bin/helper", "pause"], map_to_100000);
    env.create(&bundle, &first, &[]);
    let pid = env.pid(&first);
    let second = env.id("second");
    let bundle = env.bundle(
        &second,
        &["sh", "-c", "cat /proc/self/uid_map; /bin/helper ns"],
        |c| join_namespace(c, "user", &format!("/proc/{pid}/ns/user")),
    );
    let out = env.run(&bundle, &second).ok().to_string();
    let first_line: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first_line, ["0", "100000", "65536"], "{out}");
    let theirs = namespaces_of(&pid.to_string());
    assert_eq!(parse_namespaces(&out)["user"], theirs["user"]);
    env.assert_gone(&second);

    // With a network namespace that user namespace does not own (the host made it): berth joins
    // it before the user namespace, while it still may, as runc does ([wrong userns owner]).
    let netns = NetNs::new(&format!("{}-owner", env.name));
    let third = env.id("third");
    let bundle = env.bundle(&third, &["/bin/helper", "ns"], |c| {
        join_namespace(c, "user", &format!("/proc/{pid}/ns/user"));
        join_namespace(c, "network", netns.path.to_str().unwrap());
    });
    let out = env.run(&bundle, &third).ok().to_string();
    let inside = parse_namespaces(&out);
    assert_eq!(inside["user"], theirs["user"]);
    let netns_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&netns.path).unwrap());
    assert_eq!(inside["net"], format!("net:[{netns_inode}]"));
    env.assert_gone(&third);
}
