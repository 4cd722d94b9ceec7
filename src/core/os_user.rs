//! Who this process runs as, and how a path looks to it. Start-up errors caused by the
//! environment (a volume the service may not write, a secret file it may not read, a port it
//! may not bind) name the path or address, this user and what to change, in one line, so that
//! an operator who sees only the container's log knows which user needs which access.

use std::fmt;
use std::path::Path;

/// The user and groups the process runs as (effective ids), with the user's name from
/// `/etc/passwd` when it has one there. Displays as `uid 65532 (nonroot), gid 65532`, with
/// `, groups 1000,2000` when it has supplementary groups besides its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups other than `gid`, sorted (a Kubernetes `fsGroup` is one).
    pub groups: Vec<u32>,
    pub name: Option<String>,
}

impl OsUser {
    pub fn current() -> Self {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let mut groups: Vec<u32> = rustix::process::getgroups()
            .map(|groups| groups.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default();
        groups.retain(|g| *g != gid);
        groups.sort_unstable();
        groups.dedup();
        let name = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|passwd| name_of(&passwd, uid));
        Self {
            uid,
            gid,
            groups,
            name,
        }
    }

    /// `UID:GID`, for a `chown` the operator can paste.
    pub fn owner(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }
}

impl fmt::Display for OsUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {}", self.uid)?;
        if let Some(name) = &self.name {
            write!(f, " ({name})")?;
        }
        write!(f, ", gid {}", self.gid)?;
        if !self.groups.is_empty() {
            let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
            write!(f, ", groups {}", groups.join(","))?;
        }
        Ok(())
    }
}

/// The name of `uid` in a passwd file's text.
fn name_of(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.trim().parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// How `path` looks to this process: `owner 0:0, mode 0755`, `missing`, or why it cannot be
/// examined (a directory on the way that this user may not search).
pub fn describe(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                format!(
                    "owner {}:{}, mode {:04o}",
                    meta.uid(),
                    meta.gid(),
                    meta.mode() & 0o7777
                )
            }
            #[cfg(not(unix))]
            {
                let _ = meta;
                "exists".to_owned()
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "missing".to_owned(),
        Err(e) => format!("cannot be examined: {e}"),
    }
}

/// What this process needs to do with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read a file.
    Read,
    /// Read and write a file.
    ReadWrite,
    /// Create and remove files in a directory (write and search).
    CreateIn,
}

/// Whether this process may use `path` so (`access(2)`: by its real ids, which are its
/// effective ones; a read-only mount or an immutable file also says no).
pub fn may(path: &Path, access: Access) -> bool {
    use rustix::fs::Access as A;
    let mode = match access {
        Access::Read => A::READ_OK,
        Access::ReadWrite => A::READ_OK | A::WRITE_OK,
        Access::CreateIn => A::WRITE_OK | A::EXEC_OK,
    };
    rustix::fs::access(path, mode).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                      nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n\
                      broken line\n";
        assert_eq!(name_of(passwd, 65532).as_deref(), Some("nonroot"));
        assert_eq!(name_of(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_of(passwd, 1000), None);
    }

    #[test]
    fn displays_ids_name_and_other_groups() {
        let user = OsUser {
            uid: 65532,
            gid: 65532,
            groups: vec![],
            name: Some("nonroot".to_owned()),
        };
        assert_eq!(user.to_string(), "uid 65532 (nonroot), gid 65532");
        assert_eq!(user.owner(), "65532:65532");
        let user = OsUser {
            uid: 1000650000,
            gid: 0,
            groups: vec![1000650000],
            name: None,
        };
        assert_eq!(user.to_string(), "uid 1000650000, gid 0, groups 1000650000");
    }

    #[test]
    fn describes_paths() {
        let dir = tempfile::tempdir().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
            let me = OsUser::current();
            assert_eq!(
                describe(dir.path()),
                format!("owner {}:{}, mode 0750", me.uid, me.gid)
            );
        }
        assert_eq!(describe(&dir.path().join("nope")), "missing");
        assert!(may(dir.path(), Access::CreateIn));
        assert!(!may(&dir.path().join("nope"), Access::Read));
    }
}
