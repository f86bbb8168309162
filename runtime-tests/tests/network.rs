//! Networking through the real `berth` binary: bridge mode into `docker0`, host mode with port
//! reservations, none mode, a namespace joined by path, published ports, `inspect`, teardown
//! (also after a failed create and after berth is killed), and `scripts/demo` end to end.
//!
//! Every test runs berth inside a throwaway network namespace that plays the host
//! (`Env::with_netns`): the bridge, veths and nftables rules live and die there, and nothing is
//! sent but to that namespace's loopback and its containers. The container's own view comes
//! from busybox `ip` inside it (text: busybox has no `ip -j`); the host's view of the
//! container's namespace from iproute2's `nsenter -t PID -n ip -j …`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runtime_tests::{
    berth_bin, drop_namespace, need_root, process_gone, read, rootfs, run_to_files, wait_until,
    workspace, Env, NetNs, Run,
};
use serde_json::{json, Value};

const PAGE: &str = "Hello from a berth container";

/// The test's throwaway host namespace.
fn host_ns(env: &Env) -> &NetNs {
    env.netns
        .as_ref()
        .expect("network tests run in Env::with_netns")
}

/// Runs `program ARGS` on the throwaway host; panics unless it succeeds; returns stdout.
#[track_caller]
fn on_host(env: &Env, program: &str, args: &[&str]) -> String {
    let output = env.command(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// `ip -j ARGS` on the throwaway host.
fn host_ip(env: &Env, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend(args);
    serde_json::from_str(&on_host(env, "ip", &full)).unwrap()
}

/// `nsenter -t PID -n ip -j ARGS`: iproute2 on the host side, in the container's namespace.
#[track_caller]
fn nsenter_ip(pid: i64, args: &[&str]) -> Value {
    let output = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "ip", "-j"])
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "nsenter ip {args:?}: {output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn link_names(links: &Value) -> Vec<String> {
    let mut names: Vec<String> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|link| link["ifname"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// The IPv4 addresses of an `ip -j a` listing: (interface, "ADDR/LEN").
fn ipv4_addresses(listing: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for link in listing.as_array().unwrap() {
        for addr in link["addr_info"].as_array().unwrap() {
            if addr["family"] == "inet" {
                found.push((
                    link["ifname"].as_str().unwrap().to_string(),
                    format!("{}/{}", addr["local"].as_str().unwrap(), addr["prefixlen"]),
                ));
            }
        }
    }
    found.sort();
    found
}

/// The IPv4 addresses in busybox `ip -o a` text: (interface, "ADDR/LEN").
fn ipv4_addresses_from_text(text: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 3 && fields[2] == "inet")
                .then(|| (fields[1].to_string(), fields[3].to_string()))
        })
        .collect();
    found.sort();
    found
}

/// The link names and flags in busybox or iproute2 `ip -o link` text.
fn links_from_text(text: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let name = fields.get(1)?.trim_end_matches(':');
            let name = name.split('@').next().unwrap();
            Some((name.to_string(), fields.get(2)?.to_string()))
        })
        .collect();
    found.sort();
    found
}

/// The section of a container's output between the marker line `# NAME` and the next marker.
fn section<'a>(output: &'a str, name: &str) -> &'a str {
    let marker = format!("# {name}\n");
    let start = output
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {output:?}"))
        + marker.len();
    let rest = &output[start..];
    &rest[..rest.find("# ").unwrap_or(rest.len())]
}

/// The shell command that prints the container's addresses, links and routes, then pauses.
const SHOW_NETWORK_THEN_PAUSE: &str =
    "echo '# addresses'; ip -o a; echo '# links'; ip -o link; echo '# routes'; ip r; \
     echo '# end'; exec /bin/helper pause";

/// Leaves the network to berth's choice of any mode: `berth spec`'s template asks for a network
/// namespace of the container's own, which `--network host` may not replace.
fn no_network_entry(config: &mut Value) {
    drop_namespace(config, "network");
}

/// Adds CAP_NET_RAW, which busybox ping needs for its raw socket.
fn with_net_raw(config: &mut Value) {
    for set in ["bounding", "effective", "permitted"] {
        config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_NET_RAW"));
    }
}

/// A detached container started with `berth run -d`, its output going to a file of ours.
struct Detached {
    id: String,
    pid: i64,
    log: PathBuf,
}

