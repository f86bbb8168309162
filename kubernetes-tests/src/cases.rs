//! The cases: what a Kubernetes user relies on when a pod runs on berth, each checked the way a
//! person would look at it (namespaces of the processes, cgroup files, the log file, a TCP
//! connection, the host's links and mounts).

use crate::host;
use crate::pod::{ContainerSpec, Node, Pod, PodSpec};
use crate::stream;
use anyhow::{anyhow, bail, ensure, Context, Result};
use k8s_cri::v1::{ContainerState, LinuxContainerResources, PodSandboxState};
use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

type Case = fn(&Node) -> Result<()>;

/// Every case, by name, in the order they run.
pub const CASES: &[(&str, Case)] = &[
    ("calls-reach-the-runtime", calls_reach_the_runtime),
    ("pod-shares-network-and-ipc", pod_shares_network_and_ipc),
    ("host-network", host_network),
    ("cpu-and-memory-limits", cpu_and_memory_limits),
    ("exec-sync", exec_sync),
    ("exec-streaming", exec_streaming),
    ("container-log", container_log),
    ("restart-after-failure", restart_after_failure),
    ("removed-pod-leaves-nothing", removed_pod_leaves_nothing),
];

fn helper_pause() -> Vec<String> {
    vec!["helper".into(), "pause".into()]
}

fn paused(name: &str) -> ContainerSpec<'_> {
    ContainerSpec {
        name,
        attempt: 0,
        command: helper_pause(),
        resources: None,
    }
}

/// ExecSync that must exit 0; returns its standard output.
fn exec_ok(node: &Node, id: &str, cmd: &[&str]) -> Result<String> {
    let result = node.cri.exec_sync(id, cmd, Duration::from_secs(10))?;
    ensure!(
        result.exit_code == 0,
        "ExecSync {cmd:?} exited {}: {}{}",
        result.exit_code,
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    Ok(String::from_utf8_lossy(&result.stdout).into_owned())
}

/// Polls `check` every 50 ms for up to 10 s until it returns Some.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("waited 10 s for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a TCP server at `address` sends before it closes the connection.
fn fetch(address: &str) -> Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// Fetches from `address`, retrying while the server is not listening yet.
fn fetch_when_listening(address: &str) -> Result<String> {
    let mut last = None;
    let text = wait_for(&format!("a server on {address}"), || match fetch(address) {
        Ok(text) => Ok(Some(text)),
        Err(e) => {
            last = Some(e);
            Ok(None)
        }
    });
    text.map_err(|e| anyhow!("{e}: {}", last.map(|e| e.to_string()).unwrap_or_default()))
}

/// One line of a CRI log file: `TIMESTAMP STREAM TAG CONTENT`, the format kubelet reads
/// (`2016-10-06T00:17:09.669794202Z stdout F hello`), with TAG `F` for a full line and `P` for a
/// part of one that was longer than the runtime's maximum.
#[derive(Debug, PartialEq)]
struct LogLine {
    stream: String,
    tag: String,
    content: String,
}

fn parse_log(path: &Path) -> Result<Vec<LogLine>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines().map(parse_log_line).collect()
}

fn parse_log_line(line: &str) -> Result<LogLine> {
    let bad = || anyhow!("not a CRI log line: {line:?}");
    let (time, rest) = line.split_once(' ').ok_or_else(bad)?;
    let (stream, rest) = rest.split_once(' ').ok_or_else(bad)?;
    let (tag, content) = rest.split_once(' ').unwrap_or((rest, ""));
    ensure!(
        is_rfc3339_nano(time),
        "{line:?} does not start with an RFC 3339 time"
    );
    ensure!(
        stream == "stdout" || stream == "stderr",
        "{line:?}: stream {stream:?}"
    );
    ensure!(tag == "F" || tag == "P", "{line:?}: tag {tag:?}");
    Ok(LogLine {
        stream: stream.into(),
        tag: tag.into(),
        content: content.into(),
    })
}

