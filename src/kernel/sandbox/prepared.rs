//! A plan made ready for the child of `clone` before the child exists: a cloned child of a
//! threaded process must not allocate (another thread may have held malloc's lock at the
//! clone), so every string becomes a C string here and exec's pointer arrays are built here.
//! What the plan leaves to the system is read here too: whether a bind's source is a folder,
//! the kernel's highest capability, the seccomp program for discarded syncs.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::Path;

use nix::mount::MsFlags;

use super::plan::{Create, Plan};
use super::{RunAs, SandboxError, syncs};

/// What the child makes at a mount's target, now that a bind's source has been looked at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Make {
    Nothing,
    Folder,
    File,
}

/// One mount step with its C strings ready.
pub(super) struct Step {
    pub(super) source: Option<CString>,
    pub(super) target: CString,
    pub(super) fstype: Option<CString>,
    pub(super) flags: MsFlags,
    pub(super) data: Option<CString>,
    pub(super) make: Make,
    pub(super) readonly: bool,
    pub(super) what: String,
    pub(super) readonly_what: String,
}

/// Everything the child uses, allocated before `clone`.
pub(super) struct Prepared {
    pub(super) root: CString,
    pub(super) steps: Vec<Step>,
    pub(super) symlinks: Vec<(CString, CString)>,
    pub(super) hostname: String,
    pub(super) loopback_up: bool,
    pub(super) workdir: CString,
    /// The program's arguments and environment, owned here for the pointers below.
    _argv: Vec<CString>,
    _environment: Vec<CString>,
    /// The arguments and environment as the null-terminated pointer arrays `execve` takes,
    /// made here because the program's side may not allocate.
    pub(super) argv_pointers: Vec<*const nix::libc::c_char>,
    pub(super) environment_pointers: Vec<*const nix::libc::c_char>,
    /// Absolute candidates for the program, in `PATH` order.
    pub(super) programs: Vec<CString>,
    /// "run `program`", for the error when no candidate can be executed.
    pub(super) run_what: String,
    pub(super) run_as: RunAs,
    pub(super) terminal: Option<RawFd>,
    /// The highest capability number this kernel knows.
    pub(super) last_capability: u32,
    /// The seccomp program that discards syncs, when asked for.
    pub(super) sync_filter: Option<Vec<nix::libc::sock_filter>>,
    pub(super) service: bool,
}

/// A capability count for kernels that do not say theirs: every bit of the 64-bit sets.
const LAST_CAPABILITY_UNKNOWN: u32 = 63;

fn c(text: &str) -> Result<CString, SandboxError> {
    CString::new(text).map_err(|_| SandboxError::Nul(text.to_string()))
}

fn c_path(path: &Path) -> Result<CString, SandboxError> {
    c(&path.to_string_lossy())
}

impl Prepared {
    pub(super) fn new(plan: &Plan) -> Result<Prepared, SandboxError> {
        let steps = plan
            .mounts
            .iter()
            .map(|step| {
                let make = match step.create {
                    Create::Nothing => Make::Nothing,
                    Create::Folder => Make::Folder,
                    Create::File => Make::File,
                    Create::LikeSource => match &step.source {
                        Some(source) if source.is_dir() => Make::Folder,
                        _ => Make::File,
                    },
                };
                Ok(Step {
                    source: step.source.as_deref().map(c_path).transpose()?,
                    target: c_path(&step.target)?,
                    fstype: step.fstype.map(c).transpose()?,
                    flags: step.flags,
                    data: step.data.as_deref().map(c).transpose()?,
                    make,
                    readonly: step.readonly,
                    what: step.what.clone(),
                    readonly_what: step.readonly_what.clone(),
                })
            })
            .collect::<Result<_, SandboxError>>()?;
        let symlinks = plan
            .symlinks
            .iter()
            .map(|(target, link)| Ok((c(target)?, c_path(link)?)))
            .collect::<Result<_, SandboxError>>()?;
        let program = plan
            .argv
            .first()
            .ok_or_else(|| SandboxError::Setup("no program to run".into()))?;
        let all = |strings: &[String]| strings.iter().map(|s| c(s)).collect::<Result<_, _>>();
        let argv: Vec<CString> = all(&plan.argv)?;
        let environment: Vec<CString> = all(&plan.environment)?;
        let pointers = |strings: &[CString]| -> Vec<*const nix::libc::c_char> {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        Ok(Prepared {
            root: c_path(&plan.root)?,
            steps,
            symlinks,
            hostname: plan.hostname.clone(),
            loopback_up: plan.loopback_up,
            workdir: c(&plan.workdir)?,
            argv_pointers: pointers(&argv),
            environment_pointers: pointers(&environment),
            _argv: argv,
            _environment: environment,
            programs: all(&plan.programs)?,
            run_what: format!("run `{program}`"),
            run_as: plan.run_as,
            terminal: plan.terminal,
            last_capability: std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(LAST_CAPABILITY_UNKNOWN),
            sync_filter: if plan.discard_syncs {
                syncs::discard_syncs_filter()
            } else {
                None
            },
            service: plan.service,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::plan;
    use super::super::tests::bare_spec;
    use super::super::{Bind, SandboxSpec};
    use super::*;

    fn prepared(spec: SandboxSpec) -> Result<Prepared, SandboxError> {
        let planned = plan(&spec)?;
        Prepared::new(&planned)
    }

    #[test]
    fn a_bind_target_is_made_a_folder_or_a_file_as_its_source_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let bind = |source: &Path| Bind {
            source: source.to_path_buf(),
            target: "/x".into(),
            readonly: false,
        };
        let spec = SandboxSpec {
            binds: vec![
                bind(dir.path()),
                bind(&file),
                bind(&dir.path().join("missing")),
            ],
            argv: vec!["true".into()],
            ..bare_spec(Path::new("/r"))
        };
        let Ok(prepared) = prepared(spec) else {
            panic!("the spec prepares");
        };
        let made: Vec<Make> = prepared
            .steps
            .iter()
            .rev()
            .take(3)
            .map(|s| s.make)
            .collect();
        assert_eq!(made, [Make::File, Make::File, Make::Folder]);
        assert_eq!(prepared.run_what, "run `true`");
        // Null-terminated for execve.
        assert_eq!(prepared.argv_pointers.len(), 2);
        assert!(prepared.argv_pointers[1].is_null());
        assert_eq!(prepared.environment_pointers, [std::ptr::null()]);
    }

    #[test]
    fn a_nul_byte_is_refused_by_name() {
        let spec = SandboxSpec {
            argv: vec!["echo".into(), "a\0b".into()],
            ..bare_spec(Path::new("/r"))
        };
        let Err(error) = prepared(spec) else {
            panic!("an argument with a NUL byte prepares");
        };
        assert!(
            matches!(&error, SandboxError::Nul(text) if text == "a\0b"),
            "{error:?}"
        );
    }
}