impl Detached {
    #[track_caller]
    fn start(env: &Env, id: &str, bundle: &Path, flags: &[&str]) -> Detached {
        let log = env.scratch.join(format!("log-{id}"));
        let mut args = vec!["run", "-d"];
        args.extend(flags);
        args.extend(["--bundle", bundle.to_str().unwrap(), id]);
        let file = std::fs::File::create(&log).unwrap();
        let status = env
            .berth_command(&args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "berth {args:?}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let pid = env.state(id)["pid"].as_i64().unwrap();
        Detached {
            id: id.to_string(),
            pid,
            log,
        }
    }

    /// The container's output once it holds `line` (waiting up to 10 s).
    #[track_caller]
    fn output_with(&self, line: &str) -> String {
        let what = format!("container {} to print {line:?}", self.id);
        wait_until(&what, || read(&self.log).lines().any(|l| l == line));
        read(&self.log)
    }
}

/// `berth inspect ID`'s NetworkSettings.
fn settings(env: &Env, id: &str) -> Value {
    let out: Value = serde_json::from_str(env.berth(&["inspect", id]).ok()).unwrap();
    out[0]["NetworkSettings"].clone()
}

/// The fields of `NetworkSettings` berth had before it took Docker's whole shape.
fn berths_fields(settings: &Value) -> Value {
    let fields = [
        "NetworkMode",
        "SandboxKey",
        "IPAddress",
        "IPPrefixLen",
        "Gateway",
        "MacAddress",
        "Bridge",
        "HostVeth",
        "Ports",
    ];
    fields
        .iter()
        .map(|field| (field.to_string(), settings[field].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A process of ours on the throwaway host (a listener), killed by pid when dropped.
struct HostProcess {
    child: Child,
}

impl HostProcess {
    /// `helper listen PROTO PORT TEXT` on the host; returns once it listens.
    fn listen(env: &Env, protocol: &str, port: u16, text: &str) -> HostProcess {
        let mut child = env
            .command(rootfs().join("bin/helper"))
            .args(["listen", protocol, &port.to_string(), text])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first, "listening\n");
        HostProcess { child }
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `helper connect ADDRESS PORT` from the throwaway host: what the server sent, or the error.
fn connect_from_host(env: &Env, address: &str, port: u16) -> Result<String, String> {
    let output = env
        .command(rootfs().join("bin/helper"))
        .args(["connect", address, &port.to_string()])
        .output()
        .unwrap();
    match output.status.success() {
        true => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
    }
}

/// `GET /` over HTTP/1.0 from the throwaway host: the page's body, or the error. Made by a
/// thread of ours that enters the namespace, since busybox wget crashes outside its root
/// filesystem (its static glibc loads the host's NSS modules) and curl may be missing.
fn fetch_from_host(env: &Env, address: &str, port: u16) -> Result<String, String> {
    fetch_in(&host_ns(env).path, address, port)
}

/// `GET /` from the network namespace at `path`, as [`fetch_from_host`].
fn fetch_in(path: &Path, address: &str, port: u16) -> Result<String, String> {
    let path = path.to_path_buf();
    let target = format!("{address}:{port}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        // SAFETY: setns on a descriptor we own; it moves only this thread, which ends here.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "setns {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        let timeout = Duration::from_secs(2);
        let mut stream = TcpStream::connect_timeout(&target.parse().unwrap(), timeout)
            .map_err(|e| format!("connect {target}: {e}"))?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: berth\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|e| format!("read {target}: {e}"))?;
        match response.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200 ") => Ok(body.to_string()),
            _ => Err(format!("{target} answered {response:?}")),
        }
    })
    .join()
    .unwrap()
}

/// Fetches the page, retrying for up to 5 s while the server inside starts.
#[track_caller]
fn fetch_when_served(env: &Env, address: &str, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match fetch_from_host(env, address, port) {
            Ok(page) => return page,
            Err(err) if Instant::now() > deadline => panic!("GET {address}:{port}: {err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Gives the throwaway host an interface with an address of its own, as a real host has:
/// `lab0` with 192.0.2.1/24, one end of a veth pair whose other end `lab0-peer` stays in the
/// namespace (not every kernel has the dummy driver).
fn add_host_address(env: &Env) {
    on_host(
        env,
        "ip",
        &[
            "link",
            "add",
            "lab0",
            "type",
            "veth",
            "peer",
            "name",
            "lab0-peer",
        ],
    );
    on_host(env, "ip", &["addr", "add", "192.0.2.1/24", "dev", "lab0"]);
    on_host(env, "ip", &["link", "set", "lab0-peer", "up"]);
    on_host(env, "ip", &["link", "set", "lab0", "up"]);
}

/// The records in the network store's folder `sub` (`ports`, `bridges`, or every lease).
fn store_records(env: &Env, sub: &str) -> Vec<String> {
    let dir = env.root.join(".network").join(sub);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if sub == "leases" && path.is_dir() {
            for lease in std::fs::read_dir(&path).unwrap().flatten() {
                found.push(lease.path().display().to_string());
            }
        } else {
            found.push(path.display().to_string());
        }
    }
    found
}

fn nft_ruleset(env: &Env) -> String {
    on_host(env, "nft", &["list", "ruleset"])
}

/// Asserts that the throwaway host holds nothing of berth's containers: no veth (the kernel
/// removes each with its container's namespace, within milliseconds), no lease, port
/// reservation, map element or address claim, and `route_localnet` off; and once no container
/// is left, no `docker0` nor berth's tables: the cleaner that the last `delete` forked off takes
/// them down within tens of milliseconds, so this waits for it.
#[track_caller]
fn assert_no_network_left(env: &Env) {
    let veths = || {
        link_names(&host_ip(env, &["link"]))
            .into_iter()
            .filter(|name| name.starts_with("veth"))
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while !veths().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(veths(), Vec::<String>::new(), "veths left on the host");
    // settles the leases of veths the kernel removed after their container's delete
    env.berth(&["delete", "--force", "settle"]).ok();
    // docker0 may go meanwhile (the cleaner): then nothing is on it
    let on_docker0 = |args: &[&str]| -> Value {
        let output = env.command("ip").arg("-j").args(args).output().unwrap();
        serde_json::from_slice(&output.stdout).unwrap_or(json!([]))
    };
    let ports = on_docker0(&["link", "show", "master", "docker0"]);
    assert_eq!(ports, json!([]), "ports left on docker0");
    let claims = on_docker0(&["neigh", "show", "dev", "docker0", "nud", "permanent"]);
    assert_eq!(claims, json!([]), "address claims left on docker0");
    let localnet = env
        .command("cat")
        .arg("/proc/sys/net/ipv4/conf/docker0/route_localnet")
        .output()
        .unwrap();
    let localnet = String::from_utf8_lossy(&localnet.stdout).trim().to_string();
    assert!(localnet != "1", "route_localnet left on");
    let map = env
        .command("nft")
        .args(["list", "map", "ip", "berth-docker0", "ports"])
        .output()
        .unwrap();
    let map = String::from_utf8_lossy(&map.stdout);
    assert!(!map.contains("elements"), "published ports left: {map}");
    for sub in ["leases", "ports"] {
        assert_eq!(store_records(env, sub), Vec::<String>::new(), "{sub} left");
    }
    if env.containers().is_empty() {
        wait_until(
            "the cleaner to take docker0 and berth's tables down",
            || {
                // the record goes last, once the kernel is done
                !link_names(&host_ip(env, &["link"])).contains(&"docker0".to_string())
                    && !nft_ruleset(env).contains("berth-docker0")
                    && store_records(env, "bridges").is_empty()
            },
        );
    }
}

/// The MAC address Docker up to 27 gives an address, which berth follows.
fn mac_of(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

fn in_default_subnet(address: &str) -> Ipv4Addr {
    let ip: Ipv4Addr = address.parse().unwrap();
    let [a, b, _, _] = ip.octets();
    assert_eq!((a, b), (172, 17), "{ip} is not in 172.17.0.0/16");
    assert_ne!(ip, Ipv4Addr::new(172, 17, 0, 1), "the gateway was leased");
    ip
}

#[test]
fn bridge_container_has_eth0_on_the_subnet_and_a_default_route() {
    need_root!();
    let env = Env::with_netns("bridge-eth0");
    let id = env.id("b");
    let bundle = env.bundle(&id, &["sh", "-c", SHOW_NETWORK_THEN_PAUSE], |_| {});
    let container = Detached::start(&env, &id, &bundle, &["--network", "bridge"]);
    let output = container.output_with("pausing");

    // Inside: busybox ip in the container itself.
    let inside = ipv4_addresses_from_text(section(&output, "addresses"));
    assert_eq!(inside.len(), 2, "lo and eth0: {inside:?}");
    assert_eq!(inside[1], ("lo".to_string(), "127.0.0.1/8".to_string()));
    let (name, cidr) = &inside[0];
    assert_eq!(name, "eth0");
    let (address, prefix) = cidr.split_once('/').unwrap();
    let address = in_default_subnet(address);
    assert_eq!(prefix, "16");
    let routes = section(&output, "routes");
    assert!(
        routes
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["default", "via", "172.17.0.1", "dev", "eth0"]),
        "no default route via 172.17.0.1: {routes}"
    );
    let links = links_from_text(section(&output, "links"));
    assert_eq!(
        links.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
        ["eth0", "lo"]
    );
    assert!(
        links.iter().all(|(_, flags)| flags.contains("UP")),
        "{links:?}"
    );

    // The host's view of the same namespace, with iproute2's JSON.
    let seen = nsenter_ip(container.pid, &["a"]);
    assert_eq!(ipv4_addresses(&seen), inside);
    let eth0 = &nsenter_ip(container.pid, &["link", "show", "eth0"])[0];
    assert_eq!(eth0["address"], mac_of(address).as_str());
    assert_eq!(eth0["mtu"], 1500);
    let default = nsenter_ip(container.pid, &["route", "show", "default"]);
    assert_eq!(default[0]["gateway"], "172.17.0.1");
    assert_eq!(default[0]["dev"], "eth0");

    // The host: docker0 made with the gateway address, the host end of the veth on it.
    let bridge = &host_ip(&env, &["a", "show", "docker0"])[0];
    assert_eq!(
        ipv4_addresses(&json!([bridge])),
        [("docker0".to_string(), "172.17.0.1/16".to_string())]
    );
    assert_eq!(bridge["mtu"], 1500);
    assert!(bridge["flags"].as_array().unwrap().contains(&json!("UP")));
    let host_veth = settings(&env, &id)["HostVeth"]
        .as_str()
        .unwrap()
        .to_string();
    let veth = &host_ip(&env, &["link", "show", &host_veth])[0];
    assert_eq!(veth["master"], "docker0");
    assert!(veth["flags"].as_array().unwrap().contains(&json!("UP")));

    env.berth(&["kill", &id, "KILL"]).ok();
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    assert_no_network_left(&env);
}

#[test]
fn bridge_containers_reach_the_gateway_each_other_and_the_host_reaches_them() {
    need_root!();
    let env = Env::with_netns("bridge-ping");
    let server_id = env.id("server");
    let bundle = env.bundle(
        &server_id,
        &[
            "/bin/helper",
            "listen",
            "tcp",
            "80",
            "hello from the server",
        ],
        |_| {},
    );
    let server = Detached::start(&env, &server_id, &bundle, &["--network", "bridge"]);
    server.output_with("listening");
    let server_ip = settings(&env, &server_id)["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    in_default_subnet(&server_ip);

    // Another container pings the gateway and the server, and talks to it over TCP.
    let client_id = env.id("client");
    let script = format!(
        "ping -c 1 -W 2 172.17.0.1 && ping -c 1 -W 2 {server_ip} && \
         /bin/helper connect {server_ip} 80"
    );
    let bundle = env.bundle(&client_id, &["sh", "-c", &script], with_net_raw);
    let run = env.berth(&[
        "run",
        "--network",
        "bridge",
        "--bundle",
        bundle.to_str().unwrap(),
        &client_id,
    ]);
    let out = run.ok();
    assert_eq!(out.matches("1 packets received").count(), 2, "{out}");
    assert!(out.contains(&format!("64 bytes from {server_ip}")), "{out}");
    assert!(out.ends_with("hello from the server\n"), "{out}");
    env.assert_gone(&client_id);

    // The host reaches the container: ICMP and TCP.
    on_host(
        &env,
        rootfs().join("bin/busybox").to_str().unwrap(),
        &["ping", "-c", "1", "-W", "2", &server_ip],
    );
    assert_eq!(
        connect_from_host(&env, &server_ip, 80).unwrap(),
        "hello from the server\n"
    );

    env.berth(&["delete", "--force", &server_id]).ok();
    env.assert_gone(&server_id);
    assert_no_network_left(&env);
}

#[test]
fn host_mode_sees_the_hosts_links_namespace_and_listeners() {
    need_root!();
    let env = Env::with_netns("host-links");
    add_host_address(&env);
    let _listener = HostProcess::listen(&env, "tcp", 3000, "hello from the host");
    let id = env.id("h");
    let script = "echo '# links'; ip -o link; echo '# addresses'; ip -o a; echo '# ns'; \
                  /bin/helper ns; echo '# connect'; /bin/helper connect 127.0.0.1 3000";
    let bundle = env.bundle(&id, &["sh", "-c", script], no_network_entry);
    let run = env.berth(&[
        "run",
        "--network",
        "host",
        "--bundle",
        bundle.to_str().unwrap(),
        &id,
    ]);
    let out = run.ok();

    let inside: Vec<String> = links_from_text(section(out, "links"))
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(inside, link_names(&host_ip(&env, &["link"])));
    assert_eq!(inside, ["lab0", "lab0-peer", "lo"]);
    assert_eq!(
        ipv4_addresses_from_text(section(out, "addresses")),
        ipv4_addresses(&host_ip(&env, &["a"]))
    );
    let host_ns_inode = std::fs::metadata(&host_ns(&env).path).unwrap();
    let expected = format!(
        "net -> net:[{}]",
        std::os::unix::fs::MetadataExt::ino(&host_ns_inode)
    );
    assert!(section(out, "ns").lines().any(|l| l == expected), "{out}");
    assert_eq!(section(out, "connect"), "hello from the host\n");
    env.assert_gone(&id);
    assert_no_network_left(&env);
}

#[test]
fn a_second_host_mode_container_on_the_same_port_is_refused() {
    need_root!();
    let env = Env::with_netns("host-conflict");
    let first = env.id("first");
    let bundle = env.bundle(
        &first,
        &["/bin/helper", "listen", "tcp", "3000", "first"],
        no_network_entry,
    );
    Detached::start(&env, &first, &bundle, &["--network", "host", "-p", "3000"])
        .output_with("listening");
    assert_eq!(
        connect_from_host(&env, "127.0.0.1", 3000).unwrap(),
        "first\n"
    );

    let second = env.id("second");
    let bundle = env.bundle(
        &second,
        &["/bin/helper", "listen", "tcp", "3000", "second"],
        no_network_entry,
    );
    let b = bundle.to_str().unwrap();
    let create = [
        "create",
        "--network",
        "host",
        "-p",
        "3000",
        "--bundle",
        b,
        &second,
    ];
    let err = env.berth(&create).fails().to_string();
    assert!(err.contains("RESOURCE:PORTS"), "{err}");
    assert!(err.contains("3000/tcp"), "{err}");
    assert!(err.contains(&first), "the holder is not named: {err}");
    env.assert_gone(&second);
    assert_eq!(env.containers(), vec![first.clone()]);
    assert_eq!(store_records(&env, "ports").len(), 1);
    // The first one still serves.
    assert_eq!(
        connect_from_host(&env, "127.0.0.1", 3000).unwrap(),
        "first\n"
    );

    // Once the first is deleted, the port is free again.
    env.berth(&["delete", "--force", &first]).ok();
    env.berth(&create).ok();
    env.berth(&["delete", "--force", &second]).ok();
    env.assert_gone(&first);
    env.assert_gone(&second);
    assert_no_network_left(&env);
}

#[test]
fn a_host_listener_on_the_port_refuses_a_host_mode_container() {
    need_root!();
    let env = Env::with_netns("host-listener");
    let _tcp = HostProcess::listen(&env, "tcp", 3001, "taken");
    let _udp = HostProcess::listen(&env, "udp", 5353, "taken");
    for port in ["3001", "3001/tcp", "5353/udp"] {
        let id = env.id("refused");
        let bundle = env.bundle(&id, &["/bin/helper", "pause"], no_network_entry);
        let b = bundle.to_str().unwrap();
        let err = env
            .berth(&[
                "create",
                "--network",
                "host",
                "-p",
                port,
                "--bundle",
                b,
                &id,
            ])
            .fails()
            .to_string();
        assert!(err.contains("RESOURCE:PORTS"), "{err}");
        assert!(err.contains("a listener on the host"), "{err}");
        let number = port.split('/').next().unwrap();
        assert!(err.contains(&format!("port {number}/")), "{err}");
        env.assert_gone(&id);
        assert_no_network_left(&env);
    }
    // Bridge mode publishes on the host's ports too, and is refused the same way.
    let id = env.id("bridged");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
    let b = bundle.to_str().unwrap();
    let err = env
        .berth(&[
            "create",
            "--network",
            "bridge",
            "-p",
            "3001:80",
            "--bundle",
            b,
            &id,
        ])
        .fails()
        .to_string();
    assert!(err.contains("RESOURCE:PORTS"), "{err}");
    env.assert_gone(&id);
    assert_no_network_left(&env);
}

#[test]
fn host_mode_refuses_a_host_port_that_differs_from_the_container_port() {
    need_root!();
    let env = Env::with_netns("host-remap");
    let id = env.id("remap");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], no_network_entry);
    let b = bundle.to_str().unwrap();
    let err = env
        .berth(&[
            "create",
            "--network",
            "host",
            "-p",
            "8080:80",
            "--bundle",
            b,
            &id,
        ])
        .fails()
        .to_string();
    assert!(err.contains("8080:80/tcp"), "{err}");
    assert!(err.contains("host mode"), "{err}");
    env.assert_gone(&id);
    assert_no_network_left(&env);
}

#[test]
fn thirty_parallel_bridge_containers_get_distinct_addresses() {
    need_root!();
    let env = Env::with_netns("parallel");
    let ids: Vec<String> = (0..30).map(|n| env.id(&format!("p{n}"))).collect();
    let bundles: Vec<PathBuf> = ids
        .iter()
        .map(|id| env.bundle(id, &["/bin/helper", "pause"], |_| {}))
        .collect();
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .iter()
            .zip(&bundles)
            .map(|(id, bundle)| {
                let env = &env;
                scope.spawn(move || {
                    let b = bundle.to_str().unwrap();
                    env.berth(&["run", "-d", "--network", "bridge", "--bundle", b, id])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for run in &runs {
        run.ok();
    }

    let mut addresses = HashSet::new();
    let mut veths = HashSet::new();
    for id in &ids {
        let net = settings(&env, id);
        let address = in_default_subnet(net["IPAddress"].as_str().unwrap());
        // The address is really on the container's eth0.
        let pid = env.state(id)["pid"].as_i64().unwrap();
        assert_eq!(
            ipv4_addresses(&nsenter_ip(pid, &["a", "show", "eth0"])),
            [("eth0".to_string(), format!("{address}/16"))]
        );
        addresses.insert(address);
        veths.insert(net["HostVeth"].as_str().unwrap().to_string());
    }
    assert_eq!(addresses.len(), 30, "{addresses:?}");
    let on_bridge: HashSet<String> = host_ip(&env, &["link", "show", "master", "docker0"])
        .as_array()
        .unwrap()
        .iter()
        .map(|link| link["ifname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(on_bridge, veths);
    assert_eq!(store_records(&env, "leases").len(), 30);

    for id in &ids {
        env.berth(&["delete", "--force", id]).ok();
        env.assert_gone(id);
    }
    assert_no_network_left(&env);
}

#[test]
fn a_published_port_serves_a_page_on_loopback_and_the_hosts_address() {
    need_root!();
    let env = Env::with_netns("publish");
    add_host_address(&env);
    let id = env.id("web");
    let bundle = env.bundle(&id, &["httpd", "-f", "-p", "80", "-h", "/var/www"], |_| {});
    let web = Detached::start(
        &env,
        &id,
        &bundle,
        &["--network", "bridge", "-p", "8080:80"],
    );
    let address = settings(&env, &id)["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();

    // Through the published port, at loopback and at the host's own address; and straight to
    // the container's address and port.
    let index = std::fs::read_to_string(rootfs().join("var/www/index.html")).unwrap();
    assert!(index.contains(PAGE));
    for (address, port) in [("127.0.0.1", 8080), ("192.0.2.1", 8080), (&address, 80)] {
        assert_eq!(
            fetch_when_served(&env, address, port),
            index,
            "{address}:{port}"
        );
    }
    let rules = nft_ruleset(&env);
    assert!(
        rules.contains(&format!("tcp . 8080 : {address} . 80")),
        "{rules}"
    );

    env.berth(&["delete", "--force", &web.id]).ok();
    env.assert_gone(&id);
    assert_no_network_left(&env);
    assert!(fetch_from_host(&env, "127.0.0.1", 8080).is_err());
}

#[test]
fn delete_leaves_no_veth_lease_port_or_rule() {
    need_root!();
    let env = Env::with_netns("teardown");
    let web = env.id("web");
    let bundle = env.bundle(&web, &["/bin/helper", "pause"], |_| {});
    let web_flags = ["--network", "bridge", "-p", "8080:80", "-p", "5353:53/udp"];
    Detached::start(&env, &web, &bundle, &web_flags).output_with("pausing");
    let host = env.id("host");
    let bundle = env.bundle(&host, &["/bin/helper", "pause"], no_network_entry);
    Detached::start(&env, &host, &bundle, &["--network", "host", "-p", "3000"])
        .output_with("pausing");

    // While they run, all of it is there.
    let net = settings(&env, &web);
    let veth = net["HostVeth"].as_str().unwrap();
    assert!(link_names(&host_ip(&env, &["link"])).contains(&veth.to_string()));
    assert_eq!(store_records(&env, "leases").len(), 1);
    assert_eq!(store_records(&env, "ports").len(), 3);
    assert_eq!(store_records(&env, "bridges").len(), 1);
    let rules = nft_ruleset(&env);
    assert!(rules.contains("table ip berth-docker0"), "{rules}");
    assert!(rules.contains("udp . 5353"), "{rules}");

    // Deleting the host-mode one frees its port and nothing else.
    env.berth(&["delete", "--force", &host]).ok();
    env.assert_gone(&host);
    assert_eq!(store_records(&env, "ports").len(), 2);
    assert!(link_names(&host_ip(&env, &["link"])).contains(&veth.to_string()));

    // Deleting the bridge-mode one while another container keeps docker0 removes its port
    // rules, leases and reservations, and leaves the bridge's table.
    let keeper = env.id("keeper");
    let bundle = env.bundle(&keeper, &["/bin/helper", "pause"], |_| {});
    Detached::start(&env, &keeper, &bundle, &["--network", "bridge"]).output_with("pausing");
    env.berth(&["delete", "--force", &web]).ok();
    env.assert_gone(&web);
    assert_eq!(store_records(&env, "ports"), Vec::<String>::new());
    let rules = nft_ruleset(&env);
    assert!(rules.contains("table ip berth-docker0"), "{rules}");
    assert!(
        !rules.contains("8080") && !rules.contains("5353"),
        "{rules}"
    );
    // A second delete of what is gone is fine with --force.
    env.berth(&["delete", "--force", &web]).ok();

    env.berth(&["delete", "--force", &keeper]).ok();
    env.assert_gone(&keeper);
    assert_no_network_left(&env);
}

#[test]
fn a_deleted_containers_veth_goes_with_its_namespace_and_its_address_comes_back() {
    need_root!();
    let env = Env::with_netns("veth-goes");
    let start = |tag: &str| {
        let id = env.id(tag);
        let bundle = env.bundle(&id, &["/bin/helper", "pause"], |_| {});
        Detached::start(&env, &id, &bundle, &["--network", "bridge"]).output_with("pausing");
        let net = settings(&env, &id);
        let text = |field: &str| net[field].as_str().unwrap().to_string();
        (id, text("IPAddress"), text("HostVeth"))
    };
    let (keeper, _, _) = start("keeper");
    let (gone, address, veth) = start("gone");
    env.berth(&["delete", "--force", &gone]).ok();
    env.assert_gone(&gone);
    // Another container still uses docker0: berth leaves the veth to the kernel, which
    // removes it with the container's namespace.
    let deadline = Instant::now() + Duration::from_secs(2);
    while link_names(&host_ip(&env, &["link"])).contains(&veth) {
        assert!(Instant::now() < deadline, "{veth} outlived its container");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (next, next_address, next_veth) = start("next");
    assert_eq!(next_address, address, "the address did not come back");
    assert_ne!(next_veth, veth);
    for id in [&next, &keeper] {
        env.berth(&["delete", "--force", id]).ok();
        env.assert_gone(id);
    }
    assert_no_network_left(&env);
}

#[test]
fn a_failed_create_leaves_no_network_behind() {
    need_root!();
    let env = Env::with_netns("failed-create");
    let flags = ["--network", "bridge", "-p", "8080:80"];

    // A root filesystem without the program: the init fails after the network is reserved.
    let empty_rootfs = env.scratch.join("empty-rootfs");
    std::fs::create_dir(&empty_rootfs).unwrap();
    let id = env.id("no-program");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |config| {
        config["root"]["path"] = json!(empty_rootfs.to_str().unwrap());
        config["root"]["readonly"] = json!(false);
    });
    let mut args = vec!["create"];
    args.extend(flags);
    args.extend(["--bundle", bundle.to_str().unwrap(), &id]);
    let err = env.berth(&args).fails().to_string();
    assert!(err.contains("/bin/helper"), "{err}");
    env.assert_gone(&id);
    assert_no_network_left(&env);

    // A createRuntime hook that fails: it runs after the network is attached.
    let id = env.id("bad-hook");
    let seen = env.scratch.join("links-seen-by-hook");
    let hook = format!("ip -o link > {}; exit 3", seen.display());
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |config| {
        config["hooks"] = json!({"createRuntime": [
            {"path": "/bin/sh", "args": ["sh", "-c", hook]}
        ]});
    });
    let mut args = vec!["create"];
    args.extend(flags);
    args.extend(["--bundle", bundle.to_str().unwrap(), &id]);
    let err = env.berth(&args).fails().to_string();
    assert!(err.contains("createRuntime"), "{err}");
    let seen = std::fs::read_to_string(&seen).unwrap();
    assert!(
        seen.contains("master docker0"),
        "no veth when the hook ran: {seen}"
    );
    env.assert_gone(&id);
    assert_no_network_left(&env);
}

#[test]
fn delete_force_cleans_up_after_berth_is_killed_during_create() {
    need_root!();
    let env = Env::with_netns("killed-create");
    let id = env.id("killed");
    // The hook keeps the state berth hands it (with the init's pid), then its own pid, then
    // sleeps: berth waits for it.
    let seen_state = env.scratch.join("hook-state");
    let marker = env.scratch.join("hook-pid");
    let hook = format!(
        "cat > {}; echo $$ > {1}.tmp && mv {1}.tmp {1} && exec sleep 60",
        seen_state.display(),
        marker.display()
    );
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |config| {
        config["hooks"] = json!({"createRuntime": [
            {"path": "/bin/sh", "args": ["sh", "-c", hook]}
        ]});
    });
    let b = bundle.to_str().unwrap();
    let log = std::fs::File::create(env.scratch.join("create.log")).unwrap();
    let mut create = env
        .berth_command(&[
            "create",
            "--network",
            "bridge",
            "-p",
            "8080:80",
            "--bundle",
            b,
            &id,
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_until("the createRuntime hook", || marker.exists());
    // berth waits on the hook: kill it (nsenter execs berth, so this pid is berth's).
    create.kill().unwrap();
    create.wait().unwrap();
    let hook_pid: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the pid of the hook's sleep, a process this test started.
    unsafe { libc::kill(hook_pid, libc::SIGKILL) };

    // The init ends once its channel to berth is gone, and the kernel removes the veth with
    // its namespace; the state folder, the lease, the port and its rule are berth's to remove.
    assert!(env.root.join(&id).is_dir());
    let seen: Value = serde_json::from_slice(&std::fs::read(&seen_state).unwrap()).unwrap();
    let init = seen["pid"].as_i64().unwrap();
    assert!(init > 0, "the hook saw no init pid: {seen}");
    assert_eq!(store_records(&env, "leases").len(), 1);
    assert_eq!(store_records(&env, "ports").len(), 1);
    assert!(nft_ruleset(&env).contains("tcp . 8080"));

    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    assert_no_network_left(&env);
    assert!(process_gone(init), "the init {init} still runs");
}

#[test]
fn inspect_reports_network_settings_for_each_mode() {
    need_root!();
    let env = Env::with_netns("inspect");

    // Bridge mode and a port, asked for with berth's annotations rather than flags.
    let bridged = env.id("bridged");
    let bundle = env.bundle(&bridged, &["/bin/helper", "pause"], |config| {
        config["annotations"] = json!({
            "io.berth.network.mode": "bridge",
            "io.berth.network.ports": "8080:80/tcp",
        });
    });
    let container = Detached::start(&env, &bridged, &bundle, &[]);
    let net = settings(&env, &bridged);
    let address = in_default_subnet(net["IPAddress"].as_str().unwrap());
    let eth0 = &nsenter_ip(container.pid, &["link", "show", "eth0"])[0];
    assert_eq!(net["MacAddress"], eth0["address"]);
    assert_eq!(net["MacAddress"], mac_of(address).as_str());
    let veth = net["HostVeth"].as_str().unwrap();
    assert!(veth.len() == 11 && veth.starts_with("veth"), "{veth}");
    assert_eq!(
        host_ip(&env, &["link", "show", veth])[0]["master"],
        "docker0"
    );
    assert_eq!(
        berths_fields(&net),
        json!({
            "NetworkMode": "bridge",
            "SandboxKey": format!("/proc/{}/ns/net", container.pid),
            "IPAddress": address.to_string(),
            "IPPrefixLen": 16,
            "Gateway": "172.17.0.1",
            "MacAddress": mac_of(address),
            "Bridge": "docker0",
            "HostVeth": veth,
            "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
        })
    );
    let network = &net["Networks"]["bridge"];
    for field in ["IPAddress", "IPPrefixLen", "Gateway", "MacAddress"] {
        assert_eq!(network[field], net[field], "Networks.bridge.{field}");
    }
    assert_eq!(network["EndpointID"], veth);

    // Host mode from config.json alone: no network namespace in it.
    let host = env.id("host");
    let bundle = env.bundle(&host, &["/bin/helper", "pause"], |config| {
        let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
        namespaces.retain(|ns| ns["type"] != "network");
        config["annotations"] = json!({"io.berth.network.ports": "3000/tcp"});
    });
    let container = Detached::start(&env, &host, &bundle, &[]);
    let net = settings(&env, &host);
    let sandbox = net["SandboxKey"].as_str().unwrap();
    assert_eq!(sandbox, format!("/proc/{}/ns/net", container.pid));
    let same = std::fs::read_link(sandbox).unwrap();
    let own = std::fs::read_link(format!("/proc/{}/ns/net", env.state(&bridged)["pid"])).unwrap();
    assert_ne!(
        same, own,
        "the host-mode container has the bridge container's namespace"
    );
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(sandbox).unwrap()),
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&host_ns(&env).path).unwrap()),
    );
    assert_eq!(
        berths_fields(&net),
        json!({
            "NetworkMode": "host",
            "SandboxKey": sandbox,
            "IPAddress": "",
            "IPPrefixLen": 0,
            "Gateway": "",
            "MacAddress": "",
            "Bridge": "",
            "HostVeth": "",
            "Ports": {"3000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "3000"}]},
        })
    );

    // None mode: berth spec's template.
    let none = env.id("none");
    let bundle = env.bundle(&none, &["/bin/helper", "pause"], |_| {});
    let container = Detached::start(&env, &none, &bundle, &[]);
    let net = settings(&env, &none);
    assert_eq!(net["NetworkMode"], "none");
    assert_eq!(net["SandboxKey"], format!("/proc/{}/ns/net", container.pid));
    assert_eq!(net["IPAddress"], "");
    assert_eq!(net["Ports"], json!({}));
    assert_eq!(net["Networks"]["none"]["IPAddress"], "");

    for id in [&bridged, &host, &none] {
        env.berth(&["delete", "--force", id]).ok();
        env.assert_gone(id);
    }
    assert_no_network_left(&env);
}

#[test]
fn none_mode_has_only_loopback_up() {
    need_root!();
    let env = Env::with_netns("none");
    let id = env.id("none");
    let bundle = env.bundle(&id, &["sh", "-c", SHOW_NETWORK_THEN_PAUSE], |_| {});
    let container = Detached::start(&env, &id, &bundle, &["--network", "none"]);
    let output = container.output_with("pausing");
    let links = links_from_text(section(&output, "links"));
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].0, "lo");
    assert!(links[0].1.contains("UP"), "{links:?}");
    assert_eq!(
        ipv4_addresses_from_text(section(&output, "addresses")),
        [("lo".to_string(), "127.0.0.1/8".to_string())]
    );
    assert_eq!(section(&output, "routes"), "");
    assert_eq!(link_names(&nsenter_ip(container.pid, &["link"])), ["lo"]);
    // Nothing was made on the host.
    assert_eq!(link_names(&host_ip(&env, &["link"])), ["lo"]);
    assert!(store_records(&env, "leases").is_empty());

    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    assert_no_network_left(&env);
}

#[test]
fn a_namespace_given_by_path_is_joined_and_left_in_place() {
    need_root!();
    let env = Env::with_netns("join");
    let joined = NetNs::new(&format!("{}-j", env.name));
    let inside = |args: &[&str]| {
        let status = joined.command("ip").args(args).status().unwrap();
        assert!(status.success(), "ip {args:?}");
    };
    inside(&[
        "link", "add", "joined0", "type", "veth", "peer", "name", "joined1",
    ]);
    inside(&["addr", "add", "10.99.0.1/24", "dev", "joined0"]);
    inside(&["link", "set", "joined0", "up"]);

    let id = env.id("join");
    let path = joined.path.to_str().unwrap().to_string();
    let bundle = env.bundle(&id, &["sh", "-c", SHOW_NETWORK_THEN_PAUSE], |config| {
        for ns in config["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = json!(path);
            }
        }
    });
    let container = Detached::start(&env, &id, &bundle, &[]);
    let output = container.output_with("pausing");
    assert_eq!(
        ipv4_addresses_from_text(section(&output, "addresses")),
        [
            ("joined0".to_string(), "10.99.0.1/24".to_string()),
            ("lo".to_string(), "127.0.0.1/8".to_string())
        ]
    );
    let net = settings(&env, &id);
    assert_eq!(net["NetworkMode"], format!("ns:{path}"));
    assert_eq!(net["SandboxKey"], path.as_str());
    let ino = |p: &str| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    assert_eq!(ino(&format!("/proc/{}/ns/net", container.pid)), ino(&path));

    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    assert_no_network_left(&env);
    // The namespace and what is in it stay: berth did not make them.
    let status = joined
        .command("ip")
        .args(["link", "show", "joined0"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "joined0 is gone with the container");
}

/// A `NetworkSettings` recorded from an engine (runtime-tests/tests/data/inspect/).
fn recorded(name: &str) -> Value {
    let path = workspace()
        .join("runtime-tests/tests/data/inspect")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Each key of an object and the JSON type of its value ("string", "number", "null", …).
fn shape(object: &Value) -> Vec<(String, &'static str)> {
    let kind = |value: &Value| match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let mut keys: Vec<(String, &'static str)> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .iter()
        .map(|(key, value)| (key.clone(), kind(value)))
        .collect();
    keys.sort();
    keys
}

/// Asserts that berth's `NetworkSettings` has the keys of the recorded one, each with a value
/// of the same type, and only berth's own `NetworkMode` and `HostVeth` besides; and the same of
/// its `Networks` entries, which must be the recorded ones by name.
#[track_caller]
fn assert_shape(berth: &Value, engine: &Value, what: &str) {
    let own = ["HostVeth", "NetworkMode"];
    let mut top = shape(berth);
    top.retain(|(key, _)| !own.contains(&key.as_str()));
    let wanted = shape(engine);
    if engine.get("Networks").is_none() {
        // podman leaves out what Docker has and berth copies: only its keys are compared
        let podman: Vec<&String> = wanted.iter().map(|(key, _)| key).collect();
        top.retain(|(key, _)| podman.contains(&key) || key == "Networks");
    }
    assert_eq!(top, wanted, "{what}: the keys of NetworkSettings");
    let networks = |settings: &Value| -> Vec<(String, Vec<(String, &'static str)>)> {
        let Some(networks) = settings.get("Networks") else {
            return Vec::new();
        };
        networks
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, network)| (name.clone(), shape(network)))
            .collect()
    };
    assert_eq!(networks(berth), networks(engine), "{what}: Networks");
}

#[test]
fn inspect_has_the_shape_docker_and_podman_give() {
    need_root!();
    let env = Env::with_netns("inspect-shape");
    let joined = NetNs::new(&format!("{}-j", env.name));
    let path = joined.path.to_str().unwrap().to_string();
    let modes: [(&str, &[&str], &str); 4] = [
        ("host", &["--network", "host"], "docker-20.10-host.json"),
        (
            "bridge",
            &["--network", "bridge", "-p", "8080:80"],
            "docker-20.10-bridge.json",
        ),
        ("none", &["--network", "none"], "docker-20.10-none.json"),
        ("joined", &[], "podman-4.3-joined.json"),
    ];
    for (mode, flags, recording) in modes {
        let id = env.id(mode);
        let bundle = env.bundle(&id, &["/bin/helper", "pause"], |config| match mode {
            "host" => no_network_entry(config),
            "joined" => runtime_tests::join_namespace(config, "network", &path),
            _ => {}
        });
        let container = Detached::start(&env, &id, &bundle, flags);
        let net = settings(&env, &id);
        assert_shape(&net, &recorded(recording), mode);
        if mode != "joined" {
            // the lab's jq paths: .NetworkSettings.Networks.MODE.{IPAddress,Gateway,MacAddress}
            let network = &net["Networks"][mode];
            for field in ["IPAddress", "IPPrefixLen", "Gateway", "MacAddress"] {
                assert_eq!(
                    network[field], net[field],
                    "{mode}: Networks.{mode}.{field}"
                );
            }
        }
        if mode == "bridge" {
            let eth0 = &nsenter_ip(container.pid, &["-4", "addr", "show", "eth0"])[0];
            let address = &eth0["addr_info"][0];
            assert_eq!(net["Networks"]["bridge"]["IPAddress"], address["local"]);
            assert_eq!(
                net["Networks"]["bridge"]["IPPrefixLen"],
                address["prefixlen"]
            );
            let link = &nsenter_ip(container.pid, &["link", "show", "eth0"])[0];
            assert_eq!(net["Networks"]["bridge"]["MacAddress"], link["address"]);
            assert_eq!(net["Networks"]["bridge"]["Gateway"], "172.17.0.1");
        } else {
            assert_eq!(net["IPAddress"], "", "{mode}");
        }
        env.berth(&["delete", "--force", &id]).ok();
        env.assert_gone(&id);
    }
    assert_no_network_left(&env);
}

/// `berth create` of `bundle` with `flags`, which must fail naming each of `words`, and leave
/// nothing behind.
#[track_caller]
fn create_refused(env: &Env, id: &str, bundle: &Path, flags: &[&str], words: &[&str]) {
    let mut args = vec!["create"];
    args.extend(flags);
    args.extend(["--bundle", bundle.to_str().unwrap(), id]);
    let err = env.berth(&args).fails().to_string();
    for word in words {
        assert!(
            err.contains(word),
            "{flags:?}: {err:?} does not name {word:?}"
        );
    }
    env.assert_gone(id);
    env.assert_root_empty();
    assert_no_network_left(env);
}

#[test]
fn an_annotation_or_flag_never_gives_the_hosts_namespace_where_the_config_asks_its_own() {
    need_root!();
    let env = Env::with_netns("mode-own");
    let id = env.id("own");
    let annotation = "annotation io.berth.network.mode \"host\" is refused";
    let entry = "linux.namespaces has a network entry without a path";
    let with_annotation = env.bundle(&id, &["/bin/helper", "ns"], |config| {
        config["annotations"] = json!({"io.berth.network.mode": "host"});
    });
    create_refused(&env, &id, &with_annotation, &[], &[annotation, entry]);
    let ports = env.bundle(&id, &["/bin/helper", "ns"], |config| {
        config["annotations"] = json!({
            "io.berth.network.mode": "host",
            "io.berth.network.ports": "3000/tcp",
        });
    });
    create_refused(&env, &id, &ports, &[], &[annotation, entry]);
    assert!(store_records(&env, "ports").is_empty());
    let plain = env.bundle(&id, &["/bin/helper", "ns"], |_| {});
    let flag = "flag --network \"host\" is refused";
    create_refused(&env, &id, &plain, &["--network", "host"], &[flag, entry]);
    create_refused(
        &env,
        &id,
        &plain,
        &["--network", "host", "-p", "3000"],
        &[flag],
    );

    // What the config allows still runs, in a namespace of its own: none, and bridge.
    let host_ns = std::fs::metadata(&host_ns(&env).path).unwrap();
    let host_ns = format!(
        "net -> net:[{}]",
        std::os::unix::fs::MetadataExt::ino(&host_ns)
    );
    for mode in ["none", "bridge"] {
        let out = env.berth(&[
            "run",
            "--network",
            mode,
            "--bundle",
            plain.to_str().unwrap(),
            &id,
        ]);
        let namespaces = out.ok();
        assert!(namespaces.contains("net -> net:["), "{namespaces}");
        assert!(
            !namespaces.contains(&host_ns),
            "{mode}: the host's namespace: {namespaces}"
        );
        env.assert_gone(&id);
    }
    assert_no_network_left(&env);
}

#[test]
fn a_namespace_given_by_path_is_never_replaced_by_an_annotation_or_flag() {
    need_root!();
    let env = Env::with_netns("mode-joined");
    let joined = NetNs::new(&format!("{}-j", env.name));
    let path = joined.path.to_str().unwrap().to_string();
    let id = env.id("joined");
    let entry = format!("linux.namespaces has a network entry with path {path}");
    let join = |config: &mut Value| {
        runtime_tests::join_namespace(config, "network", &path);
    };
    for mode in ["host", "bridge", "none"] {
        let bundle = env.bundle(&id, &["/bin/helper", "ns"], |config| {
            join(config);
            config["annotations"] = json!({"io.berth.network.mode": mode});
        });
        let refusal = format!("annotation io.berth.network.mode {mode:?} is refused");
        create_refused(&env, &id, &bundle, &[], &[&refusal, &entry]);
        let bundle = env.bundle(&id, &["/bin/helper", "ns"], join);
        let refusal = format!("flag --network {mode:?} is refused");
        create_refused(
            &env,
            &id,
            &bundle,
            &["--network", mode],
            &[&refusal, &entry],
        );
    }
    // Nor do ports reach the host through it: no DNAT rule, no reservation.
    let bundle = env.bundle(&id, &["/bin/helper", "ns"], |config| {
        join(config);
        config["annotations"] = json!({"io.berth.network.ports": "8080:80/tcp"});
    });
    let ports = "annotation io.berth.network.ports";
    create_refused(&env, &id, &bundle, &[], &[ports, &format!("ns:{path}")]);
    assert!(store_records(&env, "ports").is_empty());

    // Without an annotation or flag, the container joins it.
    let bundle = env.bundle(&id, &["/bin/helper", "ns"], join);
    let out = env.run(&bundle, &id);
    let joined_ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    assert!(
        out.ok().contains(&format!("net -> net:[{joined_ino}]")),
        "{}",
        out.stdout
    );
    env.assert_gone(&id);
    assert_no_network_left(&env);
}

#[test]
fn the_ports_annotation_on_the_hosts_namespace_reserves_and_publishes_nothing() {
    need_root!();
    let env = Env::with_netns("mode-host-ports");
    let id = env.id("host-ports");
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |config| {
        no_network_entry(config);
        config["annotations"] = json!({"io.berth.network.ports": "3000/tcp"});
    });
    Detached::start(&env, &id, &bundle, &[]).output_with("pausing");
    assert_eq!(store_records(&env, "ports").len(), 1);
    let rules = nft_ruleset(&env);
    assert!(!rules.contains("berth"), "a rule on the host: {rules}");
    assert_eq!(settings(&env, &id)["NetworkMode"], "host");
    // A remapping would need DNAT: refused.
    let remap = env.bundle(&id, &["/bin/helper", "pause"], |config| {
        no_network_entry(config);
        config["annotations"] = json!({"io.berth.network.ports": "8080:80/tcp"});
    });
    let other = env.id("remap");
    let err = env
        .berth(&["create", "--bundle", remap.to_str().unwrap(), &other])
        .fails()
        .to_string();
    assert!(
        err.contains("host port must equal the container port"),
        "{err}"
    );
    env.assert_gone(&other);
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    assert_no_network_left(&env);
}

/// Makes the throwaway host's interface `name`, of a kind that has no peer: a dummy where the
/// kernel has the driver, else an ifb (this machine's kernel is built without CONFIG_DUMMY).
fn add_lone_interface(env: &Env, name: &str) {
    let dummy = env
        .command("ip")
        .args(["link", "add", name, "type", "dummy"])
        .output()
        .unwrap();
    if !dummy.status.success() {
        eprintln!("no dummy driver: {name} is an ifb");
        on_host(env, "ip", &["link", "add", name, "type", "ifb"]);
    }
}

/// The throwaway host's two interfaces for `linux.netDevices`: `nd0` (dummy or ifb) up, with
/// 10.77.0.1/24, 2001:db8:77::1/64 and 10.79.0.1/24 of link scope; `ndv0`, one end of a veth
/// pair, down, with 10.78.0.1/24.
fn add_net_devices(env: &Env) {
    add_lone_interface(env, "nd0");
    for args in [
        &["addr", "add", "10.77.0.1/24", "dev", "nd0"][..],
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:77::1/64",
            "dev",
            "nd0",
            "nodad",
        ],
        &["addr", "add", "10.79.0.1/24", "scope", "link", "dev", "nd0"],
        &["link", "set", "nd0", "up"],
        &[
            "link",
            "add",
            "ndv0",
            "type",
            "veth",
            "peer",
            "name",
            "ndv0-peer",
        ],
        &["addr", "add", "10.78.0.1/24", "dev", "ndv0"],
    ] {
        on_host(env, "ip", args);
    }
}

/// Asserts that `nd0` and `ndv0` are on the throwaway host as [`add_net_devices`] made them, and
/// that berth holds nothing of them: no record, no namespace pinned.
#[track_caller]
fn assert_net_devices_home(env: &Env) {
    let global = |name: &str| -> Vec<String> {
        let listing = host_ip(env, &["addr", "show", name]);
        let mut found: Vec<String> = listing[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["scope"] == "global")
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect();
        found.sort();
        found
    };
    assert_eq!(global("nd0"), ["10.77.0.1/24", "2001:db8:77::1/64"]);
    assert_eq!(global("ndv0"), ["10.78.0.1/24"]);
    let nd0 = &host_ip(env, &["link", "show", "nd0"])[0];
    assert!(
        nd0["flags"].as_array().unwrap().contains(&json!("UP")),
        "{nd0}"
    );
    let ndv0 = &host_ip(env, &["link", "show", "ndv0"])[0];
    assert!(
        !ndv0["flags"].as_array().unwrap().contains(&json!("UP")),
        "{ndv0}"
    );
    assert_eq!(ndv0["link"], "ndv0-peer", "the veth lost its peer");
    assert!(
        store_records(env, "devices").is_empty(),
        "a devices record is left"
    );
    let pins = env.root.join(".network/netns");
    let mountinfo = read(Path::new("/proc/self/mountinfo"));
    assert!(
        !mountinfo.contains(pins.to_str().unwrap()),
        "a namespace pin is left"
    );
}

/// Sets `linux.netDevices` to `devices`.
fn with_net_devices(devices: Value) -> impl FnOnce(&mut Value) {
    move |config: &mut Value| config["linux"]["netDevices"] = devices
}

#[test]
fn net_devices_move_in_renamed_with_their_addresses_and_come_back_at_delete() {
    need_root!();
    let env = Env::with_netns("netdev-move");
    add_net_devices(&env);
    let id = env.id("netdev");
    let devices = json!({"nd0": {"name": "ctr0"}, "ndv0": {}});
    let bundle = env.bundle(
        &id,
        &["sh", "-c", SHOW_NETWORK_THEN_PAUSE],
        with_net_devices(devices),
    );
    let container = Detached::start(&env, &id, &bundle, &[]);
    let output = container.output_with("pausing");

    // Inside: renamed, up, with the host's addresses of global scope and no other.
    let links = links_from_text(section(&output, "links"));
    let names: Vec<&str> = links.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["ctr0", "lo", "ndv0"], "{output}");
    assert!(
        links.iter().all(|(_, flags)| flags.contains("UP")),
        "{links:?}"
    );
    assert_eq!(
        ipv4_addresses_from_text(section(&output, "addresses")),
        [
            ("ctr0".to_string(), "10.77.0.1/24".to_string()),
            ("lo".to_string(), "127.0.0.1/8".to_string()),
            ("ndv0".to_string(), "10.78.0.1/24".to_string()),
        ]
    );
    let v6 = nsenter_ip(container.pid, &["-6", "addr", "show", "ctr0"]);
    let v6: Vec<&Value> = v6[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .collect();
    assert_eq!(v6.len(), 1, "{v6:?}");
    assert_eq!(v6[0]["local"], "2001:db8:77::1");
    // Gone from the host meanwhile; the veth's peer stays.
    let host_links = link_names(&host_ip(&env, &["link"]));
    assert_eq!(host_links, ["lo", "ndv0-peer"]);
    assert_eq!(store_records(&env, "devices").len(), 1);

    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    assert_net_devices_home(&env);

    // A container whose program has ended still holds them until delete (berth pins its
    // namespace): `run` in the foreground, and a template name the kernel numbers.
    let script = "ip -o link | grep -c ': ctr0:'";
    let devices = json!({"nd0": {"name": "ctr%d"}, "ndv0": {}});
    let bundle = env.bundle(&id, &["sh", "-c", script], with_net_devices(devices));
    let run = env.run(&bundle, &id);
    assert_eq!(run.ok(), "1\n");
    env.assert_gone(&id);
    assert_net_devices_home(&env);
    assert_no_network_left(&env);
}

#[test]
fn net_devices_refusals_name_the_problem_and_a_failed_create_returns_the_interfaces() {
    need_root!();
    let env = Env::with_netns("netdev-refused");
    add_net_devices(&env);
    let id = env.id("netdev");
    let pause = ["/bin/helper", "pause"];

    let bundle = env.bundle(&id, &pause, with_net_devices(json!({"nosuch0": {}})));
    let missing = "linux.netDevices: the host has no interface \"nosuch0\"";
    create_refused(&env, &id, &bundle, &[], &[missing]);

    let bundle = env.bundle(&id, &pause, |config| {
        no_network_entry(config);
        config["linux"]["netDevices"] = json!({"nd0": {}});
    });
    let host = "but config.json linux.namespaces gives host mode";
    create_refused(&env, &id, &bundle, &[], &["linux.netDevices", host]);
    let bundle = env.bundle(&id, &pause, with_net_devices(json!({"nd0": {}})));
    let flag = "flag --network \"host\" is refused";
    create_refused(&env, &id, &bundle, &["--network", "host"], &[flag]);

    let bundle = env.bundle(
        &id,
        &pause,
        with_net_devices(json!({"nd0": {"name": "eth0"}})),
    );
    let veth = "\"nd0\" cannot become \"eth0\" in the container: bridge mode gives that name";
    create_refused(&env, &id, &bundle, &["--network", "bridge"], &[veth]);

    let bundle = env.bundle(
        &id,
        &pause,
        with_net_devices(json!({"nd0": {"name": "a:b"}})),
    );
    create_refused(
        &env,
        &id,
        &bundle,
        &[],
        &["\"a:b\" is not a valid interface name"],
    );
    assert_net_devices_home(&env);

    // A name taken in a namespace joined by path: nd0 has moved by then (in order of host
    // names), and comes back with the failed create.
    let joined = NetNs::new(&format!("{}-j", env.name));
    let status = joined
        .command("ip")
        .args([
            "link", "add", "taken0", "type", "veth", "peer", "name", "taken1",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let path = joined.path.to_str().unwrap().to_string();
    let bundle = env.bundle(&id, &pause, |config| {
        runtime_tests::join_namespace(config, "network", &path);
        config["linux"]["netDevices"] = json!({"nd0": {}, "ndv0": {"name": "taken0"}});
    });
    let taken = "\"ndv0\" cannot become \"taken0\" in the container: the container's network \
                 namespace has an interface of that name";
    create_refused(&env, &id, &bundle, &[], &[taken]);
    assert_net_devices_home(&env);
    let left = joined.command("ip").args(["-o", "link"]).output().unwrap();
    let left = links_from_text(&String::from_utf8_lossy(&left.stdout));
    let left: Vec<&str> = left.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(left, ["lo", "taken0", "taken1"]);

    // A createRuntime hook that fails, after the interfaces moved in.
    let seen = env.scratch.join("links-seen-by-hook");
    let hook = format!("ip -o link > {}; exit 3", seen.display());
    let bundle = env.bundle(&id, &pause, |config| {
        config["linux"]["netDevices"] = json!({"nd0": {"name": "ctr0"}, "ndv0": {}});
        config["hooks"] = json!({"createRuntime": [
            {"path": "/bin/sh", "args": ["sh", "-c", hook]}
        ]});
    });
    create_refused(&env, &id, &bundle, &[], &["createRuntime"]);
    let seen = read(&seen);
    assert!(
        !seen.contains("nd0"),
        "nd0 was on the host when the hook ran: {seen}"
    );
    assert_net_devices_home(&env);
    assert_no_network_left(&env);
}

#[test]
fn net_devices_come_back_with_delete_force_after_berth_is_killed_during_create() {
    need_root!();
    let env = Env::with_netns("netdev-killed");
    add_net_devices(&env);
    let id = env.id("killed");
    let marker = env.scratch.join("hook-pid");
    let hook = format!(
        "echo $$ > {0}.tmp && mv {0}.tmp {0} && exec sleep 60",
        marker.display()
    );
    let bundle = env.bundle(&id, &["/bin/helper", "pause"], |config| {
        config["linux"]["netDevices"] = json!({"nd0": {"name": "ctr0"}, "ndv0": {}});
        config["hooks"] = json!({"createRuntime": [
            {"path": "/bin/sh", "args": ["sh", "-c", hook]}
        ]});
    });
    let mut create = env
        .berth_command(&["create", "--bundle", bundle.to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the createRuntime hook", || marker.exists());
    create.kill().unwrap();
    create.wait().unwrap();
    let hook_pid: i32 = read(&marker).trim().parse().unwrap();
    // SAFETY: kill(2) on the pid of the hook's sleep, a process this test started.
    unsafe { libc::kill(hook_pid, libc::SIGKILL) };

    // The init is gone with its channel to berth; the pinned namespace still holds both.
    assert_eq!(link_names(&host_ip(&env, &["link"])), ["lo", "ndv0-peer"]);
    assert_eq!(store_records(&env, "devices").len(), 1);
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    assert_net_devices_home(&env);
    assert_no_network_left(&env);
}

#[test]
fn the_demo_runs_start_to_end() {
    need_root!();
    let output = Command::new(workspace().join("scripts/demo"))
        .env("BERTH_BIN", berth_bin())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for expected in [
        "$ berth run -d -p 3000 --network host --bundle web-host lab-host",
        "ok: the container's page, fetched from the host at 127.0.0.1:3000",
        "$ ss -tlnp 'sport = :3000'",
        "ok: the container's httpd, pid ",
        "RESOURCE:PORTS",
        "$ berth run -d -p 8080:80 --network bridge --bundle web-bridge lab-bridge",
        "$ ss -tuanp 'sport = :8080'",
        "ok: no process holds the host's port 8080, so no proxy either",
        "\"Networks\": {",
        "inet 172.17.0.",
        "default via 172.17.0.1 dev eth0",
        "\"NetworkMode\": \"host\"",
        "\"NetworkMode\": \"bridge\"",
        "ok: the container's page, fetched from the host at 127.0.0.1:8080",
        "ok: no container, veth, lease, port reservation or rule is left",
        "The lab is over",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    // It leaves neither its namespace nor its state folder behind.
    let namespace = stdout
        .split_whitespace()
        .find(|word| word.starts_with("/run/netns/berth-demo-"))
        .unwrap_or_else(|| panic!("the demo names no namespace:\n{stdout}"));
    assert!(!Path::new(namespace).exists(), "{namespace} is left");
    let lab = stdout
        .split_whitespace()
        .find(|word| word.starts_with("/tmp/berth-demo."))
        .unwrap_or_else(|| panic!("the demo names no lab folder:\n{stdout}"));
    let lab = lab.trim_end_matches(|c: char| !c.is_alphanumeric());
    let lab = lab.split('/').take(3).collect::<Vec<_>>().join("/");
    assert!(!Path::new(&lab).exists(), "{lab} is left");
}

/// Another `--root` in the same throwaway host; its containers are deleted when it is dropped.
struct OtherRoot<'a> {
    env: &'a Env,
    root: PathBuf,
}

impl OtherRoot<'_> {
    fn berth(&self, args: &[&str]) -> Run {
        let mut command = self.env.command(berth_bin());
        command.arg("--root").arg(&self.root).args(args);
        run_to_files(&mut command, &self.env.scratch)
    }
}

impl Drop for OtherRoot<'_> {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !id.starts_with('.') {
                let _ = self.berth(&["delete", "--force", &id]);
            }
        }
    }
}

#[test]
fn two_roots_on_one_bridge_never_hand_out_one_address() {
    need_root!();
    let env = Env::with_netns("two-roots");
    let other = OtherRoot {
        env: &env,
        root: env.scratch.join("other-root"),
    };
    let bundle = |id: &str| env.bundle(id, &["/bin/helper", "pause"], |_| {});
    let address_in = |run: Run| {
        let out: Value = serde_json::from_str(run.ok()).unwrap();
        in_default_subnet(out[0]["NetworkSettings"]["IPAddress"].as_str().unwrap())
    };
    let start = |id: &str, own: bool| {
        let b = bundle(id);
        let args = [
            "run",
            "-d",
            "--network",
            "bridge",
            "--bundle",
            b.to_str().unwrap(),
            id,
        ];
        match own {
            true => env.berth(&args).ok().to_string(),
            false => other.berth(&args).ok().to_string(),
        };
    };

    // Twelve creates at once, alternately under each root.
    let ids: Vec<(String, bool)> = (0..12)
        .map(|n| (env.id(&format!("r{n}")), n % 2 == 0))
        .collect();
    std::thread::scope(|scope| {
        for (id, own) in &ids {
            scope.spawn(|| start(id, *own));
        }
    });
    let inspect = |id: &str, own: bool| match own {
        true => address_in(env.berth(&["inspect", id])),
        false => address_in(other.berth(&["inspect", id])),
    };
    let mut seen = HashSet::new();
    for (id, own) in &ids {
        assert!(
            seen.insert(inspect(id, *own)),
            "{id} got an address twice: {seen:?}"
        );
    }

    // The first root's containers all go; docker0 stays for the other's, and the first root's
    // next containers take none of the other's addresses.
    for (id, own) in &ids {
        if *own {
            env.berth(&["delete", "--force", id]).ok();
        }
    }
    let theirs: HashSet<Ipv4Addr> = ids
        .iter()
        .filter(|(_, own)| !own)
        .map(|(id, own)| inspect(id, *own))
        .collect();
    for n in 0..6 {
        let id = env.id(&format!("again{n}"));
        start(&id, true);
        let address = inspect(&id, true);
        assert!(
            !theirs.contains(&address),
            "{address} is the other root's too"
        );
    }
    // The other root's containers still reach the gateway through berth's table.
    let (id, _) = ids.iter().find(|(_, own)| !own).unwrap();
    let pid = other.berth(&["state", id]).ok().to_string();
    let pid = serde_json::from_str::<Value>(&pid).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let ping = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n"])
        .arg(rootfs().join("bin/busybox"))
        .args(["ping", "-c", "1", "-W", "2", "172.17.0.1"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{ping:?}");
    for (id, own) in &ids {
        if !*own {
            other.berth(&["delete", "--force", id]).ok();
        }
    }
    for n in 0..6 {
        env.berth(&["delete", "--force", &env.id(&format!("again{n}"))])
            .ok();
    }
    // once the kernel removed the veths, each root's next command settles its leases
    wait_until("the veths to go", || {
        !link_names(&host_ip(&env, &["link"]))
            .iter()
            .any(|name| name.starts_with("veth"))
    });
    other.berth(&["delete", "--force", "settle"]).ok();
    assert_no_network_left(&env);
}

/// A container holding CAP_NET_ADMIN owns the interfaces moved into it while it runs, but what
/// `delete` hands back to the host must be those interfaces, not others it made: here it
/// renames the host's veth end and makes an ifb under its container name. Looked up by name,
/// the ifb came back as the host's `ndv0`, with the host's address and route, and the real
/// veth died with the namespace (its host peer too).
#[test]
fn net_devices_give_back_the_interface_moved_in_not_one_the_container_named_like_it() {
    need_root!();
    let env = Env::with_netns("netdev-swap");
    add_net_devices(&env);
    let id = env.id("netdevswap");
    let swap = "ip link set eth1 down && ip link set eth1 name moved && \
                ip link add name eth1 type ifb && echo swapped; exec /bin/helper pause";
    let bundle = env.bundle(&id, &["sh", "-c", swap], |config| {
        config["linux"]["netDevices"] = json!({"ndv0": {"name": "eth1"}});
        for set in ["bounding", "effective", "permitted"] {
            config["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_NET_ADMIN"));
        }
    });
    let container = Detached::start(&env, &id, &bundle, &[]);
    container.output_with("swapped");
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_gone(&id);
    let ndv0 = &host_ip(&env, &["-d", "link", "show", "ndv0"])[0];
    assert_eq!(ndv0["linkinfo"]["info_kind"], "veth", "{ndv0}");
    assert_net_devices_home(&env);
    assert_no_network_left(&env);
}

/// What reached the test's own sockets in the throwaway host: datagrams and connections to a
/// service bound to 127.0.0.1 only, and datagrams to a port open on every address.
#[derive(Debug, Default, PartialEq)]
struct Arrivals {
    loopback_datagrams: Vec<String>,
    loopback_connections: usize,
    open_datagrams: Vec<String>,
}

/// Sockets of the test in the throwaway host, bound by a thread that enters it: UDP and TCP on
/// 127.0.0.1:`loopback`, UDP on 0.0.0.0:`open`. They count what arrives until `stop` is set.
fn watch_host_sockets(
    env: &Env,
    loopback: u16,
    open: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Arrivals> {
    use std::sync::atomic::Ordering;
    let path = host_ns(env).path.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let watcher = std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on a descriptor we own; it moves only this thread, which ends here.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let udp_loopback = std::net::UdpSocket::bind(("127.0.0.1", loopback)).unwrap();
        let tcp_loopback = std::net::TcpListener::bind(("127.0.0.1", loopback)).unwrap();
        let udp_open = std::net::UdpSocket::bind(("0.0.0.0", open)).unwrap();
        for socket in [&udp_loopback, &udp_open] {
            socket.set_nonblocking(true).unwrap();
        }
        tcp_loopback.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let mut arrivals = Arrivals::default();
        let mut buffer = [0u8; 512];
        let text = |length: usize, from: std::net::SocketAddr, buffer: &[u8]| {
            format!(
                "{from} {}",
                String::from_utf8_lossy(&buffer[..length]).trim()
            )
        };
        while !stop.load(Ordering::Relaxed) {
            while let Ok((length, from)) = udp_loopback.recv_from(&mut buffer) {
                arrivals
                    .loopback_datagrams
                    .push(text(length, from, &buffer));
            }
            while let Ok((length, from)) = udp_open.recv_from(&mut buffer) {
                arrivals.open_datagrams.push(text(length, from, &buffer));
            }
            while tcp_loopback.accept().is_ok() {
                arrivals.loopback_connections += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        arrivals
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    watcher
}

/// The MAC address of a link of the throwaway host.
fn host_mac(env: &Env, link: &str) -> String {
    host_ip(env, &["link", "show", link])[0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The shell lines that send raw frames from the container's eth0 to the gateway's MAC
/// `gateway_mac`, from the container's own MAC and address unless `source` gives others: a
/// datagram to each `udp` ADDRESS:PORT, a SYN to each `tcp` one.
fn raw_frames_script(gateway_mac: &str, source: Option<(&str, &str)>, frames: &[&str]) -> String {
    let (mac, ip) = source.unwrap_or(("$own_mac", "$own_ip"));
    let mut script = String::from(
        "own_mac=$(cat /sys/class/net/eth0/address); \
         own_ip=$(ip -o -4 addr show dev eth0 | sed -n 's/.* inet \\([0-9.]*\\)\\/.*/\\1/p'); \
         echo \"from $own_ip $own_mac\"; ",
    );
    for frame in frames {
        let (protocol, target) = frame.split_once(' ').unwrap();
        let (address, port) = target.split_once(':').unwrap();
        script += &format!(
            "echo '# {protocol} {target}'; \
             /bin/helper raw-frame eth0 {gateway_mac} {mac} {ip} {address} {protocol} {port}; "
        );
    }
    script
}

#[test]
fn raw_frames_to_loopback_from_a_bridge_container_reach_nothing() {
    need_root!();
    let env = Env::with_netns("raw-loopback");
    // Another container publishes a port: route_localnet is on for docker0 from here on.
    let web = env.id("web");
    let bundle = env.bundle(&web, &["httpd", "-f", "-p", "80", "-h", "/var/www"], |_| {});
    Detached::start(
        &env,
        &web,
        &bundle,
        &["--network", "bridge", "-p", "8080:80"],
    );
    assert_eq!(
        on_host(
            &env,
            "cat",
            &["/proc/sys/net/ipv4/conf/docker0/route_localnet"]
        )
        .trim(),
        "1"
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_host_sockets(&env, 9999, 9998, stop.clone());

    // A container holding CAP_NET_RAW writes frames to the gateway's MAC: to the host's
    // 127.0.0.1:9999 (a datagram and a SYN), and, as a control that its frames do arrive, a
    // datagram to the gateway's own address.
    let attacker = env.id("raw");
    let script = raw_frames_script(
        &host_mac(&env, "docker0"),
        None,
        &[
            "udp 172.17.0.1:9998",
            "udp 127.0.0.1:9999",
            "tcp 127.0.0.1:9999",
        ],
    );
    let bundle = env.bundle(&attacker, &["sh", "-c", &script], with_net_raw);
    let b = bundle.to_str().unwrap();
    let out = env
        .berth(&["run", "--network", "bridge", "--bundle", b, &attacker])
        .ok()
        .to_string();
    assert_eq!(
        section(&out, "tcp 127.0.0.1:9999"),
        "sent\nno answer\n",
        "{out}"
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let arrivals = watcher.join().unwrap();
    assert_eq!(arrivals.open_datagrams.len(), 1, "{arrivals:?}\n{out}");
    assert_eq!(arrivals.loopback_datagrams, Vec::<String>::new(), "{out}");
    assert_eq!(arrivals.loopback_connections, 0);

    // The published port still answers on 127.0.0.1.
    let index = std::fs::read_to_string(rootfs().join("var/www/index.html")).unwrap();
    assert_eq!(fetch_when_served(&env, "127.0.0.1", 8080), index);
    env.berth(&["delete", "--force", &web]).ok();
    assert_no_network_left(&env);
}

#[test]
fn a_bridge_container_sends_only_from_its_own_address_and_mac() {
    need_root!();
    let env = Env::with_netns("spoof");
    let neighbour = env.id("neighbour");
    let bundle = env.bundle(&neighbour, &["/bin/helper", "pause"], |_| {});
    Detached::start(&env, &neighbour, &bundle, &["--network", "bridge"]).output_with("pausing");
    let net = settings(&env, &neighbour);
    let (their_ip, their_mac) = (
        net["IPAddress"].as_str().unwrap().to_string(),
        net["MacAddress"].as_str().unwrap().to_string(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_host_sockets(&env, 9997, 9998, stop.clone());

    // Raw frames to the gateway's UDP port 9998: from the container's own MAC and address,
    // then with the neighbour's address, the neighbour's MAC, and both.
    let gateway = host_mac(&env, "docker0");
    let mut script = raw_frames_script(&gateway, None, &["udp 172.17.0.1:9998"]);
    for (tag, mac, ip) in [
        ("their address", "$own_mac", their_ip.as_str()),
        ("their mac", their_mac.as_str(), "$own_ip"),
        ("both", their_mac.as_str(), their_ip.as_str()),
    ] {
        script += &format!(
            "echo '# {tag}'; \
             /bin/helper raw-frame eth0 {gateway} {mac} {ip} 172.17.0.1 udp 9998; "
        );
    }
    let attacker = env.id("spoofer");
    let bundle = env.bundle(&attacker, &["sh", "-c", &script], with_net_raw);
    let b = bundle.to_str().unwrap();
    let out = env
        .berth(&["run", "--network", "bridge", "--bundle", b, &attacker])
        .ok()
        .to_string();
    for tag in ["their address", "their mac", "both"] {
        assert_eq!(section(&out, tag), "sent\n", "{out}");
    }
    let own_ip = out
        .lines()
        .find_map(|line| line.strip_prefix("from "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let arrivals = watcher.join().unwrap();
    assert_eq!(
        arrivals.open_datagrams,
        [format!("{own_ip}:40123 berth raw frame")],
        "{out}"
    );
    // The bridge did not learn the neighbour's MAC on the spoofer's port: the neighbour
    // still answers the host.
    on_host(
        &env,
        rootfs().join("bin/busybox").to_str().unwrap(),
        &["ping", "-c", "1", "-W", "2", &their_ip],
    );
    env.berth(&["delete", "--force", &neighbour]).ok();
    assert_no_network_left(&env);
}

/// A bridge container that publishes a port, on a throwaway host whose `FORWARD` policy is
/// `policy` (set with `iptables`: iptables-nft or iptables-legacy), with a second namespace as its LAN neighbour (192.0.2.2, the host being
/// 192.0.2.1): the container pings the neighbour, the neighbour fetches the published port.
/// With DROP, berth's accept rules are in the FORWARD chain while the container runs, and gone
/// after it.
fn forwarding_with_policy(iptables: &str, policy: &str) {
    let env = Env::with_netns(&format!("{iptables}-{}", policy.to_lowercase()));
    let lan = NetNs::new(&format!("{}-lan", env.name));
    on_host(
        &env,
        "ip",
        &[
            "link", "add", "lan0", "type", "veth", "peer", "name", "lan1",
        ],
    );
    on_host(&env, "ip", &["link", "set", "lan1", "netns", &lan.name]);
    on_host(&env, "ip", &["addr", "add", "192.0.2.1/24", "dev", "lan0"]);
    on_host(&env, "ip", &["link", "set", "lan0", "up"]);
    for args in [
        &["addr", "add", "192.0.2.2/24", "dev", "lan1"][..],
        &["link", "set", "lan1", "up"],
    ] {
        assert!(lan.command("ip").args(args).status().unwrap().success());
    }
    on_host(&env, iptables, &["-P", "FORWARD", policy]);

    let id = env.id("web");
    let bundle = env.bundle(&id, &["httpd", "-f", "-p", "80", "-h", "/var/www"], |_| {});
    let web = Detached::start(
        &env,
        &id,
        &bundle,
        &["--network", "bridge", "-p", "8080:80"],
    );
    let rules = on_host(&env, iptables, &["-S", "FORWARD"]);
    assert!(rules.contains(&format!("-P FORWARD {policy}")), "{rules}");
    assert_eq!(rules.contains("berth docker0"), policy == "DROP", "{rules}");

    // Out: the container pings its host's LAN neighbour.
    let ping = Command::new("nsenter")
        .args(["-t", &web.pid.to_string(), "-n"])
        .arg(rootfs().join("bin/busybox"))
        .args(["ping", "-c", "1", "-W", "2", "192.0.2.2"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "policy {policy}: {ping:?}");
    // In: the neighbour fetches the published port at the host's address.
    let index = std::fs::read_to_string(rootfs().join("var/www/index.html")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let page = loop {
        match fetch_in(&lan.path, "192.0.2.1", 8080) {
            Ok(page) => break page,
            Err(err) if Instant::now() > deadline => panic!("policy {policy}: {err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(page, index);

    env.berth(&["delete", "--force", &id]).ok();
    assert_no_network_left(&env);
    let rules = on_host(&env, iptables, &["-S", "FORWARD"]);
    assert!(!rules.contains("berth"), "{rules}");
    assert!(rules.contains(&format!("-P FORWARD {policy}")), "{rules}");
}

#[test]
fn forwarding_passes_a_host_firewall_that_drops_it() {
    need_root!();
    forwarding_with_policy("iptables-nft", "DROP");
}

#[test]
fn forwarding_passes_an_iptables_legacy_firewall_that_drops_it() {
    need_root!();
    forwarding_with_policy("iptables-legacy", "DROP");
}

#[test]
fn forwarding_works_with_a_host_firewall_that_accepts_it() {
    need_root!();
    forwarding_with_policy("iptables-nft", "ACCEPT");
}
