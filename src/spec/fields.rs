//! What berth does with each field of `config.json`, in one table: applied, applied where the
//! host has what it needs, or refused with the reason. `create` walks the config against it (a
//! refused field fails the create, naming it; a field the table does not know, from a later
//! runtime-spec minor, is ignored as the spec's extensibility rules say, with a `--debug` line),
//! `features` is derived from it, and a test walks every field of oci-spec's types against it,
//! so the next spec version cannot slip past.
//!
//! Paths are config.json's keys joined by `.`: `[]` stands for every element of a list and `*`
//! for every key of a map (`linux.sysctl.*`). A refused entry covers everything below it.

use serde_json::Value;

/// What berth does with a field.
#[derive(Clone, Copy, Debug)]
pub enum Support {
    /// Applied, or refused by the check that knows the values it cannot apply.
    Applied,
    /// Applied where the host has the module it needs (AppArmor, SELinux); otherwise `create`
    /// fails naming the field, as runc does.
    Host,
    /// Refused whenever it asks for something, with the reason.
    Refused(&'static str),
    /// Refused with a reason that depends on the host.
    RefusedHere(fn() -> String),
    /// Not a runtime-spec field (oci-spec reads it all the same): ignored like any unknown one.
    NotSpec,
}

use Support::*;

const WINDOWS: Support = Refused("it is a Windows field and berth runs Linux containers");
const NOT_LINUX: Support = Refused("it is for another platform and berth runs Linux containers");

/// Every field berth knows, with what it does with it.
pub const FIELDS: &[(&str, Support)] = &[
    ("ociVersion", Applied),
    ("root", Applied),
    ("root.path", Applied),
    ("root.readonly", Applied),
    ("mounts", Applied),
    ("mounts[]", Applied),
    ("mounts[].destination", Applied),
    ("mounts[].source", Applied),
    ("mounts[].type", Applied),
    ("mounts[].options", Applied),
    ("mounts[].options[]", Applied),
    (
        "mounts[].uidMappings",
        Refused("berth does not make id-mapped mounts"),
    ),
    (
        "mounts[].gidMappings",
        Refused("berth does not make id-mapped mounts"),
    ),
    ("process", Applied),
    ("process.terminal", Applied),
    ("process.consoleSize", Applied),
    ("process.consoleSize.height", Applied),
    ("process.consoleSize.width", Applied),
    ("process.user", Applied),
    ("process.user.uid", Applied),
    ("process.user.gid", Applied),
    ("process.user.umask", Applied),
    ("process.user.additionalGids", Applied),
    ("process.user.additionalGids[]", Applied),
    ("process.user.username", WINDOWS),
    ("process.args", Applied),
    ("process.args[]", Applied),
    ("process.commandLine", WINDOWS),
    ("process.env", Applied),
    ("process.env[]", Applied),
    ("process.cwd", Applied),
    ("process.capabilities", Applied),
    ("process.capabilities.bounding", Applied),
    ("process.capabilities.bounding[]", Applied),
    ("process.capabilities.effective", Applied),
    ("process.capabilities.effective[]", Applied),
    ("process.capabilities.inheritable", Applied),
    ("process.capabilities.inheritable[]", Applied),
    ("process.capabilities.permitted", Applied),
    ("process.capabilities.permitted[]", Applied),
    ("process.capabilities.ambient", Applied),
    ("process.capabilities.ambient[]", Applied),
    ("process.rlimits", Applied),
    ("process.rlimits[]", Applied),
    ("process.rlimits[].type", Applied),
    ("process.rlimits[].soft", Applied),
    ("process.rlimits[].hard", Applied),
    ("process.noNewPrivileges", Applied),
    ("process.oomScoreAdj", Applied),
    ("process.apparmorProfile", Host),
    ("process.selinuxLabel", Host),
    ("process.scheduler", Applied),
    ("process.scheduler.policy", Applied),
    ("process.scheduler.nice", Applied),
    ("process.scheduler.priority", Applied),
    ("process.scheduler.flags", Applied),
    ("process.scheduler.flags[]", Applied),
    ("process.scheduler.runtime", Applied),
    ("process.scheduler.deadline", Applied),
    ("process.scheduler.period", Applied),
    ("process.ioPriority", Applied),
    ("process.ioPriority.class", Applied),
    ("process.ioPriority.priority", Applied),
    ("process.execCPUAffinity", Applied),
    ("process.execCPUAffinity.initial", Applied),
    ("process.execCPUAffinity.final", Applied),
    ("hostname", Applied),
    ("domainname", Applied),
    ("annotations", Applied),
    ("annotations.*", Applied),
    ("hooks", Applied),
    ("hooks.prestart", Applied),
    ("hooks.createRuntime", Applied),
    ("hooks.createContainer", Applied),
    ("hooks.startContainer", Applied),
    ("hooks.poststart", Applied),
    ("hooks.poststop", Applied),
    ("linux", Applied),
    ("linux.uidMappings", Applied),
    ("linux.uidMappings[]", Applied),
    ("linux.uidMappings[].containerID", Applied),
    ("linux.uidMappings[].hostID", Applied),
    ("linux.uidMappings[].size", Applied),
    ("linux.gidMappings", Applied),
    ("linux.gidMappings[]", Applied),
    ("linux.gidMappings[].containerID", Applied),
    ("linux.gidMappings[].hostID", Applied),
    ("linux.gidMappings[].size", Applied),
    ("linux.sysctl", Applied),
    ("linux.sysctl.*", Applied),
    ("linux.cgroupsPath", Applied),
    ("linux.namespaces", Applied),
    ("linux.namespaces[]", Applied),
    ("linux.namespaces[].type", Applied),
    ("linux.namespaces[].path", Applied),
    ("linux.devices", Applied),
    ("linux.devices[]", Applied),
    ("linux.devices[].type", Applied),
    ("linux.devices[].path", Applied),
    ("linux.devices[].major", Applied),
    ("linux.devices[].minor", Applied),
    ("linux.devices[].fileMode", Applied),
    ("linux.devices[].uid", Applied),
    ("linux.devices[].gid", Applied),
    ("linux.seccomp", Applied),
    ("linux.seccomp.defaultAction", Applied),
    ("linux.seccomp.defaultErrnoRet", Applied),
    ("linux.seccomp.architectures", Applied),
    ("linux.seccomp.architectures[]", Applied),
    ("linux.seccomp.flags", Applied),
    ("linux.seccomp.flags[]", Applied),
    ("linux.seccomp.listenerPath", Applied),
    ("linux.seccomp.listenerMetadata", Applied),
    ("linux.seccomp.syscalls", Applied),
    ("linux.seccomp.syscalls[]", Applied),
    ("linux.seccomp.syscalls[].names", Applied),
    ("linux.seccomp.syscalls[].names[]", Applied),
    ("linux.seccomp.syscalls[].action", Applied),
    ("linux.seccomp.syscalls[].errnoRet", Applied),
    ("linux.seccomp.syscalls[].args", Applied),
    ("linux.seccomp.syscalls[].args[]", Applied),
    ("linux.seccomp.syscalls[].args[].index", Applied),
    ("linux.seccomp.syscalls[].args[].value", Applied),
    ("linux.seccomp.syscalls[].args[].valueTwo", Applied),
    ("linux.seccomp.syscalls[].args[].op", Applied),
    ("linux.rootfsPropagation", Applied),
    ("linux.maskedPaths", Applied),
    ("linux.maskedPaths[]", Applied),
    ("linux.readonlyPaths", Applied),
    ("linux.readonlyPaths[]", Applied),
    ("linux.mountLabel", Host),
    (
        "linux.intelRdt",
        RefusedHere(crate::spec::intel_rdt_refusal),
    ),
    ("linux.memoryPolicy", Applied),
    ("linux.memoryPolicy.mode", Applied),
    ("linux.memoryPolicy.nodes", Applied),
    ("linux.memoryPolicy.flags", Applied),
    ("linux.memoryPolicy.flags[]", Applied),
    ("linux.personality", Applied),
    ("linux.personality.domain", Applied),
    ("linux.personality.flags", Applied),
    ("linux.personality.flags[]", Applied),
    ("linux.timeOffsets", Applied),
    ("linux.timeOffsets.*", Applied),
    ("linux.timeOffsets.*.secs", Applied),
    ("linux.timeOffsets.*.nanosecs", Applied),
    ("linux.netDevices", Applied),
    ("linux.netDevices.*", Applied),
    ("linux.netDevices.*.name", Applied),
    ("linux.resources", Applied),
    ("linux.resources.devices", Applied),
    ("linux.resources.devices[]", Applied),
    ("linux.resources.devices[].allow", Applied),
    ("linux.resources.devices[].type", Applied),
    ("linux.resources.devices[].major", Applied),
    ("linux.resources.devices[].minor", Applied),
    ("linux.resources.devices[].access", Applied),
    ("linux.resources.memory", Applied),
    ("linux.resources.memory.limit", Applied),
    ("linux.resources.memory.reservation", Applied),
    ("linux.resources.memory.swap", Applied),
    ("linux.resources.memory.kernel", Applied),
    ("linux.resources.memory.kernelTCP", Applied),
    ("linux.resources.memory.swappiness", Applied),
    ("linux.resources.memory.disableOOMKiller", Applied),
    ("linux.resources.memory.useHierarchy", Applied),
    ("linux.resources.memory.checkBeforeUpdate", Applied),
    ("linux.resources.cpu", Applied),
    ("linux.resources.cpu.shares", Applied),
    ("linux.resources.cpu.quota", Applied),
    ("linux.resources.cpu.burst", Applied),
    ("linux.resources.cpu.period", Applied),
    ("linux.resources.cpu.realtimeRuntime", Applied),
    ("linux.resources.cpu.realtimePeriod", Applied),
    ("linux.resources.cpu.cpus", Applied),
    ("linux.resources.cpu.mems", Applied),
    ("linux.resources.cpu.idle", Applied),
    ("linux.resources.blockIO", Applied),
    ("linux.resources.blockIO.weight", Applied),
    ("linux.resources.blockIO.leafWeight", Applied),
    ("linux.resources.blockIO.weightDevice", Applied),
    ("linux.resources.blockIO.weightDevice[]", Applied),
    ("linux.resources.blockIO.weightDevice[].major", Applied),
    ("linux.resources.blockIO.weightDevice[].minor", Applied),
    ("linux.resources.blockIO.weightDevice[].weight", Applied),
    ("linux.resources.blockIO.weightDevice[].leafWeight", Applied),
    ("linux.resources.blockIO.throttleReadBpsDevice", Applied),
    ("linux.resources.blockIO.throttleReadBpsDevice[]", Applied),
    (
        "linux.resources.blockIO.throttleReadBpsDevice[].major",
        Applied,
    ),
    (
        "linux.resources.blockIO.throttleReadBpsDevice[].minor",
        Applied,
    ),
    (
        "linux.resources.blockIO.throttleReadBpsDevice[].rate",
        Applied,
    ),
    ("linux.resources.blockIO.throttleWriteBpsDevice", Applied),
    ("linux.resources.blockIO.throttleWriteBpsDevice[]", Applied),
    (
        "linux.resources.blockIO.throttleWriteBpsDevice[].major",
        Applied,
    ),
    (
        "linux.resources.blockIO.throttleWriteBpsDevice[].minor",
        Applied,
    ),
    (
        "linux.resources.blockIO.throttleWriteBpsDevice[].rate",
        Applied,
    ),
    ("linux.resources.blockIO.throttleReadIOPSDevice", Applied),
    ("linux.resources.blockIO.throttleReadIOPSDevice[]", Applied),
    (
        "linux.resources.blockIO.throttleReadIOPSDevice[].major",
        Applied,
    ),
    (
        "linux.resources.blockIO.throttleReadIOPSDevice[].minor",
        Applied,
    ),
    (
        "linux.resources.blockIO.throttleReadIOPSDevice[].rate",
        Applied,
    ),
    ("linux.resources.blockIO.throttleWriteIOPSDevice", Applied),
    ("linux.resources.blockIO.throttleWriteIOPSDevice[]", Applied),
    (
        "linux.resources.blockIO.throttleWriteIOPSDevice[].major",
        Applied,
    ),
    (
        "linux.resources.blockIO.throttleWriteIOPSDevice[].minor",
        Applied,
    ),
    (
        "linux.resources.blockIO.throttleWriteIOPSDevice[].rate",
        Applied,
    ),
    ("linux.resources.hugepageLimits", Applied),
    ("linux.resources.hugepageLimits[]", Applied),
    ("linux.resources.hugepageLimits[].pageSize", Applied),
    ("linux.resources.hugepageLimits[].limit", Applied),
    ("linux.resources.network", Applied),
    ("linux.resources.network.classID", Applied),
    ("linux.resources.network.priorities", Applied),
    ("linux.resources.network.priorities[]", Applied),
    ("linux.resources.network.priorities[].name", Applied),
    ("linux.resources.network.priorities[].priority", Applied),
    ("linux.resources.pids", Applied),
    ("linux.resources.pids.limit", Applied),
    (
        "linux.resources.rdma",
        Refused("berth does not manage the rdma controller"),
    ),
    ("linux.resources.unified", Applied),
    ("linux.resources.unified.*", Applied),
    ("solaris", NOT_LINUX),
    ("windows", NOT_LINUX),
    ("vm", NOT_LINUX),
    ("zos", NOT_LINUX),
    ("freebsd", NOT_LINUX),
    // oci-spec reads these at the top level; the runtime-spec has them under `linux`.
    ("uidMappings", NotSpec),
    ("gidMappings", NotSpec),
];

/// The hook fields: the same for each kind of hook.
const HOOK_FIELDS: &[&str] = &[
    "",
    "[]",
    "[].path",
    "[].args",
    "[].args[]",
    "[].env",
    "[].env[]",
    "[].timeout",
];

/// What berth does with the field at `path` (in the table's notation), if it knows it.
pub fn support(path: &str) -> Option<Support> {
    if let Some(rest) = path.strip_prefix("hooks.") {
        let (kind, tail) = rest.split_at(rest.find('[').unwrap_or(rest.len()));
        let known = FIELDS
            .iter()
            .any(|(p, _)| p.strip_prefix("hooks.") == Some(kind));
        return (known && HOOK_FIELDS.contains(&tail)).then_some(Applied);
    }
    FIELDS.iter().find(|(p, _)| *p == path).map(|(_, s)| *s)
}

/// Whether `path` names a map, whose keys are the map's own (`linux.sysctl`).
fn is_map(path: &str) -> bool {
    support(&format!("{path}.*")).is_some()
}

/// What a walk of config.json found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// The first field berth refuses, with the reason.
    pub refused: Option<(String, String)>,
    /// Fields the table does not know (a later spec's, or a misspelling): ignored.
    pub unknown: Vec<String>,
}

