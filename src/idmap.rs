//! The uid and gid maps of a user namespace berth makes, worked out and checked before the clone
//! so a map that cannot be written is refused naming the field, the file and the range.
//!
//! - As uid 0 (of the host, or of the user namespace berth runs in), berth writes both files
//!   itself and the kernel decides.
//! - As an ordinary user, a map of only the caller's own uid (gid) is written by berth itself,
//!   as the kernel allows any user; for the gid map, `setgroups` is denied first, as the kernel
//!   requires, so the container cannot change its supplementary groups.
//! - Any other map goes through shadow's setuid helpers `newuidmap` and `newgidmap` (Debian's
//!   `uidmap` package), which allow the caller's own id and the ranges `/etc/subuid` and
//!   `/etc/subgid` give the caller, as runc and podman do. berth checks the same first.
//!
//! An ordinary user may write the files (or have the helpers do it) only while the init is
//! dumpable: `process::init` makes it so for that moment (see [`IdMaps::needs_dumpable`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::LinuxIdMapping;

#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error(
        "linux.{field} is empty: a user namespace made by an unprivileged berth needs at least \
         the caller's own {kind} {own} mapped"
    )]
    Empty {
        field: &'static str,
        kind: &'static str,
        own: u32,
    },
    #[error("{what} {id} is not mapped by linux.{field} ({mapped}): the user namespace has no such {kind}")]
    NotMapped {
        what: String,
        id: u32,
        field: &'static str,
        mapped: String,
        kind: &'static str,
    },
    #[error(
        "linux.{field}[{index}] maps host ids {first}-{last}, which {file} does not give to {user}: {given}"
    )]
    NotSubordinate {
        field: &'static str,
        index: usize,
        first: u64,
        last: u64,
        file: String,
        user: String,
        given: String,
    },
    #[error(
        "linux.{field} maps more than the caller's own {kind} {own}, which only root or {helper} \
         may write, and {helper} is not installed (Debian and Ubuntu: the uidmap package)"
    )]
    NoHelper {
        field: &'static str,
        kind: &'static str,
        own: u32,
        helper: &'static str,
    },
    #[error(
        "process.user.additionalGids {gids:?} cannot be set: linux.gidMappings maps only the \
         caller's own gid, which an ordinary user may write only with setgroups denied in the \
         user namespace; map the groups through /etc/subgid instead"
    )]
    SetgroupsDenied { gids: Vec<u32> },
    #[error("cannot write {file} {text:?} of the container's init: {reason}")]
    Write {
        file: &'static str,
        text: String,
        reason: String,
    },
}

/// uid or gid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Uid,
    Gid,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::Uid => "uidMappings",
            Kind::Gid => "gidMappings",
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Uid => "uid",
            Kind::Gid => "gid",
        }
    }
    fn file(self) -> &'static str {
        match self {
            Kind::Uid => "uid_map",
            Kind::Gid => "gid_map",
        }
    }
    fn helper(self) -> &'static str {
        match self {
            Kind::Uid => "newuidmap",
            Kind::Gid => "newgidmap",
        }
    }
}

/// Where the subordinate ranges and the helpers are: the host's files and `$PATH`, or a unit
/// test's.
#[derive(Clone, Debug)]
pub struct Sources {
    pub subuid: PathBuf,
    pub subgid: PathBuf,
    /// The folders searched for the helpers.
    pub path: Vec<PathBuf>,
}

impl Sources {
    pub fn host() -> Sources {
        let path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| {
                ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"]
                    .map(PathBuf::from)
                    .to_vec()
            });
        Sources {
            subuid: "/etc/subuid".into(),
            subgid: "/etc/subgid".into(),
            path,
        }
    }

    fn subordinate(&self, kind: Kind) -> &Path {
        match kind {
            Kind::Uid => &self.subuid,
            Kind::Gid => &self.subgid,
        }
    }

    fn find(&self, program: &str) -> Option<PathBuf> {
        self.path
            .iter()
            .map(|dir| dir.join(program))
            .find(|p| nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok())
    }
}

/// Who asks for the maps.
#[derive(Clone, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The user's name, as `/etc/subuid` may name it.
    pub name: Option<String>,
}