/// `2016-10-06T00:17:09.669794202Z` or with an offset (`+01:00`): RFC 3339 with nanoseconds.
fn is_rfc3339_nano(time: &str) -> bool {
    let b = time.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return false;
    }
    let mut rest = &time[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &fraction[n..];
    }
    rest == "Z" || (rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')))
}

/// The container's log lines once `done` says they are complete (10 s at most).
fn wait_for_log(path: &Path, done: impl Fn(&[LogLine]) -> bool) -> Result<Vec<LogLine>> {
    let mut last = Vec::new();
    let result = wait_for(&format!("lines in {}", path.display()), || {
        let lines = if path.exists() {
            parse_log(path)?
        } else {
            Vec::new()
        };
        if done(&lines) {
            return Ok(Some(lines));
        }
        last = lines;
        Ok(None)
    });
    result.map_err(|e| anyhow!("{e}; it holds {last:?}"))
}

fn has_line(lines: &[LogLine], stream: &str, content: &str) -> bool {
    lines
        .iter()
        .any(|l| l.stream == stream && l.tag == "F" && l.content == content)
}

/// The runtime made the pod's containers: its `state` answers for the sandbox and the container
/// with the pids containerd reports, and (on the runc shim) the calls it received name them,
/// each with `--log BUNDLE/log.json`.
fn calls_reach_the_runtime(node: &Node) -> Result<()> {
    let mut pod = Pod::run(
        node,
        PodSpec {
            name: "reach".into(),
            host_network: false,
        },
    )?;
    let (id, process) = pod.run_container(&paused("app"))?;
    let sandbox = pod.sandbox().clone();
    for (what, id, process) in [("sandbox", &pod.id, &sandbox), ("container", &id, &process)] {
        let state = node.runtime.state(id)?;
        ensure!(
            state["status"] == "running" && state["pid"].as_u64() == Some(u64::from(process.pid)),
            "{} state {id} says {state}, not running as pid {}",
            node.runtime.binary.display(),
            process.pid
        );
        match &node.calls {
            Some(dir) => {
                let calls = host::recorded_calls(dir, id)?;
                let log = format!("/{id}/log.json");
                let create = calls
                    .iter()
                    .find(|argv| argv.contains(" create ") && argv.contains(&log))
                    .ok_or_else(|| {
                        anyhow!("no create call with --log …{log} for the {what}: {calls:?}")
                    })?;
                ensure!(
                    calls
                        .iter()
                        .any(|argv| argv.contains(" start ") && argv.contains(&log)),
                    "no start call for the {what}: {calls:?}"
                );
                // berth writes what it did to that log (runc only its failures).
                let bundle = state["bundle"].as_str().unwrap_or_default();
                let logged = std::fs::read_to_string(Path::new(bundle).join("log.json"))
                    .map_err(|e| anyhow!("no log.json in the {what}'s bundle {bundle:?}: {e}"))?;
                if node.runtime.is_berth() {
                    let infos: Vec<String> = logged
                        .lines()
                        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                        .filter(|l| l["level"] == "info")
                        .filter_map(|l| l["msg"].as_str().map(String::from))
                        .collect();
                    for did in ["created", "started"] {
                        let start = format!("{did} container {id:?}");
                        ensure!(
                            infos.iter().any(|m| m.starts_with(&start)),
                            "berth's log.json for the {what} has no line {start:?}:\n{logged}"
                        );
                    }
                }
                println!("    {what} {id}: {create}");
            }
            None => {
                let shims = host::processes_mentioning(&format!("-id {}", pod.id));
                ensure!(
                    shims.iter().any(|line| line.contains(&node.shim)),
                    "no {} process for sandbox {}: {shims:?}",
                    node.shim,
                    pod.id
                );
                println!(
                    "    {what} {id}: in {}'s state, pid {}",
                    node.runtime.root.display(),
                    process.pid
                );
            }
        }
    }
    pod.remove()
}

