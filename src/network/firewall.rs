//! The NAT rules of a bridge: masquerade of its subnet, DNAT of published ports. nftables by
//! default (one table `ip berth-BRIDGE`, fed to `nft -f -` as netavark drives it); iptables
//! (iptables-nft on current distributions) where `nft` is missing.
//!
//! Published ports reach the container from the host's own addresses through DNAT in
//! prerouting and output. For 127.0.0.1 the bridge gets `route_localnet` and loopback sources
//! leaving through the bridge are masqueraded, as Docker does without its userland proxy:
//! berth has no daemon, and a proxy process per port would be one more thing to outlive
//! `create` and be found and killed at `delete`.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Ipv4Net, PortMapping};

#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("neither nft nor iptables was found in PATH, /usr/sbin or /sbin")]
    NoTool,
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// The tool that programs the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    Nft(PathBuf),
    /// The `iptables` binary, with `iptables-restore` expected beside it.
    Iptables(PathBuf),
}

#[cfg(test)]
thread_local! {
    /// Lets a test drive the iptables fallback on a machine that has nft.
    pub static PREFER_IPTABLES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn backend() -> Result<Backend, FirewallError> {
    #[cfg(test)]
    if PREFER_IPTABLES.get() {
        return find_program("iptables")
            .map(Backend::Iptables)
            .ok_or(FirewallError::NoTool);
    }
    if let Some(nft) = find_program("nft") {
        return Ok(Backend::Nft(nft));
    }
    find_program("iptables")
        .map(Backend::Iptables)
        .ok_or(FirewallError::NoTool)
}

fn table(bridge: &str) -> String {
    format!("berth-{bridge}")
}

fn chain(bridge: &str) -> String {
    format!("BERTH-{bridge}")
}

/// Makes the bridge's NAT rules, replacing any left from an interrupted earlier attempt.
pub fn setup_bridge(bridge: &str, subnet: Ipv4Net) -> Result<(), FirewallError> {
    match backend()? {
        Backend::Nft(nft) => run(&nft, &["-f", "-"], Some(&nft_setup(bridge, subnet))),
        Backend::Iptables(iptables) => {
            iptables_teardown(&iptables, bridge, subnet);
            let restore = iptables.with_file_name("iptables-restore");
            run(
                &restore,
                &["--noflush", "-w"],
                Some(&iptables_setup(bridge, subnet)),
            )
        }
    }
}

/// Removes the bridge's NAT rules and everything published through it; nothing to remove is
/// fine. `subnet` is needed by the iptables fallback, whose rules are deleted by their text.
pub fn teardown_bridge(bridge: &str, subnet: Ipv4Net) -> Result<(), FirewallError> {
    match backend()? {
        Backend::Nft(nft) => {
            // adding first makes the deletion succeed when the table is already gone
            let t = table(bridge);
            let script = format!("add table ip {t}\ndelete table ip {t}\n");
            run(&nft, &["-f", "-"], Some(&script))
        }
        Backend::Iptables(iptables) => {
            iptables_teardown(&iptables, bridge, subnet);
            Ok(())
        }
    }
}

/// DNATs each host port to `address` and the container port.
pub fn publish(
    bridge: &str,
    address: Ipv4Addr,
    ports: &[PortMapping],
) -> Result<(), FirewallError> {
    if ports.is_empty() {
        return Ok(());
    }
    match backend()? {
        Backend::Nft(nft) => run(
            &nft,
            &["-f", "-"],
            Some(&nft_publish(bridge, address, ports)),
        ),
        Backend::Iptables(iptables) => {
            let mut script = String::from("*nat\n");
            for port in ports {
                script += &format!("-A {}\n", iptables_dnat(bridge, address, port));
            }
            script += "COMMIT\n";
            let restore = iptables.with_file_name("iptables-restore");
            run(&restore, &["--noflush", "-w"], Some(&script))
        }
    }
}

/// Removes what [`publish`] made; ports that were never published are fine.
pub fn unpublish(
    bridge: &str,
    address: Ipv4Addr,
    ports: &[PortMapping],
) -> Result<(), FirewallError> {
    if ports.is_empty() {
        return Ok(());
    }
    match backend()? {
        Backend::Nft(nft) => run(
            &nft,
            &["-f", "-"],
            Some(&nft_unpublish(bridge, address, ports)),
        ),
        Backend::Iptables(iptables) => {
            for port in ports {
                let rule = iptables_dnat(bridge, address, port);
                let _ = run_iptables(&iptables, &format!("-D {rule}"));
            }
            Ok(())
        }
    }
}

/// The rules of a bridge: DNAT of published ports for local destinations; masquerade of the
/// subnet out of every other interface; masquerade of loopback sources into the bridge (for
/// 127.0.0.1:PORT); and masquerade of a container's connection to a port published by its own
/// host and DNATed back into the bridge, so the answer returns the way it came (POSTROUTING
/// knows no input interface, and routed traffic from the subnet back out of the bridge is only
/// ever that).
fn nft_setup(bridge: &str, subnet: Ipv4Net) -> String {
    let t = table(bridge);
    let dnat = "fib daddr type local meta l4proto { tcp, udp } \
                dnat ip to meta l4proto . th dport map @ports";
    format!(
        "add table ip {t}\n\
         delete table ip {t}\n\
         add table ip {t}\n\
         add map ip {t} ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
         add chain ip {t} prerouting {{ type nat hook prerouting priority -100; policy accept; }}\n\
         add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}\n\
         add chain ip {t} postrouting {{ type nat hook postrouting priority 100; policy accept; }}\n\
         add rule ip {t} prerouting {dnat}\n\
         add rule ip {t} output {dnat}\n\
         add rule ip {t} postrouting ip saddr {subnet} oifname != \"{bridge}\" masquerade\n\
         add rule ip {t} postrouting ip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade\n\
         add rule ip {t} postrouting ip saddr {subnet} oifname \"{bridge}\" ct status dnat masquerade\n"
    )
}

