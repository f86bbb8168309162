//! Namespaces: what the container sees inside against what the host has, for namespaces made
//! new, left out (the host's) and joined by path.

use std::os::unix::fs::MetadataExt;

use runtime_tests::{
    drop_namespace, join_namespace, namespaces_of, need_root, parse_namespaces, Env, NetNs,
};

/// Prints the namespaces, the cgroup and the pid as the program sees them.
const LOOK: &[&str] = &[
    "sh",
    "-c",
    "/bin/helper ns; /bin/helper cgroup; exec /bin/helper pid",
];

#[test]
fn each_namespace_is_new() {
    need_root!();
    let env = Env::new("ns-new");
    let id = env.id("new");
    // berth spec's template: pid, network, ipc, uts, mount and cgroup namespaces of its own. An
    // empty path is no path (Go's unset string, which runc reads so): a namespace to make.
    let bundle = env.bundle(&id, LOOK, |c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "uts" || ns["type"] == "mount" {
                ns["path"] = "".into();
            }
        }
    });
    let out = env.run(&bundle, &id).ok().to_string();
    let inside = parse_namespaces(&out);
    let host = namespaces_of("self");
    for name in ["pid", "mnt", "uts", "ipc", "net", "cgroup"] {
        assert_ne!(inside[name], host[name], "{name} namespace is the host's");
    }
    for name in ["user", "time"] {
        assert_eq!(
            inside[name], host[name],
            "{name} namespace is not the host's"
        );
    }
    // The program is pid 1 of its pid namespace, and the root of its cgroup namespace.
    assert!(out.ends_with("pid=1 ppid=0\n"), "{out}");
    let cgroups: Vec<&str> = out.lines().filter(|l| l.contains(":/")).collect();
    assert!(!cgroups.is_empty(), "{out}");
    assert!(cgroups.iter().all(|l| l.ends_with(":/")), "{out}");
    env.assert_gone(&id);
}

#[test]
fn namespaces_left_out_are_the_hosts() {
    need_root!();
    let env = Env::new("ns-host");
    let id = env.id("host");
    let bundle = env.bundle(&id, LOOK, |c| {
        for typ in ["pid", "network", "ipc", "uts", "cgroup"] {
            drop_namespace(c, typ);
        }
        c["hostname"] = "".into();
    });
    let out = env.run(&bundle, &id).ok().to_string();
    let inside = parse_namespaces(&out);
    let host = namespaces_of("self");
    assert_ne!(
        inside["mnt"], host["mnt"],
        "berth always makes a mount namespace"
    );
    for name in ["pid", "uts", "ipc", "net", "cgroup", "user"] {
        assert_eq!(
            inside[name], host[name],
            "{name} namespace is not the host's"
        );
    }
    // In the host's pid and cgroup namespaces the program sees its real pid and cgroup.
    assert!(!out.contains("pid=1 "), "{out}");
    let cgroup_path = env.cgroup_folder(&id);
    let cgroups: Vec<&str> = out.lines().filter(|l| l.contains(":/")).collect();
    assert!(!cgroups.is_empty(), "{out}");
    assert!(
        cgroups.iter().all(|l| l.ends_with(&cgroup_path)),
        "{out} should name {cgroup_path}"
    );
}

#[test]
fn joins_a_network_namespace_by_path() {
    need_root!();
    let env = Env::new("ns-join-net");
    let netns = NetNs::new(&env.name);
    // A mark a person would look for: an address only that namespace has.
    let status = netns
        .command("ip")
        .args(["addr", "add", "10.253.7.1/32", "dev", "lo"])
        .status()
        .unwrap();
    assert!(status.success());
    let id = env.id("net");
    let path = netns.path.to_str().unwrap();
    let bundle = env.bundle(
        &id,
        &["sh", "-c", "/bin/helper ns; ip -o -4 addr show dev lo"],
        |c| join_namespace(c, "network", path),
    );
    let out = env.run(&bundle, &id).ok().to_string();
    let inode = std::fs::metadata(&netns.path).unwrap().ino();
    assert_eq!(parse_namespaces(&out)["net"], format!("net:[{inode}]"));
    assert!(out.contains("inet 10.253.7.1/32"), "{out}");
    env.assert_gone(&id);
}

#[test]
fn joins_the_namespaces_of_another_container() {
    need_root!();
    let env = Env::new("ns-join-other");
    let first = env.id("first");
    let bundle = env.bundle(&first, &["/bin/helper", "pause"], |c| {
        c["hostname"] = "first-host".into();
    });
    env.create(&bundle, &first, &[]);
    env.berth(&["start", &first]).ok();
    let pid = env.pid(&first);
    let theirs = namespaces_of(&pid.to_string());

    let second = env.id("second");
    let bundle = env.bundle(
        &second,
        &["sh", "-c", "/bin/helper ns; hostname; ps -o args"],
        |c| {
            for typ in ["ipc", "uts", "pid"] {
                join_namespace(c, typ, &format!("/proc/{pid}/ns/{typ}"));
            }
            c["hostname"] = "".into();
        },
    );
    let out = env.run(&bundle, &second).ok().to_string();
    let inside = parse_namespaces(&out);
    for name in ["ipc", "uts", "pid"] {
        assert_eq!(inside[name], theirs[name], "{name} namespace not joined");
    }
    assert_ne!(inside["net"], theirs["net"]);
    // The first container's hostname and processes are what the second sees.
    assert!(out.contains("\nfirst-host\n"), "{out}");
    assert!(out.contains("\n/bin/helper pause\n"), "{out}");
    env.assert_gone(&second);
    assert_eq!(env.state(&first)["status"], "running");
}
