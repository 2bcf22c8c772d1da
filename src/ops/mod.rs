//! What each `env` command does, chaining the stages for one project: find and load the env
//! file, bring its lock up to date (or refuse, with `--locked`), find or build its image, and
//! make the session or the peers' requests. `crate::cli` parses arguments, calls one function
//! here and renders what it returns; the stages below know nothing of commands.
//!
//! - [`project`]: the env file found and loaded, with its warnings.
//! - [`lock`]: `env lock`, and the current lock every later command starts from.
//! - [`image`]: the image of a project, found in the store or built.
//! - [`session`]: `env shell`, `env run`, `env fix-owner`.
//! - [`peers`]: `env up`, `down`, `ps`, `logs`, and the supervisor's entry.
//! - [`verify`]: `env verify`, the image against its layers' trees.
//! - [`inspect`], [`export`], [`store`] (images, gc, volumes), [`init`].
//! - [`push`], [`pull`]: `env push` and `env pull`; [`registry`]: what they and the team
//!   cache share.
//!
//! Progress goes to stderr as it happens ([`say`]); results are returned for the CLI to render.

pub mod base_image;
pub mod deploy;
pub mod export;
pub mod image;
pub mod init;
pub mod inspect;
pub mod lock;
pub mod peers;
pub mod project;
pub mod pull;
pub mod push;
pub mod registry;
pub mod session;
pub mod store;
pub mod verify;

pub use lock::LockMode;
pub use project::Project;

use crate::solve::stage::SolveError;
use crate::spec::SpecError;

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Input the user can fix, with what to do next.
    #[error("{message}")]
    User {
        message: String,
        hint: Option<String>,
    },
    #[error("{message}")]
    Io {
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Solve(#[from] SolveError),
    #[error(transparent)]
    Build(#[from] crate::build::image::BuildError),
    #[error(transparent)]
    Verify(#[from] crate::build::verify::VerifyError),
    /// The lock, or what the store holds, no longer matches what it was made from.
    #[error("{message}")]
    Stale {
        message: String,
        reasons: Vec<String>,
        hint: Option<String>,
    },
    #[error(transparent)]
    Userns(#[from] crate::kernel::userns::UsernsError),
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Peer(#[from] crate::run::peers::PeerError),
    #[error(transparent)]
    Registry(crate::registry::RegistryError),
    /// A session's program could not be started (not found, not executable).
    #[error("{0}")]
    NotRunnable(String),
}

impl Error {
    pub fn user(message: impl Into<String>, hint: Option<String>) -> Self {
        Error::User {
            message: message.into(),
            hint,
        }
    }

    pub fn io(message: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            message: message.into(),
            source,
        }
    }

    /// What to do next, when envkit knows.
    pub fn hint(&self) -> Option<String> {
        if self.disk_is_full() {
            return Some(format!(
                "the disk holding envkit's store (`{}`) or download cache (`{}`) is full: \
                 `env gc` frees what no project needs, or set ENVKIT_STORE_DIR and \
                 ENVKIT_CACHE_DIR to folders on a larger disk",
                crate::paths::store_dir().display(),
                crate::paths::cache_dir().display()
            ));
        }
        match self {
            Error::Spec(error) => error.hint(),
            Error::User { hint, .. } | Error::Stale { hint, .. } => hint.clone(),
            Error::Io { .. } => None,
            Error::Solve(error) => error.hint(),
            Error::Build(crate::build::image::BuildError::Download(error)) => error.hint(),
            Error::Build(error) if error.damaged_record().is_some() => Some(
                "the store was modified outside envkit; `env verify --repair` builds the damaged layers again"
                    .into(),
            ),
            Error::Build(_) | Error::Verify(_) => None,
            Error::Userns(error) => error.help(),
            Error::Peer(error) => error.hint(),
            Error::Registry(error) => error.hint(),
            Error::Run(_) => None,
            Error::NotRunnable(_) => Some(
                "check the command's name; packages it needs go in env.kdl's `packages`".into(),
            ),
        }
    }
}

impl Error {
    /// Whether a write failed for want of space, somewhere down the chain of causes.
    fn disk_is_full(&self) -> bool {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::StorageFull
            {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

/// Whose move it is after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The input is wrong (the env file, an argument, the machine's setup): the user can fix it.
    Input,
    /// An operation failed although the input was fine (I/O, network, a stale store).
    Failed,
    /// A session's program could not be started.
    NotRunnable,
}

impl Error {
    pub fn kind(&self) -> Kind {
        use crate::build::image::BuildError;
        use crate::build::plan::PlanError;
        use crate::kernel::userns::UsernsError;
        use crate::run::RunError;
        match self {
            Error::Spec(SpecError::Read { .. }) | Error::Io { .. } | Error::Stale { .. } => {
                Kind::Failed
            }
            Error::Solve(
                SolveError::Resolve { .. } | SolveError::Sources(_) | SolveError::BadLock { .. },
            ) => Kind::Input,
            Error::Solve(_) => Kind::Failed,
            Error::Build(BuildError::Plan(PlanError::NoInputMatch { .. })) => Kind::Input,
            Error::Build(_) | Error::Verify(_) => Kind::Failed,
            Error::Spec(_) | Error::User { .. } => Kind::Input,
            Error::Userns(UsernsError::NoRange { .. }) => Kind::Input,
            Error::Run(RunError::MissingMountSource { .. }) => Kind::Input,
            Error::Peer(error) if error.is_user_error() => Kind::Input,
            Error::Userns(_) | Error::Run(_) | Error::Peer(_) | Error::Registry(_) => Kind::Failed,
            Error::NotRunnable(_) => Kind::NotRunnable,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tells the user what is happening, on stderr, as it happens.
pub fn say(line: &str) {
    eprintln!("{line}");
}