/// Two containers of one pod share the sandbox's network, IPC and UTS namespaces, each with a
/// PID namespace of its own: one serves on localhost and the other fetches it, a System V
/// message queue one writes the other reads; the pod's address comes from CNI and the host
/// reaches the server through it.
fn pod_shares_network_and_ipc(node: &Node) -> Result<()> {
    let mut pod = Pod::run(
        node,
        PodSpec {
            name: "shared".into(),
            host_network: false,
        },
    )?;
    let text = "hello from the server container";
    let (server, server_process) = pod.run_container(&ContainerSpec {
        name: "server",
        attempt: 0,
        command: vec![
            "helper".into(),
            "listen".into(),
            "tcp".into(),
            "20080".into(),
            text.into(),
        ],
        resources: None,
    })?;
    let (client, client_process) = pod.run_container(&ContainerSpec::shell(
        "client",
        "until helper connect 127.0.0.1 20080; do sleep 0.1; done; exec helper pause",
    ))?;
    let sandbox = pod.sandbox().clone();
    for kind in ["net", "ipc", "uts"] {
        let pod_ns = sandbox.namespace(kind)?;
        for (name, process) in [("server", &server_process), ("client", &client_process)] {
            ensure!(
                process.namespace(kind)? == pod_ns,
                "the {name} container's {kind} namespace is {}, the sandbox's {pod_ns}",
                process.namespace(kind)?
            );
        }
    }
    ensure!(
        sandbox.namespace("net")? != host::own_namespace("net")?,
        "the pod is in the host's network namespace"
    );
    ensure!(
        server_process.namespace("pid")? != client_process.namespace("pid")?,
        "the two containers share a PID namespace, though the pod does not ask for it"
    );
    // The client fetched the page over localhost as it started: its log says so.
    wait_for_log(&pod.log_path(&client)?, |lines| {
        has_line(lines, "stdout", text)
    })?;
    let fetched = exec_ok(node, &client, &["helper", "connect", "127.0.0.1", "20080"])?;
    ensure!(
        fetched == format!("{text}\n"),
        "the client fetched {fetched:?}"
    );
    let hostname = exec_ok(node, &client, &["hostname"])?;
    ensure!(
        hostname == "shared\n",
        "the client's hostname is {hostname:?}, not the pod's"
    );

    let sent = exec_ok(
        node,
        &server,
        &["helper", "msgq-send", "4242", "from the server container"],
    )?;
    ensure!(sent == "sent\n", "msgq-send said {sent:?}");
    let received = exec_ok(node, &client, &["helper", "msgq-recv", "4242"])?;
    ensure!(
        received == "from the server container\n",
        "the client's msgq-recv said {received:?}"
    );

    let ip = pod.ip()?;
    ensure!(
        ip.starts_with(&node.pod_prefix),
        "the pod's address {ip:?} is not on the CNI network {}*",
        node.pod_prefix
    );
    let eth0 = exec_ok(node, &server, &["ip", "-o", "-4", "addr", "show", "eth0"])?;
    ensure!(
        eth0.contains(&format!("inet {ip}/")),
        "eth0 in the pod: {eth0:?}, not {ip}"
    );
    ensure!(!pod.veths().is_empty(), "no veth on the host for the pod");
    let from_host = fetch_when_listening(&format!("{ip}:20080"))?;
    ensure!(
        from_host == format!("{text}\n"),
        "the host fetched {from_host:?} from {ip}:20080"
    );
    pod.remove()
}

