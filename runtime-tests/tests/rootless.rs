//! Rootless containers: berth run by an ordinary user the test makes (useradd, with a range of
//! subordinate ids; removed at the end). `berth spec --rootless` and `run` as the issue checks
//! it, the lifecycle commands, the state folder under `$XDG_RUNTIME_DIR`, `--rootless`, user
//! namespace maps (the user's own ids, wider ones through newuidmap, refusals naming the file
//! and range), cgroups (none where nothing is delegated, and on cgroup v2 a folder delegated to
//! the user), and host and none networking with bridge mode refused.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use runtime_tests::{need_root, parse_namespaces, read, rootfs, skip, wait_until, Env, TestUser};
use serde_json::{json, Value};

/// Whether the user can have a user namespace and newuidmap is here: says why not otherwise.
fn ready(test: &str) -> bool {
    let max = read(Path::new("/proc/sys/user/max_user_namespaces"));
    if max.trim() == "0" {
        skip(
            test,
            "user namespaces are off (user.max_user_namespaces is 0)",
        );
        return false;
    }
    if !Path::new("/usr/bin/newuidmap").exists() {
        skip(
            test,
            "newuidmap is missing (scripts/test installs the uidmap package: scripts/install --set rootless)",
        );
        return false;
    }
    true
}

macro_rules! need_rootless {
    () => {
        need_root!();
        if !ready(module_path!()) {
            return;
        }
    };
}

