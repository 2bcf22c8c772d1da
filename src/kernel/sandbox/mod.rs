//! Running a program inside a root folder, in namespaces of its own: the sandbox that build
//! uses to run an image's `dpkg`, and that run will use for sessions.
//!
//! The sequence, in the child created by `clone` with new mount, pid, uts and ipc namespaces
//! (and net for `Network::None`), so that the program becomes pid 1 of its namespace:
//! 1. make every mount private, so nothing done here propagates to the host;
//! 2. bind the root onto itself (pivot_root needs a mount point);
//! 3. fresh `/proc`; a minimal `/dev` (a tmpfs with the host's null, zero, full, random,
//!    urandom and tty bound in, a new devpts instance, `/dev/shm`);
//! 4. the requested binds (read-only when asked) and tmpfs mounts;
//! 5. the host name; pivot_root into the root and detach the old one, so nothing of the host
//!    stays reachable;
//! 6. stay as pid 1, an init that forwards signals and reaps orphans, and fork the program:
//!    it becomes who it should be (root with every capability for builds, root with a bounded
//!    set or the invoking user for sessions) and execs with exactly the environment given.
//!
//! Everything the child needs is prepared before `clone`: the parent may have other threads,
//! and a cloned child of a threaded process must not allocate. A failing step writes its
//! message into a close-on-exec pipe; the parent reads end-of-file when exec succeeded.
//!
//! The caller is root: real root, or inner root of envkit's user namespace (`kernel::userns`),
//! which is how an unprivileged user builds and runs. Overlays are mounted with `userxattr`
//! so the store's layers mean the same in both.

mod syncs;

use std::ffi::CString;
use std::io::Read;
use std::path::{Path, PathBuf};

use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitStatus, waitpid};

/// A host path bound into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the root.
    pub target: String,
    pub readonly: bool,
}

/// Which network the program sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxNetwork {
    /// The host's (downloads during `setup`, dev servers).
    Host,
    /// A network namespace of its own with only loopback, up.
    None,
}

/// An overlay mounted as the root: read-only layers below, a writable upper folder above
/// that receives every change (a new layer, or a session's throw-away state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Lower layers, top first.
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    /// Overlayfs's scratch folder, on the same file system as `upper`.
    pub work: PathBuf,
}

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The folder that becomes `/` (an empty folder when `overlay` is set).
    pub root: PathBuf,
    /// Mount this overlay at `root` first.
    pub overlay: Option<Overlay>,
    pub binds: Vec<Bind>,
    /// Absolute paths inside the root that get an empty tmpfs.
    pub tmpfs: Vec<String>,
    pub hostname: String,
    pub network: SandboxNetwork,
    /// The complete environment of the program.
    pub environment: Vec<(String, String)>,
    /// Where the program starts, inside the root.
    pub workdir: String,
    /// The program and its arguments; a name without `/` is looked up in the environment's
    /// `PATH` inside the root.
    pub argv: Vec<String>,
    /// Send the program's stdout and stderr to this host file (appending) instead of ours.
    pub log: Option<PathBuf>,
    /// Who the program runs as.
    pub run_as: RunAs,
    /// Give the program this terminal (a pty's replica) as its controlling terminal and stdio.
    pub terminal: Option<std::os::fd::RawFd>,
    /// While waiting, pass SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to envkit
    /// on to the program instead of dying of them.
    pub forward_signals: bool,
    /// Make `fsync` and its relatives no-ops for the program (build steps: the store syncs
    /// once before publishing).
    pub discard_syncs: bool,
    /// A service (a peer): forwarded signals reach every process of the sandbox, not only the
    /// program, and the sandbox lasts until the last of them has ended, so a service started
    /// by a shell line (`a && b`) is stopped as gently as one run directly.
    pub service: bool,
}

/// Who the program runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// Root with every capability of the namespace: a build step installing packages.
    Builder,
    /// Root in a session: capabilities bounded to a container's usual set, no new privileges.
    Root,
    /// The invoking user: no capabilities, no new privileges.
    User { uid: u32, gid: u32 },
}

/// Capabilities root keeps in a session: the set container engines grant by default.
const SESSION_CAPABILITIES: &[u32] = &[
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    27, // MKNOD
    29, // AUDIT_WRITE
    31, // SETFCAP
];

/// Signals envkit and the sandbox's init pass on to the program.
const FORWARDED: &[nix::sys::signal::Signal] = &[
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGQUIT,
    nix::sys::signal::Signal::SIGUSR1,
    nix::sys::signal::Signal::SIGUSR2,
];

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the sandbox must be started by root or inside envkit's user namespace")]
    NotRoot,
    /// The program could not be executed (not found, not executable).
    #[error("{0}")]
    NotRunnable(String),
    #[error("`{0}` contains a NUL byte")]
    Nul(String),
    #[error("cannot start the sandbox")]
    Start(#[source] std::io::Error),
    #[error("cannot set up the sandbox: {0}")]
    Setup(String),
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    /// As a shell reports it: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal,
        }
    }
}

