//! linux.seccomp on real containers: the profile is compiled by berthd at create and loaded
//! by the init; what it denies fails inside the container, what berth cannot honour is
//! refused at create, naming the field, with nothing left behind.
mod common;

use common::*;
use serde_json::{json, Value};
use tonic::Code;

/// Every x86_64 syscall of Linux 6.1's table (Debian 12's headers), in order.
const X86_64_SYSCALLS: &str = "read write open close stat fstat lstat poll lseek mmap mprotect \
    munmap brk rt_sigaction rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access \
    pipe select sched_yield mremap msync mincore madvise shmget shmat shmctl dup dup2 pause \
    nanosleep getitimer alarm setitimer getpid sendfile socket connect accept sendto recvfrom \
    sendmsg recvmsg shutdown bind listen getsockname getpeername socketpair setsockopt getsockopt \
    clone fork vfork execve exit wait4 kill uname semget semop semctl shmdt msgget msgsnd msgrcv \
    msgctl fcntl flock fsync fdatasync truncate ftruncate getdents getcwd chdir fchdir rename mkdir \
    rmdir creat link unlink symlink readlink chmod fchmod chown fchown lchown umask gettimeofday \
    getrlimit getrusage sysinfo times ptrace getuid syslog getgid setuid setgid geteuid getegid \
    setpgid getppid getpgrp setsid setreuid setregid getgroups setgroups setresuid getresuid \
    setresgid getresgid getpgid setfsuid setfsgid getsid capget capset rt_sigpending \
    rt_sigtimedwait rt_sigqueueinfo rt_sigsuspend sigaltstack utime mknod uselib personality ustat \
    statfs fstatfs sysfs getpriority setpriority sched_setparam sched_getparam sched_setscheduler \
    sched_getscheduler sched_get_priority_max sched_get_priority_min sched_rr_get_interval mlock \
    munlock mlockall munlockall vhangup modify_ldt pivot_root _sysctl prctl arch_prctl adjtimex \
    setrlimit chroot sync acct settimeofday mount umount2 swapon swapoff reboot sethostname \
    setdomainname iopl ioperm create_module init_module delete_module get_kernel_syms query_module \
    quotactl nfsservctl getpmsg putpmsg afs_syscall tuxcall security gettid readahead setxattr \
    lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr removexattr \
    lremovexattr fremovexattr tkill time futex sched_setaffinity sched_getaffinity set_thread_area \
    io_setup io_destroy io_getevents io_submit io_cancel get_thread_area lookup_dcookie \
    epoll_create epoll_ctl_old epoll_wait_old remap_file_pages getdents64 set_tid_address \
    restart_syscall semtimedop fadvise64 timer_create timer_settime timer_gettime timer_getoverrun \
    timer_delete clock_settime clock_gettime clock_getres clock_nanosleep exit_group epoll_wait \
    epoll_ctl tgkill utimes vserver mbind set_mempolicy get_mempolicy mq_open mq_unlink \
    mq_timedsend mq_timedreceive mq_notify mq_getsetattr kexec_load waitid add_key request_key \
    keyctl ioprio_set ioprio_get inotify_init inotify_add_watch inotify_rm_watch migrate_pages \
    openat mkdirat mknodat fchownat futimesat newfstatat unlinkat renameat linkat symlinkat \
    readlinkat fchmodat faccessat pselect6 ppoll unshare set_robust_list get_robust_list splice \
    tee sync_file_range vmsplice move_pages utimensat epoll_pwait signalfd timerfd_create eventfd \
    fallocate timerfd_settime timerfd_gettime accept4 signalfd4 eventfd2 epoll_create1 dup3 pipe2 \
    inotify_init1 preadv pwritev rt_tgsigqueueinfo perf_event_open recvmmsg fanotify_init \
    fanotify_mark prlimit64 name_to_handle_at open_by_handle_at clock_adjtime syncfs sendmmsg \
    setns getcpu process_vm_readv process_vm_writev kcmp finit_module sched_setattr sched_getattr \
    renameat2 seccomp getrandom memfd_create kexec_file_load bpf execveat userfaultfd membarrier \
    mlock2 copy_file_range preadv2 pwritev2 pkey_mprotect pkey_alloc pkey_free statx io_pgetevents \
    rseq pidfd_send_signal io_uring_setup io_uring_enter io_uring_register open_tree move_mount \
    fsopen fsconfig fsmount fspick pidfd_open clone3 close_range openat2 pidfd_getfd faccessat2 \
    process_madvise epoll_pwait2 mount_setattr quotactl_fd landlock_create_ruleset \
    landlock_add_rule landlock_restrict_self memfd_secret process_mrelease futex_waitv \
    set_mempolicy_home_node";

/// What Docker's default profile leaves out for a container without CAP_SYS_ADMIN (or
/// allows only under conditions, below), and mkdir, which the test watches.
const LEFT_OUT: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "clone",
    "clone3",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "personality",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "mkdir",
    "mkdirat",
];

/// A profile of the size and shape of Docker's default: ERRNO by default, for x86_64,
/// x86 and x32, a long allow-list with names this libseccomp does not know, personality
/// allowed for a few values and clone only without namespace flags (an args condition),
/// clone3 answered with ENOSYS so libc falls back to clone. Its default errno is EROFS
/// rather than Docker's EPERM, so that a denied mkdir in a writable tmpfs can only have
/// been denied by it.
fn docker_like_profile() -> Value {
    let allowed: Vec<&str> = X86_64_SYSCALLS
        .split_whitespace()
        .filter(|name| !LEFT_OUT.contains(name))
        .chain(["map_shadow_stack", "futex_wake", "berth_no_such_syscall"])
        .collect();
    let mut syscalls = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    for persona in [0u64, 8, 131072, 131080, 4294967295] {
        syscalls.push(json!({
            "names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]
        }));
    }
    // CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
    syscalls.push(json!({
        "names": ["clone"], "action": "SCMP_ACT_ALLOW",
        "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
    }));
    syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 30,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls
    })
}