/// The lines of a file, each split on whitespace.
fn fields(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

/// `berth list` shows only its header.
#[track_caller]
fn assert_nothing_listed(user: &TestUser, env: &Env) {
    let list = user.berth(env, &["list"]);
    assert_eq!(
        list.ok().lines().collect::<Vec<_>>(),
        ["ID   PID   STATUS   BUNDLE   CREATED   OWNER"],
        "{}",
        list.stdout
    );
    assert_eq!(user.containers(), Vec::<String>::new(), "left in --root");
}

#[test]
fn an_ordinary_user_runs_the_rootless_template_as_root_of_its_own_user_namespace() {
    need_rootless!();
    let env = Env::new("rootless-check");
    let user = TestUser::new(&env);
    assert!(!user.subordinate_uids().is_empty());
    // As a person would: in a bundle folder of the user's, `berth spec --rootless`.
    let bundle = user.home.join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::os::unix::fs::chown(&bundle, Some(user.uid), Some(user.gid)).unwrap();
    let spec = user
        .command(None, &user.berth)
        .arg("spec")
        .arg("--rootless")
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(
        spec.status.success(),
        "{}",
        String::from_utf8_lossy(&spec.stderr)
    );
    let path = bundle.join("config.json");
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), user.uid);
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();

    // runc's rootless template: the caller mapped to root, no network namespace, no resources,
    // the host's /sys bound read-only, no uid=/gid= mount options.
    let linux = &config["linux"];
    let own = |id: u32| json!([{"containerID": 0, "hostID": id, "size": 1}]);
    assert_eq!(linux["uidMappings"], own(user.uid));
    assert_eq!(linux["gidMappings"], own(user.gid));
    let types: Vec<&str> = linux["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"user") && !types.contains(&"network"),
        "{types:?}"
    );
    assert!(linux.get("resources").is_none(), "{linux}");
    let sys = config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert_eq!(sys["source"], "/sys");
    assert_eq!(
        sys["options"],
        json!(["rbind", "nosuid", "noexec", "nodev", "ro"])
    );
    let text = config["mounts"].to_string();
    assert!(!text.contains("gid=") && !text.contains("uid="), "{text}");

    config["root"]["path"] = Value::from(user.rootfs.to_str().unwrap());
    config["process"]["terminal"] = Value::from(false);
    config["process"]["args"] = json!(["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let id = env.id("check");
    let run = user.berth(&env, &["run", "--bundle", bundle.to_str().unwrap(), &id]);
    let out = run.ok();
    assert_eq!(
        fields(out),
        [
            vec!["0".to_string()],
            vec!["0".into(), user.uid.to_string(), "1".into()]
        ],
        "{out}"
    );
    assert_nothing_listed(&user, &env);

    // The state went to $XDG_RUNTIME_DIR/berth: the user's, 0700 and sticky, as runc makes it.
    let root = std::fs::metadata(user.root()).unwrap();
    assert_eq!(root.uid(), user.uid);
    assert_eq!(root.permissions().mode() & 0o7777, 0o1700);
}

#[test]
fn an_ordinary_users_container_goes_through_its_lifecycle() {
    need_rootless!();
    let env = Env::new("rootless-life");
    let user = TestUser::new(&env);
    let id = env.id("life");
    let bundle = user.bundle(
        &env,
        &id,
        &[
            "sh",
            "-c",
            "/bin/helper sleep 1000 & exec /bin/helper pause",
        ],
        |_| {},
    );
    let out = user.create(&env, &bundle, &id, &[]);
    let state = user.state(&env, &id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["owner"], user.name.as_str());
    let pid = state["pid"].as_i64().unwrap();
    // From the host, the container's root is the user.
    assert_eq!(
        std::fs::metadata(format!("/proc/{pid}")).unwrap().uid(),
        user.uid
    );

    user.berth(&env, &["start", &id]).ok();
    wait_until("the program to pause", || read(&out).contains("pausing"));
    let list = user.berth(&env, &["list", "--format", "json"]);
    let list: Value = serde_json::from_str(list.ok()).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "running");
    assert_eq!(list[0]["owner"], user.name.as_str());

    // ps: the container's processes, found without a cgroup of its own by its pid namespace.
    let mut pids: Vec<i64> = Vec::new();
    wait_until("both processes", || {
        let ps = user.berth(&env, &["ps", "--format", "json", &id]);
        pids = serde_json::from_str(ps.ok()).unwrap();
        pids.len() == 2
    });
    assert!(pids.contains(&pid), "{pids:?}");

    // exec: root of the same user namespace, in the same pid namespace.
    let exec = user.berth(
        &env,
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map; /bin/helper ns",
        ],
    );
    let text = exec.ok();
    let lines = fields(text);
    assert_eq!(lines[0], ["0"], "{text}");
    assert_eq!(lines[1], ["0", &user.uid.to_string(), "1"], "{text}");
    let theirs = runtime_tests::namespaces_of(&pid.to_string());
    let inside = parse_namespaces(text);
    for name in ["user", "pid", "mnt"] {
        assert_eq!(inside[name], theirs[name], "{name}");
    }

    // kill by signal name reaches the init; then delete leaves nothing.
    user.berth(&env, &["kill", &id, "TERM"]).ok();
    wait_until("the container to stop", || {
        user.state(&env, &id)["status"] == "stopped"
    });
    assert!(read(&out).contains("SIGTERM"), "{}", read(&out));
    user.berth(&env, &["delete", &id]).ok();
    assert_nothing_listed(&user, &env);

    // kill --all signals every process of a running container, without a cgroup to go by.
    let id = env.id("all");
    let bundle = user.bundle(
        &env,
        &id,
        &[
            "sh",
            "-c",
            "/bin/helper sleep 1000 & exec /bin/helper sleep 1000",
        ],
        |_| {},
    );
    user.create(&env, &bundle, &id, &[]);
    user.berth(&env, &["start", &id]).ok();
    wait_until("both processes", || {
        let ps = user.berth(&env, &["ps", "--format", "json", &id]);
        serde_json::from_str::<Vec<i64>>(ps.ok()).unwrap().len() == 2
    });
    let pids: Vec<i64> =
        serde_json::from_str(user.berth(&env, &["ps", "--format", "json", &id]).ok()).unwrap();
    user.berth(&env, &["kill", "--all", &id, "KILL"]).ok();
    wait_until("every process to end", || {
        pids.iter().all(|&p| runtime_tests::process_gone(p))
    });
    user.berth(&env, &["delete", &id]).ok();
    assert_nothing_listed(&user, &env);
    let left: Vec<String> = user
        .processes()
        .iter()
        .map(|pid| format!("{pid}: {}", read(Path::new(&format!("/proc/{pid}/stat")))))
        .collect();
    assert_eq!(left, Vec::<String>::new(), "processes of the user are left");
}