/// One mount the child performs, with its C strings ready.
struct MountStep {
    source: Option<CString>,
    target: CString,
    fstype: Option<CString>,
    flags: MsFlags,
    data: Option<CString>,
    /// Create the target as a folder (or, for file binds, an empty file) first.
    create: Create,
    /// Remount read-only after a bind.
    readonly: bool,
    /// Shown if the step fails ("cannot <what>: <errno>").
    what: String,
    /// Shown if making it read-only fails.
    readonly_what: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Create {
    Nothing,
    Folder,
    File,
}

/// Everything the child uses, allocated before `clone`.
struct Prepared {
    root: CString,
    steps: Vec<MountStep>,
    symlinks: Vec<(CString, CString)>,
    hostname: String,
    workdir: CString,
    /// The program's arguments and environment, owned here for the pointers below.
    _argv: Vec<CString>,
    _environment: Vec<CString>,
    /// The arguments and environment as the null-terminated pointer arrays `execve` takes,
    /// made here because the program's side may not allocate.
    argv_pointers: Vec<*const nix::libc::c_char>,
    environment_pointers: Vec<*const nix::libc::c_char>,
    /// Absolute candidates for the program, in `PATH` order.
    programs: Vec<CString>,
    /// "run `program`", for the error when no candidate can be executed.
    run_what: String,
    run_as: RunAs,
    terminal: Option<std::os::fd::RawFd>,
    /// The highest capability number this kernel knows.
    last_capability: u32,
    /// The seccomp program that discards syncs, when asked for.
    sync_filter: Option<Vec<nix::libc::sock_filter>>,
    /// Bring up `lo` in the sandbox's own network namespace.
    loopback_up: bool,
    service: bool,
}

fn c(text: &str) -> Result<CString, SandboxError> {
    CString::new(text).map_err(|_| SandboxError::Nul(text.to_string()))
}

fn c_path(path: &Path) -> Result<CString, SandboxError> {
    c(&path.to_string_lossy())
}

/// The host device nodes a session gets.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn prepare(spec: &SandboxSpec) -> Result<Prepared, SandboxError> {
    let root = &spec.root;
    let inside = |path: &str| root.join(path.trim_start_matches('/'));
    let mut steps = vec![MountStep {
        source: None,
        target: c("/")?,
        fstype: None,
        flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        data: None,
        create: Create::Nothing,
        readonly: false,
        what: "make mounts private".into(),
        readonly_what: String::new(),
    }];
    if let Some(overlay) = &spec.overlay {
        let lowers: Vec<String> = overlay
            .lowers
            .iter()
            .map(|l| l.to_string_lossy().into_owned())
            .collect();
        // No redirects and no metacopy: every changed file is whole in the upper folder, so
        // the upper folder is a complete layer on its own.
        // userxattr: the bookkeeping (opaque folders) lives in `user.overlay.*`, which works
        // inside a user namespace; it asks for redirect_dir=nofollow.
        let options = format!(
            "lowerdir={},upperdir={},workdir={},userxattr,redirect_dir=nofollow,metacopy=off,index=off",
            lowers.join(":"),
            overlay.upper.display(),
            overlay.work.display()
        );
        // The kernel copies mount options from one page; longer ones fail with a bare EINVAL.
        if options.len() >= 4096 {
            return Err(SandboxError::Setup(format!(
                "{} layers are too many for one overlay mount: their folders' names take {} bytes \
                 of the 4095 the kernel allows (a shorter store path, set by ENVKIT_STORE_DIR, or \
                 fewer setup steps helps; packages take at most 16 layers)",
                lowers.len(),
                options.len()
            )));
        }
        steps.push(MountStep {
            source: Some(c("overlay")?),
            target: c_path(root)?,
            fstype: Some(c("overlay")?),
            flags: MsFlags::empty(),
            data: Some(c(&options)?),
            create: Create::Nothing,
            readonly: false,
            what: "mount the overlay root".into(),
            readonly_what: String::new(),
        });
    }
    steps.extend([
        MountStep {
            source: Some(c_path(root)?),
            target: c_path(root)?,
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            data: None,
            create: Create::Nothing,
            readonly: false,
            what: "bind the root".into(),
            readonly_what: String::new(),
        },
        MountStep {
            source: Some(c("proc")?),
            target: c_path(&inside("proc"))?,
            fstype: Some(c("proc")?),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data: None,
            create: Create::Folder,
            readonly: false,
            what: "mount /proc".into(),
            readonly_what: String::new(),
        },
        MountStep {
            source: Some(c("tmpfs")?),
            target: c_path(&inside("dev"))?,
            fstype: Some(c("tmpfs")?),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
            data: Some(c("mode=755,size=65536k")?),
            create: Create::Folder,
            readonly: false,
            what: "mount /dev".into(),
            readonly_what: String::new(),
        },
    ]);
    for device in DEVICES {
        steps.push(MountStep {
            source: Some(c(&format!("/dev/{device}"))?),
            target: c_path(&inside(&format!("dev/{device}")))?,
            fstype: None,
            flags: MsFlags::MS_BIND,
            data: None,
            create: Create::File,
            readonly: false,
            what: format!("bind /dev/{device}"),
            readonly_what: String::new(),
        });
    }
    steps.push(MountStep {
        source: Some(c("devpts")?),
        target: c_path(&inside("dev/pts"))?,
        fstype: Some(c("devpts")?),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: Some(c("newinstance,ptmxmode=0666,mode=620")?),
        create: Create::Folder,
        readonly: false,
        what: "mount /dev/pts".into(),
        readonly_what: String::new(),
    });
    let mut tmpfs: Vec<String> = vec!["/dev/shm".into()];
    tmpfs.extend(spec.tmpfs.iter().cloned());
    for path in &tmpfs {
        steps.push(MountStep {
            source: Some(c("tmpfs")?),
            target: c_path(&inside(path))?,
            fstype: Some(c("tmpfs")?),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data: Some(c("mode=1777")?),
            create: Create::Folder,
            readonly: false,
            what: format!("mount a tmpfs at {path}"),
            readonly_what: String::new(),
        });
    }
    for bind in &spec.binds {
        let create = if bind.source.is_dir() {
            Create::Folder
        } else {
            Create::File
        };
        steps.push(MountStep {
            source: Some(c_path(&bind.source)?),
            target: c_path(&inside(&bind.target))?,
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            data: None,
            create,
            readonly: bind.readonly,
            what: format!("bind {} at {}", bind.source.display(), bind.target),
            readonly_what: format!("make {} read-only", bind.target),
        });
    }
    let symlinks = [
        ("/proc/self/fd", "dev/fd"),
        ("/proc/self/fd/0", "dev/stdin"),
        ("/proc/self/fd/1", "dev/stdout"),
        ("/proc/self/fd/2", "dev/stderr"),
        ("pts/ptmx", "dev/ptmx"),
    ]
    .iter()
    .map(|(target, link)| Ok((c(target)?, c_path(&inside(link))?)))
    .collect::<Result<Vec<_>, SandboxError>>()?;
    let program = spec
        .argv
        .first()
        .ok_or_else(|| SandboxError::Setup("no program to run".into()))?;
    let path_variable = spec.environment.iter().find(|(k, _)| k == "PATH").map_or(
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        |(_, v)| v.as_str(),
    );
    let programs = if program.contains('/') {
        vec![c(program)?]
    } else {
        path_variable
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|dir| c(&format!("{dir}/{program}")))
            .collect::<Result<_, _>>()?
    };
    let argv: Vec<CString> = spec.argv.iter().map(|a| c(a)).collect::<Result<_, _>>()?;
    let environment: Vec<CString> = spec
        .environment
        .iter()
        .map(|(k, v)| c(&format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let pointers = |strings: &[CString]| -> Vec<*const nix::libc::c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    Ok(Prepared {
        argv_pointers: pointers(&argv),
        environment_pointers: pointers(&environment),
        _argv: argv,
        _environment: environment,
        root: c_path(root)?,
        steps,
        symlinks,
        hostname: spec.hostname.clone(),
        workdir: c(&spec.workdir)?,
        programs,
        run_what: format!("run `{program}`"),
        run_as: spec.run_as,
        terminal: spec.terminal,
        last_capability: std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(63),
        loopback_up: spec.network == SandboxNetwork::None,
        service: spec.service,
        sync_filter: if spec.discard_syncs {
            syncs::discard_syncs_filter()
        } else {
            None
        },
    })
}

/// Where a forwarding handler sends what it catches: the sandbox's init (in envkit), the
/// program (in the init). Separate processes, so one static serves both.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
/// Forward signals the kernel generated too (a terminal's SIGHUP when envkit owns a pty).
static FORWARD_KERNEL_SIGNALS: AtomicBool = AtomicBool::new(false);
/// `si_code` of a signal the kernel sent, such as a terminal's SIGINT: the terminal sent it to
/// the program as well (the same process group), so passing it on would deliver it twice.
const SI_KERNEL: i32 = 0x80;

/// In the init of a service: pass signals to every process of the namespace.
static FORWARD_TO_ALL: AtomicBool = AtomicBool::new(false);
/// A signal caught before there was anyone to pass it to (the init not cloned yet, the program
/// not forked yet): delivered as soon as there is, so a stop request during start is not lost.
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: nix::libc::c_int, info: *mut nix::libc::siginfo_t, _: *mut c_void) {
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    #[allow(unsafe_code)]
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } == SI_KERNEL;
    let target = FORWARD_TO.load(Ordering::SeqCst);
    if target <= 0 {
        // No program yet for a terminal to have reached either: keep it for the program.
        PENDING_SIGNAL.store(signal, Ordering::SeqCst);
    } else if !from_kernel || FORWARD_KERNEL_SIGNALS.load(Ordering::SeqCst) {
        // -1: every process this one may signal but itself, which for a namespace's init is
        // every process of the namespace.
        let to = if FORWARD_TO_ALL.load(Ordering::SeqCst) {
            -1
        } else {
            target
        };
        // SAFETY: kill is async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            nix::libc::kill(to, signal);
        }
    }
}

