//! Root tests of the network module. Each runs on a thread of its own that unshares its network
//! namespace, which then plays the host: the bridge, veths and NAT rules live and die there, and
//! nothing is sent anywhere but that namespace's loopback and its own containers. A "container"
//! is a `sleep` started in a further fresh namespace. Without root each test says so and passes.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{setns, unshare, CloneFlags};
use serde_json::Value;

use super::bridge::{clean_idle, ensure_bridge, MTU, VETH_LINGER};
use super::ipam;
use super::netlink::Netlink;
use super::store::Store;
use super::*;

/// The request as the command line makes it, from the flags' text.
fn request_from(
    spec: &oci_spec::runtime::Spec,
    mode: Option<&str>,
    publish: &[String],
) -> Result<NetworkRequest, NetworkError> {
    super::request_from(spec, &NetworkOverride::from_flags(mode, publish)?)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips the test without root, on a line of its own starting "SKIP" that scripts/test collects.
/// The line goes straight to standard error: the test harness would keep an `eprintln!` to itself.
macro_rules! require_root {
    () => {
        if !is_root() {
            let _ = writeln!(
                io::stderr(),
                "\nSKIP {}: makes network namespaces and needs root",
                module_path!()
            );
            return;
        }
    };
}

/// Runs `body` on a new thread whose own fresh network namespace plays the host.
fn in_throwaway_host<T: Send>(body: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = scope.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare the test thread's network namespace");
            let mut netlink = Netlink::open().unwrap();
            netlink.set_up(1, "lo").unwrap();
            body()
        });
        thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A berth root folder of its own, removed afterwards.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(name: &str) -> TempRoot {
        let path = std::env::temp_dir().join(format!("berth-net-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempRoot(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// The records left in the store's `sub` folder (`leases/BRIDGE`, `ports` or `bridges`).
    fn records(&self, sub: &str) -> Vec<String> {
        match fs::read_dir(self.0.join(".network").join(sub)) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A process in a fresh network namespace, standing in for a container's init.
struct Container(Child);

impl Container {
    fn start() -> Container {
        let mut command = Command::new("sleep");
        command.arg("600");
        // SAFETY: between fork and exec the child only makes the unshare system call, which
        // allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(|| unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from));
        }
        Container(
            command
                .spawn()
                .expect("start sleep in a new network namespace"),
        )
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    /// Runs a command inside the container's network namespace.
    fn run(&self, args: &[&str]) -> Output {
        let pid = self.pid().to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-n", "--"])
            .args(args)
            .output()
            .expect("run nsenter")
    }

    fn ip_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["ip", "-j"];
        full.extend(args);
        let output = self.run(&full);
        assert!(output.status.success(), "{full:?}: {output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ip -j ARGS` in the namespace that plays the host; `Null` when ip fails (e.g. no such link).
fn host_ip_json(args: &[&str]) -> Value {
    let output = Command::new("ip").arg("-j").args(args).output().unwrap();
    if !output.status.success() {
        return Value::Null;
    }
    serde_json::from_slice(&output.stdout).unwrap()
}

fn host_link_names() -> Vec<String> {
    host_ip_json(&["link"])
        .as_array()
        .unwrap()
        .iter()
        .map(|link| link["ifname"].as_str().unwrap().to_string())
        .collect()
}

fn nft_ruleset() -> String {
    let output = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The map of published ports, as `nft` lists it; empty when there is no table.
fn published_map() -> String {
    let output = Command::new("nft")
        .args(["list", "map", "ip", "berth-docker0", "ports"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ping(from: Option<&Container>, address: Ipv4Addr) -> bool {
    let address = address.to_string();
    let args = ["busybox", "ping", "-c", "1", "-W", "2", &address];
    let output = match from {
        Some(container) => container.run(&args),
        None => Command::new(args[0]).args(&args[1..]).output().unwrap(),
    };
    output.status.success()
}

fn bridge_request(ports: &[&str]) -> NetworkRequest {
    let publish: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    request_from(
        &oci_spec::runtime::Spec::default(),
        Some("bridge"),
        &publish,
    )
    .unwrap()
}

/// oci-spec's default spec without its network namespace: one that leaves the mode to berth.
fn spec_without_netns() -> oci_spec::runtime::Spec {
    let mut spec = oci_spec::runtime::Spec::default();
    let linux = spec.linux_mut().as_mut().unwrap();
    let namespaces = linux.namespaces_mut().as_mut().unwrap();
    namespaces.retain(|ns| ns.typ() != oci_spec::runtime::LinuxNamespaceType::Network);
    spec
}

fn host_request(ports: &[&str]) -> NetworkRequest {
    let publish: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
    request_from(&spec_without_netns(), Some("host"), &publish).unwrap()
}

/// Asserts that nothing of berth's containers is left in the namespace or the store, once the
/// kernel had time to remove their veths (a veth whose namespace lives on, as with a test's
/// `Container` still running, is deleted by the next store lock a second after its release).
/// Then the cleaner's work, which takes down the bridge berth made and its tables.
fn assert_nothing_left(root: &TempRoot) {
    let deadline = Instant::now() + VETH_LINGER + Duration::from_millis(300);
    while host_link_names().iter().any(|l| l.starts_with("veth")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // any command that locks the store settles released leases; this one releases nothing
    release(root.path(), "nothing-to-release").unwrap();
    let links = host_link_names();
    assert!(
        !links.iter().any(|l| l.starts_with("veth")),
        "links left: {links:?}"
    );
    if links.iter().any(|l| l == "docker0") {
        let ports = host_ip_json(&["link", "show", "master", "docker0"]);
        assert_eq!(ports, serde_json::json!([]), "ports left on docker0");
        let neighbours = host_ip_json(&["neigh", "show", "dev", "docker0", "nud", "permanent"]);
        assert_eq!(neighbours, serde_json::json!([]), "address claims left");
        let localnet = fs::read_to_string("/proc/sys/net/ipv4/conf/docker0/route_localnet");
        assert_eq!(localnet.unwrap().trim(), "0", "route_localnet left on");
    }
    assert!(!published_map().contains("elements"), "{}", published_map());
    assert_eq!(root.records("leases/docker0"), Vec::<String>::new());
    assert_eq!(root.records("ports"), Vec::<String>::new());
    // and what the cleaner forked off by the last release does (here in-process): the bridge
    // berth made and its tables go, with the record that said they were berth's
    let deadline = Instant::now() + VETH_LINGER * 3;
    while clean_idle(root.path()).unwrap() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!host_link_names().contains(&"docker0".to_string()));
    assert!(
        !nft_ruleset().contains("berth-docker0"),
        "{}",
        nft_ruleset()
    );
    assert_eq!(root.records("bridges"), Vec::<String>::new());
}

#[test]
fn bridge_container_gets_eth0_address_route_and_the_bridge() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("eth0");
        let container = Container::start();
        let req = bridge_request(&[]);
        let reservation = reserve(root.path(), "web", &req).unwrap();
        let state = attach(root.path(), "web", &req, &reservation, container.pid()).unwrap();
        let lease = state.lease.clone().unwrap();
        assert_eq!(lease.address, Ipv4Addr::new(172, 17, 0, 2));

        let eth0 = &container.ip_json(&["addr", "show", "dev", "eth0"])[0];
        assert_eq!(eth0["address"], "02:42:ac:11:00:02");
        assert_eq!(eth0["mtu"], 1500);
        assert!(eth0["flags"].as_array().unwrap().contains(&"UP".into()));
        let inet = &eth0["addr_info"][0];
        assert_eq!(
            (inet["local"].as_str(), inet["prefixlen"].as_u64()),
            (Some("172.17.0.2"), Some(16))
        );
        let lo = &container.ip_json(&["link", "show", "dev", "lo"])[0];
        assert!(lo["flags"].as_array().unwrap().contains(&"UP".into()));
        let default = &container.ip_json(&["route", "show", "default"])[0];
        assert_eq!(default["gateway"], "172.17.0.1");
        assert_eq!(default["dev"], "eth0");

        let bridge = &host_ip_json(&["addr", "show", "dev", "docker0"])[0];
        assert_eq!(bridge["mtu"], 1500);
        assert!(bridge["flags"].as_array().unwrap().contains(&"UP".into()));
        assert_eq!(bridge["addr_info"][0]["local"], "172.17.0.1");
        assert_eq!(bridge["addr_info"][0]["prefixlen"], 16);
        let veth = &host_ip_json(&["link", "show", "dev", &lease.host_veth])[0];
        assert_eq!(veth["master"], "docker0");
        assert!(veth["flags"].as_array().unwrap().contains(&"UP".into()));
        // the bridge keeps the MAC berth gave it, not its port's
        assert_ne!(bridge["address"], veth["address"]);
        assert_eq!(
            fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap()
                .trim(),
            "1"
        );
        let ruleset = nft_ruleset();
        assert!(
            ruleset.contains("ip saddr 172.17.0.0/16 oifname != \"docker0\" masquerade"),
            "{ruleset}"
        );

        let settings = inspect_settings(&state, Some(container.pid()));
        assert_eq!(settings["IPAddress"], "172.17.0.2");
        assert_eq!(settings["HostVeth"], lease.host_veth.as_str());

        release(root.path(), "web").unwrap();
        assert_nothing_left(&root);
        release(root.path(), "web").unwrap();
    });
}

#[test]
fn containers_ping_the_gateway_each_other_and_the_host_pings_them() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("ping");
        let (a, b) = (Container::start(), Container::start());
        let req = bridge_request(&[]);
        let mut addresses = Vec::new();
        for (id, container) in [("a", &a), ("b", &b)] {
            let reservation = reserve(root.path(), id, &req).unwrap();
            attach(root.path(), id, &req, &reservation, container.pid()).unwrap();
            addresses.push(reservation.lease.unwrap().address);
        }
        let gateway = Ipv4Addr::new(172, 17, 0, 1);
        assert!(ping(Some(&a), gateway), "a to the gateway");
        assert!(ping(Some(&a), addresses[1]), "a to b");
        assert!(ping(Some(&b), addresses[0]), "b to a");
        assert!(ping(None, addresses[0]), "host to a");

        release(root.path(), "a").unwrap();
        // b still uses the bridge, so it stays
        assert!(host_link_names().contains(&"docker0".to_string()));
        assert!(ping(Some(&b), gateway), "b after a left");
        release(root.path(), "b").unwrap();
        assert_nothing_left(&root);
    });
}

/// Reserves, and attaches when given a pid, in a child process: the test binary running
/// `helper_reserve_in_child` with its orders in the environment.
fn reserve_in_child(root: &Path, id: &str, mode: &str, pid: Option<i32>) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "network::tests::helper_reserve_in_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BERTH_TEST_ROOT", root)
        .env("BERTH_TEST_ID", id)
        .env("BERTH_TEST_MODE", mode)
        .stdout(Stdio::piped());
    if let Some(pid) = pid {
        command.env("BERTH_TEST_PID", pid.to_string());
    }
    command.spawn().unwrap()
}

#[test]
#[ignore = "a helper that other tests run in a child process"]
fn helper_reserve_in_child() {
    let Ok(root) = std::env::var("BERTH_TEST_ROOT") else {
        eprintln!("nothing to do: run by reserve_in_child");
        return;
    };
    let id = std::env::var("BERTH_TEST_ID").unwrap();
    let req = match std::env::var("BERTH_TEST_MODE").unwrap().as_str() {
        "host" => host_request(&["4000/tcp"]),
        _ => bridge_request(&[]),
    };
    let reservation = reserve(Path::new(&root), &id, &req).unwrap();
    if let Ok(pid) = std::env::var("BERTH_TEST_PID") {
        attach(
            Path::new(&root),
            &id,
            &req,
            &reservation,
            pid.parse().unwrap(),
        )
        .unwrap();
    }
    if let Some(lease) = reservation.lease {
        println!("LEASE {}", lease.address);
    }
}

fn lease_printed_by(child: Child) -> Ipv4Addr {
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    // libtest may print its own "test ... " before the line on the same line
    text.lines()
        .find_map(|line| line.split_once("LEASE ").map(|(_, address)| address))
        .unwrap_or_else(|| panic!("no lease in {text}"))
        .parse()
        .unwrap()
}

#[test]
fn thirty_parallel_bridge_containers_get_distinct_addresses() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("thirty");
        let containers: Vec<Container> = (0..30).map(|_| Container::start()).collect();
        // each container's state folder, which the runtime makes before it reserves
        for n in 0..30 {
            fs::create_dir(root.path().join(format!("c{n}"))).unwrap();
        }
        let children: Vec<Child> = containers
            .iter()
            .enumerate()
            .map(|(n, c)| reserve_in_child(root.path(), &format!("c{n}"), "bridge", Some(c.pid())))
            .collect();
        let addresses: Vec<Ipv4Addr> = children.into_iter().map(lease_printed_by).collect();
        let distinct: HashSet<&Ipv4Addr> = addresses.iter().collect();
        assert_eq!(distinct.len(), 30, "{addresses:?}");
        for (container, address) in containers.iter().zip(&addresses) {
            let eth0 = &container.ip_json(&["addr", "show", "dev", "eth0"])[0];
            assert_eq!(eth0["addr_info"][0]["local"], address.to_string());
        }
        assert!(ping(Some(&containers[0]), addresses[29]));
        assert_eq!(root.records("leases/docker0").len(), 30);

        for n in 0..30 {
            release(root.path(), &format!("c{n}")).unwrap();
        }
        assert_nothing_left(&root);
    });
}