/// Whether the parent of this process's cgroup is the user's in every hierarchy: then the
/// container would get a cgroup of its own, and the tests of a host without delegation do not
/// apply.
fn delegated_here(user: &TestUser) -> bool {
    let features = user
        .command(None, &user.berth)
        .arg("features")
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&features.stdout).unwrap();
    let cgroups = doc["annotations"]["io.berth.rootless.cgroups"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    !cgroups.starts_with("none:")
}

#[test]
fn without_a_delegated_cgroup_limits_and_pause_are_refused_and_said() {
    need_rootless!();
    let env = Env::new("rootless-nocg");
    let user = TestUser::new(&env);
    if delegated_here(&user) {
        skip(
            module_path!(),
            "this test's cgroup's parent is delegated to the user here",
        );
        return;
    }
    // features says so.
    let features: Value = serde_json::from_str(user.berth(&env, &["features"]).ok()).unwrap();
    let said = features["annotations"]["io.berth.rootless.cgroups"]
        .as_str()
        .unwrap();
    assert!(
        said.starts_with(&format!(
            "none: no cgroup folder here is delegated to user \"{}\" (uid {})",
            user.name, user.uid
        )),
        "{said}"
    );
    assert!(
        said.contains("limits in linux.resources are refused"),
        "{said}"
    );
    assert_eq!(features["annotations"]["io.berth.rootless"], "true");

    // create --debug says the container has none of its own.
    let id = env.id("nocg");
    let bundle = user.bundle(&env, &id, &["/bin/helper", "pause"], |_| {});
    let debug = user.berth(
        &env,
        &[
            "--debug",
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            &id,
        ],
    );
    debug.ok();
    assert!(
        debug.stderr.contains(&format!(
            "rootless: container \\\"{id}\\\" has no cgroup of its own in"
        )),
        "{}",
        debug.stderr
    );
    user.berth(&env, &["start", &id]).ok();
    user.state(&env, &id);

    // pause, resume, update and stats need the cgroup: each says why it has none.
    let pause = user.berth(&env, &["pause", &id]);
    let err = pause.fails();
    assert!(
        err.starts_with(&format!(
            "berth: error: cannot pause container {id:?}: it has no cgroup of its own (cannot create /sys/fs/cgroup/"
        )),
        "{err}"
    );
    assert!(err.contains("Permission denied"), "{err}");
    assert_eq!(user.state(&env, &id)["status"], "running");
    let update = user.berth(&env, &["update", "--memory", "64m", &id]);
    assert!(
        update.fails().contains("which update needs"),
        "{}",
        update.stderr
    );
    user.berth(&env, &["delete", "--force", &id]).ok();

    // A limit that cannot be applied is refused by name, and nothing is left.
    let id = env.id("limit");
    let bundle = user.bundle(&env, &id, &["/bin/helper", "pause"], |c| {
        c["linux"]["resources"] = json!({"memory": {"limit": 67108864}});
    });
    let create = user.berth(&env, &["create", "--bundle", bundle.to_str().unwrap(), &id]);
    let err = create.fails();
    assert!(
        err.starts_with(
            "berth: error: linux.resources.memory cannot be applied: the container has no cgroup of its own for it, as berth runs rootless (cannot create /sys/fs/cgroup/"
        ),
        "{err}"
    );
    assert_nothing_listed(&user, &env);

    // A cgroupsPath the user may not make fails create, as with runc.
    let id = env.id("path");
    let bundle = user.bundle(&env, &id, &["/bin/helper", "pause"], |c| {
        c["linux"]["cgroupsPath"] = json!(format!("/berth-tests/{id}"));
    });
    let err = user
        .berth(&env, &["create", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert!(
        err.contains("cannot create cgroup /sys/fs/cgroup/"),
        "{err}"
    );
    assert!(err.contains("cgroupsPath asks for this cgroup"), "{err}");
    assert_nothing_listed(&user, &env);
}

#[test]
fn wider_maps_come_from_the_users_subordinate_ids_through_newuidmap() {
    need_rootless!();
    let env = Env::new("rootless-wide");
    let user = TestUser::new(&env);
    let (first, count) = user.subordinate_uids()[0];
    let (gfirst, gcount) = runtime_tests::subordinate_ranges("/etc/subgid", &user.name)[0];
    let count = count.min(65536);
    let id = env.id("wide");
    let bundle = user.bundle(
        &env,
        &id,
        &[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; /bin/helper ids; exec /bin/helper pause",
        ],
        |c| {
            c["linux"]["uidMappings"] = json!([
                {"containerID": 0, "hostID": user.uid, "size": 1},
                {"containerID": 1, "hostID": first, "size": count}]);
            c["linux"]["gidMappings"] = json!([
                {"containerID": 0, "hostID": user.gid, "size": 1},
                {"containerID": 1, "hostID": gfirst, "size": gcount.min(65536)}]);
            c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5]});
        },
    );
    let out = user.create(&env, &bundle, &id, &[]);
    user.berth(&env, &["start", &id]).ok();
    wait_until("the program to pause", || read(&out).contains("pausing"));
    let text = read(&out);
    let lines = fields(&text);
    let line = |a: u64, b: u64, c: u64| vec![a.to_string(), b.to_string(), c.to_string()];
    assert_eq!(lines[0], line(0, user.uid.into(), 1), "{text}");
    assert_eq!(lines[1], line(1, first, count), "{text}");
    assert_eq!(lines[2], line(0, user.gid.into(), 1), "{text}");
    assert!(
        text.contains("uid=1000 gid=1000 euid=1000 egid=1000 groups=5"),
        "supplementary groups are allowed with newgidmap: {text}"
    );
    // From the host, the program runs as the subordinate id that container uid 1000 maps to.
    let pid = user.state(&env, &id)["pid"].as_i64().unwrap();
    let status = read(Path::new(&format!("/proc/{pid}/status")));
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1).unwrap(),
        (first + 999).to_string(),
        "{uid_line}"
    );
    user.berth(&env, &["delete", "--force", &id]).ok();
    assert_nothing_listed(&user, &env);
}