/// Starts catching the signals a session forwards, before anything of the session exists on
/// disk: one sent from now on reaches the program once it runs, and envkit is never killed
/// halfway through making a session (which would leave its scratch behind).
pub fn catch_signals() -> Result<(), SandboxError> {
    install_forwarding()
        .map(|_| ())
        .map_err(|e| SandboxError::Start(e.into()))
}

/// Passes on a signal caught while there was no one to pass it to; call after setting
/// [`FORWARD_TO`].
fn deliver_pending(target: i32) {
    let pending = PENDING_SIGNAL.swap(0, Ordering::SeqCst);
    if pending > 0 {
        // SAFETY: kill is async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            nix::libc::kill(target, pending);
        }
    }
}

/// The signals envkit and the init forward, as a set (on the stack: no allocation).
fn forwarded_set() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(*signal);
    }
    set
}

/// Installs the forwarding handler for `signal`; returns the action it replaces.
fn forward_one(signal: Signal) -> Result<SigAction, nix::errno::Errno> {
    let action = SigAction::new(
        SigHandler::SigAction(forward),
        SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    // SAFETY: the handler only reads atomics and calls kill.
    #[allow(unsafe_code)]
    unsafe {
        sigaction(signal, &action)
    }
}

/// Installs the forwarding handlers; returns the actions they replace, to put back.
fn install_forwarding() -> Result<Vec<(Signal, SigAction)>, nix::errno::Errno> {
    FORWARDED
        .iter()
        .map(|signal| forward_one(*signal).map(|previous| (*signal, previous)))
        .collect()
}

/// [`install_forwarding`] for the sandbox's init, a clone of a threaded process: it must not
/// allocate (another thread may have held malloc's lock at the clone), so nothing is kept.
fn install_forwarding_in_child() -> Result<(), nix::errno::Errno> {
    for signal in FORWARDED {
        forward_one(*signal)?;
    }
    Ok(())
}

/// Runs `spec` and waits for it.
pub fn run(spec: &SandboxSpec) -> Result<Exit, SandboxError> {
    run_with(spec, &mut |_| {})
}

/// Runs `spec` and waits for it. `before_start` gets the sandbox's init (its pid seen from
/// here) once the sandbox's namespaces are set up and before the program starts, which waits
/// for it to return: there the caller can prepare what the program must find, such as
/// forwarders listening in its network namespace. It is not called when the setup failed.
pub fn run_with(
    spec: &SandboxSpec,
    before_start: &mut dyn FnMut(i32),
) -> Result<Exit, SandboxError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(SandboxError::NotRoot);
    }
    let prepared = prepare(spec)?;
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::Start(e.into()))?;
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::Start(e.into()))
    };
    let ((at_gate_reader, at_gate_writer), (go_reader, go_writer)) = (pipe()?, pipe()?);
    let gate = Gate {
        at_gate: at_gate_writer.as_raw_fd(),
        go: go_reader.as_raw_fd(),
        parents_ends: [at_gate_reader.as_raw_fd(), go_writer.as_raw_fd()],
    };
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if spec.network == SandboxNetwork::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let log = match &spec.log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(SandboxError::Start)?,
        ),
        None => None,
    };
    let log_ref = log.as_ref();
    let mut stack = vec![0u8; 1 << 20];
    let writer_fd = writer.as_raw_fd();
    let child = Box::new(move || -> isize {
        if let Some(file) = log_ref {
            // dup2 leaves close-on-exec off on the copies, so the program keeps them.
            let _ = nix::unistd::dup2_stdout(file);
            let _ = nix::unistd::dup2_stderr(file);
        }
        let Err((what, errno)) = child_main(&prepared, writer_fd, &gate);
        report_failure(writer_fd, "", what, errno);
        127
    });
    let previous = if spec.forward_signals {
        FORWARD_KERNEL_SIGNALS.store(spec.terminal.is_some(), Ordering::SeqCst);
        install_forwarding().map_err(|e| SandboxError::Start(e.into()))?
    } else {
        Vec::new()
    };
    // SAFETY: the child only makes system calls on data prepared above and then execs or
    // exits; the stack outlives it because we wait for it before returning.
    #[allow(unsafe_code)]
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(nix::libc::SIGCHLD)) }
        .map_err(|e| SandboxError::Start(e.into()));
    let outcome = pid.and_then(|pid| {
        FORWARD_TO.store(pid.as_raw(), Ordering::SeqCst);
        if spec.forward_signals {
            deliver_pending(pid.as_raw());
        }
        drop(writer);
        drop(at_gate_writer);
        drop(go_reader);
        let mut byte = [0u8; 1];
        let at_gate = loop {
            match nix::unistd::read(at_gate_reader.as_fd(), &mut byte) {
                Err(nix::errno::Errno::EINTR) => continue,
                outcome => break outcome == Ok(1),
            }
        };
        if at_gate {
            before_start(pid.as_raw());
        }
        // A byte, not end-of-file, lets the program start: another sandbox cloned meanwhile
        // by another thread holds copies of these descriptors, and waiting for all of them
        // to close would deadlock two sandboxes waiting at their gates.
        let _ = nix::unistd::write(&go_writer, b"g");
        drop(go_writer);
        let mut message = Vec::new();
        // EINTR (a forwarded signal) just means read on.
        let mut reader = std::fs::File::from(reader);
        loop {
            match reader.read_to_end(&mut message) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        let status = loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => break Exit::Code(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => break Exit::Signal(signal as i32),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(SandboxError::Start(e.into())),
            }
        };
        Ok((status, message))
    });
    FORWARD_TO.store(0, Ordering::SeqCst);
    for (signal, action) in previous {
        // SAFETY: puts back the handler that was there before.
        #[allow(unsafe_code)]
        let _ = unsafe { sigaction(signal, &action) };
    }
    let (status, message) = outcome?;
    match message.split_first() {
        None => Ok(status),
        Some((&NOT_RUNNABLE, rest)) => Err(SandboxError::NotRunnable(
            String::from_utf8_lossy(rest).into_owned(),
        )),
        Some(_) => Err(SandboxError::Setup(
            String::from_utf8_lossy(&message).into_owned(),
        )),
    }
}