#[test]
fn host_mode_port_conflicts_name_the_holder_and_leave_nothing() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("conflicts");
        let req = host_request(&["3000/tcp"]);
        reserve(root.path(), "web", &req).unwrap();
        let err = reserve(root.path(), "web2", &req).unwrap_err().to_string();
        assert!(err.contains("RESOURCE:PORTS"), "{err}");
        assert!(err.contains("3000/tcp"), "{err}");
        assert!(err.contains("container \"web\""), "{err}");
        assert_eq!(root.records("ports"), vec!["tcp-3000".to_string()]);

        let tcp = TcpListener::bind("0.0.0.0:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let err = reserve(root.path(), "tcp", &host_request(&[&format!("{port}/tcp")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RESOURCE:PORTS"), "{err}");
        assert!(err.contains(&format!("{port}/tcp")), "{err}");
        assert!(err.contains("a listener on the host"), "{err}");
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        let err = reserve(root.path(), "udp", &host_request(&[&format!("{port}/udp")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("RESOURCE:PORTS: port {port}/udp")),
            "{err}"
        );
        assert!(err.contains("a listener on the host"), "{err}");
        // the same number on the other protocol is free
        reserve(root.path(), "udp3000", &host_request(&["3000/udp"])).unwrap();
        assert_eq!(root.records("ports").len(), 2);

        // a bridge container cannot publish a port a host-mode container holds either
        let err = reserve(root.path(), "b", &bridge_request(&["3000:80/tcp"])).unwrap_err();
        assert!(
            matches!(err, NetworkError::PortInUse { port: 3000, .. }),
            "{err}"
        );
        assert_eq!(root.records("leases/docker0"), Vec::<String>::new());

        release(root.path(), "web").unwrap();
        reserve(root.path(), "web2", &req).unwrap();
        release(root.path(), "web2").unwrap();
        release(root.path(), "udp3000").unwrap();
        assert_nothing_left(&root);
    });
}

