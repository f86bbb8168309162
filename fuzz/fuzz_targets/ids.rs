//! Fuzzes the checks that keep names inside their folders: container ids, `--root`, and
//! `cgroupsPath`. Whatever they accept must stay where it belongs.
#![no_main]

use std::path::{Component, Path};

use berth::state::{validate_id, Root, MAX_ID_LEN, MAX_ROOT_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if validate_id(text).is_ok() {
        // One plain folder name directly under the root.
        let dir = Path::new("/run/berth").join(text);
        assert_eq!(dir.parent(), Some(Path::new("/run/berth")), "{text:?}");
        assert!(!matches!(text, "." | ".."));
        assert!(text.len() <= MAX_ID_LEN && !text.contains(['/', '\0']));
    }
    if let Ok(root) = Root::from_flag(Path::new(text)) {
        assert!(root.path.is_absolute());
        assert!(root.path.as_os_str().len() <= MAX_ROOT_LEN);
        assert!(!root.path.components().any(|c| c == Component::ParentDir));
    }
    if let Ok(config) = berth::cgroups::config_for(Some(Path::new(text)), "fuzz") {
        for (hierarchy, dir) in &config.dirs {
            assert!(dir.starts_with(&hierarchy.mount_point), "{text:?} gave {dir:?}");
            assert!(!dir.components().any(|c| c == Component::ParentDir));
        }
    }
});