/// First byte of a failure report when the program itself could not be executed.
const NOT_RUNNABLE: u8 = 1;

/// Writes "cannot WHAT: ERRNO" to the report pipe without allocating: `clone` and `fork` run
/// no atfork handlers, so a lock another thread of envkit held (malloc's, say) stays locked.
fn report_failure(fd: std::os::fd::RawFd, marker: &str, what: &str, errno: nix::errno::Errno) {
    // SAFETY: the pipe's write end stays open until this process execs or exits.
    #[allow(unsafe_code)]
    let writer = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    for piece in [marker, "cannot ", what, ": ", errno.desc()] {
        let _ = nix::unistd::write(writer, piece.as_bytes());
    }
}

enum Never {}

/// Where the sandbox's init waits before it starts the program (see [`run_with`]): it writes
/// a byte to `at_gate`, then waits for envkit's byte on `go`.
struct Gate {
    at_gate: std::os::fd::RawFd,
    go: std::os::fd::RawFd,
    /// envkit's ends, which the child closes so that end-of-file on `go` means envkit is gone.
    parents_ends: [std::os::fd::RawFd; 2],
}

/// The child's side, in order; returns only on failure, with what failed.
fn child_main<'a>(
    prepared: &'a Prepared,
    report: std::os::fd::RawFd,
    gate: &Gate,
) -> Result<Never, (&'a str, nix::errno::Errno)> {
    for fd in gate.parents_ends {
        let _ = nix::unistd::close(fd);
    }
    // If envkit dies (Ctrl-C, kill -9), the sandbox dies with it instead of running on as an
    // orphan; as pid 1 it takes its whole namespace along.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| ("ask to die with envkit", e))?;
    for step in &prepared.steps {
        match step.create {
            Create::Folder => {
                let _ = nix::unistd::mkdir(
                    step.target.as_c_str(),
                    nix::sys::stat::Mode::from_bits_truncate(0o755),
                );
            }
            Create::File => {
                let flags = nix::fcntl::OFlag::O_CREAT
                    | nix::fcntl::OFlag::O_WRONLY
                    | nix::fcntl::OFlag::O_CLOEXEC;
                let _ = nix::fcntl::open(
                    step.target.as_c_str(),
                    flags,
                    nix::sys::stat::Mode::from_bits_truncate(0o644),
                );
            }
            Create::Nothing => {}
        }
        mount(
            step.source.as_deref(),
            step.target.as_c_str(),
            step.fstype.as_deref(),
            step.flags,
            step.data.as_deref(),
        )
        .map_err(|e| (step.what.as_str(), e))?;
        if step.readonly {
            let flags =
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
            mount(
                None::<&str>,
                step.target.as_c_str(),
                None::<&str>,
                flags,
                None::<&str>,
            )
            .map_err(|e| (step.readonly_what.as_str(), e))?;
        }
    }
    for (target, link) in &prepared.symlinks {
        let _ = nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, link.as_c_str());
    }
    nix::unistd::sethostname(&prepared.hostname).map_err(|e| ("set the host name", e))?;
    if prepared.loopback_up {
        loopback_up().map_err(|e| ("bring up the loopback interface", e))?;
    }
    nix::unistd::chdir(prepared.root.as_c_str()).map_err(|e| ("enter the root", e))?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves no way
    // back to the host's files.
    nix::unistd::pivot_root(".", ".").map_err(|e| ("pivot into the root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| ("detach the host's root", e))?;
    nix::unistd::chdir(prepared.workdir.as_c_str()).map_err(|e| ("enter the working folder", e))?;
    // The kernel delivers to a namespace's init only the signals it handles, so the program
    // must not be pid 1: this process stays as init and forwards.
    FORWARD_KERNEL_SIGNALS.store(false, Ordering::SeqCst);
    FORWARD_TO_ALL.store(prepared.service, Ordering::SeqCst);
    install_forwarding_in_child().map_err(|e| ("catch signals", e))?;
    wait_at_gate(gate).map_err(|e| ("wait for envkit", e))?;
    // Held back across the fork: one arriving now reaches the program once it exists (the
    // parent side passes it on), never a copy of this handler in the child.
    let forwarded = forwarded_set();
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&forwarded),
        None,
    )
    .map_err(|e| ("hold signals back", e))?;
    match fork_without_handlers().map_err(|e| ("start the program", e))? {
        nix::unistd::ForkResult::Child => {
            let Err((what, errno)) = program_main(prepared);
            let marker = if what == prepared.run_what.as_str() {
                "\u{1}"
            } else {
                ""
            };
            report_failure(report, marker, what, errno);
            // SAFETY: leaves without running anything of the parent's.
            #[allow(unsafe_code)]
            unsafe {
                nix::libc::_exit(127)
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            FORWARD_TO.store(child.as_raw(), Ordering::SeqCst);
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
                Some(&forwarded),
                None,
            );
            deliver_pending(child.as_raw());
            // envkit learns that the program started when the last write end closes at exec.
            let _ = nix::unistd::close(report);
            if let Some(terminal) = prepared.terminal {
                let _ = nix::unistd::close(terminal);
            }
            // A service's sandbox lasts until its last process ends; the status is the
            // program's.
            let mut program_status = None;
            let code = loop {
                let ended = match waitpid(None, None) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == child => code,
                    Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => 128 + signal as i32,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break program_status.unwrap_or(127),
                };
                if !prepared.service {
                    break ended;
                }
                program_status = Some(ended);
            };
            // Leaving ends the namespace: the kernel kills whatever the program left behind.
            // SAFETY: as above.
            #[allow(unsafe_code)]
            unsafe {
                nix::libc::_exit(code)
            }
        }
    }
}