#[test]
fn host_mode_refuses_a_remapped_port() {
    let mut req = host_request(&["3000/tcp"]);
    req.ports[0].host_port = 3001;
    let root = TempRoot::new("remapped");
    let err = reserve(root.path(), "web", &req).unwrap_err().to_string();
    assert!(err.contains("3001:3000/tcp"), "{err}");
    assert_eq!(root.records("ports"), Vec::<String>::new());
}

#[test]
fn records_of_vanished_containers_are_reclaimed() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("reclaim");
        // a container that reserved port 4000 and an address in a create process now ended;
        // while its state folder exists, it still holds them
        fs::create_dir(root.path().join("ghost")).unwrap();
        lease_printed_by(reserve_in_child(root.path(), "ghost", "bridge", None));
        let host_child = reserve_in_child(root.path(), "ghost", "host", None);
        assert!(host_child.wait_with_output().unwrap().status.success());
        let err = reserve(root.path(), "next", &host_request(&["4000/tcp"])).unwrap_err();
        assert!(err.to_string().contains("container \"ghost\""), "{err}");
        let lease = reserve(root.path(), "next", &bridge_request(&[]))
            .unwrap()
            .lease
            .unwrap();
        assert_eq!(lease.address, Ipv4Addr::new(172, 17, 0, 3));
        release(root.path(), "next").unwrap();
        // once it is gone, the next reserve takes them back
        fs::remove_dir(root.path().join("ghost")).unwrap();
        reserve(root.path(), "next", &host_request(&["4000/tcp"])).unwrap();
        let lease = reserve(root.path(), "next2", &bridge_request(&[]))
            .unwrap()
            .lease
            .unwrap();
        assert_eq!(lease.address, Ipv4Addr::new(172, 17, 0, 2));
        release(root.path(), "next").unwrap();
        release(root.path(), "next2").unwrap();
        assert_nothing_left(&root);
    });
}

