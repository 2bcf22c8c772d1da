//! Build steps run with `fsync` and its relatives turned into no-ops, by a seccomp filter that
//! answers them with success without doing anything (what eatmydata does with a preloaded
//! library, but for static programs too). dpkg syncs its database after every package, which
//! `--force-unsafe-io` does not cover; the store syncs the whole file system once before a
//! layer is published, which is as durable for a layer that is only real once published.

use nix::libc::{SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, sock_filter};

/// `AUDIT_ARCH_*` of the architecture envkit is built for: the filter only recognises system
/// call numbers of that architecture and lets everything else through.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

const LOAD_WORD: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JUMP_IF_EQUAL: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const RETURN: u16 = 0x06; // BPF_RET | BPF_K

fn statement(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: JUMP_IF_EQUAL,
        jt,
        jf,
        k,
    }
}

/// The filter program, or none on architectures it does not know.
pub fn discard_syncs_filter() -> Option<Vec<sock_filter>> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let mut syscalls: Vec<u32> = vec![
            nix::libc::SYS_fsync as u32,
            nix::libc::SYS_fdatasync as u32,
            nix::libc::SYS_sync_file_range as u32,
            nix::libc::SYS_syncfs as u32,
            nix::libc::SYS_sync as u32,
        ];
        syscalls.sort_unstable();
        let count = syscalls.len() as u8;
        let mut program = vec![
            statement(LOAD_WORD, ARCH_OFFSET),
            // Another architecture's numbers mean other calls: on to "allow".
            jump(AUDIT_ARCH, 0, count + 1),
            statement(LOAD_WORD, NR_OFFSET),
        ];
        for (index, syscall) in syscalls.iter().enumerate() {
            // Equal: jump over the remaining comparisons and the "allow" to "succeed".
            let remaining = count - 1 - index as u8;
            program.push(jump(*syscall, remaining + 1, 0));
        }
        program.push(statement(RETURN, SECCOMP_RET_ALLOW));
        program.push(statement(RETURN, SECCOMP_RET_ERRNO));
        Some(program)
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        None
    }
}

/// Installs `program` for this process and what it execs. Makes no allocation.
pub fn install(program: &[sock_filter]) -> Result<(), nix::errno::Errno> {
    let fprog = nix::libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: the program outlives the call; the kernel copies it.
    #[allow(unsafe_code)]
    let done = unsafe {
        nix::libc::prctl(
            nix::libc::PR_SET_SECCOMP,
            nix::libc::SECCOMP_MODE_FILTER as nix::libc::c_ulong,
            &fprog as *const nix::libc::sock_fprog,
        )
    };
    if done != 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}