fn nft_element(port: &PortMapping) -> String {
    format!("{} . {}", port.protocol, port.host_port)
}

fn nft_publish(bridge: &str, address: Ipv4Addr, ports: &[PortMapping]) -> String {
    let t = table(bridge);
    ports
        .iter()
        .map(|port| {
            format!(
                "add element ip {t} ports {{ {} : {address} . {} }}\n",
                nft_element(port),
                port.container_port
            )
        })
        .collect()
}

/// Adding an element that is already there with the same value is no error, so adding before
/// deleting makes the deletion succeed whether or not the port was published.
fn nft_unpublish(bridge: &str, address: Ipv4Addr, ports: &[PortMapping]) -> String {
    let t = table(bridge);
    let mut script = nft_publish(bridge, address, ports);
    for port in ports {
        script += &format!("delete element ip {t} ports {{ {} }}\n", nft_element(port));
    }
    script
}

fn iptables_setup(bridge: &str, subnet: Ipv4Net) -> String {
    let c = chain(bridge);
    let mut script = format!("*nat\n:{c} - [0:0]\n");
    for rule in iptables_bridge_rules(bridge, subnet) {
        script += &format!("-A {rule}\n");
    }
    script + "COMMIT\n"
}

fn iptables_bridge_rules(bridge: &str, subnet: Ipv4Net) -> Vec<String> {
    let c = chain(bridge);
    vec![
        format!("PREROUTING -m addrtype --dst-type LOCAL -j {c}"),
        format!("OUTPUT -m addrtype --dst-type LOCAL -j {c}"),
        format!("POSTROUTING -s {subnet} ! -o {bridge} -j MASQUERADE"),
        format!("POSTROUTING -s 127.0.0.0/8 -o {bridge} -j MASQUERADE"),
        format!("POSTROUTING -s {subnet} -o {bridge} -m conntrack --ctstate DNAT -j MASQUERADE"),
    ]
}

fn iptables_dnat(bridge: &str, address: Ipv4Addr, port: &PortMapping) -> String {
    format!(
        "{} -p {} --dport {} -j DNAT --to-destination {address}:{}",
        chain(bridge),
        port.protocol,
        port.host_port,
        port.container_port
    )
}

/// Deletes the bridge's rules one by one, ignoring those already gone.
fn iptables_teardown(iptables: &Path, bridge: &str, subnet: Ipv4Net) {
    for rule in iptables_bridge_rules(bridge, subnet) {
        let _ = run_iptables(iptables, &format!("-D {rule}"));
    }
    let c = chain(bridge);
    let _ = run_iptables(iptables, &format!("-F {c}"));
    let _ = run_iptables(iptables, &format!("-X {c}"));
}

fn run_iptables(iptables: &Path, rule: &str) -> Result<(), FirewallError> {
    let mut args = vec!["-w", "-t", "nat"];
    args.extend(rule.split(' '));
    run(iptables, &args, None)
}

fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<(), FirewallError> {
    let command = format!("{} {}", program.display(), args.join(" "));
    let spawn_error = |source| FirewallError::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if output.status.success() {
        return Ok(());
    }
    Err(FirewallError::Failed {
        command,
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Protocol;

    fn web() -> PortMapping {
        PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn nft_setup_masquerades_the_subnet_out_of_other_interfaces() {
        let script = nft_setup("docker0", "172.17.0.0/16".parse().unwrap());
        assert!(script.starts_with("add table ip berth-docker0\ndelete table ip berth-docker0\n"));
        assert!(script.contains(
            "add rule ip berth-docker0 postrouting ip saddr 172.17.0.0/16 oifname != \"docker0\" masquerade\n"
        ));
        assert!(script.contains("ip saddr 127.0.0.0/8 oifname \"docker0\" masquerade"));
    }

    #[test]
    fn nft_publish_and_unpublish_are_map_elements() {
        let address = Ipv4Addr::new(172, 17, 0, 2);
        assert_eq!(
            nft_publish("docker0", address, &[web()]),
            "add element ip berth-docker0 ports { tcp . 8080 : 172.17.0.2 . 80 }\n"
        );
        assert_eq!(
            nft_unpublish("docker0", address, &[web()]),
            "add element ip berth-docker0 ports { tcp . 8080 : 172.17.0.2 . 80 }\n\
             delete element ip berth-docker0 ports { tcp . 8080 }\n"
        );
    }

    #[test]
    fn iptables_rules_name_the_bridge_chain() {
        let script = iptables_setup("docker0", "172.17.0.0/16".parse().unwrap());
        assert!(script.starts_with("*nat\n:BERTH-docker0 - [0:0]\n"));
        assert!(script.contains("-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\n"));
        assert!(script.ends_with("COMMIT\n"));
        assert_eq!(
            iptables_dnat("docker0", Ipv4Addr::new(172, 17, 0, 2), &web()),
            "BERTH-docker0 -p tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80"
        );
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let err = run(
            Path::new("/bin/sh"),
            &["-c", "echo broken >&2; exit 3"],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/bin/sh -c"), "{err}");
        assert!(err.contains("broken"), "{err}");
    }
}