/// Waits up to 2 s for the kernel to remove a link.
fn wait_until_gone(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while host_link_names().iter().any(|link| link == name) {
        assert!(Instant::now() < deadline, "{name} is still there");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_released_veth_keeps_its_address_until_it_is_gone() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("released");
        let req = bridge_request(&[]);
        let keeper = Container::start();
        let kept = reserve(root.path(), "keeper", &req).unwrap();
        attach(root.path(), "keeper", &req, &kept, keeper.pid()).unwrap();
        let start = |id: &str| {
            let container = Container::start();
            let reservation = reserve(root.path(), id, &req).unwrap();
            attach(root.path(), id, &req, &reservation, container.pid()).unwrap();
            (container, reservation.lease.unwrap())
        };

        // A container that ends: the kernel removes its veth with its namespace, and the
        // next reserve takes its address back.
        let (ending, lease) = start("ending");
        drop(ending);
        release(root.path(), "ending").unwrap();
        wait_until_gone(&lease.host_veth);
        let next = reserve(root.path(), "next", &req).unwrap().lease.unwrap();
        assert_eq!(next.address, lease.address);
        release(root.path(), "next").unwrap();

        // A namespace that outlives its container (here its process still runs, as when
        // something else holds it): the veth stays, and so do its address and name.
        let (_held, lease) = start("held");
        release(root.path(), "held").unwrap();
        assert!(host_link_names().contains(&lease.host_veth));
        assert_eq!(root.records("leases/docker0").len(), 2);
        let next = reserve(root.path(), "next", &req).unwrap().lease.unwrap();
        assert_ne!(next.address, lease.address);
        assert_ne!(next.host_veth, lease.host_veth);
        release(root.path(), "next").unwrap();
        // A second later, the next reserve deletes the veth and takes the address back.
        std::thread::sleep(VETH_LINGER + Duration::from_millis(100));
        let next = reserve(root.path(), "next", &req).unwrap().lease.unwrap();
        assert!(!host_link_names().contains(&lease.host_veth));
        assert_eq!(next.address, lease.address);
        release(root.path(), "next").unwrap();

        // The last container on the bridge leaves its veth to the kernel like any other, and
        // the bridge stays for the cleaner to take down (see assert_nothing_left).
        let (held, lease) = start("held-2");
        release(root.path(), "held-2").unwrap();
        assert!(host_link_names().contains(&lease.host_veth));
        drop((held, keeper));
        release(root.path(), "keeper").unwrap();
        assert!(host_link_names().contains(&"docker0".to_string()));
        assert_nothing_left(&root);
    });
}