#[test]
fn maps_the_user_may_not_write_are_refused_naming_the_file_and_range() {
    need_rootless!();
    let env = Env::new("rootless-refused");
    let user = TestUser::new(&env);
    let ranges: Vec<String> = user
        .subordinate_uids()
        .iter()
        .map(|(f, c)| format!("{f}-{}", f + c - 1))
        .collect();
    // Host ids beyond the user's ranges.
    let beyond = user
        .subordinate_uids()
        .iter()
        .map(|(f, c)| f + c)
        .max()
        .unwrap()
        + 1_000_000;
    let id = env.id("beyond");
    let bundle = user.bundle(&env, &id, &["true"], |c| {
        c["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": user.uid, "size": 1},
            {"containerID": 1, "hostID": beyond, "size": 10}]);
    });
    let err = user
        .berth(&env, &["run", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert_eq!(
        err.trim_end(),
        format!(
            "berth: error: linux.uidMappings[1] maps host ids {beyond}-{}, which /etc/subuid \
             does not give to user \"{}\" (uid {}): it gives {}",
            beyond + 9,
            user.name,
            user.uid,
            ranges.join(", ")
        )
    );
    assert_nothing_listed(&user, &env);

    // The caller's own gid alone cannot carry supplementary groups (setgroups is denied).
    let id = env.id("groups");
    let bundle = user.bundle(&env, &id, &["true"], |c| {
        c["process"]["user"]["additionalGids"] = json!([5]);
    });
    let err = user
        .berth(&env, &["run", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert!(
        err.starts_with("berth: error: process.user.additionalGids [5] cannot be set: linux.gidMappings maps only the caller's own gid"),
        "{err}"
    );
    assert_nothing_listed(&user, &env);

    // A user without subordinate ids may map only itself.
    let alone = TestUser::without_subordinate_ids(&env);
    let id = env.id("alone");
    let bundle = alone.bundle(&env, &id, &["true"], |c| {
        c["linux"]["gidMappings"] = json!([
            {"containerID": 0, "hostID": alone.gid, "size": 1},
            {"containerID": 1, "hostID": 100000, "size": 65536}]);
    });
    let err = alone
        .berth(&env, &["run", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert_eq!(
        err.trim_end(),
        format!(
            "berth: error: linux.gidMappings[1] maps host ids 100000-165535, which /etc/subgid \
             does not give to user \"{}\" (uid {}): it gives none",
            alone.name, alone.uid
        )
    );
    assert_nothing_listed(&alone, &env);
    // Its own ids alone still work.
    let id = env.id("own");
    let bundle = alone.bundle(&env, &id, &["/bin/helper", "ids"], |_| {});
    let out = alone.berth(&env, &["run", "--bundle", bundle.to_str().unwrap(), &id]);
    // setgroups is denied: the process keeps the one group it had, the user's own, root inside
    assert_eq!(out.ok(), "uid=0 gid=0 euid=0 egid=0 groups=0\n");
}

#[test]
fn host_and_none_networks_work_rootless_and_bridge_is_refused() {
    need_rootless!();
    let env = Env::with_netns("rootless-net");
    let user = TestUser::new(&env);
    let helper = rootfs().join("bin/helper");
    let port = 20000 + (std::process::id() % 5000) as u16;
    let port_text = port.to_string();

    // Host mode: the host's network, a port of 1024 or more reserved in the user's own store.
    let id = env.id("host");
    let bundle = user.bundle(
        &env,
        &id,
        &[
            "/bin/helper",
            "listen",
            "tcp",
            &port_text,
            "from a rootless container",
        ],
        |_| {},
    );
    let out = user.create(&env, &bundle, &id, &["--network", "host", "-p", &port_text]);
    user.berth(&env, &["start", &id]).ok();
    wait_until("the listener", || read(&out).contains("listening"));
    let got = env
        .command(&helper)
        .args(["connect", "127.0.0.1", &port_text])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "from a rootless container\n"
    );
    let reservation = user.root().join(format!(".network/ports/tcp-{port}"));
    assert!(
        reservation.exists(),
        "no reservation at {}",
        reservation.display()
    );
    assert_eq!(std::fs::metadata(&reservation).unwrap().uid(), user.uid);
    // A second container on the port is refused, as for root.
    let second = env.id("second");
    let bundle2 = user.bundle(&env, &second, &["true"], |_| {});
    let err = user
        .berth(
            &env,
            &[
                "run",
                "--network",
                "host",
                "-p",
                &port_text,
                "--bundle",
                bundle2.to_str().unwrap(),
                &second,
            ],
        )
        .fails()
        .to_string();
    assert!(err.contains("RESOURCE:PORTS") && err.contains(&id), "{err}");
    user.berth(&env, &["delete", "--force", &id]).ok();
    assert!(
        !reservation.exists(),
        "the reservation outlived its container"
    );

    // A port an ordinary user's program could not bind is refused up front.
    let err = user
        .berth(
            &env,
            &[
                "run",
                "--network",
                "host",
                "-p",
                "80",
                "--bundle",
                bundle2.to_str().unwrap(),
                &second,
            ],
        )
        .fails()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "berth: error: port 80/tcp in host mode is refused: berth runs as user \"{}\" (uid {})",
            user.name, user.uid
        )),
        "{err}"
    );
    assert!(
        err.contains("ports below 1024 (net.ipv4.ip_unprivileged_port_start)"),
        "{err}"
    );
    assert_nothing_listed(&user, &env);

    // None: a namespace of its own, with only lo, up.
    let none = env.id("none");
    let bundle = user.bundle(
        &env,
        &none,
        &["sh", "-c", "ip -o link; /bin/helper ns"],
        |_| {},
    );
    let run = user.berth(
        &env,
        &[
            "run",
            "--network",
            "none",
            "--bundle",
            bundle.to_str().unwrap(),
            &none,
        ],
    );
    let text = run.ok();
    let links: Vec<&str> = text.lines().filter(|l| l.contains(": <")).collect();
    assert_eq!(links.len(), 1, "{text}");
    assert!(links[0].contains(": lo: <LOOPBACK,UP,LOWER_UP>"), "{text}");
    let host_net = std::fs::metadata(&env.netns.as_ref().unwrap().path)
        .unwrap()
        .ino();
    assert_ne!(parse_namespaces(text)["net"], format!("net:[{host_net}]"));

    // Bridge: refused, pointing at what works, and nothing is left.
    let bridge = env.id("bridge");
    let bundle = user.bundle(&env, &bridge, &["true"], |_| {});
    let err = user
        .berth(
            &env,
            &[
                "run",
                "--network",
                "bridge",
                "--bundle",
                bundle.to_str().unwrap(),
                &bridge,
            ],
        )
        .fails()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "berth: error: bridge mode is refused: berth runs as user \"{}\" (uid {})",
            user.name, user.uid
        )),
        "{err}"
    );
    assert!(
        err.contains("use --network host") && err.contains("--network none"),
        "{err}"
    );
    assert_nothing_listed(&user, &env);
    let links = env.command("ip").args(["-o", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("docker0"));
}

