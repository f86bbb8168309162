//! `berth features`: what this build of berth supports, as runtime-spec features JSON.

pub fn run() -> super::Result {
    let features = berth::spec::features::document(env!("CARGO_PKG_VERSION"), env!("BERTH_COMMIT"));
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(0)
}