#[test]
fn the_cleaner_leaves_a_bridge_a_container_came_back_to_and_takes_an_idle_one_down() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("cleaner");
        let req = bridge_request(&["8080:80/tcp"]);
        let start = |id: &str| {
            let container = Container::start();
            let reservation = reserve(root.path(), id, &req).unwrap();
            attach(root.path(), id, &req, &reservation, container.pid()).unwrap();
            container
        };
        let clean = || {
            let deadline = Instant::now() + VETH_LINGER * 3;
            while clean_idle(root.path()).unwrap() {
                assert!(Instant::now() < deadline, "the cleaner waits for ever");
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        // The last container goes, and another comes before the cleaner looks: the bridge, its
        // tables and route_localnet stay for it.
        drop(start("first"));
        release(root.path(), "first").unwrap();
        let next = start("next");
        clean();
        assert!(host_link_names().contains(&"docker0".to_string()));
        assert!(nft_ruleset().contains("table ip berth-docker0"));
        assert!(nft_ruleset().contains("table bridge berth-docker0"));
        let localnet = fs::read_to_string("/proc/sys/net/ipv4/conf/docker0/route_localnet");
        assert_eq!(localnet.unwrap().trim(), "1");
        assert!(ping(Some(&next), Ipv4Addr::new(172, 17, 0, 1)));
        assert_eq!(root.records("bridges"), ["docker0"]);
        // Once it goes too, nothing is left after the cleaner.
        drop(next);
        release(root.path(), "next").unwrap();
        assert_nothing_left(&root);
    });
}

/// Serves `connections` TCP connections on port 80 and echoes `datagrams` UDP datagrams on
/// port 53 inside the container's namespace, from a thread that enters it.
fn serve_inside(
    container: &Container,
    connections: usize,
    datagrams: usize,
) -> std::thread::JoinHandle<()> {
    let netns = File::open(format!("/proc/{}/ns/net", container.pid())).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        setns(&netns, CloneFlags::CLONE_NEWNET).unwrap();
        let tcp = TcpListener::bind("0.0.0.0:80").unwrap();
        let udp = UdpSocket::bind("0.0.0.0:53").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        ready_tx.send(()).unwrap();
        for _ in 0..connections {
            let (mut stream, peer) = tcp.accept().unwrap();
            writeln!(stream, "hello {peer}").unwrap();
        }
        let mut buffer = [0u8; 64];
        for _ in 0..datagrams {
            let (length, peer) = udp.recv_from(&mut buffer).unwrap();
            udp.send_to(&buffer[..length], peer).unwrap();
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    server
}

fn fetch(address: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut line = String::new();
    BufReader::new(&mut stream).read_line(&mut line)?;
    Ok(line)
}

fn echo_udp(address: &str) -> io::Result<String> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(3)))?;
    socket.send_to(b"ping", address)?;
    let mut buffer = [0u8; 64];
    let length = socket.recv(&mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer[..length]).into_owned())
}