fn deny_mkdir(action: &str) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": action, "errnoRet": 1}]
    })
}

/// /dev/shm is a writable tmpfs in `runc spec`'s bundle, whose root is read-only.
const MKDIR: &[&str] = &["sh", "-c", "mkdir /dev/shm/made && echo made"];

/// Runs the bundle to its end; returns its exit code and output.
async fn run_to_end(daemon: &Daemon, id: &str, bundle: &Bundle) -> (i32, String) {
    let out = tempfile::tempdir().unwrap();
    let output = output_file(&out, "output");
    daemon.run(id, bundle, Some(&output)).await;
    let exit = wait_exit_status(&mut daemon.client().await, id).await;
    daemon.delete(id, false).await.unwrap();
    assert_nothing_left(daemon, id);
    (
        exit.code,
        std::fs::read_to_string(&output).unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_profile_denying_mkdir_makes_mkdir_fail_with_eperm() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(MKDIR);
    let (code, output) = run_to_end(&daemon, "unfiltered", &bundle).await;
    assert_eq!((code, output.trim()), (0, "made"), "without a profile");

    bundle.edit(|c| c["linux"]["seccomp"] = deny_mkdir("SCMP_ACT_ERRNO"));
    let (code, output) = run_to_end(&daemon, "filtered", &bundle).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("Operation not permitted"), "{output}");
    assert!(!output.contains("made\n"), "{output}");
}

#[tokio::test]
async fn without_no_new_privileges_the_filter_is_loaded_before_capabilities_drop() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(MKDIR);
    bundle.edit(|c| {
        c["process"]["noNewPrivileges"] = false.into();
        c["linux"]["seccomp"] = deny_mkdir("SCMP_ACT_ERRNO");
    });
    // Loading a filter without no_new_privs takes CAP_SYS_ADMIN, which runc spec's
    // capabilities do not keep: loaded after the drop, it would fail the container.
    let (code, output) = run_to_end(&daemon, "privileged-load", &bundle).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("Operation not permitted"), "{output}");
}

#[tokio::test]
async fn a_docker_sized_allow_list_runs_busybox() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&[
        "sh",
        "-c",
        "(echo forked); ls /bin >/dev/null && echo listed; mkdir /dev/shm/made",
    ]);
    bundle.edit(|c| c["linux"]["seccomp"] = docker_like_profile());
    let (code, output) = run_to_end(&daemon, "docker-like", &bundle).await;
    // The subshell needs clone, allowed only by its args condition.
    assert!(output.contains("forked\nlisted\n"), "{output}");
    // mkdir is left out: the default action, with the profile's errno.
    assert!(output.contains("Read-only file system"), "{output}");
    assert_eq!(code, 1, "{output}");
    let logs = daemon.logs();
    assert!(
        logs.contains("libseccomp does not know") && logs.contains("berth_no_such_syscall"),
        "the unknown name is skipped with a warning: {logs}"
    );
}

#[tokio::test]
async fn kill_process_kills_the_container_with_sigsys() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&["mkdir", "/dev/shm/made"]);
    bundle.edit(|c| c["linux"]["seccomp"] = deny_mkdir("SCMP_ACT_KILL_PROCESS"));
    daemon.run("killed", &bundle, None).await;
    let exit = wait_exit_status(&mut daemon.client().await, "killed").await;
    assert_eq!(
        (exit.code, exit.signal),
        (128 + libc::SIGSYS, libc::SIGSYS as u32)
    );
    daemon.delete("killed", false).await.unwrap();
    assert_nothing_left(&daemon, "killed");
}

/// Creates `bundle`, which must be refused as INVALID_ARGUMENT; returns the message after
/// checking nothing of the container was made.
async fn refused(daemon: &Daemon, id: &str, bundle: &Bundle) -> String {
    let error = daemon.create(id, bundle, None).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert_nothing_left(daemon, id);
    assert!(
        daemon.get(id).await.is_err(),
        "a refused container is not registered"
    );
    error.message().to_owned()
}

#[tokio::test]
async fn a_bad_profile_is_refused_naming_the_field_and_leaves_nothing_behind() {
    let daemon = Daemon::start().await;
    let mut bundle = Bundle::busybox(&["true"]);
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}
            ]}),
            "linux.seccomp.syscalls[1].action: unknown variant `SCMP_ACT_EXPLODE`",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_PDP11"]}),
            "linux.seccomp.architectures[1]: unknown variant `SCMP_ARCH_PDP11`",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
                "names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_APPROXIMATELY"}]
            }]}),
            "linux.seccomp.syscalls[0].args[0].op: unknown variant `SCMP_CMP_APPROXIMATELY`",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
            "linux.seccomp.flags: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is not supported",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp: SCMP_ACT_NOTIFY is not supported",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
                "names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]
            }]}),
            "linux.seccomp.syscalls[0].args[0].index: 6 is not a syscall argument",
        ),
    ];
    for (index, (profile, expected)) in cases.into_iter().enumerate() {
        bundle.edit(|c| c["linux"]["seccomp"] = profile);
        let message = refused(&daemon, &format!("bad-{index}"), &bundle).await;
        assert!(message.contains(expected), "{message}");
    }
}