/// The program's side: its terminal, who it runs as, then exec.
fn program_main(prepared: &Prepared) -> Result<Never, (&str, nix::errno::Errno)> {
    for signal in FORWARDED {
        // SAFETY: back to the default action before exec, as a fresh process has.
        #[allow(unsafe_code)]
        let _ = unsafe { nix::sys::signal::signal(*signal, SigHandler::SigDfl) };
    }
    // The init held them back across the fork; one sent meanwhile now takes its default
    // action, as it would for the program.
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
        Some(&forwarded_set()),
        None,
    )
    .map_err(|e| ("let signals through", e))?;
    if let Some(terminal) = prepared.terminal {
        nix::unistd::setsid().map_err(|e| ("start a session", e))?;
        // SAFETY: TIOCSCTTY takes an int argument; 0 means "do not steal".
        #[allow(unsafe_code)]
        let made = unsafe { nix::libc::ioctl(terminal, nix::libc::TIOCSCTTY, 0) };
        if made != 0 {
            return Err(("take the terminal", nix::errno::Errno::last()));
        }
        for target in 0..3 {
            // SAFETY: plain dup2 of an open descriptor onto stdio.
            #[allow(unsafe_code)]
            if unsafe { nix::libc::dup2(terminal, target) } < 0 {
                return Err(("attach the terminal", nix::errno::Errno::last()));
            }
        }
        if terminal > 2 {
            let _ = nix::unistd::close(terminal);
        }
    }
    if let Some(filter) = &prepared.sync_filter {
        syncs::install(filter).map_err(|e| ("discard syncs", e))?;
    }
    match prepared.run_as {
        RunAs::Builder => {}
        RunAs::Root => {
            for capability in 0..=prepared.last_capability {
                if !SESSION_CAPABILITIES.contains(&capability) {
                    // SAFETY: prctl with integer arguments.
                    #[allow(unsafe_code)]
                    unsafe {
                        nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, capability as u64, 0, 0, 0);
                    }
                }
            }
            no_new_privileges()?;
        }
        RunAs::User { uid, gid } => {
            become_user(uid, gid)?;
            no_new_privileges()?;
        }
    }
    close_inherited_descriptors();
    let mut last = nix::errno::Errno::ENOENT;
    for program in &prepared.programs {
        // SAFETY: both arrays are null-terminated and point into strings `prepared` owns.
        #[allow(unsafe_code)]
        let failed = unsafe {
            nix::libc::execve(
                program.as_ptr(),
                prepared.argv_pointers.as_ptr(),
                prepared.environment_pointers.as_ptr(),
            )
        };
        match nix::errno::Errno::result(failed) {
            Ok(_) => {}
            // A later PATH entry may still have it; "permission denied" is the better report
            // than a later "not found".
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {}
            Err(errno) => last = errno,
        }
    }
    Err((prepared.run_what.as_str(), last))
}