fn check_published_ports() {
    // bridged traffic bypasses the host's netfilter, so the hairpin below relies on berth's
    // masquerade and not on br_netfilter undoing the DNAT on the bridge (per namespace)
    let br_netfilter = Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables");
    if br_netfilter.exists() {
        fs::write(br_netfilter, "0").unwrap();
    }
    let root = TempRoot::new("publish");
    let container = Container::start();
    let req = bridge_request(&["8080:80/tcp", "5353:53/udp"]);
    let reservation = reserve(root.path(), "web", &req).unwrap();
    let server = serve_inside(&container, 3, 2);
    attach(root.path(), "web", &req, &reservation, container.pid()).unwrap();
    // a second container on the bridge, publishing nothing
    let other = Container::start();
    let plain = bridge_request(&[]);
    let other_reservation = reserve(root.path(), "other", &plain).unwrap();
    attach(
        root.path(),
        "other",
        &plain,
        &other_reservation,
        other.pid(),
    )
    .unwrap();
    let ruleset = nft_ruleset();
    assert!(
        ruleset.contains("tcp . 8080 : 172.17.0.2 . 80"),
        "{ruleset}"
    );

    let from_loopback = fetch("127.0.0.1:8080").unwrap();
    // the bridge masquerades loopback sources, so the container sees the gateway
    assert!(
        from_loopback.starts_with("hello 172.17.0.1:"),
        "{from_loopback}"
    );
    assert!(fetch("172.17.0.1:8080")
        .unwrap()
        .starts_with("hello 172.17.0.1:"));
    // from the other container through the host's published port, masqueraded as the gateway
    // so that the answer comes back the same way
    let hairpin = other.run(&["busybox", "nc", "-w", "3", "172.17.0.1", "8080"]);
    let answer = String::from_utf8_lossy(&hairpin.stdout).into_owned();
    assert!(answer.starts_with("hello 172.17.0.1:"), "{hairpin:?}");
    assert_eq!(echo_udp("127.0.0.1:5353").unwrap(), "ping");
    assert_eq!(echo_udp("172.17.0.1:5353").unwrap(), "ping");
    server.join().unwrap();

    release(root.path(), "web").unwrap();
    assert!(fetch("127.0.0.1:8080").is_err());
    // the other container keeps the bridge and its masquerade; the port is gone
    let ruleset = nft_ruleset();
    assert!(!ruleset.contains("8080"), "{ruleset}");
    assert!(ruleset.contains("masquerade"), "{ruleset}");
    assert!(ping(Some(&other), Ipv4Addr::new(172, 17, 0, 1)));
    release(root.path(), "other").unwrap();
    assert_nothing_left(&root);
}

#[test]
fn published_ports_reach_the_container() {
    require_root!();
    in_throwaway_host(check_published_ports);
}

#[test]
fn release_undoes_a_half_done_attach() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("half-done");
        let container = Container::start();
        let req = bridge_request(&["8080:80/tcp"]);
        let lease = reserve(root.path(), "web", &req).unwrap().lease.unwrap();
        // what a berth killed in the middle of attach leaves: the bridge, its rules, the veth
        let mut host = Netlink::open().unwrap();
        let store = Store::lock(root.path()).unwrap();
        let index = ensure_bridge(&store, &mut host, &lease.bridge, lease.subnet).unwrap();
        drop(store);
        let netns = File::open(format!("/proc/{}/ns/net", container.pid())).unwrap();
        let mac = super::ipam::mac_for(lease.address);
        host.create_veth(&lease.host_veth, index, MTU, "eth0", mac, &netns)
            .unwrap();
        assert!(host_link_names().contains(&lease.host_veth));

        release(root.path(), "web").unwrap();
        assert_nothing_left(&root);
        let eth0 = container.run(&["ip", "link", "show", "eth0"]);
        assert!(!eth0.status.success(), "eth0 went with its veth");
    });
}

#[test]
fn a_failed_attach_is_undone_by_release() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("failed-attach");
        let req = bridge_request(&[]);
        let reservation = reserve(root.path(), "web", &req).unwrap();
        // the init died before attach: its namespace cannot be opened
        let mut gone = Command::new("true").spawn().unwrap();
        let pid = gone.id() as i32;
        gone.wait().unwrap();
        let err = attach(root.path(), "web", &req, &reservation, pid).unwrap_err();
        assert!(
            err.to_string().contains(&format!("/proc/{pid}/ns/net")),
            "{err}"
        );
        release(root.path(), "web").unwrap();
        assert_nothing_left(&root);
    });
}

#[test]
fn a_bridge_berth_did_not_make_is_shared_from_the_top_and_left_in_place() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("foreign");
        // docker0 as a running Docker leaves it, with one address beside its own in use
        let mut host = Netlink::open().unwrap();
        host.create_bridge("docker0", 1500, [0x02, 0, 0, 0, 0, 1])
            .unwrap();
        let index = host.link("docker0").unwrap().unwrap().index;
        host.add_address(index, "docker0", Ipv4Addr::new(172, 17, 0, 1), 16)
            .unwrap();
        host.add_address(index, "docker0", Ipv4Addr::new(172, 17, 255, 254), 16)
            .unwrap();
        // and a container of its own it has talked to, known only as a neighbour
        let neighbour = Command::new("ip")
            .args([
                "neigh",
                "add",
                "172.17.255.253",
                "lladdr",
                "02:42:ac:11:ff:fd",
            ])
            .args(["dev", "docker0", "nud", "permanent"])
            .status()
            .unwrap();
        assert!(neighbour.success());

        let container = Container::start();
        let req = bridge_request(&[]);
        let reservation = reserve(root.path(), "web", &req).unwrap();
        let address = reservation.lease.as_ref().unwrap().address;
        assert_eq!(address, Ipv4Addr::new(172, 17, 255, 252));
        attach(root.path(), "web", &req, &reservation, container.pid()).unwrap();
        assert!(ping(Some(&container), Ipv4Addr::new(172, 17, 0, 1)));

        let veth = reservation.lease.unwrap().host_veth;
        drop(container);
        release(root.path(), "web").unwrap();
        wait_until_gone(&veth);
        release(root.path(), "settle").unwrap();
        // what the cleaner forked off by that release does, here in-process
        assert!(!clean_idle(root.path()).unwrap());
        let bridge = &host_ip_json(&["addr", "show", "dev", "docker0"])[0];
        let addresses: Vec<&str> = bridge["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["family"] == "inet")
            .map(|a| a["local"].as_str().unwrap())
            .collect();
        assert_eq!(addresses, ["172.17.0.1", "172.17.255.254"]);
        // Docker's bridge and its own neighbour stay; berth's claim and tables are gone
        let neighbours = host_ip_json(&["neigh", "show", "dev", "docker0", "nud", "permanent"]);
        assert_eq!(neighbours.as_array().unwrap().len(), 1, "{neighbours}");
        assert_eq!(neighbours[0]["dst"], "172.17.255.253");
        assert!(!published_map().contains("elements"));
        assert_eq!(root.records("leases/docker0"), Vec::<String>::new());
        assert_eq!(root.records("bridges"), Vec::<String>::new());
        assert!(
            !nft_ruleset().contains("berth-docker0"),
            "{}",
            nft_ruleset()
        );
    });
}

