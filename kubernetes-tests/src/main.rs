//! cri-cases: runs Kubernetes pods on one runtime handler of containerd's CRI plugin, making the
//! calls kubelet makes, and checks what a person would check. scripts/kubernetes-tests starts
//! containerd and runs this once per handler, inside the throwaway network namespace that plays
//! the node.
//!
//! ```text
//! cri-cases --socket SOCK --handler NAME --runtime-cli BIN --runtime-root DIR
//!           --image IMAGE --logs DIR --cgroup-parent PATH --pod-prefix 10.244.0. --leases DIR
//!           [--calls DIR] [--shim NAME] [--label LABEL] [CASE...]
//! ```
//!
//! Prints `ok LABEL CASE (SECONDS s)` or `FAILED LABEL CASE: WHY` per case (LABEL: the handler,
//! unless given), then
//! `N passed, M failed`; exits 1 when a case failed, 2 for a usage mistake.

mod cases;
mod cri;
mod host;
mod pod;
mod stream;

use anyhow::{anyhow, bail, Context, Result};
use host::RuntimeCli;
use pod::Node;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: cri-cases --socket SOCK --handler NAME --runtime-cli BIN --runtime-root DIR \
--image IMAGE --logs DIR --cgroup-parent PATH --pod-prefix PREFIX --leases DIR [--calls DIR] \
[--shim NAME] [--label LABEL] [CASE...]";

struct Args {
    options: HashMap<String, String>,
    cases: Vec<String>,
}

impl Args {
    fn parse() -> Result<Self> {
        let mut options = HashMap::new();
        let mut cases = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if let Some(name) = arg.strip_prefix("--") {
                let value = args
                    .next()
                    .ok_or_else(|| anyhow!("--{name} needs a value"))?;
                options.insert(name.to_string(), value);
            } else {
                cases.push(arg);
            }
        }
        Ok(Args { options, cases })
    }

    fn get(&self, name: &str) -> Result<String> {
        self.options
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow!("--{name} is missing"))
    }
}

fn node(args: &Args) -> Result<Node> {
    let cri = cri::Cri::connect(&PathBuf::from(args.get("socket")?))?;
    let node = Node {
        cri,
        handler: args.get("handler")?,
        label: args
            .options
            .get("label")
            .cloned()
            .unwrap_or(args.get("handler")?),
        runtime: RuntimeCli {
            binary: args.get("runtime-cli")?.into(),
            root: args.get("runtime-root")?.into(),
        },
        calls: args.options.get("calls").map(PathBuf::from),
        shim: args.options.get("shim").cloned().unwrap_or_default(),
        image: args.get("image")?,
        logs: args.get("logs")?.into(),
        cgroup_parent: args.get("cgroup-parent")?,
        pod_prefix: args.get("pod-prefix")?,
        leases: args.get("leases")?.into(),
    };
    Ok(node)
}

/// Waits until the CRI plugin says the runtime and its network are ready (kubelet's node
/// readiness), and the image is there.
fn wait_ready(node: &Node) -> Result<()> {
    let version = node.cri.version()?;
    println!(
        "cri-cases: {} {} (CRI {})",
        version.runtime_name, version.runtime_version, version.runtime_api_version
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = node.cri.status()?;
        // The two conditions kubelet waits for; containerd 2 adds others (deprecation warnings).
        let not_ready: Vec<String> = ["RuntimeReady", "NetworkReady"]
            .iter()
            .filter_map(
                |wanted| match status.conditions.iter().find(|c| c.r#type == *wanted) {
                    Some(c) if c.status => None,
                    Some(c) => Some(format!("{} ({}: {})", c.r#type, c.reason, c.message)),
                    None => Some(format!("{wanted} (not reported)")),
                },
            )
            .collect();
        if not_ready.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the CRI plugin is not ready after 20 s: {}",
                not_ready.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    node.cri
        .image_status(&node.image)?
        .ok_or_else(|| anyhow!("the CRI plugin has no image {}", node.image))?;
    Ok(())
}

fn run() -> Result<bool> {
    let args = Args::parse().context(USAGE)?;
    let node = node(&args).context(USAGE)?;
    for name in &args.cases {
        if !cases::CASES.iter().any(|(known, _)| known == name) {
            let known: Vec<&str> = cases::CASES.iter().map(|(n, _)| *n).collect();
            bail!("no case {name} (known: {})", known.join(", "));
        }
    }
    wait_ready(&node)?;
    let (mut passed, mut failed) = (0, 0);
    for (name, case) in cases::CASES {
        if !args.cases.is_empty() && !args.cases.iter().any(|c| c == name) {
            continue;
        }
        let started = Instant::now();
        match case(&node) {
            Ok(()) => {
                passed += 1;
                println!(
                    "ok {} {name} ({:.1} s)",
                    node.label,
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => {
                failed += 1;
                println!("FAILED {} {name}: {e:#}", node.label);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("cri-cases: {e:#}");
            std::process::exit(2);
        }
    }
}
