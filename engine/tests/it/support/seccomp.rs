//! A child process that may not use io_uring, as under a container runtime's default seccomp
//! profile: a classic-BPF seccomp filter, installed between fork and exec, answers
//! `io_uring_setup`, `io_uring_enter` and `io_uring_register` with `EPERM` (or another errno)
//! and allows the rest.

use std::{io, os::unix::process::CommandExt, process::Command};

#[repr(C)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// `struct seccomp_data`: `nr` at 0, `arch` at 4.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

const fn ins(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// Run `cmd`'s process under the filter (answering EPERM, as Docker's default profile does).
pub fn deny_io_uring(cmd: &mut Command) {
    deny_io_uring_with(cmd, libc::EPERM);
}

/// [`deny_io_uring`] answering `errno` (podman's default profile answers ENOSYS).
pub fn deny_io_uring_with(cmd: &mut Command, errno: i32) {
    // SAFETY: the closure runs in the child between fork and exec and only makes two prctl
    // calls (async-signal-safe) on data that lives in the closure.
    unsafe {
        cmd.pre_exec(move || {
            let prog = [
                ins(BPF_LD_W_ABS, 0, 0, OFF_ARCH),
                // Another architecture's syscall numbers: allow (jump to the last one).
                ins(BPF_JEQ_K, 0, 5, AUDIT_ARCH),
                ins(BPF_LD_W_ABS, 0, 0, OFF_NR),
                ins(BPF_JEQ_K, 2, 0, libc::SYS_io_uring_setup as u32),
                ins(BPF_JEQ_K, 1, 0, libc::SYS_io_uring_enter as u32),
                ins(BPF_JEQ_K, 0, 1, libc::SYS_io_uring_register as u32),
                ins(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno as u32),
                ins(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
            ];
            let fprog = SockFprog {
                len: prog.len() as u16,
                filter: prog.as_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const SockFprog,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