impl Caller {
    /// berth's own effective ids.
    pub fn berth() -> Caller {
        let (uid, gid) = crate::rootless::ids();
        Caller {
            uid,
            gid,
            name: crate::rootless::user_name(uid),
        }
    }

    fn own(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Uid => self.uid,
            Kind::Gid => self.gid,
        }
    }

    fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("user {name:?} (uid {})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

/// One map file: its extents (container id, host id, size) and the helper that writes it, when
/// berth may not.
#[derive(Clone, Debug, PartialEq, Eq)]
struct MapFile {
    kind: Kind,
    extents: Vec<(u32, u32, u32)>,
    helper: Option<PathBuf>,
}

impl MapFile {
    fn text(&self) -> String {
        self.extents
            .iter()
            .map(|(inside, outside, size)| format!("{inside} {outside} {size}\n"))
            .collect()
    }

    fn write(&self, pid: i32) -> Result<(), IdMapError> {
        let text = self.text();
        let failed = |reason: String| IdMapError::Write {
            file: self.kind.file(),
            text: text.trim_end().to_string(),
            reason,
        };
        let Some(helper) = &self.helper else {
            crate::logging::debug(&format!(
                "writing {} {:?} of process {pid}",
                self.kind.file(),
                text.trim_end()
            ));
            return std::fs::write(format!("/proc/{pid}/{}", self.kind.file()), &text)
                .map_err(|e| failed(e.to_string()));
        };
        let args: Vec<String> = self
            .extents
            .iter()
            .flat_map(|(inside, outside, size)| [*inside, *outside, *size])
            .map(|n| n.to_string())
            .collect();
        crate::logging::debug(&format!("{} {pid} {}", helper.display(), args.join(" ")));
        let out = Command::new(helper)
            .arg(pid.to_string())
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| failed(format!("cannot run {}: {e}", helper.display())))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(failed(format!("{} failed: {said}", helper.display())));
        }
        Ok(())
    }
}

/// The maps of a new user namespace and how they get written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdMaps {
    uid: MapFile,
    gid: MapFile,
    /// Whether `setgroups` is denied before the gid map is written (an ordinary user writing
    /// its own gid).
    deny_setgroups: bool,
    /// Whether berth is an ordinary user (see [`IdMaps::needs_dumpable`]).
    unprivileged: bool,
}

/// The process's user, as far as the maps care.
#[derive(Clone, Debug, Default)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

impl IdMaps {
    /// Works out and checks the maps of a new user namespace for `caller`.
    pub fn plan(
        uid_maps: &[LinuxIdMapping],
        gid_maps: &[LinuxIdMapping],
        user: &ProcessUser,
        caller: &Caller,
        sources: &Sources,
    ) -> Result<IdMaps, IdMapError> {
        let extents = |maps: &[LinuxIdMapping]| {
            maps.iter()
                .map(|m| (m.container_id(), m.host_id(), m.size()))
                .collect::<Vec<_>>()
        };
        let (uids, gids) = (extents(uid_maps), extents(gid_maps));
        let unprivileged = caller.uid != 0;
        for (kind, extents) in [(Kind::Uid, &uids), (Kind::Gid, &gids)] {
            if extents.is_empty() && unprivileged {
                return Err(IdMapError::Empty {
                    field: kind.field(),
                    kind: kind.name(),
                    own: caller.own(kind),
                });
            }
        }
        // Without newgidmap, setgroups is denied: no supplementary group at all, mapped or not.
        let own_gid_only = gids.len() == 1 && gids[0].1 == caller.gid && gids[0].2 == 1;
        if unprivileged && own_gid_only && !user.additional_gids.is_empty() {
            return Err(IdMapError::SetgroupsDenied {
                gids: user.additional_gids.clone(),
            });
        }
        // berth takes root of the namespace first, then the process's user.
        let wanted = [
            (Kind::Uid, "container uid".to_string(), 0),
            (Kind::Gid, "container gid".to_string(), 0),
            (Kind::Uid, "process.user.uid".to_string(), user.uid),
            (Kind::Gid, "process.user.gid".to_string(), user.gid),
        ]
        .into_iter()
        .chain(
            user.additional_gids
                .iter()
                .map(|&g| (Kind::Gid, "process.user.additionalGids".to_string(), g)),
        );
        for (kind, what, id) in wanted {
            let extents = if kind == Kind::Uid { &uids } else { &gids };
            if !extents.is_empty() && !maps_inside(extents, id) {
                return Err(IdMapError::NotMapped {
                    what,
                    id,
                    field: kind.field(),
                    mapped: describe_inside(extents),
                    kind: kind.name(),
                });
            }
        }
        let mut files = Vec::new();
        for (kind, extents) in [(Kind::Uid, uids), (Kind::Gid, gids)] {
            let own = caller.own(kind);
            let only_own = extents.len() == 1 && extents[0].1 == own && extents[0].2 == 1;
            let helper = match unprivileged && !only_own {
                false => None,
                true => {
                    check_subordinate(kind, &extents, caller, sources)?;
                    Some(sources.find(kind.helper()).ok_or(IdMapError::NoHelper {
                        field: kind.field(),
                        kind: kind.name(),
                        own,
                        helper: kind.helper(),
                    })?)
                }
            };
            files.push(MapFile {
                kind,
                extents,
                helper,
            });
        }
        let gid = files.pop().expect("two files");
        let uid = files.pop().expect("two files");
        let deny_setgroups = unprivileged && gid.helper.is_none();
        Ok(IdMaps {
            uid,
            gid,
            deny_setgroups,
            unprivileged,
        })
    }