/// A hostNetwork pod: its containers are in the host's network namespace (the ECS host-mode
/// lab, the Kubernetes way), see the host's interfaces, and their listener answers on the
/// host's loopback and is in the host's socket table with its host pid.
fn host_network(node: &Node) -> Result<()> {
    let mut pod = Pod::run(
        node,
        PodSpec {
            name: "hostnet".into(),
            host_network: true,
        },
    )?;
    let host_net = host::own_namespace("net")?;
    ensure!(
        pod.sandbox().namespace("net")? == host_net,
        "the hostNetwork sandbox is not in the host's network namespace"
    );
    ensure!(
        pod.netns_path().is_none(),
        "a hostNetwork pod got a network namespace {:?}",
        pod.netns_path()
    );
    ensure!(
        pod.veths().is_empty(),
        "a hostNetwork pod got veths {:?}",
        pod.veths()
    );
    let text = "hello from a hostNetwork pod";
    let (web, process) = pod.run_container(&ContainerSpec {
        name: "web",
        attempt: 0,
        command: vec![
            "helper".into(),
            "listen".into(),
            "tcp".into(),
            "20081".into(),
            text.into(),
        ],
        resources: None,
    })?;
    ensure!(
        process.namespace("net")? == host_net,
        "the container is not in the host's network namespace"
    );
    let inside = exec_ok(node, &web, &["ip", "-o", "link"])?;
    let mut inside: Vec<String> = inside
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    let mut outside = host::links(None)?;
    inside.sort();
    outside.sort();
    ensure!(
        inside == outside,
        "ip link inside shows {inside:?}, the host has {outside:?}"
    );
    ensure!(
        inside.iter().any(|n| n == "host0"),
        "the host's host0 is not seen inside: {inside:?}"
    );
    let fetched = fetch_when_listening("127.0.0.1:20081")?;
    ensure!(
        fetched == format!("{text}\n"),
        "the host fetched {fetched:?} from 127.0.0.1:20081"
    );
    let sockets = host::run("ss", &["-Htlnp", "sport = :20081"])?;
    ensure!(
        sockets.contains(&format!("pid={},", process.pid)),
        "the host's socket table has no listener on 20081 with the container's pid {}: {sockets:?}",
        process.pid
    );
    pod.remove()
}

/// CPU and memory limits (500m, 64Mi: quota 50000 per 100000 µs, 512 shares) are in the
/// container's cgroup, read on the host and from inside the container.
fn cpu_and_memory_limits(node: &Node) -> Result<()> {
    let mut pod = Pod::run(
        node,
        PodSpec {
            name: "limits".into(),
            host_network: false,
        },
    )?;
    let memory = 64 * 1024 * 1024;
    let (id, process) = pod.run_container(&ContainerSpec {
        name: "limited",
        attempt: 0,
        command: helper_pause(),
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: memory,
            ..Default::default()
        }),
    })?;
    let v2 = process.cgroup_value(&["memory.limit_in_bytes"]).is_err();
    // (file on v1, file on v2, what it must hold on each)
    let cpu_weight = 1 + ((512 - 2) * 9999) / 262142; // runc's shares-to-weight conversion
    let checks: [(&str, &str, String, String); 3] = [
        (
            "cpu.cfs_quota_us",
            "cpu.max",
            "50000".into(),
            "50000 100000".into(),
        ),
        (
            "cpu.shares",
            "cpu.weight",
            "512".into(),
            cpu_weight.to_string(),
        ),
        (
            "memory.limit_in_bytes",
            "memory.max",
            memory.to_string(),
            memory.to_string(),
        ),
    ];
    for (v1_file, v2_file, v1_want, v2_want) in checks {
        let (file, want) = if v2 {
            (v2_file, v2_want)
        } else {
            (v1_file, v1_want)
        };
        let on_host = process.cgroup_value(&[file])?;
        ensure!(
            on_host == want,
            "{file} on the host is {on_host}, not {want}"
        );
        // Inside, the container's own cgroup directories are mounted at /sys/fs/cgroup (one per
        // v1 hierarchy, or the cgroup2 root).
        let script = format!(
            "for f in /sys/fs/cgroup/{file} /sys/fs/cgroup/*/{file}; do [ -f \"$f\" ] && exec cat \"$f\"; done; exit 1"
        );
        let inside = exec_ok(node, &id, &["sh", "-c", &script])?;
        ensure!(
            inside.trim() == want,
            "{file} inside the container is {:?}, not {want}",
            inside.trim()
        );
    }
    // The memory limit holds: a process that writes 128 MiB is killed by the kernel (no swap
    // here, and containerd sets the swap limit to the memory limit where it can).
    let alloc = node
        .cri
        .exec_sync(&id, &["helper", "alloc", "128"], Duration::from_secs(20))?;
    ensure!(
        alloc.exit_code == 137,
        "helper alloc 128 under a 64 MiB limit exited {} ({})",
        alloc.exit_code,
        String::from_utf8_lossy(&alloc.stdout).trim()
    );
    if !v2 {
        let period = process.cgroup_value(&["cpu.cfs_period_us"])?;
        ensure!(period == "100000", "cpu.cfs_period_us is {period}");
    }
    pod.remove()
}