#[test]
fn none_and_join_modes_hold_nothing() {
    let root = TempRoot::new("none-join");
    let spec = spec_without_netns();
    for mode in ["none", "host"] {
        let req = request_from(&spec, Some(mode), &[]).unwrap();
        let reservation = reserve(root.path(), "quiet", &req).unwrap();
        assert_eq!(reservation.ports, vec![]);
        assert_eq!(reservation.lease, None);
        let state = attach(root.path(), "quiet", &req, &reservation, 1).unwrap();
        assert_eq!(inspect_settings(&state, Some(1))["IPAddress"], "");
    }
    let mut req = request_from(&spec, Some("none"), &[]).unwrap();
    req.mode = Mode::Join(PathBuf::from("/run/netns/lab"));
    let reservation = reserve(root.path(), "quiet", &req).unwrap();
    let state = attach(root.path(), "quiet", &req, &reservation, 1).unwrap();
    assert_eq!(
        inspect_settings(&state, None)["SandboxKey"],
        "/run/netns/lab"
    );
    release(root.path(), "quiet").unwrap();
    release(root.path(), "never-created").unwrap();
}

/// Measures what bridge mode adds to a container over a plain new network namespace, with a
/// long-lived container keeping the bridge up as in real use: at create, reserve + attach; at
/// delete, release once the container has been killed and reaped, as `berth delete` does.
/// `cargo test --release --lib -- --ignored --nocapture bridge_cost`
#[test]
#[ignore = "a measurement, not a check"]
fn bridge_cost() {
    require_root!();
    in_throwaway_host(|| {
        let root = TempRoot::new("cost");
        let rounds = 50;
        let req = bridge_request(&[]);
        let median = |mut samples: Vec<Duration>| {
            samples.sort();
            samples[samples.len() / 2]
        };
        let (mut start_plain, mut stop_plain) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t0 = Instant::now();
            let container = Container::start();
            let t1 = Instant::now();
            drop(container);
            start_plain.push(t1 - t0);
            stop_plain.push(t1.elapsed());
        }
        let keeper = Container::start();
        let kept = reserve(root.path(), "keeper", &req).unwrap();
        attach(root.path(), "keeper", &req, &kept, keeper.pid()).unwrap();
        let (mut reserving, mut attaching, mut releasing) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let container = Container::start();
            let t0 = Instant::now();
            let reservation = reserve(root.path(), "c", &req).unwrap();
            let t1 = Instant::now();
            attach(root.path(), "c", &req, &reservation, container.pid()).unwrap();
            let t2 = Instant::now();
            drop(container);
            let t3 = Instant::now();
            release(root.path(), "c").unwrap();
            reserving.push(t1 - t0);
            attaching.push(t2 - t1);
            releasing.push(t3.elapsed());
        }
        println!(
            "median of {rounds}: plain netns start {:?} stop {:?}; bridge adds reserve {:?} + \
             attach {:?} at create, release {:?} at delete",
            median(start_plain),
            median(stop_plain),
            median(reserving),
            median(attaching),
            median(releasing),
        );
        let published = bridge_request(&["8080:80/tcp"]);
        let (mut creating, mut deleting, mut attaching) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let container = Container::start();
            let t0 = Instant::now();
            let reservation = reserve(root.path(), "p", &published).unwrap();
            creating.push(t0.elapsed());
            let t0 = Instant::now();
            attach(root.path(), "p", &published, &reservation, container.pid()).unwrap();
            attaching.push(t0.elapsed());
            drop(container);
            let t1 = Instant::now();
            release(root.path(), "p").unwrap();
            deleting.push(t1.elapsed());
        }
        println!(
            "with one published port: reserve {:?} + attach {:?} at create, release {:?}",
            median(creating),
            median(attaching),
            median(deleting)
        );
        release(root.path(), "keeper").unwrap();

        // The first container: no bridge and no tables before it (removed, then left to settle)
        let (mut first_reserve, mut first_attach) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            remove_bridge_and_tables();
            let container = Container::start();
            let t0 = Instant::now();
            let reservation = reserve(root.path(), "f", &req).unwrap();
            let t1 = Instant::now();
            attach(root.path(), "f", &req, &reservation, container.pid()).unwrap();
            first_reserve.push(t1 - t0);
            first_attach.push(t1.elapsed());
            drop(container);
            release(root.path(), "f").unwrap();
        }
        println!(
            "first container (makes docker0 and the tables): reserve {:?} + attach {:?}",
            median(first_reserve),
            median(first_attach)
        );
    });
}