    /// Whether the init must be dumpable while its maps are written: an ordinary user may open
    /// a process's `/proc/PID/{uid_map,gid_map,setgroups}` (and newuidmap accepts the process)
    /// only when the process's files are that user's, which they are not while it is
    /// non-dumpable (`process::clone::undumpable`).
    pub fn needs_dumpable(&self) -> bool {
        self.unprivileged
    }

    /// Writes the maps of process `pid`, which has just made its user namespace.
    pub fn write(&self, pid: i32) -> Result<(), IdMapError> {
        self.uid.write(pid)?;
        if self.deny_setgroups {
            std::fs::write(format!("/proc/{pid}/setgroups"), "deny").map_err(|e| {
                IdMapError::Write {
                    file: "setgroups",
                    text: "deny".into(),
                    reason: e.to_string(),
                }
            })?;
        }
        self.gid.write(pid)
    }

    /// How they are written, for `--debug`.
    pub fn describe(&self) -> String {
        let how = |file: &MapFile| match &file.helper {
            Some(helper) => format!("{} through {}", file.kind.file(), helper.display()),
            None => format!("{} by berth", file.kind.file()),
        };
        format!("{}, {}", how(&self.uid), how(&self.gid))
    }
}

fn maps_inside(extents: &[(u32, u32, u32)], id: u32) -> bool {
    extents.iter().any(|&(inside, _, size)| {
        id >= inside && u64::from(id) < u64::from(inside) + u64::from(size)
    })
}

fn describe_inside(extents: &[(u32, u32, u32)]) -> String {
    let ranges: Vec<String> = extents
        .iter()
        .map(|&(inside, _, size)| range_text(u64::from(inside), u64::from(size)))
        .collect();
    format!("container ids {}", ranges.join(", "))
}

fn range_text(first: u64, size: u64) -> String {
    match size {
        0 => format!("{first} (size 0)"),
        1 => first.to_string(),
        _ => format!("{first}-{}", first + size - 1),
    }
}

/// The ranges `file` gives `caller` (lines `name:first:count`, the name or the uid).
fn subordinate_ranges(text: &str, caller: &Caller) -> Vec<(u64, u64)> {
    let uid = caller.uid.to_string();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().splitn(3, ':');
            let (owner, first, count) = (fields.next()?, fields.next()?, fields.next()?);
            let mine = owner == uid || caller.name.as_deref() == Some(owner);
            let (first, count) = (first.parse().ok()?, count.trim().parse().ok()?);
            mine.then_some((first, count))
        })
        .collect()
}