/// ExecSync runs a command in the container and returns its standard output, standard error
/// and exit code; one that outlives its timeout is an error.
fn exec_sync(node: &Node) -> Result<()> {
    let mut pod = Pod::run(
        node,
        PodSpec {
            name: "exec".into(),
            host_network: false,
        },
    )?;
    let (id, _) = pod.run_container(&paused("shell"))?;
    let result = node.cri.exec_sync(
        &id,
        &["sh", "-c", "echo to stdout; echo to stderr >&2; exit 3"],
        Duration::from_secs(10),
    )?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr),
    );
    ensure!(
        stdout == "to stdout\n" && stderr == "to stderr\n" && result.exit_code == 3,
        "ExecSync gave stdout {stdout:?}, stderr {stderr:?}, exit code {}",
        result.exit_code
    );
    let ids = exec_ok(node, &id, &["helper", "ids"])?;
    ensure!(
        ids.starts_with("uid=0 gid=0 "),
        "the exec'd process runs as {ids:?}"
    );
    let started = Instant::now();
    match node
        .cri
        .exec_sync(&id, &["sleep", "30"], Duration::from_secs(1))
    {
        Err(e) if started.elapsed() < Duration::from_secs(10) => {
            ensure!(
                e.to_string().contains("timeout"),
                "ExecSync past its timeout failed with {e:#}"
            )
        }
        Err(e) => bail!(
            "ExecSync past its 1 s timeout took {:?}: {e:#}",
            started.elapsed()
        ),
        Ok(r) => bail!(
            "ExecSync of sleep 30 with a 1 s timeout returned exit code {}",
            r.exit_code
        ),
    }
    pod.remove()
}

/// Exec through the streaming server, as `kubectl exec` reaches it: the output of each stream
/// and the exit code arrive over the session.
fn exec_streaming(node: &Node) -> Result<()> {
    let mut pod = Pod::run(
        node,
        PodSpec {
            name: "stream".into(),
            host_network: false,
        },
    )?;
    let (id, _) = pod.run_container(&paused("shell"))?;
    let url = node.cri.exec(
        &id,
        &[
            "sh",
            "-c",
            "echo streamed out; echo streamed err >&2; exit 5",
        ],
    )?;
    let output = stream::exec(&url)?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    ensure!(
        stdout == "streamed out\n" && stderr == "streamed err\n" && output.exit_code == 5,
        "Exec through {url} gave stdout {stdout:?}, stderr {stderr:?}, exit code {}",
        output.exit_code
    );
    let url = node.cri.exec(&id, &["helper", "hostname"])?;
    let output = stream::exec(&url)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.exit_code == 0 && stdout.starts_with("hostname=stream\n"),
        "Exec of helper hostname gave {stdout:?}, exit code {}",
        output.exit_code
    );
    pod.remove()
}