#[test]
fn the_state_folder_and_rootless_flag_follow_runc() {
    need_rootless!();
    let env = Env::new("rootless-flags");
    let user = TestUser::new(&env);
    let id = env.id("flags");
    let bundle = user.bundle(&env, &id, &["true"], |_| {});
    let b = bundle.to_str().unwrap();

    // Without $XDG_RUNTIME_DIR the default is root's /run/berth, which the error explains.
    let run = runtime_tests::run_to_files(
        user.command(None, &user.berth)
            .env_remove("XDG_RUNTIME_DIR")
            .args(["run", "--bundle", b, &id]),
        &env.scratch,
    );
    assert_eq!(
        run.fails().trim_end(),
        format!(
            "berth: error: cannot make --root /run/berth: Permission denied (os error 13): berth \
             runs as user \"{}\" (uid {}); give --root DIR, or set XDG_RUNTIME_DIR (the default \
             is then $XDG_RUNTIME_DIR/berth)",
            user.name, user.uid
        )
    );
    // --root elsewhere works as for root.
    let elsewhere = user.home.join("state");
    let r = elsewhere.to_str().unwrap();
    user.berth(&env, &["--root", r, "run", "--bundle", b, &id])
        .ok();
    assert!(elsewhere.is_dir());
    assert_eq!(
        std::fs::metadata(&elsewhere).unwrap().permissions().mode() & 0o7777,
        0o700
    );

    // --rootless false: berth manages cgroups as root would, and the user may not.
    let err = user
        .berth(&env, &["--rootless", "false", "run", "--bundle", b, &id])
        .fails()
        .to_string();
    assert!(
        err.starts_with("berth: error: cannot create cgroup /sys/fs/cgroup/"),
        "{err}"
    );
    assert!(err.contains("Permission denied"), "{err}");
    assert_nothing_listed(&user, &env);
    // --rootless true and auto are what an ordinary user gets anyway.
    for value in ["true", "auto"] {
        user.berth(
            &env,
            &[&format!("--rootless={value}"), "run", "--bundle", b, &id],
        )
        .ok();
    }
    let bad = user.berth(&env, &["--rootless", "maybe", "list"]);
    assert_eq!(
        bad.fails().trim_end(),
        "berth: error: --rootless \"maybe\" is not one of auto, true or false"
    );
}

