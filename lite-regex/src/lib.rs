//! The `regex` crate, as berth's dependencies use it, on `regex-lite`.
//!
//! Nothing in berth matches text with regular expressions, yet oci-spec links the whole `regex`
//! crate into both binaries: it checks `process.execCPUAffinity` with one (`^(\d+(-\d+)?)(,\d+(-\d+)?)*$`)
//! while deserialising every config.json. That crate's Unicode tables, DFAs and literal search
//! are a fifth of the static binary, and since the loader maps them and the relocations dirty
//! them, they cost resident memory in every berth and every shim. regex-lite, from the same
//! authors, matches the same syntax with ASCII-only classes and one small engine; the root
//! Cargo.toml patches `regex` with this crate so that every dependent gets it.
//!
//! What the dependents use, and nothing more: `Regex`, `RegexBuilder` and their matches and
//! captures (oci-spec), and `bytes::Regex` with captures (uapi's proc macro, on the kernel's
//! release string). A dependent that needs more fails to compile here: it is never quietly
//! given something else.

pub use regex_lite::{Captures, Error, Match, Regex, RegexBuilder};

/// Matching on bytes, for haystacks that are text (uapi's proc macro reads `uname`'s release):
/// one that is not UTF-8 matches nothing.
pub mod bytes {
    /// A regex matched against bytes.
    pub struct Regex(regex_lite::Regex);

    /// The groups of one match.
    pub struct Captures<'h>(regex_lite::Captures<'h>);

    /// One group's match.
    pub struct Match<'h>(regex_lite::Match<'h>);

    impl Regex {
        pub fn new(pattern: &str) -> Result<Regex, super::Error> {
            regex_lite::Regex::new(pattern).map(Regex)
        }

        pub fn is_match(&self, haystack: &[u8]) -> bool {
            std::str::from_utf8(haystack).is_ok_and(|text| self.0.is_match(text))
        }

        pub fn captures<'h>(&self, haystack: &'h [u8]) -> Option<Captures<'h>> {
            let text = std::str::from_utf8(haystack).ok()?;
            self.0.captures(text).map(Captures)
        }
    }

    impl<'h> Captures<'h> {
        pub fn get(&self, group: usize) -> Option<Match<'h>> {
            self.0.get(group).map(Match)
        }
    }

    impl<'h> Match<'h> {
        pub fn as_bytes(&self) -> &'h [u8] {
            self.0.as_str().as_bytes()
        }

        pub fn start(&self) -> usize {
            self.0.start()
        }

        pub fn end(&self) -> usize {
            self.0.end()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_specs_cpu_affinity_pattern_takes_cpu_lists_only() {
        let affinity = Regex::new(r"^(\d+(-\d+)?)(,\d+(-\d+)?)*$").unwrap();
        for good in ["0", "0-3", "0-3,7", "1,2,4-6"] {
            assert!(affinity.is_match(good), "{good}");
        }
        // ASCII digits only: a CPU list in another script is refused, not passed on to fail later.
        for bad in ["", "0-", "0,,1", "a", "0-3,x", "\u{663}"] {
            assert!(!affinity.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn bytes_captures_give_the_groups_of_a_kernel_release() {
        let version = bytes::Regex::new(r"^([0-9]+)\.([0-9]+)").unwrap();
        let m = version.captures(b"6.18.44-fc-v1300").unwrap();
        assert_eq!(m.get(1).unwrap().as_bytes(), b"6");
        assert_eq!(m.get(2).unwrap().as_bytes(), b"18");
        assert!(version.captures(b"\xff6.1").is_none());
    }

    #[test]
    fn a_builder_with_a_size_limit_builds_oci_specs_reference_pattern() {
        let reference = RegexBuilder::new(r"^([a-z0-9]+(?:/[a-z0-9]+)*)(?::([\w][\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*[:][[:xdigit:]]{32,}))?$")
            .size_limit(10 * (1 << 21))
            .build()
            .unwrap();
        let c = reference.captures("library/busybox:1.36").unwrap();
        assert_eq!(&c[1], "library/busybox");
        assert_eq!(c.get(2).map(|m| m.as_str()), Some("1.36"));
    }
}