/// The container's standard output and error land in its log file in the CRI format (a line
/// longer than containerd's 16 KiB maximum split into P and F parts), and after the file is
/// rotated ReopenContainerLog makes the runtime write a new one.
fn container_log(node: &Node) -> Result<()> {
    let mut pod = Pod::run(
        node,
        PodSpec {
            name: "logs".into(),
            host_network: false,
        },
    )?;
    let script = "echo first line; echo on stderr >&2; \
        head -c 20000 /dev/zero | tr '\\0' x; echo; echo ready; \
        trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done";
    let (id, _) = pod.run_container(&ContainerSpec::shell("logger", script))?;
    let path = pod.log_path(&id)?;
    ensure!(
        path.ends_with("logger/0.log"),
        "the log path is {}",
        path.display()
    );
    let lines = wait_for_log(&path, |lines| has_line(lines, "stdout", "ready"))?;
    ensure!(
        has_line(&lines, "stdout", "first line"),
        "no stdout line 'first line': {lines:?}"
    );
    ensure!(
        has_line(&lines, "stderr", "on stderr"),
        "no stderr line 'on stderr': {lines:?}"
    );
    let long: Vec<&LogLine> = lines
        .iter()
        .filter(|l| l.content.starts_with('x'))
        .collect();
    let long_ok = long.len() == 2
        && long[0].tag == "P"
        && long[1].tag == "F"
        && long[0].content.len() + long[1].content.len() == 20000
        && long.iter().all(|l| l.content.bytes().all(|b| b == b'x'));
    ensure!(
        long_ok,
        "the 20000-byte line is logged as {:?}",
        long.iter()
            .map(|l| (&l.tag, l.content.len()))
            .collect::<Vec<_>>()
    );

    // Rotation, as kubelet's log manager does it: rename, then ReopenContainerLog.
    let rotated = path.with_extension("log.1");
    fs::rename(&path, &rotated)?;
    node.cri.reopen_container_log(&id)?;
    let new_lines = wait_for_log(&path, |lines| {
        lines.iter().any(|l| l.content.starts_with("tick "))
    })?;
    let tick = |l: &LogLine| {
        l.content
            .strip_prefix("tick ")
            .and_then(|n| n.parse::<u64>().ok())
    };
    let last_old = parse_log(&rotated)?.iter().filter_map(tick).max();
    let first_new = new_lines.iter().filter_map(tick).min();
    ensure!(
        matches!((last_old, first_new), (Some(old), Some(new)) if new > old),
        "after ReopenContainerLog the rotated file ends at tick {last_old:?} and the new one starts at {first_new:?}"
    );
    pod.remove()
}

