//! Linux security modules: the AppArmor profile (`process.apparmorProfile`) and SELinux label
//! (`process.selinuxLabel`) the container's program runs under. Each is set for the program's
//! execve, through the process's own `attr/exec`, as libapparmor's `aa_change_onexec` and
//! libselinux's `setexeccon` do. Where the module is absent `create` fails naming the field (see
//! `spec::check_fields`), as runc's does.

use std::fs::File;
use std::io::Write;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LsmError {
    #[error("cannot open {path} to apply process.{field}: {source}")]
    Open {
        field: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot apply process.{field} {value:?}: {source}")]
    Write {
        field: &'static str,
        value: String,
        source: std::io::Error,
    },
}

/// Whether AppArmor is enabled on this host, as runc (and libapparmor) decide it.
pub fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|v| v.first() == Some(&b'Y'))
}

/// Whether SELinux is enabled on this host: its filesystem is mounted, as libselinux decides.
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// What the program's execve is to be confined by, worked out before the clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecLabels {
    pub apparmor: Option<String>,
    pub selinux: Option<String>,
}

impl ExecLabels {
    pub fn from_spec(process: &oci_spec::runtime::Process) -> ExecLabels {
        let set = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        ExecLabels {
            apparmor: set(process.apparmor_profile()),
            selinux: set(process.selinux_label()),
        }
    }

    /// Opens the process's own `attr/exec` files while the host's /proc is still what /proc
    /// is, so a container cannot hand berth a look-alike /proc (CVE-2019-16884). Call it in the
    /// process that will execve the program.
    pub fn open(&self) -> Result<OpenLabels, LsmError> {
        let open = |field, sub: &str| -> Result<File, LsmError> {
            // Under AppArmor 3 the module's own file; the shared one before it.
            let own = format!("/proc/thread-self/attr/{sub}");
            let path = match sub {
                "apparmor/exec" if !Path::new(&own).exists() => {
                    "/proc/thread-self/attr/exec".to_string()
                }
                _ => own,
            };
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|source| LsmError::Open {
                    field,
                    path,
                    source,
                })
        };
        Ok(OpenLabels {
            apparmor: match &self.apparmor {
                Some(profile) => Some((open("apparmorProfile", "apparmor/exec")?, profile.clone())),
                None => None,
            },
            selinux: match &self.selinux {
                Some(label) => Some((open("selinuxLabel", "exec")?, label.clone())),
                None => None,
            },
        })
    }
}

/// The `attr/exec` files, open, and what to write in them.
pub struct OpenLabels {
    apparmor: Option<(File, String)>,
    selinux: Option<(File, String)>,
}

impl OpenLabels {
    /// The descriptors it holds, which must stay open until [`OpenLabels::apply`].
    pub fn fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        [&self.apparmor, &self.selinux]
            .into_iter()
            .flatten()
            .map(|(file, _)| file.as_raw_fd())
            .collect()
    }

    /// Asks the modules to confine the process's next execve. A module refuses a profile or
    /// label it does not know (ENOENT, EINVAL): that is the command's error.
    pub fn apply(self) -> Result<(), LsmError> {
        if let Some((mut file, profile)) = self.apparmor {
            file.write_all(format!("exec {profile}").as_bytes())
                .map_err(|source| LsmError::Write {
                    field: "apparmorProfile",
                    value: profile,
                    source,
                })?;
        }
        if let Some((mut file, label)) = self.selinux {
            file.write_all(label.as_bytes())
                .map_err(|source| LsmError::Write {
                    field: "selinuxLabel",
                    value: label,
                    source,
                })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_ask_for_nothing() {
        let process: oci_spec::runtime::Process = serde_json::from_str(
            r#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},"apparmorProfile":"","selinuxLabel":"x"}"#,
        )
        .unwrap();
        let labels = ExecLabels::from_spec(&process);
        assert_eq!(labels.apparmor, None);
        assert_eq!(labels.selinux.as_deref(), Some("x"));
    }
}