/// `ip link set lo up`, without allocating: a service in its own network namespace listens
/// on loopback, where envkit's forwarder reaches it.
/// Marks every descriptor above stderr close-on-exec, so the program gets only its standard
/// streams: not envkit's own files and sockets, and not a descriptor envkit inherited without
/// close-on-exec (an open folder of the host would be a way out of the root). The report pipe
/// stays usable until exec succeeds.
fn close_inherited_descriptors() {
    const CLOSE_RANGE_CLOEXEC: nix::libc::c_uint = 1 << 2;
    // SAFETY: close_range and fcntl only change descriptor flags; neither allocates.
    #[allow(unsafe_code)]
    unsafe {
        let all_marked = nix::libc::syscall(
            nix::libc::SYS_close_range,
            3 as nix::libc::c_uint,
            nix::libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        ) == 0;
        if !all_marked {
            // Kernels before 5.11: one at a time, up to a generous limit.
            for fd in 3..4096 {
                nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC);
            }
        }
    }
}

/// `fork` as the bare system call. The init is a clone of a threaded envkit, so a lock another
/// thread held at that moment (malloc's) stays locked in it, and libc's `fork`, which takes
/// such locks for its handlers, could wait forever. The child only makes bare system calls
/// (see [`become_user`]) and execs.
fn fork_without_handlers() -> Result<nix::unistd::ForkResult, nix::errno::Errno> {
    // SAFETY: clone with only SIGCHLD is fork; nothing of libc runs on either side.
    #[allow(unsafe_code)]
    let pid = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_clone,
            nix::libc::c_long::from(nix::libc::SIGCHLD),
            0 as nix::libc::c_long,
            0 as nix::libc::c_long,
            0 as nix::libc::c_long,
            0 as nix::libc::c_long,
        )
    };
    match pid {
        -1 => Err(nix::errno::Errno::last()),
        0 => Ok(nix::unistd::ForkResult::Child),
        child => Ok(nix::unistd::ForkResult::Parent {
            child: nix::unistd::Pid::from_raw(child as i32),
        }),
    }
}

/// Becomes `uid`:`gid` (with `gid` as the only group) by bare system calls: libc's wrappers
/// would pass the change on to the other threads it believes this process has (it is a copy
/// of a threaded envkit), taking locks that may never be free here.
fn become_user(uid: u32, gid: u32) -> Result<(), (&'static str, nix::errno::Errno)> {
    let groups = [gid];
    // SAFETY: setgroups reads one gid from the array; the set*id calls take plain integers.
    #[allow(unsafe_code)]
    let outcome = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_setgroups,
            1 as nix::libc::c_long,
            groups.as_ptr(),
        )
    };
    nix::errno::Errno::result(outcome).map_err(|e| ("set the groups", e))?;
    for (call, id) in [
        (nix::libc::SYS_setresgid, gid),
        (nix::libc::SYS_setresuid, uid),
    ] {
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let outcome = unsafe { nix::libc::syscall(call, id, id, id) };
        nix::errno::Errno::result(outcome).map_err(|e| ("become the user", e))?;
    }
    Ok(())
}