/// A container that exits non-zero is reported exited with its code and reason; kubelet then
/// starts a new one (attempt 1) in the same sandbox, which runs in the pod's namespaces while
/// the first one's log stays.
fn restart_after_failure(node: &Node) -> Result<()> {
    let mut pod = Pod::run(
        node,
        PodSpec {
            name: "restart".into(),
            host_network: false,
        },
    )?;
    let first = pod.create(&ContainerSpec::shell(
        "worker",
        "echo attempt 0 fails; exit 7",
    ))?;
    pod.start(&first)?;
    let status = pod.wait_exited(&first)?;
    // Both times are set, but not always in order: containerd takes the start time once the
    // runtime's `start` has returned, and a program this short may have exited by then.
    ensure!(
        status.exit_code == 7
            && status.reason == "Error"
            && status.finished_at > 0
            && status.started_at > 0,
        "the failed container's status: exit code {}, reason {:?}, started {} finished {}",
        status.exit_code,
        status.reason,
        status.started_at,
        status.finished_at
    );
    let first_log = pod.log_path(&first)?;
    wait_for_log(&first_log, |lines| {
        has_line(lines, "stdout", "attempt 0 fails")
    })?;

    let (second, process) = pod.run_container(&ContainerSpec {
        name: "worker",
        attempt: 1,
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo attempt 1 runs; exec helper pause".into(),
        ],
        resources: None,
    })?;
    ensure!(
        second != first,
        "the restarted container has the first one's id"
    );
    let (status, _) = node.cri.container_status(&second)?;
    ensure!(
        status.state == ContainerState::ContainerRunning as i32
            && status.metadata.as_ref().map(|m| m.attempt) == Some(1),
        "the restarted container: state {}, metadata {:?}",
        status.state,
        status.metadata
    );
    ensure!(
        process.namespace("net")? == pod.sandbox().namespace("net")?,
        "the restarted container is not in the pod's network namespace"
    );
    let second_log = pod.log_path(&second)?;
    ensure!(
        second_log.ends_with("worker/1.log"),
        "the restarted container logs to {}",
        second_log.display()
    );
    wait_for_log(&second_log, |lines| {
        has_line(lines, "stdout", "attempt 1 runs")
    })?;
    ensure!(
        first_log.exists(),
        "the first attempt's log {} is gone",
        first_log.display()
    );
    let (sandbox, _) = node.cri.pod_sandbox_status(&pod.id)?;
    ensure!(
        sandbox.state == PodSandboxState::SandboxReady as i32,
        "the sandbox is not ready after the restart"
    );
    // kubelet's garbage collector removes the dead container.
    pod.remove_container(&first)?;
    pod.remove()
}

/// A pod with two containers and an exec'd process, stopped and removed as kubelet does it,
/// leaves no process, mount, cgroup, network namespace, veth, address lease or runtime state.
fn removed_pod_leaves_nothing(node: &Node) -> Result<()> {
    let mut pod = Pod::run(
        node,
        PodSpec {
            name: "cleanup".into(),
            host_network: false,
        },
    )?;
    let (first, _) = pod.run_container(&paused("one"))?;
    pod.run_container(&ContainerSpec::shell(
        "two",
        "sleep 1000 & exec helper pause",
    ))?;
    // A process an exec left running in the container when the pod stops.
    exec_ok(node, &first, &["sh", "-c", "sleep 1000 >/dev/null 2>&1 &"])?;
    let netns = pod
        .netns_path()
        .ok_or_else(|| anyhow!("the pod has no network namespace file"))?
        .to_string();
    ensure!(
        Path::new(&netns).exists(),
        "the pod's network namespace {netns} does not exist"
    );
    ensure!(!pod.veths().is_empty(), "the pod has no veth");
    let ids: Vec<String> = std::iter::once(pod.id.clone())
        .chain(pod.containers.iter().cloned())
        .collect();
    for id in &ids {
        ensure!(
            node.runtime.state_dir(id).exists(),
            "no runtime state for {id} while it runs"
        );
    }
    ensure!(
        !host::mounts_mentioning(&ids)?.is_empty(),
        "no mount of the pod's while it runs"
    );
    println!("    before: {}", pod.describe_footprint());
    pod.remove()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_parse() {
        assert_eq!(
            parse_log_line("2016-10-06T00:17:09.669794202Z stdout F hello world").unwrap(),
            LogLine {
                stream: "stdout".into(),
                tag: "F".into(),
                content: "hello world".into()
            }
        );
        assert_eq!(
            parse_log_line("2016-10-06T00:17:09Z stderr P ")
                .unwrap()
                .content,
            ""
        );
        assert!(parse_log_line("2016-10-06T00:17:09.669794202+01:00 stdout F x").is_ok());
        assert!(parse_log_line("hello").is_err());
        assert!(parse_log_line("2016-10-06 00:17:09 stdout F x").is_err());
        assert!(parse_log_line("2016-10-06T00:17:09Z stdin F x").is_err());
        assert!(parse_log_line("2016-10-06T00:17:09Z stdout X x").is_err());
        assert!(parse_log_line("2016-10-06T00:17:09.1234567890Z stdout F x").is_err());
    }
}