/// Removes docker0 and berth's tables, and waits for the kernel to settle.
fn remove_bridge_and_tables() {
    let _ = Command::new("ip").args(["link", "del", "docker0"]).status();
    for family in ["ip", "bridge"] {
        let _ = Command::new("nft")
            .args(["delete", "table", family, "berth-docker0"])
            .status();
    }
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn the_bridge_table_reads_in_nfts_words_and_is_made_once() {
    require_root!();
    in_throwaway_host(|| {
        let subnet = "172.17.0.0/16".parse().unwrap();
        super::firewall::setup_bridge("docker0", subnet).unwrap();
        // a second maker (another --root) finds it whole and adds nothing
        super::firewall::setup_bridge("docker0", subnet).unwrap();
        let ruleset = nft_ruleset();
        for line in [
            "type inet_proto . inet_service : ipv4_addr . inet_service",
            "type nat hook prerouting priority dstnat; policy accept;",
            "type nat hook output priority -100; policy accept;",
            "type nat hook postrouting priority srcnat; policy accept;",
            "ip saddr 172.17.0.0/16 oifname != \"docker0\" masquerade",
            "ip saddr 127.0.0.0/8 oifname \"docker0\" masquerade",
            "ip saddr 172.17.0.0/16 oifname \"docker0\" ct status dnat masquerade",
            "type filter hook input priority filter; policy accept;",
            "iifname \"docker0\" ip daddr 127.0.0.0/8 ct status & dnat != dnat drop",
            "table bridge berth-docker0",
            "type iface_index . ether_addr",
            "type iface_index . ipv4_addr",
            "type filter hook prerouting priority dstnat; policy accept;",
            "iif != @veths accept",
            "iif . ether saddr != @macs drop",
            "iif . ip saddr @ips accept",
            "iif . arp saddr ether @macs iif . arp saddr ip @ips accept",
        ] {
            assert_eq!(ruleset.matches(line).count(), 1, "{line:?} in {ruleset}");
        }
        // in prerouting and in output
        let dnat = "fib daddr type local dnat ip to meta l4proto . th dport map @ports";
        assert_eq!(ruleset.matches(dnat).count(), 2, "{ruleset}");
        assert!(super::firewall::exists("docker0").unwrap());
        assert!(!super::firewall::exists("docker1").unwrap());
    });
}

#[test]
fn anti_spoofing_elements_of_gone_veths_are_swept_once_enough_gathered() {
    require_root!();
    in_throwaway_host(|| {
        super::firewall::setup_bridge("docker0", "172.17.0.0/16".parse().unwrap()).unwrap();
        let count = || nft_ruleset().matches(" . 02:42:").count();
        let mut live = HashSet::new();
        // interface indexes no link has here: veths that are gone
        for n in 0..super::firewall::SWEEP_AT as u32 - 1 {
            let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 17, 1, 0)) + n);
            super::firewall::admit("docker0", 5000 + n, ipam::mac_for(address), address).unwrap();
        }
        live.insert(1);
        assert_eq!(super::firewall::sweep("docker0", &live).unwrap(), 63);
        assert_eq!(count(), 63, "nothing is swept below the mark");
        let address = Ipv4Addr::new(172, 17, 2, 1);
        super::firewall::admit("docker0", 9000, ipam::mac_for(address), address).unwrap();
        // a live veth's elements stay
        live.insert(9000);
        let address = Ipv4Addr::new(172, 17, 2, 2);
        super::firewall::admit("docker0", 9001, ipam::mac_for(address), address).unwrap();
        assert_eq!(super::firewall::sweep("docker0", &live).unwrap(), 64);
        let ruleset = nft_ruleset();
        assert_eq!(count(), 1, "{ruleset}");
        assert!(ruleset.contains("9000 . 02:42:ac:11:02:01"), "{ruleset}");
        assert!(ruleset.contains("9000 . 172.17.2.1"), "{ruleset}");
    });
}