/// A cgroup2 folder root makes and gives to the user, as systemd's `Delegate=yes` does: the
/// folder and its `cgroup.procs`, `cgroup.subtree_control` and `cgroup.threads`; the user's
/// commands start in `shell` below it. Removed on drop, with whatever still runs in it (only
/// the test user's processes can), whichever of it and the user goes first.
struct Delegated {
    dir: PathBuf,
}

impl Delegated {
    fn new(env: &Env, user: &TestUser) -> Delegated {
        let dir = Path::new("/sys/fs/cgroup").join(format!("berth-rl-{}", env.name));
        std::fs::create_dir(&dir).unwrap();
        let delegated = Delegated { dir: dir.clone() };
        // the controllers the limits below need, from the root down
        for controller in ["memory", "pids"] {
            std::fs::write(
                "/sys/fs/cgroup/cgroup.subtree_control",
                format!("+{controller}"),
            )
            .unwrap();
        }
        for file in [
            "",
            "cgroup.procs",
            "cgroup.subtree_control",
            "cgroup.threads",
        ] {
            std::os::unix::fs::chown(dir.join(file), Some(user.uid), Some(user.gid)).unwrap();
        }
        let shell = dir.join("shell");
        std::fs::create_dir(&shell).unwrap();
        for file in ["", "cgroup.procs"] {
            std::os::unix::fs::chown(shell.join(file), Some(user.uid), Some(user.gid)).unwrap();
        }
        delegated
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        let events = self.dir.join("cgroup.events");
        for _ in 0..500 {
            if !read(&events).contains("populated 1") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        remove_tree(&self.dir);
    }
}

/// Removes a cgroup folder and those below it, deepest first.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[test]
fn a_delegated_cgroup_v2_folder_takes_limits_pause_and_resume() {
    need_rootless!();
    if std::fs::metadata("/sys/fs/cgroup/cgroup.controllers").is_err() {
        skip(
            module_path!(),
            "needs pure cgroup v2 to delegate a folder with controllers (scripts/test runs it in the cgroup v2 VM)",
        );
        return;
    }
    let env = Env::new("rootless-deleg");
    let mut user = TestUser::new(&env);
    let delegated = Delegated::new(&env, &user);
    user.cgroup = Some(delegated.dir.join("shell"));
    let features: Value = serde_json::from_str(user.berth(&env, &["features"]).ok()).unwrap();
    let said = features["annotations"]["io.berth.rootless.cgroups"]
        .as_str()
        .unwrap();
    assert!(
        said.starts_with(&format!(
            "delegated to user \"{}\" (uid {}): containers get a cgroup of their own below {} (cgroup v2, controllers: ",
            user.name,
            user.uid,
            delegated.dir.display()
        )),
        "{said}"
    );

    let id = env.id("deleg");
    let bundle = user.bundle(
        &env,
        &id,
        &[
            "sh",
            "-c",
            "/bin/helper sleep 1000 & exec /bin/helper pause",
        ],
        |c| {
            c["linux"]["resources"] = json!({"memory": {"limit": 67108864}, "pids": {"limit": 20}});
        },
    );
    let out = user.create(&env, &bundle, &id, &[]);
    let cgroup = delegated.dir.join(&id);
    assert_eq!(read(&cgroup.join("memory.max")).trim(), "67108864");
    assert_eq!(read(&cgroup.join("pids.max")).trim(), "20");
    assert_eq!(std::fs::metadata(&cgroup).unwrap().uid(), user.uid);
    user.berth(&env, &["start", &id]).ok();
    wait_until("the program to pause", || read(&out).contains("pausing"));
    // ps goes by the cgroup.
    let mut procs: Vec<i64> = Vec::new();
    wait_until("both processes in the cgroup", || {
        procs = read(&cgroup.join("cgroup.procs"))
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        procs.len() == 2
    });
    procs.sort();
    let ps: Vec<i64> =
        serde_json::from_str(user.berth(&env, &["ps", "--format", "json", &id]).ok()).unwrap();
    assert_eq!(ps, procs);

    user.berth(&env, &["pause", &id]).ok();
    assert_eq!(user.state(&env, &id)["status"], "paused");
    assert!(read(&cgroup.join("cgroup.events")).contains("frozen 1"));
    user.berth(&env, &["resume", &id]).ok();
    assert_eq!(user.state(&env, &id)["status"], "running");
    user.berth(&env, &["update", "--memory", "33554432", &id])
        .ok();
    assert_eq!(read(&cgroup.join("memory.max")).trim(), "33554432");

    user.berth(&env, &["kill", "--all", &id, "KILL"]).ok();
    wait_until("the container to stop", || {
        user.state(&env, &id)["status"] == "stopped"
    });
    user.berth(&env, &["delete", &id]).ok();
    assert!(!cgroup.exists(), "the container's cgroup is left");
    assert_nothing_listed(&user, &env);

    // A cgroup the user may not make, named by cgroupsPath, fails create and leaves nothing.
    let id = env.id("outside");
    let bundle = user.bundle(&env, &id, &["true"], |c| {
        c["linux"]["cgroupsPath"] = json!(format!("/berth-tests/{id}"));
    });
    let err = user
        .berth(&env, &["run", "--bundle", bundle.to_str().unwrap(), &id])
        .fails()
        .to_string();
    assert!(
        err.starts_with("berth: error: cannot create cgroup /sys/fs/cgroup/berth-tests")
            && err.contains("Permission denied")
            && err.contains("cgroupsPath asks for this cgroup"),
        "{err}"
    );
    assert_nothing_listed(&user, &env);
}

/// CVE-2019-5736 and a rootless container: until `start`, the container's init is a clone of
/// berth, and `/proc/INIT/exe` is berth's binary, here the user's own (writable by the user, as a
/// `cargo install`ed berth is). The init was dumpable for a moment, while its maps were written
/// and before any process of the container existed; after that it must be non-dumpable again, so
/// that not even the user (whose uid is the container's root) can resolve that link. Nothing can
/// enter the created container meanwhile: `exec` is refused, saying why.
#[test]
fn a_rootless_containers_created_init_keeps_berths_binary_out_of_reach() {
    need_rootless!();
    let env = Env::new("rootless-exe");
    let user = TestUser::new(&env);
    let own = user.home.join("own-berth");
    std::fs::copy(runtime_tests::berth_bin(), &own).unwrap();
    std::os::unix::fs::chown(&own, Some(user.uid), Some(user.gid)).unwrap();
    let berth = |args: &[&str]| {
        runtime_tests::run_to_files(user.command(None, &own).args(args), &env.scratch)
    };
    let id = env.id("exe");
    let bundle = user.bundle(&env, &id, &["/bin/helper", "pause"], |_| {});
    berth(&["create", "--bundle", bundle.to_str().unwrap(), &id]).ok();
    let init = user.state(&env, &id)["pid"].as_i64().unwrap();
    // root sees what the init is; the user, its container's root, may not
    assert_eq!(
        std::fs::read_link(format!("/proc/{init}/exe")).unwrap(),
        own
    );
    let exe = format!("/proc/{init}/exe");
    let look = runtime_tests::run_to_files(
        user.command(None, "sh")
            .args([
                "-c",
                "readlink \"$0\" || echo refused; cat \"$0\" >/dev/null || echo refused",
            ])
            .arg(&exe),
        &env.scratch,
    );
    assert_eq!(look.stdout, "refused\nrefused\n", "{}", look.stderr);
    assert!(look.stderr.contains("Permission denied"), "{}", look.stderr);
    let err = berth(&["exec", &id, "true"]).fails().to_string();
    assert_eq!(
        err.trim_end(),
        format!(
            "berth: error: cannot exec in container {id:?} before it starts: berth runs as an \
             ordinary user, and the container's init, a clone of berth until then, is kept \
             non-dumpable so that no process can reach berth's binary through it, which also \
             keeps its namespaces from the user; start it first"
        )
    );
    // Once started, the init is the container's program, and exec works.
    berth(&["start", &id]).ok();
    wait_until("the init to run its program", || {
        std::fs::read_link(&exe).is_ok_and(|e| e != own)
    });
    assert_eq!(berth(&["exec", &id, "id", "-u"]).ok(), "0\n");
    berth(&["delete", "--force", &id]).ok();
    assert_nothing_listed(&user, &env);
}