/// Tells envkit the namespaces are ready and waits until it lets the program start.
fn wait_at_gate(gate: &Gate) -> Result<(), nix::errno::Errno> {
    // SAFETY: both descriptors are this process's own, open until closed here.
    #[allow(unsafe_code)]
    let (at_gate, go) = unsafe {
        (
            std::os::fd::BorrowedFd::borrow_raw(gate.at_gate),
            std::os::fd::BorrowedFd::borrow_raw(gate.go),
        )
    };
    nix::unistd::write(at_gate, b"g")?;
    let _ = nix::unistd::close(gate.at_gate);
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(go, &mut byte) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno),
            // End of file: envkit is gone without letting the program start.
            Ok(0) => return Err(nix::errno::Errno::EPIPE),
            Ok(_) => break,
        }
    }
    let _ = nix::unistd::close(gate.go);
    Ok(())
}

fn loopback_up() -> Result<(), nix::errno::Errno> {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq naming "lo".
    #[allow(unsafe_code)]
    unsafe {
        let socket = nix::libc::socket(
            nix::libc::AF_INET,
            nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC,
            0,
        );
        if socket < 0 {
            return Err(nix::errno::Errno::last());
        }
        let mut request: nix::libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
            *slot = *byte as nix::libc::c_char;
        }
        let mut outcome = nix::libc::ioctl(socket, nix::libc::SIOCGIFFLAGS, &mut request);
        if outcome == 0 {
            request.ifr_ifru.ifru_flags |= nix::libc::IFF_UP as nix::libc::c_short;
            outcome = nix::libc::ioctl(socket, nix::libc::SIOCSIFFLAGS, &request);
        }
        let errno = nix::errno::Errno::last();
        nix::libc::close(socket);
        if outcome != 0 {
            return Err(errno);
        }
    }
    Ok(())
}