/// Walks a config.json against the table. An empty value (`null`, `""`, `[]`, `{}`) asks for
/// nothing, so it is never refused.
pub fn walk(config: &Value) -> Walk {
    let mut found = Walk::default();
    visit(config, "", "", &mut found);
    found
}

/// `pattern` is the table's path, `shown` the config's own (with indices and keys).
fn visit(value: &Value, pattern: &str, shown: &str, found: &mut Walk) {
    let join = |parent: &str, key: &str| match parent {
        "" => key.to_string(),
        p => format!("{p}.{key}"),
    };
    match value {
        Value::Object(map) => {
            let map_keys = !pattern.is_empty() && is_map(pattern);
            for (key, child) in map {
                let child_pattern = join(pattern, if map_keys { "*" } else { key });
                let child_shown = join(shown, key);
                check(child, &child_pattern, &child_shown, found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check(
                    item,
                    &format!("{pattern}[]"),
                    &format!("{shown}[{i}]"),
                    found,
                );
            }
        }
        _ => {}
    }
}

fn check(value: &Value, pattern: &str, shown: &str, found: &mut Walk) {
    if found.refused.is_some() || is_empty(value) {
        return;
    }
    match support(pattern) {
        None | Some(NotSpec) => found.unknown.push(shown.to_string()),
        Some(Refused(reason)) => found.refused = Some((shown.to_string(), reason.to_string())),
        Some(RefusedHere(reason)) => found.refused = Some((shown.to_string(), reason())),
        Some(Applied | Host) => visit(value, pattern, shown, found),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Whether berth applies the field at `path` (on some hosts at least), for `features`.
pub fn applied(path: &str) -> bool {
    matches!(support(path), Some(Applied | Host))
}

/// The serialised names of an enum's variants (oci-spec's `LinuxSeccompAction` …), read from its
/// `Deserialize`.
pub fn variant_names<'de, T: serde::Deserialize<'de>>() -> Vec<&'static str> {
    struct Names(Vec<&'static str>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_enum<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = variants.to_vec();
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
            ignored_any
        }
    }
    let mut names = Names(Vec::new());
    let _ = T::deserialize(&mut names);
    names.0
}

#[cfg(test)]
pub(crate) mod shape {
    //! Every key path a type's `Deserialize` knows, found by deserialising it from a
    //! deserializer that offers each field, one element of each list and one entry of each map.

    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

    #[derive(Debug)]
    pub struct Error(String);
    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Error {}
    impl de::Error for Error {
        fn custom<T: std::fmt::Display>(msg: T) -> Self {
            Error(msg.to_string())
        }
    }

    /// The key paths of `T`: `a.b`, `a.list[].c`, `a.map.*.d`.
    pub fn paths<'de, T: serde::Deserialize<'de>>() -> Result<BTreeSet<String>, Error> {
        let found = RefCell::new(BTreeSet::new());
        T::deserialize(Walker {
            path: String::new(),
            found: &found,
        })?;
        Ok(found.into_inner())
    }

    struct Walker<'a> {
        path: String,
        found: &'a RefCell<BTreeSet<String>>,
    }

    impl<'a> Walker<'a> {
        fn at(&self, path: String) -> Walker<'a> {
            self.found.borrow_mut().insert(path.clone());
            Walker {
                path,
                found: self.found,
            }
        }
        /// A string the field's own checks accept: a capability name, or a number for the
        /// CPU lists and the like.
        fn sample(&self) -> &'static str {
            if self.path.contains("capabilities") {
                "CAP_CHOWN"
            } else {
                "0"
            }
        }
    }

    macro_rules! number {
        ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {$(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                visitor.$visit($($value)?)
            }
        )*};
    }

    impl<'de> de::Deserializer<'de> for Walker<'_> {
        type Error = Error;

        number! {
            deserialize_bool => visit_bool(false),
            deserialize_i8 => visit_i8(0), deserialize_i16 => visit_i16(0),
            deserialize_i32 => visit_i32(0), deserialize_i64 => visit_i64(0),
            deserialize_u8 => visit_u8(0), deserialize_u16 => visit_u16(0),
            deserialize_u32 => visit_u32(0), deserialize_u64 => visit_u64(0),
            deserialize_f32 => visit_f32(0.0), deserialize_f64 => visit_f64(0.0),
            deserialize_char => visit_char('0'),
            deserialize_unit => visit_unit(),
            // An opaque value (windows.credentialSpec): a leaf.
            deserialize_any => visit_unit(),
            deserialize_ignored_any => visit_unit(),
        }
        fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_str(self.sample())
        }
        fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_string(self.sample().to_string())
        }
        fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_str(self.sample())
        }
        fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_bytes(b"0")
        }
        fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_byte_buf(b"0".to_vec())
        }
        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.visit_some(self)
        }
        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_unit()
        }
        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_newtype_struct(self)
        }
        fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let item = self.at(format!("{}[]", self.path));
            visitor.visit_seq(One { item: Some(item) })
        }
        fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Error> {
            self.deserialize_seq(v)
        }
        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            _: usize,
            v: V,
        ) -> Result<V::Value, Error> {
            self.deserialize_seq(v)
        }
        fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let value = self.at(format!("{}.*", self.path));
            visitor.visit_map(Fields {
                keys: vec![("*", value)].into_iter(),
                value: None,
            })
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            let keys: Vec<_> = fields
                .iter()
                .map(|f| {
                    let path = match self.path.as_str() {
                        "" => f.to_string(),
                        parent => format!("{parent}.{f}"),
                    };
                    (*f, self.at(path))
                })
                .collect();
            visitor.visit_map(Fields {
                keys: keys.into_iter(),
                value: None,
            })
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, Error> {
            visitor.visit_enum(variants[0].into_deserializer())
        }
    }

    struct One<'a> {
        item: Option<Walker<'a>>,
    }

    impl<'de> de::SeqAccess<'de> for One<'_> {
        type Error = Error;
        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            self.item.take().map(|w| seed.deserialize(w)).transpose()
        }
    }

    struct Fields<'a> {
        keys: std::vec::IntoIter<(&'static str, Walker<'a>)>,
        value: Option<Walker<'a>>,
    }

    impl<'de> de::MapAccess<'de> for Fields<'_> {
        type Error = Error;
        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            let Some((key, value)) = self.keys.next() else {
                return Ok(None);
            };
            self.value = Some(value);
            seed.deserialize(de::value::StrDeserializer::<Error>::new(key))
                .map(Some)
        }
        fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
            seed.deserialize(self.value.take().expect("a key came first"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field paths of oci-spec's `Spec`, the types berth reads config.json into.
    fn spec_paths() -> std::collections::BTreeSet<String> {
        shape::paths::<oci_spec::runtime::Spec>().expect("oci-spec's Spec can be walked")
    }

    /// Whether the table says what berth does with `path`: itself, or a refused field above it.
    fn covered(path: &str) -> bool {
        let mut prefix = path;
        loop {
            match support(prefix) {
                Some(Refused(_) | RefusedHere(_) | NotSpec) => return true,
                Some(_) if prefix == path => return true,
                _ => {}
            }
            match prefix.rfind(['.', '[']) {
                Some(i) => prefix = &prefix[..i],
                None => return false,
            }
        }
    }

    #[test]
    fn every_field_of_the_spec_is_applied_or_refused() {
        let paths = spec_paths();
        assert!(
            paths.len() > 250,
            "the walk found only {} paths",
            paths.len()
        );
        let missing: Vec<_> = paths.iter().filter(|p| !covered(p)).collect();
        assert!(
            missing.is_empty(),
            "fields neither applied nor refused in spec::fields::FIELDS: {missing:#?}"
        );
    }

    #[test]
    fn the_table_names_no_field_twice() {
        let mut seen = std::collections::HashSet::new();
        for (path, _) in FIELDS {
            assert!(seen.insert(path), "{path} is listed twice");
        }
    }

    #[test]
    fn the_walk_refuses_names_and_ignores() {
        let config = serde_json::json!({
            "ociVersion": "1.4.0",
            "process": {"args": ["sh"], "futureField": {"x": 1}, "commandLine": ""},
            "linux": {"sysctl": {"net.ipv4.ip_forward": "1"}, "intelRdt": null,
                "resources": {"rdma": {}}},
            "mounts": [{"destination": "/a"}, {"destination": "/b", "uidMappings": []}]
        });
        let walk = walk(&config);
        assert_eq!(walk.refused, None);
        assert_eq!(walk.unknown, ["process.futureField"]);
        let config = serde_json::json!({
            "mounts": [{"destination": "/a"},
                {"destination": "/b", "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}]
        });
        assert_eq!(
            super::walk(&config).refused,
            Some((
                "mounts[1].uidMappings".into(),
                "berth does not make id-mapped mounts".into()
            ))
        );
        let hooks = serde_json::json!({"hooks": {"poststop": [{"path": "/x", "when": 1}]}});
        assert_eq!(super::walk(&hooks).unknown, ["hooks.poststop[0].when"]);
    }

    #[test]
    fn enum_variant_names_come_from_serde() {
        let names = variant_names::<oci_spec::runtime::LinuxSeccompOperator>();
        assert!(names.contains(&"SCMP_CMP_MASKED_EQ"), "{names:?}");
        assert_eq!(
            variant_names::<oci_spec::runtime::LinuxPersonalityDomain>(),
            ["LINUX", "LINUX32"]
        );
    }
}