/// Whether the ranges cover every id of `first .. first + size`.
fn covered(ranges: &[(u64, u64)], first: u64, size: u64) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    let (mut next, end) = (first, first + size);
    for (start, count) in sorted {
        if start <= next && next < start + count {
            next = start + count;
        }
        if next >= end {
            return true;
        }
    }
    next >= end
}

/// Each extent is the caller's own id alone or lies in the ranges the subordinate file gives.
fn check_subordinate(
    kind: Kind,
    extents: &[(u32, u32, u32)],
    caller: &Caller,
    sources: &Sources,
) -> Result<(), IdMapError> {
    let file = sources.subordinate(kind);
    let text = std::fs::read_to_string(file);
    let ranges = text
        .as_deref()
        .map(|t| subordinate_ranges(t, caller))
        .unwrap_or_default();
    for (index, &(_, outside, size)) in extents.iter().enumerate() {
        if size == 1 && outside == caller.own(kind) {
            continue;
        }
        if covered(&ranges, outside.into(), size.into()) {
            continue;
        }
        let given = match &text {
            Err(e) => format!("it cannot be read ({e})"),
            Ok(_) if ranges.is_empty() => "it gives none".to_string(),
            Ok(_) => {
                let list: Vec<String> = ranges.iter().map(|&(f, c)| range_text(f, c)).collect();
                format!("it gives {}", list.join(", "))
            }
        };
        return Err(IdMapError::NotSubordinate {
            field: kind.field(),
            index,
            first: outside.into(),
            last: u64::from(outside) + u64::from(size).max(1) - 1,
            file: file.display().to_string(),
            user: caller.describe(),
            given,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn maps(list: &[(u32, u32, u32)]) -> Vec<LinuxIdMapping> {
        list.iter()
            .map(|&(c, h, s)| {
                serde_json::from_value(
                    serde_json::json!({"containerID": c, "hostID": h, "size": s}),
                )
                .unwrap()
            })
            .collect()
    }

    fn alice() -> Caller {
        Caller {
            uid: 1000,
            gid: 1000,
            name: Some("alice".into()),
        }
    }

    /// /etc/subuid and /etc/subgid in a temporary folder, and a folder holding the helpers.
    fn sources(dir: &TempDir, subuid: &str, helpers: bool) -> Sources {
        let etc = dir.path().join("etc");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(etc.join("subuid"), subuid).unwrap();
        std::fs::write(etc.join("subgid"), subuid).unwrap();
        if helpers {
            use std::os::unix::fs::PermissionsExt;
            for name in ["newuidmap", "newgidmap"] {
                std::fs::write(bin.join(name), "#!/bin/sh\n").unwrap();
                std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755))
                    .unwrap();
            }
        }
        Sources {
            subuid: etc.join("subuid"),
            subgid: etc.join("subgid"),
            path: vec![bin],
        }
    }

    fn plan(
        uids: &[(u32, u32, u32)],
        user: &ProcessUser,
        caller: &Caller,
        sources: &Sources,
    ) -> Result<IdMaps, IdMapError> {
        IdMaps::plan(&maps(uids), &maps(uids), user, caller, sources)
    }

    #[test]
    fn the_callers_own_ids_are_written_by_berth_with_setgroups_denied() {
        let dir = TempDir::new("idmap");
        let src = sources(&dir, "", false);
        let maps = plan(&[(0, 1000, 1)], &ProcessUser::default(), &alice(), &src).unwrap();
        assert!(maps.uid.helper.is_none() && maps.gid.helper.is_none());
        assert!(maps.deny_setgroups && maps.needs_dumpable());
        assert_eq!(maps.uid.text(), "0 1000 1\n");
        assert_eq!(maps.describe(), "uid_map by berth, gid_map by berth");
        let groups = ProcessUser {
            additional_gids: vec![0],
            ..ProcessUser::default()
        };
        let err = plan(&[(0, 1000, 1)], &groups, &alice(), &src).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("process.user.additionalGids [0] cannot be set"),
            "{err}"
        );
    }

    #[test]
    fn wider_maps_go_through_the_helpers_within_the_subordinate_ranges() {
        let dir = TempDir::new("idmap");
        let src = sources(
            &dir,
            "bob:200000:65536\nalice:100000:65536\n1000:300000:10\n",
            true,
        );
        let wide = [(0, 1000, 1), (1, 100000, 65536)];
        let user = ProcessUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![5],
        };
        let maps = plan(&wide, &user, &alice(), &src).unwrap();
        assert_eq!(
            maps.uid.helper.as_deref(),
            Some(src.path[0].join("newuidmap").as_path())
        );
        assert!(!maps.deny_setgroups);
        // a range given to the uid rather than the name counts too
        plan(&[(0, 300000, 10)], &ProcessUser::default(), &alice(), &src).unwrap();
        // adjacent ranges may be spanned
        let other = TempDir::new("idmap");
        let both = sources(&other, "alice:100000:10\nalice:100010:10\n", true);
        plan(&[(0, 100000, 20)], &ProcessUser::default(), &alice(), &both).unwrap();

        let err = plan(&[(0, 1000, 1), (1, 200000, 65536)], &user, &alice(), &src).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "linux.uidMappings[1] maps host ids 200000-265535, which {} does not give to \
                 user \"alice\" (uid 1000): it gives 100000-165535, 300000-300009",
                src.subuid.display()
            )
        );
        let nobody = Caller {
            uid: 1001,
            gid: 1001,
            name: Some("carol".into()),
        };
        let err = plan(&[(0, 100000, 10)], &ProcessUser::default(), &nobody, &src).unwrap_err();
        assert!(err.to_string().ends_with(": it gives none"), "{err}");
    }

    #[test]
    fn a_missing_helper_or_file_is_named() {
        let dir = TempDir::new("idmap");
        let src = sources(&dir, "alice:100000:65536\n", false);
        let err = plan(
            &[(0, 100000, 65536)],
            &ProcessUser::default(),
            &alice(),
            &src,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.uidMappings maps more than the caller's own uid 1000, which only root or \
             newuidmap may write, and newuidmap is not installed (Debian and Ubuntu: the uidmap \
             package)"
        );
        let missing = Sources {
            subuid: dir.path().join("none"),
            ..src
        };
        let err = plan(
            &[(0, 100000, 2)],
            &ProcessUser::default(),
            &alice(),
            &missing,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("does not give to user \"alice\" (uid 1000): it cannot be read"),
            "{err}"
        );
    }

    #[test]
    fn ids_the_process_needs_must_be_mapped() {
        let dir = TempDir::new("idmap");
        let src = sources(&dir, "", false);
        let user = ProcessUser {
            uid: 1000,
            ..ProcessUser::default()
        };
        let err = plan(&[(0, 1000, 1)], &user, &alice(), &src).unwrap_err();
        assert_eq!(
            err.to_string(),
            "process.user.uid 1000 is not mapped by linux.uidMappings (container ids 0): the \
             user namespace has no such uid"
        );
        let err = plan(&[(1, 1000, 1)], &ProcessUser::default(), &alice(), &src).unwrap_err();
        assert!(
            err.to_string().starts_with("container uid 0 is not mapped"),
            "{err}"
        );
        let err = IdMaps::plan(&[], &[], &ProcessUser::default(), &alice(), &src).unwrap_err();
        assert!(
            err.to_string().starts_with("linux.uidMappings is empty"),
            "{err}"
        );
        // root writes whatever it is given, and the kernel decides
        let root = Caller {
            uid: 0,
            gid: 0,
            name: Some("root".into()),
        };
        let maps = plan(&[(0, 100000, 65536)], &ProcessUser::default(), &root, &src).unwrap();
        assert!(maps.uid.helper.is_none() && !maps.deny_setgroups && !maps.needs_dumpable());
    }

    #[test]
    fn coverage_of_ranges() {
        assert!(covered(&[(10, 10)], 10, 10));
        assert!(covered(&[(10, 10)], 12, 3));
        assert!(!covered(&[(10, 10)], 15, 10));
        assert!(covered(&[(20, 5), (10, 10)], 15, 10));
        assert!(!covered(&[(10, 5), (16, 5)], 10, 10));
        assert!(!covered(&[], 10, 1));
    }
}