fn no_new_privileges() -> Result<(), (&'static str, nix::errno::Errno)> {
    // SAFETY: prctl with integer arguments.
    #[allow(unsafe_code)]
    let done = unsafe { nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if done != 0 {
        return Err(("forbid new privileges", nix::errno::Errno::last()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root that borrows the host's programs read-only, enough for `sh`.
    fn host_program_root() -> Option<(tempfile::TempDir, SandboxSpec)> {
        let must_work = std::env::var("ENVKIT_MUST_WORK").is_ok_and(|v| v == "1");
        if !nix::unistd::geteuid().is_root() {
            assert!(
                !must_work,
                "ENVKIT_MUST_WORK=1 but the sandbox tests need root"
            );
            eprintln!("skipped: the sandbox tests need root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        for link in ["bin", "sbin", "lib", "lib64"] {
            std::os::unix::fs::symlink(format!("usr/{link}"), dir.path().join(link)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let spec = SandboxSpec {
            binds: vec![Bind {
                source: "/usr".into(),
                target: "/usr".into(),
                readonly: true,
            }],
            tmpfs: vec!["/tmp".into()],
            hostname: "sandboxed".into(),
            network: SandboxNetwork::Host,
            environment: vec![("PATH".into(), "/usr/bin:/bin".into())],
            ..bare_spec(dir.path())
        };
        Some((dir, spec))
    }

    /// A sandbox of `root` with nothing added: no mounts, no network, no environment.
    fn bare_spec(root: &Path) -> SandboxSpec {
        SandboxSpec {
            root: root.to_path_buf(),
            overlay: None,
            binds: vec![],
            tmpfs: vec![],
            hostname: "sandboxed".into(),
            network: SandboxNetwork::None,
            environment: vec![],
            workdir: "/".into(),
            argv: vec![],
            log: None,
            run_as: RunAs::Builder,
            terminal: None,
            forward_signals: false,
            discard_syncs: false,
            service: false,
        }
    }

    fn sh(spec: &SandboxSpec, script: &str) -> Result<Exit, SandboxError> {
        let mut spec = spec.clone();
        spec.argv = vec!["sh".into(), "-c".into(), script.into()];
        run(&spec)
    }

    #[test]
    fn an_overlay_too_long_for_the_kernel_is_refused_by_name() {
        let lowers: Vec<PathBuf> = (0..40)
            .map(|n| PathBuf::from(format!("/var/lib/envkit/store/layers-v1/{n:064}/tree")))
            .collect();
        let spec = SandboxSpec {
            overlay: Some(Overlay {
                lowers,
                upper: "/tmp/upper".into(),
                work: "/tmp/work".into(),
            }),
            argv: vec!["true".into()],
            ..bare_spec(Path::new("/tmp/root"))
        };
        let Err(error) = prepare(&spec) else {
            panic!("40 long lower folders fit in a page");
        };
        assert!(
            error
                .to_string()
                .contains("40 layers are too many for one overlay mount"),
            "{error}"
        );
    }

    #[test]
    fn the_program_is_pid_1_in_its_own_root() {
        let Some((dir, spec)) = host_program_root() else {
            return;
        };
        let out = dir.path().join("tmp-out");
        let mut spec = spec;
        spec.binds.push(Bind {
            source: dir.path().to_path_buf(),
            target: "/out".into(),
            readonly: false,
        });
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        let status = sh(&spec, "echo $PPID > /out/tmp-out; hostname >> /out/tmp-out; ls /dev >> /out/tmp-out; test ! -e /root && test ! -e /home && test ! -e /etc/passwd").unwrap();
        assert_eq!(status, Exit::Code(0));
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("1"), "the init is pid 1: {text}");
        assert_eq!(lines.next(), Some("sandboxed"));
        for device in ["null", "urandom", "pts", "shm", "ptmx", "fd"] {
            assert!(
                text.lines().any(|l| l == device),
                "{device} in /dev: {text}"
            );
        }
    }

    #[test]
    fn exit_codes_and_signal_deaths_come_back() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        assert_eq!(sh(&spec, "exit 7").unwrap(), Exit::Code(7));
        // The program is not the namespace's init, so it dies of signals as anywhere else,
        // and the init reports that as a shell would.
        assert_eq!(sh(&spec, "kill -TERM $$; exit 3").unwrap(), Exit::Code(143));
        assert_eq!(Exit::Signal(15).code(), 143);
    }

    #[test]
    fn the_init_reaps_orphans_and_the_program_is_not_pid_1() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        // An orphan left behind does not keep the session open.
        assert_eq!(
            sh(&spec, "test $$ != 1 && (sleep 30 &) && exit 4").unwrap(),
            Exit::Code(4)
        );
    }

    #[test]
    fn read_only_binds_refuse_writes_and_devices_work() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        assert_eq!(
            sh(&spec, "touch /usr/envkit-test 2>/dev/null").unwrap(),
            Exit::Code(1)
        );
        assert_eq!(
            sh(
                &spec,
                "head -c 16 /dev/urandom > /dev/null && echo ok > /tmp/x && test -s /tmp/x"
            )
            .unwrap(),
            Exit::Code(0)
        );
    }

    #[test]
    fn output_can_go_to_a_log() {
        let Some((dir, spec)) = host_program_root() else {
            return;
        };
        let mut spec = spec;
        let log = dir.path().join("../sandbox-test.log");
        spec.log = Some(log.clone());
        assert_eq!(sh(&spec, "echo out; echo err >&2").unwrap(), Exit::Code(0));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "out\nerr\n");
        std::fs::remove_file(&log).unwrap();
    }

    #[test]
    fn an_overlay_root_collects_changes_in_its_upper_folder() {
        let Some((dir, spec)) = host_program_root() else {
            return;
        };
        let scratch = tempfile::tempdir().unwrap();
        let (upper, work, merged) = (
            scratch.path().join("upper"),
            scratch.path().join("work"),
            scratch.path().join("merged"),
        );
        for d in [&upper, &work, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(dir.path().join("etc/kept"), "lower").unwrap();
        let mut spec = spec;
        spec.root = merged.clone();
        spec.overlay = Some(Overlay {
            lowers: vec![dir.path().to_path_buf()],
            upper: upper.clone(),
            work,
        });
        assert_eq!(
            sh(
                &spec,
                "test \"$(cat /etc/kept)\" = lower && echo new > /etc/added"
            )
            .unwrap(),
            Exit::Code(0)
        );
        assert_eq!(
            std::fs::read_to_string(upper.join("etc/added")).unwrap(),
            "new\n"
        );
        assert!(
            !dir.path().join("etc/added").exists(),
            "the lower layer is untouched"
        );
        assert!(!upper.join("etc/kept").exists());
    }

    #[test]
    fn build_steps_can_have_syncs_discarded() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        let mut spec = spec;
        spec.discard_syncs = true;
        // The filter is in place, syncs succeed, everything else works as before.
        let script = "grep -q '^Seccomp:[[:space:]]*2' /proc/self/status \
            && echo data > /tmp/f && sync /tmp/f && sync && test \"$(cat /tmp/f)\" = data \
            && python3 -c 'import os; fd = os.open(\"/tmp/g\", os.O_CREAT | os.O_WRONLY); os.write(fd, b\"x\"); os.fsync(fd); os.fdatasync(fd)'";
        assert_eq!(sh(&spec, script).unwrap(), Exit::Code(0));
        spec.discard_syncs = false;
        assert_eq!(
            sh(&spec, "grep -q '^Seccomp:[[:space:]]*0' /proc/self/status").unwrap(),
            Exit::Code(0)
        );
    }

    #[test]
    fn a_missing_program_is_reported() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        let mut spec = spec;
        spec.argv = vec!["no-such-program".into()];
        let error = run(&spec).unwrap_err();
        assert!(matches!(error, SandboxError::NotRunnable(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "cannot run `no-such-program`: No such file or directory"
        );
    }

    #[test]
    fn no_network_leaves_only_loopback() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        let mut spec = spec;
        spec.network = SandboxNetwork::None;
        assert_eq!(sh(&spec, "test \"$(ls /sys/class/net 2>/dev/null | wc -l)\" -le 1 && ! grep -qv -e lo: -e Inter -e face /proc/net/dev").unwrap(), Exit::Code(0));
        // Loopback is up: a server and a client inside can talk.
        let talk = "python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(); c = socket.create_connection(s.getsockname()); print(\"ok\")'";
        assert_eq!(sh(&spec, talk).unwrap(), Exit::Code(0));
    }
}
