//! `berth features`: the runtime-spec features document, derived from what the code applies
//! ([`super::fields::FIELDS`] and the lists the code matches on), never written by hand.

use oci_spec::runtime::{
    LinuxNamespaceType, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use serde_json::{json, Value};

use super::fields::{applied, variant_names};

/// The hook kinds berth runs.
pub fn hooks() -> Vec<&'static str> {
    super::fields::FIELDS
        .iter()
        .filter_map(|(path, _)| path.strip_prefix("hooks."))
        .filter(|kind| applied(&format!("hooks.{kind}")))
        .collect()
}

/// The features document. `commit` names the build.
pub fn document(version: &str, commit: &str) -> Value {
    let mut capabilities: Vec<caps::Capability> = caps::all().into_iter().collect();
    capabilities.sort_by_key(|c| c.index());
    let enabled = |path: &str| json!({ "enabled": applied(path) });
    let seccomp = match applied("linux.seccomp") {
        false => json!({ "enabled": false }),
        true => {
            let flags = variant_names::<LinuxSeccompFilterFlag>();
            let supported: Vec<&str> = flags
                .iter()
                .copied()
                .filter(|name| {
                    let flag = serde_json::from_value(json!(name)).expect("a known flag");
                    crate::seccomp::flag_supported(flag)
                })
                .collect();
            let archs: Vec<Value> = crate::seccomp::architectures()
                .iter()
                .map(|a| serde_json::to_value(a).expect("an architecture serialises"))
                .collect();
            json!({
                "enabled": true,
                "actions": variant_names::<LinuxSeccompAction>(),
                "operators": variant_names::<LinuxSeccompOperator>(),
                "archs": archs,
                "knownFlags": flags,
                "supportedFlags": supported,
            })
        }
    };
    let (modes, mpol_flags) = crate::process::settings::memory_policy_names();
    let mut linux = json!({
        "namespaces": variant_names::<LinuxNamespaceType>(),
        "capabilities": capabilities.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "cgroup": {
            "v1": true, "v2": true, "systemd": true, "systemdUser": false,
            "rdma": applied("linux.resources.rdma"),
        },
        "seccomp": seccomp,
        "apparmor": enabled("process.apparmorProfile"),
        "selinux": enabled("process.selinuxLabel"),
        "intelRdt": {
            "enabled": applied("linux.intelRdt"),
            "schemata": applied("linux.intelRdt.schemata"),
            "monitoring": applied("linux.intelRdt.enableMonitoring"),
        },
        "mountExtensions": { "idmap": enabled("mounts[].uidMappings") },
        "netDevices": enabled("linux.netDevices"),
    });
    if applied("linux.memoryPolicy") {
        linux["memoryPolicy"] = json!({ "modes": modes, "flags": mpol_flags });
    }
    json!({
        "ociVersionMin": super::OCI_VERSION_MIN,
        "ociVersionMax": super::OCI_VERSION_MAX,
        "hooks": hooks(),
        "mountOptions": crate::rootfs::MOUNT_OPTIONS,
        "linux": linux,
        "annotations": {
            "io.berth.version": version,
            "io.berth.commit": commit,
            // checkpoint and restore run CRIU (`criu swrk`, CRIU 4 or newer) with runc's flags,
            // but for those below: they need CRIU's page server, or an LSM profile berth does
            // not pass to CRIU.
            "io.berth.checkpoint.enabled": "true",
            "io.berth.checkpoint.refused": "--lazy-pages,--page-server,--status-fd,--lsm-profile,--lsm-mount-context",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features() -> Value {
        document("0", "test")
    }

    /// The document parses as oci-spec's features type: it holds only the spec's properties.
    #[test]
    fn the_document_is_the_spec_features_structure() {
        let doc = features();
        let parsed: oci_spec::runtime::Features =
            serde_json::from_value(doc.clone()).expect("a runtime-spec features document");
        assert_eq!(
            serde_json::to_value(&parsed).unwrap()["ociVersionMax"],
            "1.3.0"
        );
        assert_eq!(doc["ociVersionMin"], "1.0.0");
        assert!(crate::spec::version_supported(
            doc["ociVersionMax"].as_str().unwrap()
        ));
    }

    /// Each claim in the document, checked against what the code does with that field.
    #[test]
    fn every_feature_says_what_berth_does() {
        let doc = features();
        let linux = &doc["linux"];
        // Hooks: each one listed is one spec::check_hooks checks and create or start runs.
        let hooks: Vec<&str> = doc["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap())
            .collect();
        assert_eq!(
            hooks,
            [
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop"
            ]
        );
        // Namespaces: each one listed has a clone flag.
        for ns in linux["namespaces"].as_array().unwrap() {
            let typ: LinuxNamespaceType = serde_json::from_value(ns.clone()).unwrap();
            assert!(!crate::namespaces::flag(typ).is_empty(), "{ns}");
        }
        assert_eq!(linux["namespaces"].as_array().unwrap().len(), 8);
        // seccomp: berth compiles a profile with every action, operator and architecture listed.
        assert_eq!(linux["seccomp"]["enabled"], true);
        let archs = &linux["seccomp"]["archs"];
        for action in linux["seccomp"]["actions"].as_array().unwrap() {
            for op in linux["seccomp"]["operators"].as_array().unwrap() {
                let profile = json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "architectures": archs,
                    "listenerPath": "/run/agent.sock",
                    "syscalls": [{"names": ["getpid"], "action": action,
                        "args": [{"index": 0, "value": 1, "op": op}]}]
                });
                let profile = serde_json::from_value(profile).unwrap();
                crate::seccomp::compile(&profile)
                    .unwrap_or_else(|e| panic!("{action} with {op}: {e}"));
            }
        }
        let known = linux["seccomp"]["knownFlags"].as_array().unwrap();
        assert_eq!(known.len(), 4);
        for flag in linux["seccomp"]["supportedFlags"].as_array().unwrap() {
            assert!(known.contains(flag), "{flag}");
        }
        // The modules berth applies where the host has them; what it refuses says false.
        assert_eq!(linux["apparmor"]["enabled"], true);
        assert_eq!(linux["selinux"]["enabled"], true);
        assert_eq!(linux["intelRdt"]["enabled"], false);
        assert_eq!(linux["intelRdt"]["schemata"], false);
        assert_eq!(linux["cgroup"]["rdma"], false);
        assert_eq!(linux["mountExtensions"]["idmap"]["enabled"], false);
        assert_eq!(linux["netDevices"]["enabled"], applied("linux.netDevices"));
        // Memory policy: every mode and flag listed is one linux.memoryPolicy takes.
        for mode in linux["memoryPolicy"]["modes"].as_array().unwrap() {
            let nodes = match mode.as_str().unwrap() {
                "MPOL_DEFAULT" | "MPOL_LOCAL" => json!(null),
                _ => json!("0"),
            };
            for flag in linux["memoryPolicy"]["flags"].as_array().unwrap() {
                let spec = json!({"mode": mode, "nodes": nodes, "flags": [flag]});
                let spec = serde_json::from_value(spec).unwrap();
                crate::process::settings::memory_policy(&spec).unwrap();
            }
        }
        // Mount options: rootfs's own test checks each is one it reads itself.
    }
}
