//! `berth features`: what this build of berth supports, as runtime-spec features JSON.

pub fn run() -> super::Result {
    let mut features =
        berth::spec::features::document(env!("CARGO_PKG_VERSION"), env!("BERTH_COMMIT"));
    // What an ordinary user gets here, said where tools look for a runtime's own notes.
    if berth::rootless::unprivileged() {
        let annotations = &mut features["annotations"];
        annotations["io.berth.rootless"] = "true".into();
        annotations["io.berth.rootless.cgroups"] = berth::cgroups::rootless::report().into();
    }
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(0)
}
